"""The one checkpoint loader: BasicSR ``.pth`` files (``params`` / ``params_ema`` / a bare state dict),
``.safetensors``, pickled whole models (read safely: :mod:`moesr_arch.utils.safe_pickle`) and published
layouts (converted: :mod:`moesr_arch.utils.published`), with DataParallel's ``module.`` prefix removed.

Used by ``basicsr infer``/``test``/``export``/``benchmark``, training's ``path.pretrain_network_g``,
MoESRNet's ``expert_weights`` and the scripts; pure (torch only), so archs may use it.

Which weights of a file are read (``param_key``): a key or a list of keys, tried in order; the first one
the file has is read. A file that has none of them is refused with one line naming the file, the keys
asked and the entries present, unless it holds a single set of weights and no BasicSR entry at all (a
bare state dict, a pickled whole model, a published container such as pytorch-vdsr's ``{'epoch', 'model'}``):
there is nothing to choose between, and that set is read. ``param_key=None`` (``basicsr infer --model``)
reads ``params_ema``, else ``params``, else the single set.
"""
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import torch

from moesr_arch.errors import UserError
from moesr_arch.utils.published import LayoutError, to_package_layout
from moesr_arch.utils.safe_pickle import UnsafePickleError, is_pickled_module, module_state_dict, read_pickle

AUTOMATIC_KEYS = ('params_ema', 'params')  # what --model reads: BasicSR's EMA weights when the file has them
MISMATCHES_SHOWN = 3  # keys named per kind of mismatch in an error
# How torch.load(weights_only=True) starts the error for a valid pickle naming globals it does not allow.
WEIGHTS_ONLY_REFUSAL = 'Weights only load failed'


class CheckpointError(UserError, RuntimeError):
    """A weights file that is missing, unreadable, of another kind, or that does not fit its network."""


@dataclass
class Weights:
    """The weights read from a file.

    Attributes:
        state (OrderedDict): Parameter name -> tensor, with this package's names.
        entry (str | None): The checkpoint entry read (``params_ema``, ``model``); None for a bare state dict.
        layout (str | None): The published layout converted (``pytorch-vdsr``, ``EDSR-PyTorch``), or None.
        options (dict): Arch options the layout fixes (EDSR-PyTorch's ``img_range`` and ``rgb_mean``).
    """

    state: OrderedDict
    entry: Optional[str] = None
    layout: Optional[str] = None
    options: dict = field(default_factory=dict)

    def source(self, path):
        """``'params_ema of net.pth, EDSR-PyTorch layout'``: where the weights came from, for messages."""
        parts = [f'{self.entry} of {path}' if self.entry else str(path)]
        if self.layout:
            parts.append(f'{self.layout} layout')
        return ', '.join(parts)


