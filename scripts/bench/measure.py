"""What the benchmark sections and the tests measure that no product command needs: parameter and
multiply-accumulate counts, the pixels MoE-SR's sparse experts compute, and SeemoRe routers that mix a batch.

Not a section of the report (it defines no ``run``): the sections and tests import it.
"""
import math

import torch
from torch import nn

from moesr_arch.archs.sparse_crops import CPU_BATCH_PIXELS, batch_groups, crop_windows
from moesr_arch.utils.activations import run_with_hooks, tensors


def count_params(model):
    """Parameters of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model, *inputs):
    """Multiply-accumulates of ``model(*inputs)`` in eval mode, counted by forward hooks.

    Each ``Conv2d`` call adds output elements x input channels per group x kernel area, each ``Linear``
    call output elements x input features (the usual SR-paper convention: norms, activations, pooling
    and interpolation are not counted). The network runs for real, so data-dependent paths (routing)
    are counted as taken.
    """
    total = 0

    def hook(module, args, output):
        nonlocal total
        elements = sum(tensor.numel() for tensor in tensors(output))
        if isinstance(module, nn.Conv2d):
            total += elements * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            total += elements * module.in_features

    run_with_hooks(model, [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))], hook, inputs)
    return total


def seemore_macs(model, lr_size, expert_ranks='mean'):
    """Multiply-accumulates of one inference of a :class:`~moesr_arch.archs.seemore_arch.SeemoRe` on an
    ``lr_size`` (h, w) input, computed analytically.

    Counts convolutions and the router's linear layer (output elements x input channels per group
    x kernel area), the convention of the SeemoRe paper; norms, activations, pooling and
    interpolation are not counted. The cost depends on the experts the router picks: ``expert_ranks``
    is ``'mean'`` (expected cost if every expert is equally likely; the default), ``'min'``, ``'max'``,
    or one rank per layer (a list of ranks per layer for top-k > 1).
    """
    cfg = model.config
    c, s, k = cfg['embedding_dim'], cfg['scale'], cfg['global_kernel_size']
    h, w = (max(side, 4**model.recursive) for side in lr_size)  # padded inside like forward
    hw = h * w
    layers = model._moe_layers()
    if isinstance(expert_ranks, str):
        pick = {'mean': lambda ranks: sum(ranks) / len(ranks), 'min': min, 'max': max}[expert_ranks]
        expert_ranks = [[pick([e.rank for e in layer.experts])] * cfg['topk'] for layer in layers]
    ffn = hw * (2 * c * c + 9 * c + c * c)
    total = hw * cfg['in_chans'] * c * 9 + hw * 9 * c * c + hw * c * cfg['in_chans'] * s * s * 9
    for ranks in expert_ranks:
        ranks = ranks if isinstance(ranks, (list, tuple)) else [ranks]
        ch, cw = h, w
        calibration = 0
        for _ in range(model.recursive):  # depthwise 4x4 stride 4
            ch, cw = (ch - 4) // 4 + 1, (cw - 4) // 4 + 1
            calibration += ch * cw * c * 16
        calibration += ch * cw * (9 * c + c * c)
        rme = hw * (9 * c * c + 2 * c * c + 6 * c + c * c) + calibration + c * cfg['num_experts']
        rme += sum(3 * hw * c * rank for rank in ranks) + ffn
        sme = hw * (2 * c * c + 2 * k * c + c * c) + ffn
        total += rme + sme
    return round(total)


def computed_share(boxes, margin, height, width, max_batch=8, max_pixels=CPU_BATCH_PIXELS):
    """LR pixels an expert computes for ``boxes`` (windows as
    :func:`~moesr_arch.archs.sparse_crops.run_on_boxes` batches them, overlaps counted as often as computed),
    as a share of one image's pixels."""
    cores = [core for _, core in boxes]
    pixels = 0
    for members in batch_groups(cores, margin, height, width, max_batch, max_pixels=max_pixels):
        y0, y1, x0, x1 = crop_windows([cores[i] for i in members], margin, height, width)[0]
        pixels += len(members) * (y1 - y0) * (x1 - x0)
    return pixels / (height * width)


def diverse_router(model, images, seed=0):
    """``model`` (a SeemoRe) with router weights that send different ``images`` to different experts in every
    layer, as a trained network's routers do (at initialisation a whole batch tends to pick one expert per layer).

    The pooled router input is nearly the same for all images; weights orthogonal to its batch mean
    make the logits depend on what differs between the images only.
    """
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    for layer in model._moe_layers():
        pooled = []
        handle = layer.gate.body[1].register_forward_hook(lambda module, args, out: pooled.append(out))
        with torch.no_grad():
            model.forward_batch(images)
        handle.remove()
        features = pooled[0]
        mean = features.mean(0)
        weight = torch.randn(layer.gate.body[2].weight.shape, generator=generator)
        weight -= (weight @ mean)[:, None] * mean[None] / mean.dot(mean)
        spread = (features @ weight.t()).std()
        with torch.no_grad():
            layer.gate.body[2].weight.copy_(weight * 5 / spread)
    return model
