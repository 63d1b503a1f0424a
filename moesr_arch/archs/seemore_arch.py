"""SeemoRe (Zamfir et al., ICML 2024): efficient SR by mixtures of low-rank and spatial experts.

Module names and tensor shapes follow the official implementation (eduardzamfir/seemoredetails) so
that released checkpoints load with ``strict=True`` and checkpoints trained here load in the official
code, spandrel and chaiNNer. Two things differ from the official forward pass, neither changing
a single-image result:

- Inference routing is per sample: the images of a batch are grouped by the expert their router
  picked and each group runs only its expert (the official eval path is correct only for a batch of
  one). Training computes the paper's dense mixture (the unpicked experts weighted by zero) as three
  fused convolutions rather than a loop over the experts; it can also run sparse, each image through
  its own expert only (``SeemoRe.set_mixture``): the same outputs and gradients either way.
- Inputs smaller than the calibration branch's down-sampling (16x16 for ``recursive=2``) are padded
  inside and the output is cropped back, so every input size works.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

# Official hyper-parameters of the released models (the test option files of the official code).
SEEMORE_PRESETS = {
    'T': dict(embedding_dim=36, num_layers=6, num_experts=3, lr_space='exp', topk=1, recursive=2,
              use_shuffle=True, global_kernel_size=11),
    'B': dict(embedding_dim=48, num_layers=8, num_experts=3, lr_space='exp', topk=1, recursive=2,
              use_shuffle=True, global_kernel_size=11),
    'L': dict(embedding_dim=48, num_layers=16, num_experts=3, lr_space='exp', topk=1, recursive=1,
              use_shuffle=False, global_kernel_size=11),
}

# Rank of expert i for each ``lr_space``: the experts span low-rank spaces of growing size.
EXPERT_RANKS = {
    'linear': lambda i: i + 2,
    'exp': lambda i: 2**(i + 1),
    'double': lambda i: 2 * i + 2,
}

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, as in the official code


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (parameters ``weight`` and ``bias``)."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        if x.is_contiguous(memory_format=torch.channels_last):
            # NHWC in memory: the channel axis is innermost, so the native layer norm applies directly.
            x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
            return x.permute(0, 3, 1, 2)
        # One fused pass for both moments instead of mean, then mean of squared deviations.
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias[:, None, None], self.weight[:, None, None], x)


class StripedConv2d(nn.Module):
    """A 1xK then a Kx1 convolution (a separable large kernel); depthwise if asked."""

    def __init__(self, channels, kernel_size, depthwise=False):
        super().__init__()
        groups = channels if depthwise else 1
        pad = kernel_size // 2
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, (1, kernel_size), padding=(0, pad), groups=groups),
            nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0), groups=groups))

    def forward(self, x):
        return self.conv(x)


class PointwiseHalves(nn.Conv2d):
    """A 1x1 conv whose output comes as its two channel halves, each computed by its own convolution.

    Each half is contiguous: chunking one channels-last output gives strided views, which the next depthwise
    convolution copies and whose gradients backward concatenates (together about 8% of a SeemoRe-T training
    step on a CPU); the input is read twice instead, the arithmetic is the same. With ``shuffle``, the output
    is channel-shuffled (2 groups) before it is halved, by permuting the tiny weight tensor instead of copying
    the activation. The parameters keep the plain conv's names and layout.
    """

    def __init__(self, in_channels, out_channels, shuffle=False):
        super().__init__(in_channels, out_channels, 1)
        order = torch.arange(out_channels)
        if shuffle:
            order = order.view(2, out_channels // 2).t().reshape(-1)
        self.shuffle = shuffle
        self.register_buffer('order', order, persistent=False)

    def forward(self, x):
        weight, bias = (self.weight[self.order], self.bias[self.order]) if self.shuffle else (self.weight, self.bias)
        half = self.out_channels // 2
        return F.conv2d(x, weight[:half], bias[:half]), F.conv2d(x, weight[half:], bias[half:])


class GatedFFN(nn.Module):
    """Feed-forward block: 1x1 expansion, one half gated by a depthwise conv of the other, 1x1 + GELU."""

    def __init__(self, channels, mlp_ratio=2, kernel_size=3):
        super().__init__()
        hidden = channels * mlp_ratio
        self.fn_1 = nn.Sequential(PointwiseHalves(channels, hidden), nn.GELU())
        self.fn_2 = nn.Sequential(nn.Conv2d(hidden // 2, channels, 1), nn.GELU())
        self.gate = nn.Conv2d(hidden // 2, hidden // 2, kernel_size, padding=kernel_size // 2, groups=hidden // 2)

    def forward(self, x):
        x, gate = (self.fn_1[1](half) for half in self.fn_1[0](x))
        return self.fn_2(x * self.gate(gate))


class LowRankExpert(nn.Module):
    """A rank-``rank`` expert: projects features and calibration to ``rank`` channels, multiplies, expands."""

    def __init__(self, channels, rank):
        super().__init__()
        self.rank = rank
        self.conv_1 = nn.Conv2d(channels, rank, 1)
        self.conv_2 = nn.Conv2d(channels, rank, 1)
        self.conv_3 = nn.Conv2d(rank, channels, 1)

    def forward(self, x, k):
        return self.conv_3(self.conv_2(k) * self.conv_1(x))


class Router(nn.Module):
    """One routing decision per image: global average pool, then a linear map to expert logits."""

    def __init__(self, channels, num_experts):
        super().__init__()
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_experts, bias=False))

    def forward(self, x):
        return self.body(x)


class MixtureOfRankExperts(nn.Module):
    """Top-k mixture of low-rank experts with an identity path (the official ``MoELayer``).

    ``out = x + sum_i w_i expert_i(x, k)``, where ``w_i`` is a sample's softmax probability of expert ``i``
    if ``i`` is among its top-k, else 0. Two ways compute it, with the same outputs and gradients:

    - ``'sparse'``: each expert runs only on the samples that picked it (grouped, one call per picked
      expert); experts no sample picked get zero gradients, not none, as in the dense mixture, so the
      optimizer moves them alike.
    - ``'dense'``: every expert on every sample, the unpicked ones weighted by zero (the official
      formulation), fused into three convolutions (:meth:`_dense`).

    ``mixture`` (see :meth:`SeemoRe.set_mixture`) is ``'auto'`` (the default), ``'sparse'`` or ``'dense'``.
    ``'auto'`` trains dense, which was faster on a CPU whenever a batch mixes experts (SeemoRe-T, batch 8,
    48x48: 14 against 20 ms per layer, forward and backward) and as fast when it does not, and infers
    sparse, so each image runs through its own expert only. Graphs that cannot depend on the routing (ONNX
    export, ``torch.jit.trace``, ``torch.compile``) are dense. With a ``routed`` list, the number of samples
    routed to each expert (a ``[num_experts]`` tensor; top-k decisions per sample) is appended to it: the
    module itself keeps nothing.
    """

    mixture = 'auto'

    def __init__(self, channels, ranks, topk):
        super().__init__()
        if not 1 <= topk <= len(ranks):
            raise ValueError(f'SeemoRe topk must be between 1 and num_experts={len(ranks)}, got {topk}')
        self.experts = nn.ModuleList(LowRankExpert(channels, rank) for rank in ranks)
        self.gate = Router(channels, len(ranks))
        self.topk = topk
        # owner[i, j] = 1 where channel j of the experts' stacked projections belongs to expert i (dense path).
        owner = torch.repeat_interleave(torch.eye(len(ranks)), torch.tensor(ranks), dim=1)
        self.register_buffer('owner', owner, persistent=False)

    def forward(self, x, k, routed=None):
        probs = F.softmax(self.gate(x), dim=1, dtype=torch.float).to(x.dtype)
        top_probs, top_experts = torch.topk(probs, self.topk, dim=1)
        if routed is not None:
            routed.append(torch.bincount(top_experts.flatten(), minlength=len(self.experts)))
        dense = self.training if self.mixture == 'auto' else self.mixture == 'dense'
        if dense or _data_independent_graph():
            return self._dense(x, k, torch.zeros_like(probs).scatter_(1, top_experts, top_probs))
        return self._sparse(x, k, top_probs, top_experts)

    def _dense(self, x, k, weights):
        """x + sum_i weights[:, i] * expert_i(x, k): every expert on every sample, in three convolutions.

        The experts' projections are stacked (2 + 4 + 8 channels for T) and each sample's channels scaled by its
        weight for their expert, so that sum_i w_i (W3_i p_i + b3_i) = W3 (w p) + w b3: one read of ``x`` and
        ``k`` instead of one per expert (1.6-2x faster than a loop over the experts); the unpicked experts'
        channels are multiplied by zero, so their gradients are exactly zero, as in the official loop."""
        experts = self.experts
        project_x = F.conv2d(x, torch.cat([e.conv_1.weight for e in experts]),
                             torch.cat([e.conv_1.bias for e in experts]))
        project_k = F.conv2d(k, torch.cat([e.conv_2.weight for e in experts]),
                             torch.cat([e.conv_2.bias for e in experts]))
        product = project_k * project_x * (weights @ self.owner)[:, :, None, None]
        expand = F.conv2d(product, torch.cat([e.conv_3.weight for e in experts], dim=1))
        return x + expand + (weights @ torch.stack([e.conv_3.bias for e in experts]))[:, :, None, None]

    def _sparse(self, x, k, top_probs, top_experts):
        chosen = top_experts.flatten().cpu()  # one expert per (sample, slot) pair, sample-major
        counts = torch.bincount(chosen, minlength=len(self.experts)).tolist()
        picked = [index for index, count in enumerate(counts) if count]
        if torch.is_grad_enabled():
            idle = [param.view(-1) for index, expert in enumerate(self.experts) if not counts[index]
                    for param in expert.parameters() if param.requires_grad]
            if idle:
                # Adding 0 x (sum of the idle experts' parameters) leaves every value as it is and gives those
                # parameters the zero gradient the dense mixture gives them (a None gradient would make the
                # optimizer skip them: Adam's moments and weight decay would no longer move them as before).
                top_probs = top_probs + torch.cat(idle).sum() * 0
        if self.topk == 1 and len(picked) == 1:  # the whole batch chose one expert: no gather or scatter
            return x + self.experts[picked[0]](x, k) * top_probs[..., None, None]
        # The pairs grouped by expert (one gather of the batch); each expert runs once on its contiguous slice,
        # and the weighted results are added back to their samples in expert order, as the dense sum does.
        order = torch.argsort(chosen, stable=True).to(x.device)
        samples = order // self.topk
        sizes = [counts[index] for index in picked]
        parts = [self.experts[index](x_part, k_part) for index, x_part, k_part in
                 zip(picked, x[samples].split(sizes), k[samples].split(sizes))]
        return x.index_add(0, samples, torch.cat(parts) * top_probs.flatten()[order, None, None, None])


def _data_independent_graph():
    """Whether the forward pass is being recorded as a graph that cannot depend on the routing (export,
    tracing, compiling): the dense mixture then stands in for the grouped one (same values)."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()


