"""Inference on real images of any size: tiles with overlap and smooth blending, image and output on the CPU.

Only tiles travel to the device; the input stays in its own dtype and the output is finished in strips
of tile rows, so the CPU holds the input, the finished output and one strip of float accumulators. Tiles
overlap by ``tile_overlap`` LR pixels and are blended with weights that ramp linearly across each overlap
and are never 0 (image borders keep full weight), so there are no seams and no dark borders.

Plug-in protocol for networks built from ``network_g`` (checked in this order):

- ``infer_image(lq, *, tiler, device, scale, want_maps)``: the network runs a whole image itself (MoE-SR
  runs its gate on the full image, then its experts). ``lq`` is the full RGB image as a CPU float tensor
  (1, 3, h, w) in [0, 1]; ``tiler(fn, x, scale)`` runs ``fn`` over overlapping tiles of a CPU tensor ``x``
  on ``device`` with the chosen precision and returns the blended CPU float tensor; ``scale`` is the
  ``--scale`` value or None; ``want_maps`` is ``--save_maps``. It returns the SR tensor (1, 3, H, W) in
  [0, 1], or ``(sr, maps)`` with ``maps`` a dict ``{name: uint8 RGB array (H, W, 3)}`` saved beside the
  output as ``<stem>_<name>.png``; the network lists those names in ``MAP_NAMES`` (the outputs of a run
  are planned, and checked for collisions, before any image is run).
- ``upscale(lr, scale)``: arbitrary-scale networks (MoEISR); used for ``--scale FLOAT`` through the tiled loop.
  If such a network has ``experts`` and leaves ``last_decode['expert_map']`` (B, H, W expert indices) after
  each call, ``--save_maps`` assembles the map over the tiles (one-hot channels blended like the image, the
  strongest expert per pixel) and saves it as ``<stem>_experts.png`` (labelled by ``expert_depths``).
- otherwise ``forward(lr)`` at the option file's integer ``scale`` through the tiled loop.
"""
import contextlib
import copy
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from moesr_arch.errors import UserError
from moesr_arch.utils.ensemble import self_ensemble

GIB = 1 << 30


class InferenceError(UserError, RuntimeError):
    """A problem that stops inference (bad options, missing weights, an image too large for memory)."""


