"""The one checkpoint loader: BasicSR ``.pth`` files (``params`` / ``params_ema`` / a bare state dict) and
``.safetensors``, with DataParallel's ``module.`` prefix removed. Used by ``basicsr infer``/``export``,
MoESRNet's ``expert_weights`` and the scripts; pure (torch only), so archs may use it."""
import os
from collections import OrderedDict

import torch

from moesr_arch.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A weights file that is missing, unreadable, of another kind, or that does not fit its network."""


def strip_module_prefix(state):
    """``state`` without the ``module.`` prefix DataParallel and DDP put before every key."""
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in state.items())


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_state_dict(path, param_key='params'):
    """The state dict in ``path`` (BasicSR ``.pth`` or ``.safetensors``), ``module.`` prefixes removed.

    ``param_key`` is read as BasicSR does: a checkpoint without it falls back to ``params``, then to a bare
    state dict (all values tensors). Raises :class:`CheckpointError` naming the file and the reason.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file not found: {path}' if not os.path.isdir(path)
                              else f'{path}: is a folder, not a weights file')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            return strip_module_prefix(load_file(path))
        state = torch.load(path, map_location='cpu', weights_only=True)
    except OSError:
        raise
    except Exception as error:  # truncated, corrupt or not a checkpoint at all (an image, a text file)
        raise CheckpointError(f'{path}: not a readable weights file (truncated, corrupt or another kind of '
                              f'file): {_first_line(error)}') from None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: not a state dict (found {type(state).__name__})')
    for key in (param_key, 'params'):  # BasicSR falls back to 'params' the same way
        if key in state:
            return strip_module_prefix(state[key])
    if all(isinstance(v, torch.Tensor) for v in state.values()):
        return strip_module_prefix(state)
    if 'optimizers' in state:
        raise CheckpointError(f'{path}: a training state, not weights; give the network file of the same '
                              'iteration (experiments/<name>/models/net_g_<iter>.pth)')
    raise CheckpointError(f'{path}: no {param_key!r} or "params" entry and not a plain state dict')


def load_weights(network, path, param_key='params', strict=True, what=None):
    """Load ``path`` (see :func:`load_state_dict`) into ``network``; ``what`` names the network in errors."""
    state = load_state_dict(path, param_key)
    try:
        network.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise CheckpointError(f'{what or type(network).__name__}: {path} does not fit its network: {error}') from None
    return network
