"""The whole-image pipeline of ``basicsr infer``: read, check memory, run by the network's kind, write."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from moesr_arch.inference import device as device_info
from moesr_arch.inference.capabilities import describe
from moesr_arch.inference.device import (DEFAULT_TILE, GIB, InferenceError, compiled, precision_dtype,
                                         resolve_device)
from moesr_arch.inference.gated import run_gated
from moesr_arch.inference.luma import on_luma
from moesr_arch.inference.maps import expert_map_picture
from moesr_arch.inference.tiling import Tiler, default_overlap, estimate_memory, out_size
from moesr_arch.utils.image_io import peak_value, read_raw, split_channels, write_png
from moesr_arch.utils.progress import progress_bar


def map_path(target, name):
    """Where the map ``name`` of the output ``target`` is written: ``<stem>_<name>.png`` beside it."""
    return target.with_name(f'{target.stem}_{name}.png')


def pad_to_requirements(image, capabilities):
    """``image`` (h, w, C) padded at the bottom and right, edge pixels repeated, to the smallest size that is at
    least ``capabilities.min_size`` and a multiple of ``capabilities.size_multiple``."""
    multiple = capabilities.size_multiple
    h, w = (-(-max(side, capabilities.min_size) // multiple) * multiple for side in image.shape[:2])
    if (h, w) == image.shape[:2]:
        return image
    return np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)), mode='edge')


class Upscaler:
    """Super-resolves image files with a network, run as its :class:`Capabilities` say.

    Args:
        network (nn.Module): The bare network (on the CPU; moved to ``device`` here).
        scale (int | float): The network's scale (the option file's ``scale``).
        device (str | torch.device): 'auto' (CUDA when available), 'cpu' or 'cuda[:i]'.
        precision (str): 'auto' (fp32 on CPU, bf16 or fp16 on CUDA), 'fp32', 'bf16' or 'fp16'.
        tile (int | None): Tile size in LR pixels (0: whole image at once; None: ``DEFAULT_TILE`` of the device).
        tile_overlap (int | None): Overlap of neighbouring tiles in LR pixels (None: :func:`default_overlap`).
        ensemble (bool): x8 geometric self-ensemble (tiled networks).
        out_scale (float | None): Requested scale (``--scale``): any float for arbitrary-scale networks.
        want_maps (bool): Also make the network's maps (``capabilities.map_names``).
        progress (bool): Show the progress bar over the tiles (MoE-SR: the gate, then the experts' crops).
        gate (callable | None): The gate of a gated network (:func:`moesr_arch.inference.load_gate`).
        channels_last (bool): Weights and inputs channels-last (NHWC in memory); often faster for convolutions.
        compile (str): ``torch.compile`` mode of a plain network's forward: 'none' (default), 'default' or
            'max-autotune' (:data:`moesr_arch.inference.device.COMPILE_MODES`).
    """

    def __init__(self, network, scale, device='auto', precision='auto', tile=None, tile_overlap=None, ensemble=False,
                 out_scale=None, want_maps=False, progress=True, gate=None, channels_last=False, compile='none'):
        self.device = resolve_device(device)
        self.capabilities = describe(network)
        self.network = network.to(self.device).eval()
        if channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        if compile != 'none' and self.capabilities.kind != 'plain':
            # The other kinds run through methods of their own (upscale, the gated run), which compile would miss.
            raise InferenceError(f'--compile is supported for plain networks (fixed scale, tiled); '
                                 f'{type(network).__name__} is {self.capabilities.kind.replace("_", "-")}')
        self.forward = compiled(self.network, compile)
        if tile is None:
            tile = DEFAULT_TILE.get(self.device.type, 512)
        if tile_overlap is None:
            tile_overlap = default_overlap(tile)
        self.tiler = Tiler(self.device, tile, tile_overlap, precision_dtype(precision, self.device), ensemble, progress,
                           channels_last)
        self.scale, self.out_scale, self.want_maps, self.gate = scale, out_scale, want_maps, gate
        if ensemble and self.capabilities.kind == 'gated':
            # The gate would see flipped images, and the flipped gate weights would no longer match the crops.
            raise InferenceError(f'--ensemble is not supported for {type(network).__name__} (the gate decides on the '
                                 'image as it is); run without it')
        if out_scale is not None and float(out_scale) != float(scale) and not self.capabilities.arbitrary_scale:
            raise InferenceError(f'{type(network).__name__} only upscales x{scale}; --scale {out_scale} needs an '
                                 'arbitrary-scale network (e.g. MoEISR)')

    @property
    def output_scale(self):
        return float(self.out_scale or self.scale)

    def map_names(self):
        """Names of the maps written beside each output (known before any image runs, for the collision check)."""
        return self.capabilities.map_names if self.want_maps else ()

    def memory_check(self, h, w, peak):
        """Bytes an ``h x w`` image needs; raises :class:`InferenceError` before starting when they are not there."""
        scale, tile = self.output_scale, self.tiler.tile
        pixel_bytes = 2 if peak > 255 else 1
        memory = self.capabilities.memory
        if memory is not None:
            need = memory(h, w, tile) + out_size(h, scale) * out_size(w, scale) * 3 * pixel_bytes
            advice = f'{type(self.network).__name__} holds the whole image; use a smaller image or split it'
        else:
            need = estimate_memory(h, w, scale, tile, in_bytes=pixel_bytes, out_bytes=pixel_bytes)
            advice = f'with --tile {tile}; use a smaller --tile, a smaller scale or a smaller image'
        free = device_info.available_memory()
        if need > 0.9 * free:
            raise InferenceError(
                f'a {w}x{h} image at x{scale:g} gives a {out_size(w, scale)}x{out_size(h, scale)} output that needs '
                f'about {need / GIB:.1f} GiB of memory, but only {free / GIB:.1f} GiB is available: {advice}')
        return need

    def upscale_array(self, bgr, peak, grey=False):
        """SR of ``bgr`` (h x w x 3, uint8/uint16); returns ``(bgr output of the same dtype, maps)``, maps RGB.

        ``grey``: the image is grey (its channel repeated); a Y-channel network then takes that one channel."""
        h, w = bgr.shape[:2]
        self.memory_check(h, w, peak)
        if self.capabilities.kind == 'gated':
            return self.upscale_gated(bgr, peak)
        return self.upscale_tiled(bgr, peak, grey)

    def upscale_gated(self, bgr, peak):
        """The whole image through :func:`run_gated`; the experts are tiled by the network's ``tile_size``, else
        by ``--tile``, so their activations stay bounded."""
        lq = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].float() / peak
        # NCHW as in training (see Tiler.run_tile), or channels-last when asked.
        lq = lq.contiguous(memory_format=self.tiler.memory_format).to(self.device)
        with torch.inference_mode(), progress_bar(desc='gate', unit='crop', leave=False,
                                                  show=self.tiler.progress) as bar:
            def crops_done(name, done, total):  # the bar reads 'gate' until the experts' first crop is done
                bar.total = total
                bar.set_description(f'expert {name}', refresh=False)
                bar.update(done - bar.n)

            result = run_gated(self.network, self.gate, lq, sparse=True,
                               tile_size=self.network.tile_size or self.tiler.tile, want_maps=self.want_maps,
                               autocast=self.tiler.autocast(), progress=crops_done)
            # In place: the output is the largest tensor here, and a copy per step would double the peak.
            sr = result.output[0].float().cpu().clamp_(0, 1).mul_(peak).round_().permute(1, 2, 0).numpy()[:, :, ::-1]
        return sr.astype(bgr.dtype), result.maps

    def upscale_tiled(self, bgr, peak, grey=False):
        """Plain and arbitrary-scale networks over overlapping tiles; MoEISR's expert map blended alike.

        An image that does not meet the network's size requirements is padded (edge pixels repeated) and
        the output cropped back. A Y-channel network super-resolves Y of a colour image (:func:`on_luma`) and
        a grey image's one channel."""
        h, w = bgr.shape[:2]
        bgr = pad_to_requirements(bgr, self.capabilities)
        scale = self.output_scale
        names = self.capabilities.experts if 'experts' in self.map_names() else ()
        experts = len(names)
        if self.capabilities.arbitrary_scale:
            def fn(x):
                sr, stats = self.network.upscale(x, scale, return_stats=True)
                if not experts:
                    return sr
                # One one-hot channel per expert, blended like the image: the strongest expert wins per pixel.
                return torch.cat([sr, F.one_hot(stats['expert_map'], experts).permute(0, 3, 1, 2).to(sr.dtype)], 1)
        else:
            fn, scale = self.forward, self.scale
        luma = self.capabilities.in_channels == 1
        if luma:
            fn = on_luma(fn)
        # Channels a tile carries, BGR file order to RGB; a grey image's one channel for a Y-channel network
        # (its 1-channel output rows fill the 3 output channels alike).
        channels = slice(0, 1) if luma and grey else slice(None, None, -1)
        output = np.empty((out_size(bgr.shape[0], scale), out_size(bgr.shape[1], scale), 3), bgr.dtype)
        expert_map = np.zeros(output.shape[:2], np.uint8) if experts else None

        def get_tile(y0, y1, x0, x1):
            rgb = bgr[y0:y1, x0:x1, channels].astype(np.float32) / peak
            return torch.from_numpy(rgb).permute(2, 0, 1)[None]

        def finish_rows(row, rows):
            output[row:row + rows.shape[0]] = np.round(np.clip(rows[:, :, 2::-1], 0, 1) * peak)
            if experts:
                expert_map[row:row + rows.shape[0]] = rows[:, :, 3:].argmax(axis=2)

        self.tiler.blend(fn, bgr.shape[0], bgr.shape[1], scale, get_tile, finish_rows, self.capabilities.size_multiple)
        if output.shape[:2] != (out_size(h, scale), out_size(w, scale)):
            output = np.ascontiguousarray(output[:out_size(h, scale), :out_size(w, scale)])
            expert_map = expert_map[:out_size(h, scale), :out_size(w, scale)] if experts else None
        return output, ({'experts': expert_map_picture(expert_map, names)} if experts else {})

    def upscale_file(self, path):
        """``(image to save, maps)``: grey stays grey, alpha is upscaled separately (bicubic), 16-bit stays 16-bit."""
        image = read_raw(path)
        bgr, alpha, grey = split_channels(image)
        output, maps = self.upscale_array(bgr, peak_value(image), grey)
        if alpha is not None:  # grey + alpha is saved as BGRA: PNG writers take 1, 3 or 4 channels
            big = cv2.resize(alpha, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_CUBIC)
            output = np.dstack([output, big])
        elif grey:
            output = cv2.cvtColor(output, cv2.COLOR_BGR2GRAY)
        return output, maps

    def save(self, target, image, maps):
        """Write the output ``image`` (BGR[A] or grey) to ``target`` and each RGB map beside it."""
        write_png(target, image)
        for name, picture in maps.items():
            write_png(map_path(target, name), np.ascontiguousarray(picture[:, :, ::-1]))
