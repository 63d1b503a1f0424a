from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from moesr_arch.archs.fusion import blend_weights
from moesr_arch.archs.sparse_crops import run_on_boxes, split_cores, support_boxes, support_mask
from moesr_arch.utils.checkpoint import load_weights
from moesr_arch.utils.modes import eval_mode

BACKGROUND = 'background'


@ARCH_REGISTRY.register()
class MoESRNet(nn.Module):
    """MoE-SR: one SR expert per image category plus a background expert, alpha-blended per pixel.

    ``forward(lq, weights)`` takes the LR image ``[B, C, h, w]`` and a gate's per-pixel weights
    ``[B, K+1, h, w]`` (K categories in the categories file's id order, background last, summing to 1)
    and returns ``sum_k w_k * E_k(lq)`` with the weights upsampled, dilated, feathered and normalised at HR
    (:mod:`moesr_arch.archs.fusion`). Without weights, the background expert alone answers.

    In training (or with gradients enabled) every expert runs on the whole input (dense). In eval mode
    without gradients and with ``sparse`` (top-1 sparse), every expert, the background included, runs
    only on margin-widened crops around the pixels where its weight is positive, batched, and is skipped
    where it has none: each pixel is computed by about one expert, two or more on the feathered seams.
    Sparse output equals dense output when ``crop_margin`` is at least the experts' receptive-field radius
    (:func:`moesr_arch.archs.sparse_crops.receptive_radius`); crops larger than ``tile_size`` are split into tiles
    (exact with a full margin; 0: whole crops, and ``basicsr infer`` tiles with its ``--tile``).

    The network takes category names only: an option file may name a ``categories_file`` instead, which the
    options layer reads into ``categories`` (:func:`moesr_arch.options.resolve_categories_files`). In an option
    file (``type: MoESRNet``), its keys with their types and defaults are in docs/options.md#moesrnet.

    Args:
        experts (dict): Expert name -> network options, one per category plus ``background``; one common scale.
        categories (list[str]): Category names in gate channel order ([]: the expert names, background excluded).
        expert_weights (dict): Expert name -> checkpoint path (BasicSR format) loaded at build.
        param_key (str | list[str]): Entry of the weights in those checkpoints, or several tried in order.
        scale (int): Expected upscale factor; 0 accepts the experts' common factor.
        dilation (int): Context dilation of each category region, HR pixels.
        feather (int): Width of the feathered (linear ramp) edge, HR pixels.
        sparse (bool): Sparse execution at inference.
        crop_margin (int): Context around each crop, LR pixels.
        tile_size (int): Largest LR side an expert sees at once in sparse inference.
        max_batch (int): Crops per expert call at inference.
        probe_size (int): Side of the LR probe used to measure each expert's scale at build.
    """

    def __init__(self, experts=None, categories=(), expert_weights=None, param_key='params', scale=0, dilation=4,
                 feather=8, sparse=True, crop_margin=16, tile_size=0, max_batch=8, probe_size=16):
        super().__init__()
        experts = dict(experts or {})
        self.categories = resolve_categories(experts, list(categories))
        self.names = self.categories + [BACKGROUND]
        self.experts = nn.ModuleDict(OrderedDict((name, build_expert(name, experts[name])) for name in self.names))
        check_expert_weights(self.experts, expert_weights)
        for name, path in (expert_weights or {}).items():
            load_weights(self.experts[name], path, param_key, what=f'MoESRNet expert {name!r}')
        self.scale = check_common_scale(self.experts, scale, probe_size)
        self.dilation, self.feather = int(dilation), int(feather)
        self.sparse, self.crop_margin, self.tile_size = bool(sparse), int(crop_margin), int(tile_size)
        self.max_batch = int(max_batch)

    # ------------------------------------------------------------------------------------------
    def forward(self, lq, weights=None, expert=None, return_stats=False):
        """The blended HR image; with ``expert`` (a name, or a list of names), that expert's output alone
        (or the list of their outputs) — training calls these through one forward pass, as DDP requires.

        With ``return_stats``, ``(output, stats)``: ``stats['expert_pixels']`` is each expert's blend weight
        summed over the output pixels of this call (with ``expert``: the output pixels of each expert run).
        """
        if expert is not None:
            names = [expert] if isinstance(expert, str) else list(expert)
            for name in names:
                if name not in self.experts:
                    raise KeyError(f'MoESRNet has no expert {name!r}; experts: {", ".join(self.names)}')
            outputs = [self.experts[name](lq) for name in names]
            output = outputs[0] if isinstance(expert, str) else outputs
            if not return_stats:
                return output
            pixels = OrderedDict((name, 0.0) for name in self.names)
            for name, out in zip(names, outputs):
                pixels[name] += float(out[:, 0].numel())
            return output, {'expert_pixels': pixels}
        result = self.run(lq, weights)
        return (result['output'], {'expert_pixels': result['expert_pixels']}) if return_stats else result['output']

    def run(self, lq, weights=None, sparse=None, tile_size=None, progress=None):
        """Blend the experts; returns a dict:

        - ``output``: the blended HR image ``[B, C, H, W]``;
        - ``background``: the background expert alone on the whole image, from dense execution; None from
          sparse execution, which runs the background expert only where it has weight (run
          ``net.experts['background'](lq)`` where the baseline is wanted, as MoESRModel's validation does);
        - ``weights``: the HR blend weights ``[B, K+1, H, W]``;
        - ``expert_pixels``: expert name -> its blend weight summed over the output pixels (float).

        Args:
            lq (Tensor): ``[B, C, h, w]`` LR images.
            weights (Tensor | None): ``[B, K+1, h, w]`` gate weights; None means background only.
            sparse (bool | None): Force sparse (True) or dense (False) execution; None chooses sparse in
                eval mode without gradients when the net was built with ``sparse``.
            tile_size (int | None): Largest LR side an expert sees at once in sparse execution (every
                expert's boxes are split alike); None: the net's ``tile_size``.
            progress (callable | None): Called as ``progress(expert name, crops done, crops in all)`` after
                each crop of sparse execution (a progress bar's update).
        """
        b, _, h, w = lq.shape
        if weights is None:
            weights = lq.new_zeros(b, len(self.names), h, w)
            weights[:, -1] = 1
        if tuple(weights.shape) != (b, len(self.names), h, w):
            raise ValueError(f'MoESRNet: gate weights must be [B, K+1, h, w] = {[b, len(self.names), h, w]} for '
                             f'categories {self.categories} + background, got {list(weights.shape)}')
        hr_weights = blend_weights(weights.to(lq.dtype), self.scale, self.dilation, self.feather)
        if sparse is None:
            sparse = self.sparse and not self.training and not torch.is_grad_enabled()
        if sparse:
            background = None
            output = self._sparse(lq, hr_weights, self.tile_size if tile_size is None else tile_size, progress)
        else:
            background = self.experts[BACKGROUND](lq)
            output = background * hr_weights[:, -1:]
            for index, name in enumerate(self.categories):
                weight = hr_weights[:, index:index + 1]
                # Only the images where the expert has weight (elsewhere it would add exactly zero).
                used = weight.flatten(1).any(1)
                if used.all():
                    output = output + self.experts[name](lq) * weight
                elif used.any():
                    contribution = torch.zeros_like(output)
                    contribution[used] = self.experts[name](lq[used]) * weight[used]
                    output = output + contribution
        sums = hr_weights.detach().sum((0, 2, 3), dtype=torch.float64).tolist()
        return {'output': output, 'background': background, 'weights': hr_weights,
                'expert_pixels': OrderedDict(zip(self.names, sums))}

    def _sparse(self, lq, hr_weights, tile_size, progress=None):
        """Top-1 sparse blend: every expert, the background included, runs only on boxes covering the LR
        pixels where its HR weight is positive (:func:`~moesr_arch.archs.sparse_crops.support_boxes`, widened by
        ``crop_margin``, split by ``tile_size``, batched across the images); each box's output, weighted,
        is added in place. Boxes of one expert are disjoint, and the weights sum to 1 at every pixel, so
        every output pixel is written by the experts that share it: one inside a region, two or more on
        the feathered seams. The background comes first, as in the dense sum."""
        b, _, h, w = lq.shape
        s = self.scale
        output = None
        plan = []  # every expert's boxes first: the number of crops in all is known before the first one runs
        for index in [len(self.categories)] + list(range(len(self.categories))):
            plan.append((index, [(image_index, core) for image_index, weight in enumerate(hr_weights)
                                 for core in split_cores(support_boxes(support_mask(weight[index], s),
                                                                       self.crop_margin), tile_size)]))
        total, done = sum(len(boxes) for _, boxes in plan), 0
        for index, boxes in plan:
            name = self.names[index]
            for image_index, (y0, y1, x0, x1), patch in run_on_boxes(self.experts[name], lq, boxes, s,
                                                                     self.crop_margin, self.max_batch):
                if output is None:
                    # The blend weights' dtype (fp32 under autocast too), as the dense path's sum has it.
                    output = patch.new_zeros(b, patch.shape[0], h * s, w * s, dtype=hr_weights.dtype)
                region = (image_index, slice(None), slice(y0 * s, y1 * s), slice(x0 * s, x1 * s))
                output[region] += patch * hr_weights[image_index, index, y0 * s:y1 * s, x0 * s:x1 * s]
                done += 1
                if progress is not None:
                    progress(name, done, total)
        return output