class MoEBlock(nn.Module):
    """Rank modulating block: features split into a content path and a calibration path feeding the experts."""

    def __init__(self, channels, ranks, topk, use_shuffle, recursive):
        super().__init__()
        self.recursive = recursive
        self.conv_1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                                    PointwiseHalves(channels, 2 * channels, shuffle=use_shuffle))
        self.agg_conv = nn.Sequential(nn.Conv2d(channels, channels, 4, stride=4, groups=channels), nn.GELU())
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                                  nn.Conv2d(channels, channels, 1))
        self.conv_2 = nn.Sequential(StripedConv2d(channels, 3, depthwise=True), nn.GELU())
        self.moe_layer = MixtureOfRankExperts(channels, ranks, topk)
        self.proj = nn.Conv2d(channels, channels, 1)

    def calibrate(self, k):
        """The recursive calibration branch: pooled context from 4**recursive down-sampling, added back."""
        context = k
        for _ in range(self.recursive):  # the same strided conv is applied recursively
            context = self.agg_conv(context)
        context = F.interpolate(self.conv(context), size=k.shape[-2:], mode='bilinear', align_corners=False)
        return k + context

    def forward(self, x, routed=None):
        x, k = self.conv_1(x)
        x = self.moe_layer(self.conv_2(x), self.calibrate(k), routed)
        return self.proj(x)