def strip_module_prefix(state):
    """``state`` without the ``module.`` prefix DataParallel and DDP put before every key."""
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in state.items())


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_checkpoint(path):
    """The object stored in ``path``: tensors and containers, pickled modules as inert records.

    ``torch.load(weights_only=True)`` reads what it allows (tensors and containers); a pickle it refuses
    (a whole model saved with ``torch.save(model)``) is read by the restricted unpickler, which refuses, in
    turn, anything that would run code. Raises :class:`CheckpointError` naming the file and the reason.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file not found: {path}' if not os.path.isdir(path)
                              else f'{path}: is a folder, not a weights file')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            return load_file(path)
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as error:
            if WEIGHTS_ONLY_REFUSAL not in str(error):  # not a pickle at all
                raise
            return read_pickle(path)  # a pickle naming globals torch does not allow: read it without running them
    except OSError:
        raise
    except UnsafePickleError as error:
        raise CheckpointError(f'{path}: refused: {error}; only tensors, containers and the weights of pickled '
                              'modules are read from a pickle, nothing it names is imported or run') from None
    except Exception as error:  # truncated, corrupt or not a checkpoint at all (an image, a text file)
        raise CheckpointError(f'{path}: not a readable weights file (truncated, corrupt or another kind of '
                              f'file): {_first_line(error)}') from None


def is_state_dict(value):
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


def as_state_dict(value):
    """``value`` as a state dict when it holds one set of weights (a state dict or a pickled module), else None."""
    if is_pickled_module(value):
        return module_state_dict(value)
    return OrderedDict(value) if is_state_dict(value) else None


def select_entry(path, checkpoint, param_key, what=None):
    """``(state dict, entry)``: the weights of ``checkpoint`` that ``param_key`` asks for (see the module
    docstring); ``what`` names who asks (``path.param_key_g of FILE``) in the error."""
    single = as_state_dict(checkpoint)
    if single is not None:  # a bare state dict or a pickled module: one set of weights, no entries
        return single, None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path}: not a state dict (found {type(checkpoint).__name__})')
    keys = AUTOMATIC_KEYS if param_key is None else ([param_key] if isinstance(param_key, str) else list(param_key))
    for key in keys:
        if key in checkpoint:
            state = as_state_dict(checkpoint[key])
            if state is None:
                raise CheckpointError(f'{path}: entry {key!r} holds a {type(checkpoint[key]).__name__}, not weights')
            return state, key
    weights = [key for key, value in checkpoint.items() if as_state_dict(value)]
    if len(weights) == 1 and not any(str(key).startswith('params') for key in checkpoint):
        return as_state_dict(checkpoint[weights[0]]), weights[0]
    if 'optimizers' in checkpoint and not weights:
        raise CheckpointError(f'{path}: a training state, not weights; give the network file of the same '
                              'iteration (experiments/<name>/models/net_g_<iter>.pth)')
    asked = ' or '.join(repr(key) for key in keys)
    present = ', '.join(map(repr, checkpoint)) or 'nothing'
    hint = (f'; to fall back to another entry, list the keys in order (e.g. [{", ".join(keys)}, {weights[0]}])'
            if param_key is not None and weights else '')
    raise CheckpointError(f'{path}: no weights under {asked}{f" for {what}" if what else ""}; the file '
                          f'holds {present}{hint}')


def read_weights(path, param_key='params', what=None):
    """The :class:`Weights` of ``path`` under ``param_key`` (a key, a list of keys in order, or None for
    ``params_ema``-else-``params``), ``module.`` prefixes removed, a published layout converted."""
    state, entry = select_entry(path, read_checkpoint(path), param_key, what)
    try:
        state, layout, options = to_package_layout(strip_module_prefix(state))
    except LayoutError as error:
        raise CheckpointError(f'{path}: {error}') from None
    return Weights(state, entry, layout.name if layout else None, options)


def load_state_dict(path, param_key='params', what=None):
    """The state dict of ``path`` (see :func:`read_weights`)."""
    return read_weights(path, param_key, what).state


def mismatch(network_state, state, strict=True):
    """One line on how ``state`` does not fit a network with ``network_state`` (None when it fits): the count
    of missing, unexpected and shape-mismatched keys and the first few of each."""
    missing = [key for key in network_state if key not in state] if strict else []
    unexpected = [key for key in state if key not in network_state] if strict else []
    shapes = [f'{key}: checkpoint {tuple(state[key].shape)}, network {tuple(value.shape)}'
              for key, value in network_state.items() if key in state and state[key].shape != value.shape]
    parts = []
    for name, found in (('missing', missing), ('unexpected', unexpected), ('of another shape', shapes)):
        if found:
            more = f', ... ({len(found) - MISMATCHES_SHOWN} more)' if len(found) > MISMATCHES_SHOWN else ''
            parts.append(f'{len(found)} {name} ({", ".join(found[:MISMATCHES_SHOWN])}{more})')
    return '; '.join(parts) or None


def load_weights(network, path, param_key='params', strict=True, what=None):
    """Load ``path`` (see :func:`read_weights`) into ``network``; ``what`` names the network in errors.

    A state dict that does not fit raises :class:`CheckpointError` with one line: the file, the network and
    :func:`mismatch`'s summary. With ``strict`` false, missing and unexpected keys are allowed and weights of
    another shape are left out with a warning naming them, as BasicSR's ``load_network`` does (a x4 network
    started from x2 weights: every weight but the upsampler's), unless most of them are of another shape."""
    weights = read_weights(path, param_key, what)
    state = weights.state
    if not strict:
        network_state = network.state_dict()
        reshaped = [key for key, value in state.items()
                    if key in network_state and value.shape != network_state[key].shape]
        # Most shared weights must fit: a file whose weights mostly differ in shape is another network (a
        # bias of 3 output channels fits any RGB network), and is refused below.
        fitting = [key for key in state if key in network_state and key not in reshaped]
        if reshaped and len(fitting) > len(reshaped):
            from basicsr.utils import get_root_logger
            get_root_logger().warning(f'{weights.source(path)}: {len(reshaped)} weights of another shape left out '
                                      f'(strict loading is off): {", ".join(reshaped)}')
            state = {key: value for key, value in state.items() if key not in reshaped}
    problem = mismatch(network.state_dict(), state, strict)
    if problem:
        raise CheckpointError(f'{weights.source(path)} does not fit {what or type(network).__name__}: {problem}')
    network.load_state_dict(state, strict=strict)
    return network
