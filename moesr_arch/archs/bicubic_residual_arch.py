from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from moesr_arch.archs.routing import returns_statistics
from moesr_arch.utils.bicubic import bicubic_upsample, check_kernel


@ARCH_REGISTRY.register()
class BicubicResidual(nn.Module):
    """Any registered SR arch made to learn the residual over a bicubic upsampling of its input.

    ``out = bicubic(lq) + gain * network(lq)``, with ``gain`` a learned scalar that starts at 0: the
    untrained model already equals bicubic, so a short training on few photos can only start from there,
    and a constant colour offset of the inner network is no longer baked into every output. The inner
    network keeps its own parameter names under ``network.``: strip that prefix (and drop ``gain``) to
    open the inner weights in tools that know the arch, e.g. spandrel; they are the residual branch only.

    In an option file (``type: BicubicResidual``), its keys with their types and defaults are in
    docs/options.md#bicubicresidual.

    Args:
        network (dict): Options of the wrapped arch (``{type: <registered arch>, ...}``); required.
        upscale (int): Upsampling factor of the wrapped arch, which must upscale by it; required.
        initial_gain (float): Starting value of ``gain``.
        upsampler (str): Bicubic kernel of the base: ``'matlab'`` (as the LR images are made) or ``'torch'``.
    """

    def __init__(self, network=None, upscale=None, initial_gain=0.0, upsampler='matlab'):
        super().__init__()
        if not isinstance(network, dict) or 'type' not in network:
            raise ValueError(f'BicubicResidual needs network: {{type: <arch>, ...}}, got {network!r}')
        if upscale is None or int(upscale) != upscale or upscale < 1:
            raise ValueError(f'BicubicResidual upscale must be a positive integer, got {upscale!r}')
        self.upscale = int(upscale)
        self.upsampler = check_kernel(upsampler, 'BicubicResidual upsampler')
        self.network = build_network(dict(network))
        self.gain = nn.Parameter(torch.tensor(float(initial_gain)))

    def forward(self, lq, return_stats=False):
        """``bicubic(lq) + gain * network(lq)``; with ``return_stats``, ``(output, stats)``: the wrapped
        network's statistics of this call when it routes (``forward(x, return_stats=True)``), else
        ``{'expert_pixels': {}}``."""
        base = bicubic_upsample(lq, self.upscale, self.upsampler)
        if return_stats and returns_statistics(self.network):
            residual, stats = self.network(lq, return_stats=True)
        else:
            residual, stats = self.network(lq), {'expert_pixels': OrderedDict()}
        if residual.shape != base.shape:
            raise ValueError(f'BicubicResidual: the wrapped {type(self.network).__name__} returned '
                             f'{tuple(residual.shape)} for {tuple(lq.shape)}, not x{self.upscale} {tuple(base.shape)}')
        output = base + self.gain * residual
        return (output, stats) if return_stats else output
