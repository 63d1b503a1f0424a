"""Tiled inference: overlapping tiles with smooth blending, the image and the output on the CPU.

Only tiles travel to the device; the input stays in its own dtype and the output is finished in strips
of tile rows, so the CPU holds the input, the finished output and one strip of float accumulators. Tiles
overlap by ``tile_overlap`` LR pixels (the package's one grid, :func:`moesr_arch.utils.tiling.tile_spans`) and are blended with weights that ramp linearly across each overlap
and are never 0 (image borders keep full weight), so there are no seams and no dark borders.
"""
import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from moesr_arch.inference.device import InferenceError, autocast
from moesr_arch.utils.ensemble import self_ensemble
from moesr_arch.utils.progress import progress_bar
from moesr_arch.utils.tiling import tile_spans


def scale_alignment(scale):
    """Smallest ``q`` with ``q * scale`` an integer (up to 64; else 1): tiles starting at multiples of ``q``
    sample the same output grid as the whole image does, also for float scales like 2.5."""
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


def default_overlap(tile):
    """The tile overlap when none is asked for: 32 LR pixels, at most a quarter of the tile. Every pixel of an
    overlap is computed twice or more: with 32 on tiles of 48, tiles step by 16 and the network computes
    about 6 times the image's pixels (and takes about 6 times as long) where a quarter makes it about 2."""
    return min(32, tile // 4)


def recomputed_share(tile, overlap):
    """About how many times a large image's pixels are computed on ``tile`` tiles overlapping by ``overlap``."""
    return (tile / max(tile - overlap, 1)) ** 2 if tile else 1.0


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
        channels_last (bool): Hand tiles over channels-last (NHWC in memory) instead of dense NCHW.
    """

    def __init__(self, device, tile=512, overlap=32, dtype=None, ensemble=False, progress=True, channels_last=False):
        if tile < 0 or overlap < 0 or (tile and overlap >= tile):
            raise InferenceError(f'need tile >= 0 and 0 <= tile_overlap < tile, got tile={tile}, '
                                 f'tile_overlap={overlap}')
        self.device, self.tile, self.overlap, self.dtype = device, tile, overlap, dtype
        self.ensemble, self.progress = ensemble, progress
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def autocast(self):
        return autocast(self.device, self.dtype)

    def run_tile(self, fn, tile, size):
        """``fn`` on one CPU tile; the CPU float32 result (resized to ``size`` when a float scale is off by a pixel)."""
        with torch.inference_mode(), self.autocast():
            # Tiles are views of HWC images: networks get the dense NCHW layout they were trained on (or a dense
            # channels-last one when asked; a view's odd strides would pass as either and slow oneDNN down).
            tile = tile.to(self.device).contiguous().contiguous(memory_format=self.memory_format)
            result = self_ensemble(fn, tile) if self.ensemble else fn(tile)
        result = result.float()
        if tuple(result.shape[-2:]) != size:
            if max(abs(a - b) for a, b in zip(result.shape[-2:], size)) > 2:
                raise InferenceError(f'the network returned a {tuple(result.shape[-2:])} tile for an expected {size}')
            result = F.interpolate(result, size=size, mode='bicubic', align_corners=False)
        return result.cpu()

    def blend(self, fn, h, w, scale, get_tile, finish_rows, multiple=1):
        """Core loop: ``get_tile(y0, y1, x0, x1)`` gives a (1, C, th, tw) CPU float tensor; finished output
        rows go to ``finish_rows(row0, rows)`` as float32 (rows, W, C) arrays, in order.

        With ``multiple`` > 1 (a network's input-size requirement; ``h`` and ``w`` must be multiples of it)
        every tile starts and ends on multiples of it."""
        align = math.lcm(scale_alignment(scale), multiple)
        tile = max(self.tile - self.tile % multiple, multiple) if self.tile else 0
        ys, xs = tile_spans(h, tile, self.overlap, align), tile_spans(w, tile, self.overlap, align)
        out_h, out_w = out_size(h, scale), out_size(w, scale)
        ramp = out_size(self.overlap, scale)
        acc = weights = None
        top = 0  # output row held at acc[0]
        bar = progress_bar(total=len(ys) * len(xs), desc='tiles', unit='tile', leave=False,
                           show=self.progress and len(ys) * len(xs) > 1)
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
