"""Published checkpoint layouts converted to this package's parameter names.

Each entry of :data:`LAYOUTS` recognises a state dict by its keys and converts it; the checkpoint loader
(:mod:`moesr_arch.utils.checkpoint`) applies them to every file it reads, so ``basicsr infer``/``test``/
``export``/``benchmark`` and training's ``path.pretrain_network_g`` all open them. Layouts that already use
this package's names need no entry: BasicSR's ``params`` / ``params_ema`` files (EDSR is BasicSR's own) and
the official SeemoRe code's (``archs/seemore_arch.py`` keeps its module names).
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Tuple

import torch

from moesr_arch.errors import UserError


class LayoutError(UserError, ValueError):
    """A state dict in a published layout that this package's arch cannot reproduce."""


@dataclass(frozen=True)
class Layout:
    """A published layout: ``convert(state) -> (state with this package's keys, arch options it fixes)``.

    A state dict is in this layout when it has every key of ``keys``."""

    name: str
    source: str
    keys: Tuple[str, ...]
    convert: Callable = field(repr=False)


def indices(state, pattern):
    """Sorted integers captured by ``pattern`` (one group) over the keys of ``state``."""
    found = {int(m.group(1)) for key in state for m in [re.fullmatch(pattern, key)] if m}
    return sorted(found)


def pytorch_vdsr(state):
    """twtygqyy/pytorch-vdsr: ``input``, ``residual_layer.N.conv``, ``output``, no biases -> VDSR's
    ``body.{0, 2, ..., 2L}`` (ReLUs at the odd indices)."""
    middle = indices(state, r'residual_layer\.(\d+)\.conv\.weight')
    order = ['input.weight'] + [f'residual_layer.{i}.conv.weight' for i in middle] + ['output.weight']
    unknown = sorted(set(state) - set(order))
    if unknown or middle != list(range(len(middle))):
        found = ', '.join(unknown[:4]) or 'a gap in residual_layer'
        raise LayoutError(f'pytorch-vdsr layout with unexpected keys: {found}')
    return OrderedDict((f'body.{2 * i}.weight', state[key]) for i, key in enumerate(order)), {}


def edsr_pytorch(state):
    """sanghyun-son/EDSR-PyTorch: ``head.0``, ``body.N.body.{0,2}``, ``body.<last>``, ``tail.0.<i>``,
    ``tail.1`` and the fixed ``sub_mean``/``add_mean`` 1x1 convolutions -> BasicSR's EDSR.

    Its input is in [0, rgb_range] and ``sub_mean`` subtracts ``rgb_range * mean``; BasicSR's EDSR takes [0, 1]
    and computes ``(x - rgb_mean) * img_range``: the same network with ``img_range = rgb_range`` and that
    mean, which this conversion reads from ``sub_mean`` (the arch options it returns)."""
    blocks = indices(state, r'body\.(\d+)\.body\.0\.weight')
    last = len(blocks)
    converted = OrderedDict()
    renames = [('head.0.', 'conv_first.'), (f'body.{last}.', 'conv_after_body.'), ('tail.0.', 'upsample.'),
               ('tail.1.', 'conv_last.')]
    for key, value in state.items():
        if key.startswith(('sub_mean.', 'add_mean.')):
            continue
        match = re.fullmatch(r'body\.(\d+)\.body\.([02])\.(weight|bias)', key)
        if match:
            conv = 'conv1' if match.group(2) == '0' else 'conv2'
            converted[f'body.{match.group(1)}.{conv}.{match.group(3)}'] = value
            continue
        for old, new in renames:
            if key.startswith(old):
                converted[new + key[len(old):]] = value
                break
        else:
            raise LayoutError(f'EDSR-PyTorch layout with an unexpected key {key}')
    return converted, mean_shift_options(state)


def mean_shift_options(state):
    """``img_range`` and ``rgb_mean`` of EDSR-PyTorch's ``sub_mean``/``add_mean`` (identity weights, biases
    ``-/+ rgb_range * mean``: its default ``rgb_std`` of 1)."""
    weight, bias = state['sub_mean.weight'].double(), state['sub_mean.bias'].double()
    identity = torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1)
    if weight.shape != identity.shape or not torch.allclose(weight, identity, atol=1e-6) or \
            not torch.allclose(state['add_mean.bias'].double(), -bias, atol=1e-4):
        raise LayoutError('EDSR-PyTorch weights with an rgb_std other than 1 (sub_mean is not a plain shift): '
                          "BasicSR's EDSR has no such option")
    # rgb_range is 255 (the default) or 1: the one that puts the mean inside [0, 1].
    rgb_range = 255.0 if float(-bias.mean()) > 1 else 1.0
    return {'img_range': rgb_range, 'rgb_mean': [round(float(v), 6) for v in -bias / rgb_range]}


LAYOUTS = (
    Layout('pytorch-vdsr', 'github.com/twtygqyy/pytorch-vdsr', ('input.weight', 'residual_layer.0.conv.weight',
                                                                 'output.weight'), pytorch_vdsr),
    Layout('EDSR-PyTorch', 'github.com/sanghyun-son/EDSR-PyTorch', ('head.0.weight', 'body.0.body.0.weight',
                                                                     'tail.0.0.weight', 'sub_mean.bias'), edsr_pytorch),
)


def to_package_layout(state):
    """``(state, layout, options)``: ``state`` with this package's keys, the published :class:`Layout` it
    came in (None when it already had them) and the arch options that layout fixes."""
    for layout in LAYOUTS:
        if all(key in state for key in layout.keys):
            converted, options = layout.convert(state)
            return converted, layout, options
    return state, None, {}