def tile_spans(length, tile, overlap, align=1):
    """``[(start, end)]`` of tiles covering ``length``: a step of ``tile - overlap``, the last tile ending at
    ``length``. Starts are multiples of ``align`` (the last tile grows by less than ``align`` for it)."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step)) + [length - tile]
    starts = sorted({start - start % align for start in starts})
    return [(start, min(start + tile, length)) for start in starts[:-1]] + [(starts[-1], length)]


def scale_alignment(scale):
    """Smallest ``q`` with ``q * scale`` an integer (up to 64; else 1): tiles starting at multiples of ``q``
    sample the same output grid as the whole image does, also for float scales like 2.5."""
    from fractions import Fraction
    fraction = Fraction(float(scale)).limit_denominator(64)
    return fraction.denominator if abs(float(fraction) - float(scale)) < 1e-9 else 1


def blend_ramp(length, ramp_before, ramp_after, floor=1e-3):
    """1-D blending weights of a tile side: 1 inside, falling towards an end shared with a neighbour.

    Over an overlap of ``r`` pixels the weight is ``floor`` on the outer quarter (where the network saw
    zero padding instead of the neighbour's pixels), rises linearly across the middle half and is 1 on the
    inner quarter, so two neighbours' weights cross smoothly. It is never 0, and an image border
    (``ramp = 0``) keeps full weight.
    """
    weight = np.ones(length, np.float32)
    for ramp, side in ((ramp_before, slice(None)), (ramp_after, slice(None, None, -1))):
        if ramp <= 0:
            continue
        margin = ramp // 4
        position = np.arange(length, dtype=np.float32)
        rise = np.clip((position - margin + 0.5) / max(ramp - 2 * margin, 1), floor, 1)
        weight = np.minimum(weight, rise[side])
    return weight


def out_size(length, scale):
    return int(round(length * scale))


def precision_dtype(precision, device):
    """The autocast dtype of ``precision`` on ``device`` (None means fp32, no autocast)."""
    if precision == 'auto':
        if device.type != 'cuda':
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]


def available_memory():
    """Bytes of memory the process can still use (psutil's estimate)."""
    import psutil
    return psutil.virtual_memory().available


def estimate_memory(h, w, scale, tile, in_bytes=1, out_bytes=1, channels=3):
    """CPU bytes for one image: input, finished output and one strip of float accumulators (+ one tile)."""
    out_h, out_w = out_size(h, scale), out_size(w, scale)
    tile_h = min(h, tile) if tile > 0 else h
    strip_rows = 2 * out_size(tile_h, scale)  # rows being blended, plus the copy made when a strip is done
    strip = strip_rows * out_w * (channels + 1) * 4
    tile_out = out_size(tile_h, scale) * out_size(min(w, tile) if tile > 0 else w, scale) * channels * 4 * 3
    return h * w * channels * in_bytes + out_h * out_w * channels * out_bytes + strip + tile_out


class Tiler:
    """Runs a network over overlapping tiles of an image with smooth blending.

    Args:
        device (torch.device): Where the tiles run.
        tile (int): Tile size in LR pixels; 0 runs the whole image at once.
        overlap (int): Overlap between neighbouring tiles in LR pixels.
        dtype (torch.dtype | None): Autocast dtype (None: fp32).
        ensemble (bool): Run every tile as an x8 geometric self-ensemble.
        progress (bool): Show a progress bar over the tiles.
    """

    def __init__(self, device, tile=512, overlap=32, dtype=None, ensemble=False, progress=True):
        if tile < 0 or overlap < 0 or (tile and overlap >= tile):
            raise InferenceError(f'need tile >= 0 and 0 <= tile_overlap < tile, got tile={tile}, '
                                 f'tile_overlap={overlap}')
        self.device, self.tile, self.overlap, self.dtype = device, tile, overlap, dtype
        self.ensemble, self.progress = ensemble, progress

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def run_tile(self, fn, tile, size):
        """``fn`` on one CPU tile; the CPU float32 result (resized to ``size`` when a float scale is off by a pixel)."""
        with torch.inference_mode(), self.autocast():
            # Tiles are views of HWC images: networks get the dense NCHW layout they were trained on.
            tile = tile.to(self.device).contiguous()
            result = self_ensemble(fn, tile) if self.ensemble else fn(tile)
        result = result.float()
        if tuple(result.shape[-2:]) != size:
            if max(abs(a - b) for a, b in zip(result.shape[-2:], size)) > 2:
                raise InferenceError(f'the network returned a {tuple(result.shape[-2:])} tile for an expected {size}')
            result = F.interpolate(result, size=size, mode='bicubic', align_corners=False)
        return result.cpu()

    def blend(self, fn, h, w, scale, get_tile, finish_rows):
        """Core loop: ``get_tile(y0, y1, x0, x1)`` gives a (1, C, th, tw) CPU float tensor; finished output
        rows go to ``finish_rows(row0, rows)`` as float32 (rows, W, C) arrays, in order."""
        align = scale_alignment(scale)
        ys, xs = tile_spans(h, self.tile, self.overlap, align), tile_spans(w, self.tile, self.overlap, align)
        out_h, out_w = out_size(h, scale), out_size(w, scale)
        ramp = out_size(self.overlap, scale)
        acc = weights = None
        top = 0  # output row held at acc[0]
        bar = tqdm(total=len(ys) * len(xs), desc='tiles', unit='tile', leave=False,
                   disable=not self.progress or len(ys) * len(xs) == 1)
        for iy, (y0, y1) in enumerate(ys):
            oy0, oy1 = out_size(y0, scale), out_size(y1, scale)
            wy = blend_ramp(oy1 - oy0, ramp if iy > 0 else 0, ramp if iy < len(ys) - 1 else 0)
            for ix, (x0, x1) in enumerate(xs):
                ox0, ox1 = out_size(x0, scale), out_size(x1, scale)
                result = self.run_tile(fn, get_tile(y0, y1, x0, x1), (oy1 - oy0, ox1 - ox0))
                result = result[0].permute(1, 2, 0).numpy()
                if acc is None:
                    acc = np.zeros((0, out_w, result.shape[2]), np.float32)
                    weights = np.zeros((0, out_w), np.float32)
                if top + acc.shape[0] < oy1:  # grow the strip downwards
                    grow = oy1 - top - acc.shape[0]
                    acc = np.concatenate([acc, np.zeros((grow, ) + acc.shape[1:], np.float32)])
                    weights = np.concatenate([weights, np.zeros((grow, out_w), np.float32)])
                wx = blend_ramp(ox1 - ox0, ramp if ix > 0 else 0, ramp if ix < len(xs) - 1 else 0)
                weight = wy[:, None] * wx[None, :]
                acc[oy0 - top:oy1 - top, ox0:ox1] += result * weight[:, :, None]
                weights[oy0 - top:oy1 - top, ox0:ox1] += weight
                bar.update()
            done = out_size(ys[iy + 1][0], scale) if iy + 1 < len(ys) else out_h
            if done > top:  # rows above the next tile row get no more contributions
                n = done - top
                finish_rows(top, acc[:n] / weights[:n, :, None])
                acc, weights, top = acc[n:].copy(), weights[n:].copy(), done
        bar.close()

    def __call__(self, fn, x, scale):
        """Blend ``fn`` over tiles of the CPU tensor ``x`` (1, C, h, w); returns a CPU float tensor."""
        h, w = x.shape[-2:]
        chunks = []
        self.blend(fn, h, w, scale, lambda y0, y1, x0, x1: x[..., y0:y1, x0:x1],
                   lambda row, rows: chunks.append(torch.from_numpy(rows).permute(2, 0, 1)))
        return torch.cat(chunks, dim=1)[None]


def read_input(path):
    """``(pixels, alpha, grey, peak)`` of an image file: BGR pixels (uint8/uint16, h x w x 3), the alpha
    plane or None, whether it was grey, and its peak value (255 or 65535). EXIF rotation applied."""
    from moesr_arch.tools.common import read_raw
    image = read_raw(path)
    peak = 65535. if image.dtype == np.uint16 else 255.
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    alpha = image[:, :, -1] if channels in (2, 4) else None
    colour = image[:, :, :1] if channels in (1, 2) else image[:, :, :3]
    grey = colour.shape[2] == 1
    if grey:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour), alpha, grey, peak


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_state_dict(path, param_key):
    """The state dict in ``path`` (.pth in BasicSR's format or .safetensors); ``param_key`` as BasicSR uses it."""
    if not os.path.isfile(path):
        raise InferenceError(f'weights file not found: {path}' if not os.path.isdir(path)
                             else f'{path}: is a folder, not a weights file')
    try:
        if str(path).endswith('.safetensors'):
            from safetensors.torch import load_file
            return load_file(path)
        state = torch.load(path, map_location='cpu', weights_only=True)
    except OSError:
        raise
    except Exception as error:  # truncated, corrupt or not a checkpoint at all (an image, a text file)
        raise InferenceError(f'{path}: not a readable weights file (truncated, corrupt or another kind of '
                             f'file): {_first_line(error)}') from None
    if isinstance(state, dict) and param_key in state:
        return state[param_key]
    if isinstance(state, dict) and 'params' in state:  # BasicSR falls back to 'params' the same way
        return state['params']
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    if isinstance(state, dict) and 'optimizers' in state:
        raise InferenceError(f'{path}: a training state, not weights; give the network file of the same '
                             'iteration (experiments/<name>/models/net_g_<iter>.pth)')
    raise InferenceError(f'{path}: no {param_key!r} or "params" entry and not a plain state dict')


def arbitrary_scale(network):
    """Whether ``network`` has the ``upscale(lr, scale)`` method of arbitrary-scale networks (VDSR's
    ``upscale`` is its integer factor, not that method)."""
    return callable(getattr(network, 'upscale', None))


def measured_scale(network, probe_size=16):
    """The factor ``network`` really upscales by, from its own ``scale`` (MoE-SR) or a tiny probe; None for
    arbitrary-scale networks (``upscale(lr, scale)``)."""
    if arbitrary_scale(network):
        return None
    if hasattr(network, 'infer_image') and getattr(network, 'scale', None):
        return network.scale
    from moesr_arch.archs.moesr_arch import first_conv_channels
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(torch.zeros(1, first_conv_channels(network), probe_size, probe_size))
    finally:
        network.train(was_training)
    factor = out.shape[-1] / probe_size
    return int(factor) if factor == int(factor) else factor


def build_from_options(opt_path, model_path=None, require_weights=True):
    """``(network, scale, options)`` from an option file: ``network_g`` built, weights loaded on the CPU.

    Weights come from ``model_path`` or ``path.pretrain_network_g`` (key ``path.param_key_g``, default
    ``params``; strictness ``path.strict_load_g``).
    """
    from basicsr.archs import build_network

    from moesr_arch.options import OptionError, check_network, load_options
    opt = load_options(opt_path)
    if not isinstance(opt, dict) or 'network_g' not in opt:
        raise InferenceError(f'{opt_path}: needs a network_g section naming the network')
    try:
        check_network(opt['network_g'], 'network_g', opt_path)
    except OptionError as error:
        raise InferenceError(str(error)) from None
    path_opt = opt.get('path') or {}
    network = build_network(copy.deepcopy(opt['network_g']))
    weights = model_path or path_opt.get('pretrain_network_g')
    if weights:
        state = load_state_dict(weights, path_opt.get('param_key_g') or 'params')
        state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
        try:
            network.load_state_dict(state, strict=path_opt.get('strict_load_g', True))
        except RuntimeError as error:
            raise InferenceError(f'{weights}: weights do not fit network_g of {opt_path}: {error}') from None
    elif require_weights:
        raise InferenceError(f'{opt_path}: no weights; set path.pretrain_network_g or pass --model_path')
    network.eval()
    if opt.get('gate') is not None and hasattr(network, 'infer_image'):  # MoE-SR: the gate comes along
        from moesr_arch.gating import build_gate
        try:
            network.gate = build_gate(opt['gate'], opt_path)
        except OptionError as error:
            raise InferenceError(str(error)) from None
    scale = opt.get('scale', opt['network_g'].get('upscale'))
    if scale is None:
        raise InferenceError(f'{opt_path}: no scale (top-level "scale" key)')
    # A wrong scale would not fail: tiles coming back a pixel or two off are resized, so the output
    # would silently have the wrong size. Check it against what the network produces.
    actual = measured_scale(network)
    if actual is not None and float(actual) != float(scale):
        raise InferenceError(f'{opt_path}: scale is {scale} but network_g ({opt["network_g"].get("type")}) '
                             f'upscales x{actual}; set scale: {actual}')
    return network, scale, opt


# Default tile per device. On a CPU smaller tiles keep the activations in cache: SeemoRe-T x4 on a
# 1920x1080 photo took 28.5 s with 256 against 64 s with 512 (2-core CPU); EDSR gains a little, VDSR
# loses 15%. GPUs prefer large tiles.
DEFAULT_TILE = {'cpu': 256, 'cuda': 512}


class Upscaler:
    """Super-resolves image files with a network, following the plug-in protocol of this module.

    Args:
        network (nn.Module): The bare network (on the CPU; moved to ``device`` here).
        scale (int | float): The network's scale (the option file's ``scale``).
        device (str | torch.device): 'auto' (CUDA when available), 'cpu' or 'cuda[:i]'.
        precision (str): 'auto' (fp32 on CPU, bf16 or fp16 on CUDA), 'fp32', 'bf16' or 'fp16'.
        tile (int | None): Tile size in LR pixels (0: whole image at once; None: ``DEFAULT_TILE`` of the device).
        tile_overlap (int): Overlap of neighbouring tiles in LR pixels.
        ensemble (bool): x8 geometric self-ensemble.
        out_scale (float | None): Requested scale (``--scale``): any float for networks with ``upscale``.
        want_maps (bool): Ask ``infer_image`` networks for their maps (gate overlays, expert maps).
        progress (bool): Show the tile progress bar.
    """

    def __init__(self, network, scale, device='auto', precision='auto', tile=None, tile_overlap=32, ensemble=False,
                 out_scale=None, want_maps=False, progress=True):
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise InferenceError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:<index>") from None
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise InferenceError('--device cuda but CUDA is not available')
        self.network = network.to(self.device).eval()
        if tile is None:
            tile = DEFAULT_TILE.get(self.device.type, 512)
        self.tiler = Tiler(self.device, tile, tile_overlap, precision_dtype(precision, self.device), ensemble, progress)
        self.scale = scale
        self.out_scale = out_scale
        self.want_maps = want_maps
        if out_scale is not None and float(out_scale) != float(scale) and not arbitrary_scale(network) \
                and not hasattr(network, 'infer_image'):
            raise InferenceError(f'{type(network).__name__} only upscales x{scale}; --scale {out_scale} needs an '
                                 'arbitrary-scale network (one with an upscale(lr, scale) method, e.g. MoEISR)')

    def forward_fn(self):
        """``(fn, scale)``: what runs on one tile and its scale."""
        if self.out_scale is not None and arbitrary_scale(self.network):
            scale = float(self.out_scale)
            return (lambda x: self.network.upscale(x, scale)), scale
        return self.network, self.scale

    def map_names(self):
        """Names of the maps ``--save_maps`` writes beside each output (known before any image is run, so that
        their files take part in the collision check): ``MAP_NAMES`` of ``infer_image`` networks, or
        ``experts`` for networks whose expert map is assembled here."""
        if not self.want_maps:
            return ()
        if hasattr(self.network, 'infer_image'):
            return tuple(getattr(self.network, 'MAP_NAMES', ()))
        return ('experts', ) if self.map_experts() else ()

    def map_experts(self):
        """Number of experts whose per-pixel choice ``--save_maps`` records (0: none)."""
        if not self.want_maps or not arbitrary_scale(self.network) or not hasattr(self.network, 'last_decode'):
            return 0
        return len(getattr(self.network, 'experts', ()))

    def with_expert_map(self, fn, experts):
        """``fn`` returning the SR tile with one one-hot channel per expert appended (blended like the image)."""
        def run(x):
            sr = fn(x)
            expert_map = self.network.last_decode['expert_map'].long()
            return torch.cat([sr, F.one_hot(expert_map, experts).permute(0, 3, 1, 2).to(sr.dtype)], 1)
        return run

    def expert_map_picture(self, expert_map, experts):
        from moesr_arch.utils.expert_map import expert_map_image
        shares = np.bincount(expert_map.ravel(), minlength=experts) / expert_map.size
        depths = getattr(self.network, 'expert_depths', list(range(experts)))
        labels = [f'{d} hidden layer{"s" if d != 1 else ""}, {share:.1%} of pixels' for d, share in zip(depths, shares)]
        return expert_map_image(expert_map, labels)[:, :, ::-1]  # maps are RGB

    def memory_check(self, h, w, peak):
        """Bytes an ``h x w`` image needs; raises :class:`InferenceError` before starting when they are not there.

        Networks that process whole images (``infer_image``) tell their own need (``inference_memory``).
        """
        scale = float(self.out_scale or self.scale)
        tile = self.tiler.tile
        pixel_bytes = 2 if peak > 255 else 1
        if hasattr(self.network, 'inference_memory'):
            need = self.network.inference_memory(h, w, tile) + out_size(h, scale) * out_size(w, scale) * 3 * pixel_bytes
            advice = f'{type(self.network).__name__} holds the whole image; use a smaller image or split it'
        else:
            need = estimate_memory(h, w, scale, tile, in_bytes=pixel_bytes, out_bytes=pixel_bytes)
            advice = f'with --tile {tile}; use a smaller --tile, a smaller scale or a smaller image'
        free = available_memory()
        if need > 0.9 * free:
            raise InferenceError(
                f'a {w}x{h} image at x{scale:g} gives a {out_size(w, scale)}x{out_size(h, scale)} output that needs '
                f'about {need / GIB:.1f} GiB of memory, but only {free / GIB:.1f} GiB is available: {advice}')
        return need

    def upscale_array(self, bgr, peak):
        """SR of ``bgr`` (h x w x 3, uint8/uint16); returns ``(bgr output of the same dtype, maps)``."""
        h, w = bgr.shape[:2]
        self.memory_check(h, w, peak)
        if hasattr(self.network, 'infer_image'):
            lq = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].float() / peak
            lq = lq.contiguous()  # NCHW, as in training (see Tiler.run_tile)
            with torch.inference_mode():
                result = self.network.infer_image(lq, tiler=self.tiler, device=self.device, scale=self.out_scale,
                                                  want_maps=self.want_maps)
                sr, maps = result if isinstance(result, tuple) else (result, {})
                # In place: the output is the largest tensor here, and a copy per step would double the peak.
                sr = sr[0].float().cpu().clamp_(0, 1).mul_(peak).round_().permute(1, 2, 0).numpy()[:, :, ::-1]
            return sr.astype(bgr.dtype), maps
        fn, scale = self.forward_fn()
        output = np.empty((out_size(h, scale), out_size(w, scale), 3), bgr.dtype)
        experts = self.map_experts()
        expert_map = np.zeros(output.shape[:2], np.uint8) if experts else None
        if experts:
            fn = self.with_expert_map(fn, experts)

        def get_tile(y0, y1, x0, x1):
            rgb = bgr[y0:y1, x0:x1, ::-1].astype(np.float32) / peak
            return torch.from_numpy(rgb).permute(2, 0, 1)[None]

        def finish_rows(row, rows):
            output[row:row + rows.shape[0]] = np.round(np.clip(rows[:, :, 2::-1], 0, 1) * peak)
            if experts:
                expert_map[row:row + rows.shape[0]] = rows[:, :, 3:].argmax(axis=2)

        self.tiler.blend(fn, h, w, scale, get_tile, finish_rows)
        return output, ({'experts': self.expert_map_picture(expert_map, experts)} if experts else {})

    def upscale_file(self, path):
        """``(image to save, maps)``: grey stays grey, alpha is upscaled separately (bicubic), 16-bit stays 16-bit."""
        bgr, alpha, grey, peak = read_input(path)
        output, maps = self.upscale_array(bgr, peak)
        if alpha is not None:  # grey + alpha is saved as BGRA: PNG writers take 1, 3 or 4 channels
            big = cv2.resize(alpha, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_CUBIC)
            output = np.dstack([output, big])
        elif grey:
            output = cv2.cvtColor(output, cv2.COLOR_BGR2GRAY)
        return output, maps
