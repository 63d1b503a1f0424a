import random
from collections import OrderedDict

import numpy as np
import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn.parallel import DistributedDataParallel

from moesr_arch.archs.routing import add_expert_pixels, returns_statistics, routing_shares
from moesr_arch.evaluation.report import log_routing_statistics
from moesr_arch.inference.capabilities import describe
from moesr_arch.inference.luma import on_luma
from moesr_arch.models.speedups import Speedups, unwrap_compiled
from moesr_arch.options import OPTIMIZERS
from moesr_arch.utils.atomic import atomic_torch_save
from moesr_arch.utils.checkpoint import load_weights, strip_module_prefix
from moesr_arch.utils.ensemble import self_ensemble
from moesr_arch.utils.modes import eval_mode


@MODEL_REGISTRY.register()
class SingleNetworkSRModel(SRModel):
    """BasicSR's ``SRModel`` for any single network (EDSR, VDSR, SeemoRe, ...), and the base of the package's
    other models, plus:

    - every ``train.<name>_opt`` loss besides pixel/perceptual is applied to (output, gt) and logged as
      ``l_<name>`` (e.g. SeemoRe's ``fft_opt``);
    - a NaN or Inf loss stops training before the weights are touched, naming the iteration and term;
    - checkpoints and training states are written atomically (a crash never leaves a truncated latest);
    - weights (``path.pretrain_network_g``, ``pretrain_network_ref``) load through the package's loader
      (:meth:`load_network`): published layouts converted, pickled whole models read without running them,
      the ``param_key`` strict (a list falls back in order), a mismatch reported in one line;
    - ``train.grad_clip_norm`` clips the norm of all gradients together; ``train.grad_clip_value_over_lr``
      (theta) clips each gradient element to [-theta/lr, theta/lr] with the current learning rate, VDSR's
      adjustable gradient clipping (:func:`clip_gradients_over_lr`);
    - training states carry the random number generators of every rank, so a resumed run continues
      exactly and the ranks of a distributed run keep drawing different crops after a resume;
    - distributed training runs on CPU (gloo) too, and every checkpoint checks that all replicas hold
      the same weights; a model whose training leaves parameters without gradients (``unused_parameters``)
      gets DDP's ``find_unused_parameters`` without being asked;
    - every optimizer the option check accepts (``OPTIMIZERS``: SGD for VDSR, AdamW, ...) is built, where
      BasicSR 1.4.2 builds Adam only;
    - ``val.self_ensemble: true`` tests with the x8 geometric self-ensemble (EDSR+);
    - a Y-channel network (1 input channel, e.g. the published VDSR) is tested on the RGB images of the
      dataset as ``basicsr infer`` runs it: Y through the network, Cb and Cr by MATLAB bicubic
      (:func:`moesr_arch.inference.luma.on_luma`);
    - archs that route (``forward(x, return_stats=True)``, :mod:`moesr_arch.archs.routing`) have each
      expert's share of the pixels routed in a validation logged to the log file and TensorBoard;
      ``test()`` keeps the stats of its last network call as ``routing_stats`` (subclasses read maps there);
    - ``train.amp`` (bf16, fp16 with a gradient scaler), ``train.channels_last`` and ``train.compile`` speed up
      every network trained (:mod:`moesr_arch.models.speedups`); ``val.amp_and_channels_last`` extends the first
      two to validation. Checkpoints and training states are the same with and without them.

    It takes the options ``basicsr train|test`` give it: checked and filled with their defaults
    (:func:`moesr_arch.options.read_options`). Every key, its type and default: docs/options.md
    (SingleNetworkSRModel).
    """

    @staticmethod
    def unused_parameters(opt):
        """Why some parameters get no gradient in some iterations of this training (None: they all do).

        DDP waits for every parameter's gradient unless told otherwise (``find_unused_parameters``); the
        option schema refuses ``find_unused_parameters: false`` where this gives a reason."""
        return None

    def __init__(self, opt):
        reason = self.unused_parameters(opt) if opt.get('is_train') else None
        if reason and opt.get('dist') and opt.get('find_unused_parameters') is None:
            opt['find_unused_parameters'] = True
            get_root_logger().info(f'DDP: find_unused_parameters set to true ({reason})')
        self.speedups = Speedups(opt)  # before BasicSR places net_g (model_to_device)
        super().__init__(opt)
        self.routing_totals = None  # expert -> pixels routed, summed over a validation pass while one runs
        self.routing_stats = None  # the stats of test()'s last network call, for a routing network
        self.test_channels = None  # input channels of the tested network, read once (describe probes it)

    def init_training_settings(self):
        super().init_training_settings()
        builtin = ('pixel_opt', 'perceptual_opt')
        self.extra_losses = OrderedDict(
            (key[:-len('_opt')], build_loss(dict(value)).to(self.device))
            for key, value in self.opt['train'].items()
            if key.endswith('_opt') and key not in builtin and value is not None)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BasicSR's ``load_network`` through :func:`moesr_arch.utils.checkpoint.load_weights`, where BasicSR
        would take ``params`` for a missing ``param_key`` and print every mismatched key.

        The EMA copy (``train.ema_decay``) starts from the file's ``params_ema`` as in BasicSR; a file without
        one starts it from the weights ``path.param_key_g`` chose for ``net_g``."""
        if net is getattr(self, 'net_g_ema', None) and param_key == 'params_ema':
            chosen = self.opt['path']['param_key_g']
            param_key = ['params_ema'] + ([chosen] if isinstance(chosen, str) else list(chosen))
        bare = self.get_bare_model(net)
        load_weights(bare, load_path, param_key, strict, what=type(bare).__name__)
        get_root_logger().info(f'Loading {type(bare).__name__} model from {load_path}, with param key: {param_key}.')

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        """The ``torch.optim`` class the option check accepts (BasicSR 1.4.2 builds Adam only; VDSR uses SGD)."""
        if optim_type not in OPTIMIZERS:
            raise NotImplementedError(f'optimizer {optim_type} is not supported; supported: {", ".join(OPTIMIZERS)}')
        return getattr(torch.optim, optim_type)(params, lr, **kwargs)

    def model_to_device(self, net):
        """On the device, wrapped for DDP on the CPU too, with training's channels_last and compilation."""
        return self.speedups.place(net, self.device, self.put_on_device)

    def put_on_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            net = net.to(self.device)
            return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def get_bare_model(self, net):
        """The network inside DDP, DataParallel and ``torch.compile``: what is saved, loaded and validated."""
        return super().get_bare_model(unwrap_compiled(net))

    def feed_data(self, data):
        super().feed_data(data)
        self.lq = self.speedups.input(self.lq)

    def release_batch(self):
        """Drop the fed batch and its outputs (after a validation pass, as BasicSR's does per image), so they do not
        hold device memory into training."""
        for name in ('lq', 'gt', 'output', 'data', 'category_map', 'coord', 'cell'):
            self.__dict__.pop(name, None)
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()

    def compute_losses(self, output=None, prefix='l_'):
        """Loss terms of ``output`` (default: ``self.output``) against ``self.gt``, by name."""
        output = self.output if output is None else output
        losses = OrderedDict()
        if self.cri_pix:
            losses[f'{prefix}pix'] = self.cri_pix(output, self.gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, self.gt)
            if l_percep is not None:
                losses[f'{prefix}percep'] = l_percep
            if l_style is not None:
                losses[f'{prefix}style'] = l_style
        for name, loss in self.extra_losses.items():
            losses[f'{prefix}{name}'] = loss(output, self.gt)
        return losses

    def training_losses(self, current_iter):
        """Forward the batch and return its loss terms; models with other forward passes override this."""
        self.output = self.net_g(self.lq)
        return self.compute_losses()

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad(set_to_none=True)
        with self.speedups.autocast(self.device):
            losses = self.training_losses(current_iter)
        self.step(self.net_g, self.optimizer_g, losses, current_iter)
        self.log_dict = self.reduce_loss_dict(losses)
        self.speedups.log(self.log_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def step(self, net, optimizer, losses, current_iter):
        """One optimisation step of ``net`` on ``losses``: NaN guard, backward, gradient clipping (the
        norm by ``train.grad_clip_norm``, then each element by ``train.grad_clip_value_over_lr``).

        Every model's training goes through here, so the options apply to all of them. Under ``train.amp: fp16``
        the loss is scaled for the backward pass and the gradients unscaled before clipping; a step whose
        gradients overflowed is skipped by the scaler (counted, not an error)."""
        check_finite_losses(losses, current_iter, self.speedups.amp)
        scaler = self.speedups.scaler(self.optimizers.index(optimizer), self.device)
        total = sum(losses.values())
        (total if scaler is None else scaler.scale(total)).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)  # clipping and the guard below see the true gradients
        self.discard_gradients(net)
        clip = self.opt['train'].get('grad_clip_norm')
        # A finite loss can still overflow its gradients (a huge learning rate, an exploding scale):
        # one norm over all gradients catches it before the optimizer turns the weights into NaN.
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip or float('inf'))
        if not torch.isfinite(norm) and scaler is not None:
            self.speedups.skip_step(scaler, current_iter, losses)
            return
        if not torch.isfinite(norm):
            raise FloatingPointError(
                f'iteration {current_iter}: the gradient of loss {" + ".join(losses)} is {norm.item()}; training '
                'stopped before the weights were updated (the last saved checkpoint is intact). Lower the learning '
                'rate or check the data.')
        theta = self.opt['train'].get('grad_clip_value_over_lr')
        # theta is derived for one process's batch; DDP averages the gradients over world_size batches.
        clip_gradients_over_lr(optimizer, theta and theta / self.opt.get('world_size', 1))
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def discard_gradients(self, net):
        """Hook before the optimizer step: models that must keep some parameters still drop their gradients
        here (Adam skips a parameter without a gradient, but moves one whose gradient is zero)."""

    def test_network(self):
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g

    def test(self):
        # The bare network: validation is one image at a time (DataParallel would split nothing).
        net = self.get_bare_model(self.test_network())
        forward, self.routing_stats = net, None
        if returns_statistics(net):
            def forward(x):  # every call's routing, self-ensemble's eight included, into the pass's totals
                output, self.routing_stats = net(x, return_stats=True)
                if self.routing_totals is not None:
                    add_expert_pixels(self.routing_totals, self.routing_stats['expert_pixels'])
                return output
        if self.test_channels is None:
            self.test_channels = describe(net).in_channels
        if self.test_channels == 1:
            forward = on_luma(forward)
        with eval_mode(net), torch.no_grad(), self.speedups.validation_autocast(self.device):
            if self.opt['val']['self_ensemble']:
                self.output = self_ensemble(forward, self.lq)
            else:
                self.output = forward(self.lq)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        self.speedups.validating = True  # fp32 and contiguous, unless val.amp_and_channels_last
        try:
            super().validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.speedups.validating = False

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.routing_totals = OrderedDict()
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            totals, self.routing_totals = self.routing_totals, None
        log_routing_statistics(routing_shares(totals), dataloader.dataset.opt['name'], current_iter, tb_logger)

    def save(self, epoch, current_iter):
        if self.opt['dist']:
            check_replicas_agree(self.get_bare_model(self.net_g), current_iter)
        if current_iter != -1:  # every rank's generators, gathered before rank 0 writes the state
            self.rank_rng_states = gather_rng_states(self.opt['dist'])
        super().save(epoch, current_iter)

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        checkpoint = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            # contiguous: the file of a channels_last run is that of any other
            checkpoint[key] = strip_module_prefix(OrderedDict((k, v.cpu().contiguous()) for k, v in state.items()))
        label = 'latest' if current_iter == -1 else current_iter
        atomic_torch_save(checkpoint, f"{self.opt['path']['models']}/{net_label}_{label}.pth")

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': self.rank_rng_states,  # one entry per rank
            'speedups': self.speedups.state_dict(),  # fp16's gradient scalers
        }
        atomic_torch_save(state, f"{self.opt['path']['training_states']}/{current_iter}.state")

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self.speedups.load_state_dict(resume_state.get('speedups'), self.device)
        # Restored last, after the network was built, so data sampling continues where it stopped.
        restore_rng_states(resume_state.get('rng'), self.opt, resume_state['iter'])


