"""What each kind of network can do at inference, declared in one place.

:func:`describe` gives a network's :class:`Capabilities` (in the style of spandrel's
``ImageModelDescriptor``), chosen by the network's type; the archs themselves stay plain modules and
nothing probes them with ``hasattr``. Three kinds run differently (:class:`moesr_arch.inference.Upscaler`):

- ``plain``: ``forward(lr)`` at a fixed integer scale, through the tiler (EDSR, VDSR, SeemoRe, any
  registered SR arch: the default for a type without its own entry; the scale is measured on a probe, the
  input channels read from the first convolution: 1 makes it a Y-channel network);
- ``arbitrary_scale``: ``upscale(lr, scale, return_stats=True)`` at any float scale, through the tiler;
  the statistics' ``expert_map`` makes the ``experts`` map (MoEISR);
- ``gated``: must see the whole image: a gate runs on the whole LR image, then the network's own sparse
  experts (:func:`moesr_arch.inference.gated.run_gated`); it tiles its experts internally and gives its own
  memory estimate (MoESRNet).

A new arch plugs in with ``@describes(MyNet)`` on a function ``network -> Capabilities`` (only needed when it
is not a plain fixed-scale network).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import torch

from moesr_arch.archs.moeisr_arch import MoEISR
from moesr_arch.archs.moesr_arch import BACKGROUND, MoESRNet, first_conv_channels, probe_scale
from moesr_arch.inference.maps import depth_names
from moesr_arch.utils.activations import activation_bytes

KINDS = ('plain', 'arbitrary_scale', 'gated')


@dataclass(frozen=True)
class Capabilities:
    """A network's contract with the inference layer.

    Args:
        kind (str): ``plain``, ``arbitrary_scale`` or ``gated`` (see the module docstring).
        scale (int | float | None): The fixed upscale factor; None for arbitrary-scale networks.
        whole_image (bool): The network must see the whole image at once (it tiles internally, if at all).
        map_names (tuple[str]): Maps ``--save_maps`` writes beside each output (``<stem>_<name>.png``),
            known before any image runs so that their files take part in the output-collision check.
        experts (tuple[str]): Legend names of the experts whose per-pixel choice the ``experts`` map shows
            (arbitrary-scale networks whose statistics carry an ``expert_map``).
        size_multiple (int): Input height and width must be multiples of this (1: any size).
        min_size (int): Smallest input side the network accepts.
        memory (callable | None): ``memory(h, w, tile)``: CPU bytes an ``h x w`` LR image needs with tiles
            of ``tile`` (the output image excluded); None: the tiler's own estimate.
        in_channels (int): Channels the network takes: 1 for a Y-channel network (colour images go through
            :func:`moesr_arch.inference.luma.on_luma`), else 3 (RGB).
    """

    kind: str
    scale: Optional[float]
    whole_image: bool = False
    map_names: Tuple[str, ...] = ()
    experts: Tuple[str, ...] = ()
    size_multiple: int = 1
    min_size: int = 1
    memory: Optional[Callable[[int, int, int], int]] = field(default=None, compare=False)
    in_channels: int = 3

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'Capabilities.kind must be one of {", ".join(KINDS)}, got {self.kind!r}')
        if (self.scale is None) != (self.kind == 'arbitrary_scale'):
            raise ValueError(f'Capabilities: a {self.kind} network needs '
                             f'{"no fixed" if self.kind == "arbitrary_scale" else "a fixed"} scale')

    @property
    def arbitrary_scale(self):
        return self.kind == 'arbitrary_scale'


_DESCRIBERS = {}


def describes(network_type):
    """Register the decorated ``function(network) -> Capabilities`` for ``network_type`` (and subclasses)."""
    def register(function):
        _DESCRIBERS[network_type] = function
        return function
    return register


def describe(network):
    """The :class:`Capabilities` of ``network``: its type's registered description, else a plain network
    whose scale is measured on a probe and whose channels are those of its first convolution."""
    for cls in type(network).__mro__:
        if cls in _DESCRIBERS:
            return _DESCRIBERS[cls](network)
    return Capabilities('plain', probe_scale(network), in_channels=first_conv_channels(network))


@describes(MoEISR)
def _moeisr(network):
    return Capabilities('arbitrary_scale', None, map_names=('experts', ), experts=depth_names(network.expert_depths))


@describes(MoESRNet)
def _moesr(network):
    return Capabilities('gated', network.scale, whole_image=True, map_names=('gate', ),
                        memory=MoESRMemory(network))


class MoESRMemory:
    """Bytes MoE-SR's whole-image inference needs for one ``h x w`` LR image (errs on the high side).

    Whole-image tensors: at HR the background output, the blend and one weight map per expert plus the
    blending's work area; at LR the image and the gate's weights. Expert activations: one batch of
    ``max_batch`` crops of ``tile_size`` (the network's first, then the inference tile) plus margins, at the
    largest per-pixel activation size of the experts (every layer's output counted, measured once on a probe
    when first asked).
    """

    def __init__(self, network):
        self.network = network
        self.bytes_per_pixel = None

    def __call__(self, h, w, tile_size=0):
        net = self.network
        experts = len(net.names)
        tile = net.tile_size or tile_size or max(h, w)
        crop_pixels = net.max_batch * (min(tile, h) + 2 * net.crop_margin) * (min(tile, w) + 2 * net.crop_margin)
        if self.bytes_per_pixel is None:
            probe = next(net.parameters()).new_zeros(1, first_conv_channels(net.experts[BACKGROUND]), 16, 16)
            most = max(activation_bytes(expert, probe) for expert in net.experts.values())
            self.bytes_per_pixel = most / (probe.shape[-2] * probe.shape[-1])
        whole_image = 4 * (h * net.scale * w * net.scale * (6 + 2 * experts) + h * w * (3 + 2 * experts))
        return int(whole_image + crop_pixels * self.bytes_per_pixel)
