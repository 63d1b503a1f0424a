"""Device, precision, memory and clocks of inference, and its error type."""
import contextlib
import time

import torch

from moesr_arch.errors import UserError

GIB = 1 << 30

# Default tile per device. On a CPU smaller tiles keep the activations in cache: SeemoRe-T x4 on a
# 1920x1080 photo took 28.5 s with 256 against 64 s with 512 (2-core CPU); EDSR gains a little, VDSR
# loses 15%. GPUs prefer large tiles.
DEFAULT_TILE = {'cpu': 256, 'cuda': 512}


class InferenceError(UserError, RuntimeError):
    """A problem that stops inference (bad options, missing weights, an image too large for memory)."""


def resolve_device(device='auto'):
    """``torch.device`` of ``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda[:i]'``; clear errors."""
    if isinstance(device, str) and device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(device)
    except RuntimeError:
        raise InferenceError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:<index>") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise InferenceError('--device cuda but CUDA is not available')
    return device


def precision_dtype(precision, device):
    """The autocast dtype of ``precision`` on ``device`` (None means fp32, no autocast)."""
    if precision == 'auto':
        if device.type != 'cuda':
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]


# --compile of basicsr infer and benchmark: torch.compile's modes ('none': eager, the default).
COMPILE_MODES = ('none', 'default', 'max-autotune')


def compiled(function, mode):
    """``function`` (a network) through ``torch.compile`` in ``mode`` of :data:`COMPILE_MODES` (``'none'``: as is).

    The first call of each input size compiles (tens of seconds on a CPU: inductor writes and builds C++), and
    later calls of that size run the compiled code; outputs are those of the eager network within rounding."""
    if mode not in COMPILE_MODES:
        raise InferenceError(f'--compile {mode!r}: use one of {", ".join(COMPILE_MODES)}')
    if mode == 'none':
        return function
    return torch.compile(function, mode=None if mode == 'default' else mode)


def autocast(device, dtype):
    """Autocast to ``dtype`` on ``device``'s type, or nothing for fp32 (``dtype`` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def available_memory():
    """Bytes of memory the process can still use (psutil's estimate)."""
    import psutil
    return psutil.virtual_memory().available


def synchronized_clock(device):
    """``time.perf_counter()`` once the work queued on ``device`` is done (CUDA runs asynchronously)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter()