class RankModulatingExpert(nn.Module):
    """RME: pre-norm MoE block and pre-norm gated FFN, each with a residual connection."""

    def __init__(self, channels, ranks, topk, use_shuffle, recursive):
        super().__init__()
        self.norm_1 = ChannelsFirstLayerNorm(channels)
        self.block = MoEBlock(channels, ranks, topk, use_shuffle, recursive)
        self.norm_2 = ChannelsFirstLayerNorm(channels)
        self.ffn = GatedFFN(channels)

    def forward(self, x, routed=None):
        x = x + self.block(self.norm_1(x), routed)
        return x + self.ffn(self.norm_2(x))


class StripedConvFormer(nn.Module):
    """Large-kernel spatial mixing: a striped depthwise KxK conv of one half, gating the other half."""

    def __init__(self, channels, kernel_size):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)
        self.to_qv = nn.Sequential(PointwiseHalves(channels, 2 * channels), nn.GELU())
        self.attn = StripedConv2d(channels, kernel_size, depthwise=True)

    def forward(self, x):
        q, v = (self.to_qv[1](half) for half in self.to_qv[0](x))
        return self.proj(self.attn(q) * v)


class SpatialModulatingExpert(nn.Module):
    """SME: pre-norm striped conv-former and pre-norm gated FFN, each with a residual connection."""

    def __init__(self, channels, kernel_size):
        super().__init__()
        self.norm_1 = ChannelsFirstLayerNorm(channels)
        self.block = StripedConvFormer(channels, kernel_size)
        self.norm_2 = ChannelsFirstLayerNorm(channels)
        self.ffn = GatedFFN(channels)

    def forward(self, x):
        x = x + self.block(self.norm_1(x))
        return x + self.ffn(self.norm_2(x))