@MODEL_REGISTRY.register()
class ExpertSRModel(SingleNetworkSRModel):
    """:class:`SingleNetworkSRModel` under its old name, kept registered so every existing option file with
    ``model_type: ExpertSRModel`` loads."""


def rng_state():
    return {
        'python': random.getstate(),
        'numpy': np.random.get_state(),
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def gather_rng_states(distributed):
    """The random generator states of every rank, in rank order (all ranks take part)."""
    if not distributed:
        return [rng_state()]
    import torch.distributed as dist
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, rng_state())
    return states


def restore_rng_states(states, opt, current_iter):
    """Give this rank its own saved generators back; with another world size, seed each rank afresh.

    States written before the per-rank format hold one dict (rank 0's): other ranks are seeded afresh
    too, so ranks never draw the same random numbers."""
    if not states:
        return
    states = [states] if isinstance(states, dict) else states
    rank, world_size = opt.get('rank', 0), opt.get('world_size', 1)
    if len(states) == world_size or (rank == 0 and len(states) == 1):
        state = states[rank]
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'].cpu())
        if state['cuda'] and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
        return
    from basicsr.utils import set_random_seed
    seed = (opt.get('manual_seed') or 0) + 1000 * current_iter + rank
    get_root_logger().warning(f'The training state holds random generators of {len(states)} rank(s), this run has '
                              f'{world_size}: rank {rank} is seeded afresh with {seed}')
    set_random_seed(seed)


