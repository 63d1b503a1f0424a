import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from moesr_arch.archs.moeisr_arch import describe_flops
from moesr_arch.inference.maps import depth_names, expert_map_picture
from moesr_arch.losses.expert_balance_loss import ExpertBalanceLoss
from moesr_arch.models.single_network_sr_model import SingleNetworkSRModel, log_routing_statistics
from moesr_arch.utils.image_io import write_png


@MODEL_REGISTRY.register()
class MoEISRModel(SingleNetworkSRModel):
    """Arbitrary-scale SR with :class:`~moesr_arch.archs.moeisr_arch.MoEISR`.

    Training batches (``RandomScaleSRDataset``) carry query ``coord``/``cell`` and the ``gt`` values there;
    the loss is ``pixel_opt`` on those values plus any ``ExpertBalanceLoss`` (e.g. ``balance_opt``) on the
    mapper's routing probabilities, in the training step every model shares (gradient clipping, NaN guard).
    Each validation set is decoded at its own ``scale`` (leave the top-level
    ``scale`` out to validate at several scales in one run), so PSNR is logged per scale. For every
    validation image the decoder FLOPs spent are logged beside those of the deepest decoder alone (the
    LIIF baseline), and with ``save_img`` an expert map (``*_experts.png``) is saved beside the SR image
    unless ``val.expert_maps`` is false.
    """

    def feed_data(self, data):
        super().feed_data(data)
        self.lq_path = data.get('lq_path')
        self.coord = data['coord'].to(self.device) if 'coord' in data else None
        self.cell = data['cell'].to(self.device) if 'cell' in data else None

    def training_losses(self, current_iter):
        self.output, probs = self.net_g(self.lq, self.coord, self.cell, return_routing=True)
        balance = {name: loss for name, loss in self.extra_losses.items() if isinstance(loss, ExpertBalanceLoss)}
        others = self.extra_losses
        self.extra_losses = {name: loss for name, loss in others.items() if name not in balance}
        try:
            losses = self.compute_losses()
        finally:
            self.extra_losses = others
        if probs is not None:  # a single decoder has no routing to balance
            for name, loss in balance.items():
                losses[f'l_{name}'] = loss(probs)
        return losses

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_opt = dataloader.dataset.opt
        scale = dataset_opt.get('scale', self.opt.get('scale'))
        for net in (self.net_g, getattr(self, 'net_g_ema', None)):
            if net is not None:
                self.get_bare_model(net).scale = scale
        self._val_context = {'dataset': dataset_opt['name'], 'iter': current_iter, 'save_img': save_img,
                             'pixels': OrderedDict(), 'flops': 0, 'flops_deepest': 0}
        visualization = self.opt['path']['visualization']
        if self.opt['is_train']:
            # BasicSR names training pictures after the image only; several scales of one image would collide.
            self.opt['path']['visualization'] = osp.join(visualization, dataset_opt['name'])
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
            log_routing_statistics(decoder_shares(self._val_context), dataset_opt['name'], current_iter, tb_logger)
        finally:
            self.opt['path']['visualization'] = visualization
            self._val_context = None

    def test(self):
        """The SR image and, for validation, the routing of this image: logged, summed, drawn as a map."""
        if self.opt.get('val', {}).get('self_ensemble', False):
            return super().test()
        net = self.get_bare_model(self.test_network())
        was_training = net.training
        net.eval()
        with torch.no_grad(), self.speedups.validation_autocast(self.device):
            self.output, stats = net(self.lq, return_stats=True)
        net.train(was_training)
        context = getattr(self, '_val_context', None)
        if context is None:
            return
        for name, pixels in stats['expert_pixels'].items():
            context['pixels'][name] = context['pixels'].get(name, 0.) + pixels
        context['flops'] += stats['flops']
        context['flops_deepest'] += stats['flops_deepest']
        img_name = osp.splitext(osp.basename(self.lq_path[0]))[0] if self.lq_path else 'image'
        total = sum(stats['expert_pixels'].values())
        shares = [n / max(total, 1) for n in stats['expert_pixels'].values()]
        saving = 1 - stats['flops'] / stats['flops_deepest']
        height, width = stats['expert_map'].shape[-2:]
        get_root_logger().info(
            f"{context['dataset']} {img_name} x{net.scale:g} ({width}x{height}): decoder "
            f"{describe_flops(stats['flops'])}FLOPs vs {describe_flops(stats['flops_deepest'])}FLOPs with the "
            f"deepest decoder alone ({saving:.1%} fewer); pixels per expert (hidden layers): " +
            ', '.join(f'{d}: {s:.1%}' for d, s in zip(net.expert_depths, shares)))
        if context['save_img'] and self.opt['val'].get('expert_maps', True):
            picture = expert_map_picture(stats['expert_map'][0].cpu().numpy(), depth_names(net.expert_depths))
            write_png(self.expert_map_path(img_name, context), np.ascontiguousarray(picture[:, :, ::-1]))

    def expert_map_path(self, img_name, context):
        """Beside BasicSR's SR picture of the same image, with an ``_experts`` suffix."""
        folder = self.opt['path']['visualization']
        if self.opt['is_train']:
            return osp.join(folder, img_name, f"{img_name}_{context['iter']}_experts.png")
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(folder, context['dataset'], f'{img_name}_{suffix}_experts.png')


def decoder_shares(summed):
    """Each expert's share of the validation pixels and the decoder FLOPs relative to the deepest decoder alone."""
    total = sum(summed['pixels'].values())
    if not total:
        return {}
    shares = OrderedDict((name, pixels / total) for name, pixels in summed['pixels'].items())
    shares['decoder_flops_vs_deepest'] = summed['flops'] / max(summed['flops_deepest'], 1)
    return shares