class ResGroup(nn.Module):
    """One residual group: a rank modulating expert followed by a spatial modulating expert."""

    def __init__(self, channels, ranks, topk, use_shuffle, recursive, kernel_size):
        super().__init__()
        self.local_block = RankModulatingExpert(channels, ranks, topk, use_shuffle, recursive)
        self.global_block = SpatialModulatingExpert(channels, kernel_size)

    def forward(self, x, routed=None):
        return self.global_block(self.local_block(x, routed))


@ARCH_REGISTRY.register()
class SeemoRe(nn.Module):
    """SeemoRe: See More Details, efficient image SR by mixture of low-rank experts (Zamfir et al., 2024).

    ``variant`` picks an official preset; any other argument given explicitly overrides the preset.
    Arguments left as ``None`` come from the preset. In an option file (``type: SeemoRe``), its keys with
    their types and defaults are in docs/options.md#seemore.

    Args:
        scale (int): Upsampling factor (the pixel-shuffle upsampler supports any integer >= 1). Default: 4.
        in_chans (int): Image channels in and out. Default: 3.
        variant (str): Official preset, ``'T'`` (tiny), ``'B'`` (base) or ``'L'`` (large). Default: ``'T'``.
        num_experts (int): Low-rank experts per rank modulating block. Preset T/B/L: 3.
        num_layers (int): Residual groups (RME + SME). Preset T: 6, B: 8, L: 16.
        embedding_dim (int): Feature channels. Preset T: 36, B and L: 48.
        img_range (float): Pixel range the network works in (input is scaled by it). Default: 1.0.
        use_shuffle (bool): Channel shuffle before splitting content and calibration paths. Preset T, B: True; L: False.
        global_kernel_size (int): Kernel size of the striped spatial expert. Preset: 11.
        recursive (int): Down-sampling steps (x4 each) of the calibration branch. Preset T, B: 2; L: 1.
        lr_space (str): Expert ranks, ``'linear'`` (2, 3, 4, ...), ``'exp'`` (2, 4, 8, ...) or ``'double'``
            (2, 4, 6, ...). Preset: ``'exp'``.
        topk (int): Experts each image is routed to. Preset: 1.
    """

    def __init__(self, scale=4, in_chans=3, variant='T', num_experts=None, num_layers=None, embedding_dim=None,
                 img_range=1.0, use_shuffle=None, global_kernel_size=None, recursive=None, lr_space=None, topk=None):
        super().__init__()
        explicit = dict(num_experts=num_experts, num_layers=num_layers, embedding_dim=embedding_dim,
                        use_shuffle=use_shuffle, global_kernel_size=global_kernel_size, recursive=recursive,
                        lr_space=lr_space, topk=topk)
        config = dict(self.preset(variant))
        config.update({name: value for name, value in explicit.items() if value is not None})
        if config['lr_space'] not in EXPERT_RANKS:
            raise ValueError(f'SeemoRe lr_space must be one of {", ".join(EXPERT_RANKS)}, got {config["lr_space"]!r}')
        if config['topk'] > config['num_experts']:
            raise ValueError(f'SeemoRe topk ({config["topk"]}) must not exceed num_experts ({config["num_experts"]})')
        self.config = dict(scale=scale, in_chans=in_chans, img_range=img_range, **config)
        self.scale = scale
        self.img_range = img_range
        self.recursive = config['recursive']
        dim = config['embedding_dim']
        ranks = [EXPERT_RANKS[config['lr_space']](i) for i in range(config['num_experts'])]
        self.register_buffer('mean', torch.tensor(RGB_MEAN).view(1, 3, 1, 1) if in_chans == 3 else
                             torch.zeros(1, in_chans, 1, 1), persistent=False)

        self.conv_1 = nn.Conv2d(in_chans, dim, 3, padding=1)
        self.body = nn.ModuleList(
            ResGroup(dim, ranks, config['topk'], config['use_shuffle'], config['recursive'],
                     config['global_kernel_size']) for _ in range(config['num_layers']))
        self.norm = ChannelsFirstLayerNorm(dim)
        self.conv_2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(dim, in_chans * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def set_mixture(self, mode='auto'):
        """How the rank experts are computed, with the same outputs and gradients: ``'sparse'`` (each image
        through the expert it picked only), ``'dense'`` (every expert on every image, the unpicked ones
        weighted by zero, as the official code does) or ``'auto'`` (dense in training, sparse in inference:
        the faster of the two on a CPU). See :class:`MixtureOfRankExperts`."""
        if mode not in ('auto', 'sparse', 'dense'):
            raise ValueError(f"SeemoRe mixture must be 'auto', 'sparse' or 'dense', got {mode!r}")
        for layer in self._moe_layers():
            layer.mixture = mode
        return self

    @staticmethod
    def preset(variant):
        if variant not in SEEMORE_PRESETS:
            raise ValueError(f'SeemoRe variant must be one of {", ".join(SEEMORE_PRESETS)}, got {variant!r}')
        return SEEMORE_PRESETS[variant]

    def forward(self, x, return_stats=False):
        """The SR image; with ``return_stats``, ``(output, stats)`` where ``stats['expert_pixels']`` maps
        ``layer<i>/rank<r>`` to the LR pixels routed to that rank expert in this call (each image's
        ``h * w`` per routing decision: top-k decisions per image and layer, in training too)."""
        routed = [] if return_stats else None
        if not self.training and x.device.type == 'cpu' and x.shape[0] > 1 and not torch.jit.is_tracing():
            # On a CPU a batch's activations leave the caches: one image at a time is faster (2.8x at
            # batch 8, 320x180) and gives the same result, since inference routes every image on its own.
            out = torch.cat([self.forward_batch(image, routed) for image in x.split(1)])
        else:
            out = self.forward_batch(x, routed)
        if not return_stats:
            return out
        layers = self._moe_layers()
        # One count per layer and forward_batch call, in layer order: sum over the calls.
        counts = torch.stack(routed).view(-1, len(layers), len(layers[0].experts)).sum(0).tolist()
        pixels = x.shape[-2] * x.shape[-1]
        expert_pixels = OrderedDict((f'layer{i}/rank{expert.rank}', float(count * pixels)) for i, layer in
                                    enumerate(layers) for expert, count in zip(layer.experts, counts[i]))
        return out, {'expert_pixels': expert_pixels}

    def forward_batch(self, x, routed=None):
        """The network on one batch; ``routed`` (a list) collects each layer's routing counts."""
        h, w = x.shape[-2:]
        # The calibration branch divides the size by 4 per recursion step: smaller inputs are padded.
        min_size = 4**self.recursive
        pad_h, pad_w = max(min_size - h, 0), max(min_size - w, 0)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
        # Channels-last inside: faster depthwise and 1x1 convs, and the layer norms over channels become
        # the native (innermost-axis) layer norm. The plain contiguous() first matters: an HWC array seen as
        # [1, C, H, W] (a tile of a decoded image) passes as channels-last with an odd batch stride, which
        # oneDNN's convolutions answer in NCHW, 2.4x slower for the whole network.
        x = ((x - self.mean) * self.img_range).contiguous().contiguous(memory_format=torch.channels_last)
        x = self.conv_1(x)
        features = x
        for layer in self.body:
            x = layer(x, routed)
        x = self.conv_2(self.norm(x)) + features
        x = self.upsampler(x) / self.img_range + self.mean
        if pad_h or pad_w:
            x = x[..., :h * self.scale, :w * self.scale]
        return x.contiguous()

    def _moe_layers(self):
        return [group.local_block.block.moe_layer for group in self.body]
