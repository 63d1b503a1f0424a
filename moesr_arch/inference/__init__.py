"""The inference layer: whole images through any network of the package, one way for each kind.

Parts (one data flow, LR file -> SR file):

- reading and writing: :mod:`moesr_arch.utils.image_io` (the package's one reader; grey, RGBA, 16-bit,
  EXIF), used here, by the datasets and by the tools;
- :mod:`.capabilities`: what each network kind can do (:func:`describe` -> :class:`Capabilities`: fixed or
  arbitrary scale, whole image or tiles, its maps, input-size needs, memory estimate);
- :mod:`.tiling`: the :class:`Tiler` (overlapping tiles, smooth blending, output finished in strips);
- :mod:`.device`: device, precision (autocast), ``torch.compile`` modes, memory, clocks;
- :mod:`.gated`: :func:`run_gated`, the gate on the whole LR image then MoE-SR's sparse experts (also
  what ``MoESRModel.test`` runs);
- :mod:`.maps`: the gate overlay and the expert map, one palette and legend;
- :mod:`.loading`: :func:`build_from_options` (network and weights) and :func:`load_gate`;
- :mod:`.detect`: :func:`build_from_model_file`, a network from a weights file alone (one table of
  detectors reading the arch options from the keys and shapes);
- :mod:`.engine`: :class:`Upscaler`, the whole-image pipeline of ``basicsr infer``.
"""
from moesr_arch.inference.capabilities import Capabilities, describe, describes
from moesr_arch.inference.device import (COMPILE_MODES, DEFAULT_TILE, InferenceError, available_memory, compiled,
                                         precision_dtype, resolve_device, synchronized_clock)
from moesr_arch.inference.engine import Upscaler, map_path
from moesr_arch.inference.gated import GatedResult, run_gated
from moesr_arch.inference.detect import build_from_model_file
from moesr_arch.inference.loading import build_from_options, check_scale, load_gate
from moesr_arch.inference.tiling import (Tiler, blend_ramp, default_overlap, estimate_memory, out_size, recomputed_share,
                                        scale_alignment, tile_spans)

__all__ = ['COMPILE_MODES', 'Capabilities', 'DEFAULT_TILE', 'GatedResult', 'InferenceError', 'Tiler', 'Upscaler', 'available_memory',
           'blend_ramp', 'build_from_model_file', 'build_from_options', 'check_scale', 'compiled', 'default_overlap', 'describe',
           'describes', 'estimate_memory', 'load_gate', 'map_path', 'out_size', 'precision_dtype', 'recomputed_share',
           'resolve_device', 'run_gated', 'scale_alignment', 'synchronized_clock', 'tile_spans']
