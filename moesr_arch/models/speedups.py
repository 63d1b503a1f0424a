"""Mixed precision, channels_last and torch.compile of training: ``train.amp``, ``train.channels_last``,
``train.compile`` and ``val.amp_and_channels_last``, for every model of the package.

:class:`SingleNetworkSRModel <moesr_arch.models.single_network_sr_model.SingleNetworkSRModel>` (and through it
MoE-SR with its control and MoEISR) asks a :class:`Speedups` for each of its steps: where a network is placed on
its device (channels_last, then compilation around the DDP wrapper), around each training forward (autocast), in
the optimisation step (fp16's gradient scaler) and around the network calls of validation. Nothing here changes
what is saved: checkpoints hold the bare network's weights, contiguous, so their keys and layout are those of
a run without these options, and a run may resume with any of them switched.
"""
import contextlib

import torch
from basicsr.utils import get_root_logger

AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def amp_dtype(amp, device):
    """The autocast dtype of ``train.amp`` on ``device`` (None: fp32); bf16 on a GPU that only emulates it is refused,
    since emulated bfloat16 runs slower than fp32."""
    if amp == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError(f'train.amp is bf16, but {torch.cuda.get_device_name(device)} only emulates bfloat16 (slower '
                         'than fp32); use train.amp: fp16 (or none)')
    return AMP_DTYPES[amp]


def unwrap_compiled(net):
    """The module ``torch.compile`` wrapped (its ``_orig_mod``), or ``net`` itself."""
    return getattr(net, '_orig_mod', net)


class Speedups:
    """The speed-ups one training asked for; all off outside training (``basicsr test``) and by default."""

    def __init__(self, opt):
        self.amp, self.channels_last, self.compile, self.in_validation = 'none', False, False, False
        if opt.get('is_train'):  # the filled options: every key of train (and of val, when there is one) is there
            train, val = opt['train'], opt.get('val')
            self.amp, self.channels_last, self.compile = train['amp'], train['channels_last'], train['compile']
            self.in_validation = bool(val and val['amp_and_channels_last'])
        self.validating = False  # set by the model around a validation pass
        self.dtype = None  # resolved with the device (place)
        self.scalers = {}  # optimizer index -> fp16 gradient scaler, made at its first step
        self.skipped_steps = 0  # optimizer steps the fp16 scalers skipped (overflowed gradients), this run and resumed

    # ------------------------------------------------------------------------------------------
    # Placing networks

    def place(self, net, device, put_on_device):
        """``net`` on ``device`` as training wants it: channels_last before ``put_on_device`` (DDP's buckets take
        the parameters' layout when they are built), compiled around whatever that wrapped it in (torch.compile
        of the DDP wrapper splits the graph at DDP's buckets, keeping communication overlapped)."""
        self.dtype = amp_dtype(self.amp, device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        net = put_on_device(net)
        if self.compile is not False:
            net = torch.compile(net, mode=self.compile)
        return net

    def input(self, lq):
        """An input batch in the memory format of the networks (of training, or of validation when asked)."""
        wanted = self.channels_last and (not self.validating or self.in_validation)
        return lq.contiguous(memory_format=torch.channels_last) if wanted and lq.dim() == 4 else lq

    # ------------------------------------------------------------------------------------------
    # Precision

    def autocast(self, device):
        """Autocast of a training forward (losses included: torch keeps reductions and losses in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def validation_autocast(self, device):
        """Autocast of a validation network call: training's when ``val.amp_and_channels_last``, else none."""
        if not (self.validating and self.in_validation):
            return contextlib.nullcontext()
        return self.autocast(device)

    def scaler(self, index, device):
        """The gradient scaler of optimizer ``index`` under fp16 (None otherwise): fp16 gradients underflow
        unless the loss is scaled up; bf16 has fp32's range and needs none."""
        if self.amp != 'fp16':
            return None
        if index not in self.scalers:
            self.scalers[index] = torch.amp.GradScaler(device.type)
        return self.scalers[index]

    def skip_step(self, scaler, current_iter, losses):
        """An overflow the scaler handles: no step, a lower scale, the count logged."""
        scale = scaler.get_scale()
        scaler.update()  # halves the scale: unscale_ recorded the overflow
        self.skipped_steps += 1
        get_root_logger().info(f'iteration {current_iter}: fp16 gradients of loss {" + ".join(losses)} overflowed at '
                               f'scale {scale:g}; the step is skipped and the scale lowered to {scaler.get_scale():g} '
                               f'({self.skipped_steps} skipped steps in all)')

    def log(self, log_dict):
        """Add the skipped steps to the logged values (fp16 only)."""
        if self.amp == 'fp16':
            log_dict['fp16_skipped_steps'] = float(self.skipped_steps)

    # ------------------------------------------------------------------------------------------
    # Training states

    def state_dict(self):
        return {'scalers': {index: scaler.state_dict() for index, scaler in self.scalers.items()},
                'skipped_steps': self.skipped_steps}

    def load_state_dict(self, state, device):
        """Continue the scalers of a resumed fp16 run; a state from a run without fp16 (or none) starts them
        afresh, and a run without fp16 ignores saved ones."""
        if not state or self.amp != 'fp16':
            return
        for index, scaler_state in state.get('scalers', {}).items():
            if scaler_state:  # a disabled scaler saves {}
                self.scaler(index, device).load_state_dict(scaler_state)
        self.skipped_steps = state.get('skipped_steps', 0)
