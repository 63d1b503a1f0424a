from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from moesr_arch.evaluation.moesr import evaluate
from moesr_arch.inference.gated import run_gated
from moesr_arch.models.expert_init import BACKGROUND, copy_background_into_experts, load_experts
from moesr_arch.models.single_network_sr_model import SingleNetworkSRModel
from moesr_arch.utils.modes import eval_mode


@MODEL_REGISTRY.register()
class MoESRModel(SingleNetworkSRModel):
    """MoE-SR: a ``MoESRNet`` (one expert per category of a gate, a background expert, alpha-blended) trained in
    stages beside an equal-budget single network, and evaluated against it.

    Training runs ``train.stage`` for the whole run, or ``train.stages`` switched by iteration:

    - ``generalist``: the background expert alone on all data;
    - ``experts``: each category expert on its own pixels (the loss weighted by the dataset's ``category_map``);
      at the first iteration of the first experts stage the category experts start from the background expert
      (``train.init_experts``); an expert whose category no rank's batch holds keeps its weights;
    - ``joint``: the blend with the label gate (teacher forcing) against the GT, every expert.

    Only the experts a stage trains get gradients, so one optimizer and one schedule serve the whole run.
    The control (``network_ref``) trains on the very same batches with the same optimizer, schedule and EMA, on
    the plain loss; its weights are ``net_ref_<iter>.pth``.

    Validation and ``basicsr test`` run the top-level ``gate`` (default: a LabelGate on the network's
    categories) through the pipeline ``basicsr infer`` runs (:func:`~moesr_arch.inference.gated.run_gated`) and
    report the blend beside the control, the background expert alone and bicubic
    (:mod:`moesr_arch.evaluation`). Options: docs/options.md (MoESRModel); how to use it: docs/moesr.md.
    """

    @staticmethod
    def unused_parameters(opt):
        train = opt.get('train') or {}
        stages = [entry['stage'] for entry in train.get('stages') or ()] or [train.get('stage')]
        partial = sorted({stage for stage in stages if stage in ('generalist', 'experts')})
        if partial:
            return f'the {" and ".join(partial)} stage{"s" if len(partial) > 1 else ""} train only some experts'
        return None

    def __init__(self, opt):
        super().__init__(opt)
        from moesr_arch.gating import build_gate
        net = self.bare_net
        # The schema holds a given gate's categories to the network's.
        gate_opt = opt.get('gate') or {'type': 'LabelGate', 'categories': net.categories}
        self.gate = build_gate(dict(gate_opt), source='gate')
        if self.is_train:
            self.train_gate = build_gate({'type': 'LabelGate', 'categories': net.categories}, source='train')
            self.schedule = stage_schedule(opt['train'])
        elif opt.get('network_ref') is not None:
            self.net_ref = self.build_reference(opt['path']['param_key_ref'])
        self.absent_experts = []

    # ------------------------------------------------------------------------------------------
    # The equal-budget control

    def build_reference(self, param_key):
        net = self.model_to_device(build_network(self.opt['network_ref']))
        path = self.opt['path'].get('pretrain_network_ref')  # required at test (the schema's rule)
        if path is not None:
            self.load_network(net, path, self.opt['path']['strict_load_ref'], param_key)
        return net

    def init_training_settings(self):
        path_opt = self.opt['path']
        if path_opt.get('pretrain_network_experts') and not path_opt.get('pretrain_network_g'):
            load_experts(self.bare_net, path_opt['pretrain_network_experts'], path_opt['param_key_experts'])
        self.net_ref = self.build_reference('params') if self.opt.get('network_ref') is not None else None
        super().init_training_settings()
        if self.net_ref is not None:
            self.net_ref.train()
            if self.ema_decay > 0:
                self.net_ref_ema = build_network(self.opt['network_ref']).to(self.device).eval()
                path = self.opt['path'].get('pretrain_network_ref')
                if path is not None:
                    # As net_g's EMA copy: the file's params_ema, else the weights net_ref started from.
                    self.load_network(self.net_ref_ema, path, self.opt['path']['strict_load_ref'],
                                      ['params_ema', 'params'])
                else:
                    self.net_ref_ema.load_state_dict(self.get_bare_model(self.net_ref).state_dict())

    def setup_optimizers(self):
        optim_opt = dict(self.opt['train']['optim_g'])  # BasicSR pops its type
        super().setup_optimizers()
        if self.net_ref is not None:
            optim_opt = dict(optim_opt)
            params = [p for p in self.net_ref.parameters() if p.requires_grad]
            self.optimizer_ref = self.get_optimizer(optim_opt.pop('type'), params, **optim_opt)
            self.optimizers.append(self.optimizer_ref)  # BasicSR gives it the same schedule

    def optimize_parameters(self, current_iter):
        super().optimize_parameters(current_iter)
        if self.net_ref is None:
            return
        self.optimizer_ref.zero_grad(set_to_none=True)
        with self.speedups.autocast(self.device):
            losses = self.compute_losses(self.net_ref(self.lq), prefix='l_ref_')
        self.step(self.net_ref, self.optimizer_ref, losses, current_iter)
        self.log_dict.update(self.reduce_loss_dict(losses))
        if self.ema_decay > 0:
            ema_update(self.net_ref_ema, self.get_bare_model(self.net_ref), self.ema_decay)

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if getattr(self, 'net_ref', None) is not None:
            nets, keys = [self.net_ref], ['params']
            if hasattr(self, 'net_ref_ema'):
                nets, keys = nets + [self.net_ref_ema], keys + ['params_ema']
            self.save_network(nets, 'net_ref', current_iter, param_key=keys)

    def reference_network(self):
        return getattr(self, 'net_ref_ema', None) or getattr(self, 'net_ref', None)

    @property
    def bare_net(self):
        return self.get_bare_model(self.net_g)

    # ------------------------------------------------------------------------------------------
    # Training

    def feed_data(self, data):
        self.data = data
        super().feed_data(data)
        self.category_map = data['category_map'].to(self.device) if 'category_map' in data else None

    def stage_at(self, current_iter):
        """(stage name, first iteration of that stage entry) for a 1-based iteration."""
        for stage, first, last in self.schedule:
            if first <= current_iter <= last:
                return stage, first
        return self.schedule[-1][0], self.schedule[-1][1]

    def training_losses(self, current_iter):
        stage, first = self.stage_at(current_iter)
        if current_iter == first:
            self.start_stage(stage, current_iter)
        if stage == 'experts':
            return self.expert_losses()
        if stage == 'generalist':
            self.output = self.net_g(self.lq, expert=BACKGROUND)
        else:
            self.output = self.net_g(self.lq, self.train_gate(self.lq, self.data))
        return self.compute_losses()

    def expert_losses(self):
        """Each category expert's loss on its own pixels (mask-weighted), for the categories in the batch."""
        if self.category_map is None:
            raise ValueError('the experts stage needs a category_map from the dataset (use '
                             'CategoryPairedImageDataset with category labels)')
        losses = OrderedDict()
        names = list(self.bare_net.categories)
        if self.opt['train']['background_in_experts']:
            names.append(BACKGROUND)  # its pixels: the map's value K, after the K categories
        # One forward pass for all trained experts (DDP allows one per backward); every rank then has
        # the same loss terms, so the loss reduction and the gradient all-reduce stay in step.
        outputs = self.net_g(self.lq, expert=names)
        present = torch.stack([(self.category_map == index).any() for index in range(len(names))]).float()
        if self.opt['dist']:
            torch.distributed.all_reduce(present, op=torch.distributed.ReduceOp.MAX)
        self.absent_experts = [name for name, here in zip(names, present.tolist()) if not here]
        others = float(self.opt['train']['other_pixels_weight'])
        for index, (name, output) in enumerate(zip(names, outputs)):
            mask = (self.category_map == index).float()[:, None]
            if mask.any():  # pixels of other categories (and of the background) weigh other_pixels_weight
                weight = F.interpolate(mask, scale_factor=self.bare_net.scale, mode='nearest')
                losses[f'l_pix_{name}'] = self.cri_pix(output, self.gt, weight=weight + others * (1 - weight))
            else:  # not in this rank's batch: a zero loss keeps the graph alike on every rank
                losses[f'l_pix_{name}'] = output.sum() * 0
        return losses

    def discard_gradients(self, net):
        """Experts whose category no rank's batch holds keep their weights (see the class docstring)."""
        if net is not self.net_g:
            return
        for name in self.absent_experts:
            for param in self.bare_net.experts[name].parameters():
                param.grad = None
        self.absent_experts = []

    def start_stage(self, stage, current_iter):
        logger = get_root_logger()
        logger.info(f'Stage {stage} starts at iteration {current_iter}')
        first_experts = next(first for name, first, _ in self.schedule if name == 'experts') \
            if any(name == 'experts' for name, _, _ in self.schedule) else None
        if stage == 'experts' and current_iter == first_experts and self.opt['train']['init_experts']:
            nets = [self.bare_net] + ([self.net_g_ema] if hasattr(self, 'net_g_ema') else [])
            copied = copy_background_into_experts(nets)
            logger.info(f'Category experts initialised from the background expert: {", ".join(copied) or "none"}')

    # ------------------------------------------------------------------------------------------
    # Inference and validation

    def tested_network(self):
        """The bare MoESRNet that validation and test run (the EMA copy when there is one)."""
        return self.get_bare_model(self.test_network())

    def test(self):
        """The gated blend of the fed batch, kept as ``output``; returns the whole
        :class:`~moesr_arch.inference.gated.GatedResult` (background, gate weights, routed pixels, timing)."""
        net = self.tested_network()
        # Sparse experts see crops of ever new shapes: cuDNN's autotuner (BasicSR turns it on) would
        # re-tune for each of them, costing more than it saves.
        benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
        try:
            with eval_mode(net), torch.no_grad(), self.speedups.validation_autocast(self.device):
                result = run_gated(net, self.gate, self.lq, self.data)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        self.output = result.output
        return result

    def control_output(self):
        """The equal-budget control's output for the fed batch (None without a control)."""
        control = self.reference_network()
        if control is None:
            return None
        with eval_mode(control), torch.no_grad(), self.speedups.validation_autocast(self.device):
            return self.get_bare_model(control)(self.lq)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.metric_results = evaluate(self, dataloader, current_iter, tb_logger, save_img)


def ema_update(ema_net, net, decay):
    """BasicSR's EMA rule (``model_ema``) for a network other than net_g."""
    ema_params = dict(ema_net.named_parameters())
    with torch.no_grad():
        for name, param in net.named_parameters():
            ema_params[name].mul_(decay).add_(param, alpha=1 - decay)


def stage_schedule(train_opt):
    """``[(stage, first_iter, last_iter), ...]`` (1-based, inclusive) from ``train.stage`` or ``train.stages``."""
    if train_opt.get('stages') is None:
        return [(train_opt['stage'], 1, int(train_opt['total_iter']))]
    schedule, first = [], 1
    for entry in train_opt['stages']:
        schedule.append((entry['stage'], first, first + entry['iters'] - 1))
        first += entry['iters']
    return schedule
