"""The gated pipeline: a gate on the whole LR image, then MoE-SR's experts (sparse) and the blend.

:func:`run_gated` is the one place this happens: ``MoESRModel.test`` (validation and ``basicsr test``,
with the dataset's batch for a LabelGate) and ``basicsr infer`` (:class:`moesr_arch.inference.Upscaler`)
both call it, so validation and inference cannot drift apart.
"""
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from moesr_arch.inference.device import synchronized_clock
from moesr_arch.inference.maps import gate_overlay

@dataclass
class GatedResult:
    """What one gated run gives.

    Args:
        output (Tensor): ``[B, C, H, W]`` the blended SR image.
        background (Tensor | None): ``[B, C, H, W]`` the background expert alone on the whole image (dense
            execution only; None from top-1 sparse execution, which runs it only where it has weight).
        gate_weights (Tensor): ``[B, K+1, h, w]`` the gate's LR weights (background last).
        blend_weights (Tensor): ``[B, K+1, H, W]`` the HR blending weights.
        expert_pixels (OrderedDict): ``{expert: blend weight summed over the output pixels}``.
        maps (dict): ``{name: uint8 RGB array}`` of the first image (``gate``: the overlay), when asked for.
        timing (tuple): Seconds spent in the gate and in the experts and blend.
    """

    output: torch.Tensor
    background: Optional[torch.Tensor]
    gate_weights: torch.Tensor
    blend_weights: torch.Tensor
    expert_pixels: 'OrderedDict[str, float]'
    maps: Dict[str, np.ndarray] = field(default_factory=dict)
    timing: Tuple[float, float] = (0.0, 0.0)


def background_weights(lq, channels):
    """Gate weights that give every pixel to the background expert (the last channel)."""
    weights = lq.new_zeros(lq.shape[0], channels, *lq.shape[-2:])
    weights[:, -1] = 1
    return weights


def run_gated(network, gate, lq, data=None, sparse=None, tile_size=None, want_maps=False, autocast=None,
              progress=None):
    """Gate ``lq`` and blend ``network``'s experts (a :class:`~moesr_arch.archs.moesr_arch.MoESRNet`).

    Args:
        network (MoESRNet): The bare network, in the mode the caller wants (eval for inference).
        gate (callable | None): ``gate(lq, data) -> [B, K+1, h, w]`` weights; None gives every pixel to the
            background expert.
        lq (Tensor): ``[B, 3, h, w]`` RGB in [0, 1], on the network's device.
        data (dict | None): The dataset's batch (a LabelGate reads its ``category_map``).
        sparse (bool | None): Passed to ``network.run`` (None: sparse in eval mode without gradients).
        tile_size (int | None): Largest LR side an expert sees at once (None: the network's ``tile_size``).
        want_maps (bool): Draw the gate overlay (``maps['gate']``): the gate's weights (nearest, not the
            feathered blend) over the SR output, at its size.
        autocast (context manager | None): Precision context for the gate and the experts.
        progress (callable | None): ``progress(expert name, crops done, crops in all)`` after each crop of the
            sparse experts (``MoESRNet.run``).

    Returns:
        GatedResult
    """
    start = synchronized_clock(lq.device)
    with autocast or contextlib.nullcontext():
        weights = gate(lq, data) if gate is not None else background_weights(lq, len(network.names))
        gated = synchronized_clock(lq.device)
        result = network.run(lq, weights, sparse=sparse, tile_size=tile_size, progress=progress)
    done = synchronized_clock(lq.device)
    blend = result['weights']
    maps = {}
    if want_maps:  # beside the SR output and at its size, so the two line up
        output = result['output'][0]
        on_output = F.interpolate(weights[:1].float(), size=output.shape[-2:], mode='nearest')[0]
        maps['gate'] = gate_overlay(output, on_output, network.categories)
    return GatedResult(result['output'], result['background'], weights, blend, result['expert_pixels'], maps,
                       (gated - start, done - gated))