def resolve_categories(experts, categories, source='the categories'):
    """Category names in gate order, checked against the experts (clear errors for every mismatch).

    ``source`` names where the categories come from in the messages (e.g. the categories file)."""
    if not categories:
        categories = [name for name in experts if name != BACKGROUND]
    if BACKGROUND not in experts:
        raise ValueError(f'MoESRNet needs a {BACKGROUND!r} expert (it answers wherever no category is found); '
                         f'experts: {", ".join(map(str, experts)) or "none"}')
    if BACKGROUND in categories:
        raise ValueError(f'{BACKGROUND!r} is the implicit last gate channel, not a category; categories: {categories}')
    missing = [name for name in categories if name not in experts]
    unknown = [name for name in experts if name != BACKGROUND and name not in categories]
    if missing:
        raise ValueError(f'no expert for categor{"y" if len(missing) == 1 else "ies"} {", ".join(missing)} of '
                         f'{source} ({", ".join(categories)}); add experts named so')
    if unknown:
        raise ValueError(f'expert{"s" if len(unknown) > 1 else ""} {", ".join(map(str, unknown))} name no category '
                         f'of {source} ({", ".join(categories)}); rename to a category or background')
    return list(categories)


def check_expert_weights(experts, expert_weights):
    """Every name of ``expert_weights`` (expert name -> checkpoint) must be an expert's; ValueError otherwise."""
    for name in expert_weights or {}:
        if name not in experts:
            raise ValueError(f'expert_weights.{name}: no such expert; experts: {", ".join(map(str, experts))}')