def clip_gradients_over_lr(optimizer, theta):
    """VDSR's adjustable gradient clipping (Kim et al., CVPR 2016, sec. 3.3): each gradient element of
    each parameter group into [-theta/lr, theta/lr] with the group's current learning rate (the scheduler
    has set it), so a plain SGD step moves no weight by more than theta, whatever the learning rate.

    ``theta`` None or 0 leaves the gradients alone; so does a learning rate of 0 (no step is made)."""
    if not theta:
        return
    for group in optimizer.param_groups:
        if group['lr'] > 0:
            torch.nn.utils.clip_grad_value_(group['params'], theta / group['lr'])


def check_finite_losses(losses, current_iter, amp='none'):
    for name, value in losses.items():
        if not torch.isfinite(value).all():
            # The scaler handles overflowing gradients, not a forward pass that overflowed float16's range.
            hint = ' (train.amp is fp16, whose largest value is 65504: try bf16 or none)' if amp == 'fp16' else ''
            raise FloatingPointError(
                f'iteration {current_iter}: loss {name} is {value.item()}; training stopped before the weights '
                f'were updated (the last saved checkpoint is intact). Lower the learning rate or check the data{hint}.')


def check_replicas_agree(net, current_iter):
    """Compare a fingerprint of the weights across DDP ranks; diverged replicas are a bug, not noise."""
    import torch.distributed as dist
    params = [p.detach().double() for p in net.parameters()]
    fingerprint = torch.stack([torch.stack([p.sum(), p.abs().sum()]) for p in params]).flatten()
    if dist.get_backend() == 'nccl':
        fingerprint = fingerprint.to(params[0].device)
    gathered = [torch.empty_like(fingerprint) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fingerprint)
    difference = max((g - gathered[0]).abs().max().item() for g in gathered)
    if difference > 1e-6 * max(1.0, gathered[0].abs().max().item()):
        raise RuntimeError(f'iteration {current_iter}: DDP replicas hold different weights (max difference '
                           f'{difference:.3g} in the weight fingerprints)')
    get_root_logger().info(f'DDP replicas agree at iteration {current_iter} (world size '
                           f'{dist.get_world_size()}, max fingerprint difference {difference:.3g})')

