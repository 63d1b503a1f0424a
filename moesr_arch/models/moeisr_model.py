from collections import OrderedDict

import torch
from basicsr.utils.registry import MODEL_REGISTRY

from moesr_arch.evaluation.moeisr import evaluate
from moesr_arch.losses.expert_balance_loss import ExpertBalanceLoss
from moesr_arch.models.single_network_sr_model import SingleNetworkSRModel
from moesr_arch.utils.ensemble import self_ensemble
from moesr_arch.utils.modes import eval_mode


@MODEL_REGISTRY.register()
class MoEISRModel(SingleNetworkSRModel):
    """Arbitrary-scale SR with :class:`~moesr_arch.archs.moeisr_arch.MoEISR`.

    Training batches (``RandomScaleSRDataset``) carry query ``coord``/``cell`` and the ``gt`` values there; the
    loss is ``pixel_opt`` on those values plus any ``ExpertBalanceLoss`` (e.g. ``balance_opt``) on the mapper's
    routing probabilities, in the training step every model shares. Each validation set is decoded at its own
    ``scale`` (:mod:`moesr_arch.evaluation.moeisr`). Options: docs/options.md (MoEISRModel); docs/moeisr.md.
    """

    def init_training_settings(self):
        super().init_training_settings()
        # Balance losses score the mapper's routing, not the image: kept apart from the image losses.
        losses = self.extra_losses
        self.balance_losses = OrderedDict((n, l) for n, l in losses.items() if isinstance(l, ExpertBalanceLoss))
        self.extra_losses = OrderedDict((n, l) for n, l in losses.items() if n not in self.balance_losses)

    def feed_data(self, data):
        super().feed_data(data)
        self.coord = data['coord'].to(self.device) if 'coord' in data else None
        self.cell = data['cell'].to(self.device) if 'cell' in data else None

    def training_losses(self, current_iter):
        self.output, probs = self.net_g(self.lq, self.coord, self.cell, return_routing=True)
        losses = self.compute_losses()
        if probs is not None:  # a single decoder has no routing to balance
            for name, loss in self.balance_losses.items():
                losses[f'l_{name}'] = loss(probs)
        return losses

    def test(self, scale=None):
        """The SR image of the fed batch at ``scale`` (default: the network's), kept as ``output``; returns the
        routing statistics of the decoding (None with ``val.self_ensemble``, which decodes eight times)."""
        net = self.get_bare_model(self.test_network())
        scale = net.scale if scale is None else scale
        with eval_mode(net), torch.no_grad(), self.speedups.validation_autocast(self.device):
            if self.opt['val']['self_ensemble']:
                self.output = self_ensemble(lambda lq: net.upscale(lq, scale), self.lq)
                return None
            self.output, stats = net.upscale(self.lq, scale, return_stats=True)
        return stats

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.metric_results = evaluate(self, dataloader, current_iter, tb_logger, save_img)