def build_expert(name, opt):
    if not isinstance(opt, dict) or 'type' not in opt:
        raise ValueError(f'MoESRNet expert {name!r}: options must be a mapping with a type, got {opt!r}')
    return build_network(dict(opt))


def check_common_scale(experts, scale, probe_size):
    """Each expert's upscale factor, measured on a probe input; all must agree (and equal ``scale`` if set)."""
    scales = OrderedDict()
    for name, expert in experts.items():
        scales[name] = probe_scale(expert, probe_size)
    found = sorted(set(scales.values()))
    listing = ', '.join(f'{name}: x{value}' for name, value in scales.items())
    if len(found) > 1:
        raise ValueError(f'MoESRNet experts must share one scale; got {listing}')
    if scale and found[0] != scale:
        raise ValueError(f'MoESRNet scale is {scale} but the experts upscale by x{found[0]} ({listing})')
    if not isinstance(found[0], int):
        raise ValueError(f'MoESRNet experts must upscale by an integer factor; got {listing}')
    return found[0]


def first_conv_channels(net):
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def probe_scale(network, probe_size=16):
    """The factor ``network`` upscales by, measured on a zero ``probe_size`` square (int when whole), on the
    network's device."""
    parameter = next(network.parameters(), None)
    with eval_mode(network), torch.no_grad():
        out = network(torch.zeros(1, first_conv_channels(network), probe_size, probe_size,
                                  device=parameter.device if parameter is not None else None))
    factor = out.shape[-1] / probe_size
    return int(factor) if factor == int(factor) else factor
