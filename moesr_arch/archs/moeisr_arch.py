"""MoEISR: arbitrary-scale SR with a mixture of implicit (LIIF-style) decoders and a per-pixel mapper.

The MoEISR paper (Oh et al., arXiv 2311.12077) has no public code; what it leaves open is chosen here and
written down in ``docs/moeisr.md``. The implicit decoding follows LIIF (Chen et al., CVPR 2021).
"""
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


def make_coord(shape, device=None):
    """Pixel-centre coordinates of a ``(H, W)`` grid in [-1, 1], shape ``(H * W, 2)``, order (row, column).

    Computed as LIIF's ``make_coord`` does, ``-1 + r + 2r * i`` with the radius ``r = 1 / n`` a Python float,
    operation for operation: other float32 forms of the same centres (``(2i + 1) / n - 1``) differ in the
    last bit, which moves queries that fall on a code border at x3 to the other code.
    """
    axes = []
    for n in shape:
        radius = 2 / (2 * n)
        axes.append(-1 + radius + (2 * radius) * torch.arange(n, device=device, dtype=torch.float32))
    return torch.stack(torch.meshgrid(*axes, indexing='ij'), dim=-1).view(-1, 2)


def output_size(height, width, scale):
    """``(round(scale_h * height), round(scale_w * width))`` for a number or a ``(scale_h, scale_w)`` pair."""
    scale_h, scale_w = (scale, scale) if isinstance(scale, (int, float)) else scale
    if scale_h <= 0 or scale_w <= 0:
        raise ValueError(f'MoEISR scale must be positive, got {scale}')
    return max(1, round(scale_h * height)), max(1, round(scale_w * width))


def _sample(grid, coord, mode='nearest'):
    """Sample ``grid`` (B, C, h, w) at ``coord`` (B, Q, 2 as row, column) -> (B, Q, C)."""
    out = F.grid_sample(grid, coord.flip(-1).unsqueeze(1), mode=mode, padding_mode='border', align_corners=False)
    return out[:, :, 0, :].permute(0, 2, 1)


def mlp(in_dim, hidden_dim, num_hidden, out_dim):
    """``num_hidden`` ReLU layers of width ``hidden_dim`` and a linear output layer."""
    layers, dim = [], in_dim
    for _ in range(num_hidden):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


def linear_macs(module):
    """Multiply-accumulates of one evaluation of the ``nn.Linear`` layers of ``module``."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


class _EncoderFeatures(nn.Module):
    """Adapts a registered SR arch into a feature encoder (its body, without upsampler)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        if hasattr(net, 'forward_features'):
            self.kind = 'forward_features'
        elif all(hasattr(net, name) for name in ('conv_first', 'body', 'conv_after_body')):
            self.kind = 'edsr_like'
            # The upsampling tail is never used; dropping it keeps DDP from seeing parameters without gradient.
            for name in ('upsample', 'conv_last'):
                if name in net._modules:
                    del net._modules[name]
        else:
            raise ValueError(f'MoEISR encoder {type(net).__name__} is not supported: an encoder arch needs a '
                             '`forward_features(x)` method or EDSR-style conv_first/body/conv_after_body modules')

    def forward(self, x):
        net = self.net
        if self.kind == 'forward_features':
            return net.forward_features(x)
        if hasattr(net, 'mean') and hasattr(net, 'img_range'):  # EDSR/RCAN normalise their own input
            x = (x - torch.as_tensor(net.mean).to(x).view(1, -1, 1, 1)) * net.img_range
        x = net.conv_first(x)
        return net.conv_after_body(net.body(x)) + x


@ARCH_REGISTRY.register()
class MoEISR(nn.Module):
    """MoEISR: an LR encoder, LIIF-style implicit decoding, K decoder experts of different depth and a mapper.

    For each output pixel the mapper picks one decoder expert (an MLP). Training routes with straight-through
    Gumbel-softmax samples (all experts evaluated, the sampled one kept); in eval mode each pixel is decoded
    by the argmax expert only (pixels are gathered per expert, so cheaper experts save real compute).

    ``forward(lq)`` / :meth:`upscale` return the SR image at ``self.scale`` (or a given scale);
    ``forward(lq, coord, cell)`` returns RGB values at query coordinates (training);
    ``forward(lq, coord, cell, return_routing=True)`` returns them with the mapper's soft probabilities
    (B, Q, K; None with a single decoder) for the balance loss, as a return value so that DataParallel
    gathers them from its replicas. ``return_stats=True`` (any call) appends the routing of this call
    (:meth:`routing_stats`: ``expert_pixels``, ``expert_map``, ``flops``, ``flops_deepest``). The module
    keeps no state from a call.

    An ``encoder`` arch gives the features by its ``forward_features(x)`` or its EDSR-style
    ``conv_first/body/conv_after_body`` body (its upsampler is removed); it normalises its own input. The
    mapper is a 3x3 conv on the LR features, then a per-pixel MLP with one hidden layer on [feature, relative
    coordinate, cell]. In an option file (``type: MoEISR``), its keys with their types and defaults are in
    docs/options.md#moeisr.

    Args:
        num_in_ch (int): Input channels.
        num_out_ch (int): Output channels.
        num_feat (int): Channels of the built-in EDSR-baseline encoder.
        num_block (int): Residual blocks of the built-in encoder.
        res_scale (float): Residual scale of the built-in encoder's blocks.
        encoder (dict | None): A registered arch as encoder instead, e.g. ``{type: EDSR, num_feat: 64, ...}``.
        expert_depths (list[int]): Hidden layers of each decoder expert, cheapest first.
        hidden_dim (int): Width of the experts' hidden layers.
        mapper_dim (int): Width of the mapper.
        feat_unfold (bool): Concatenate each code's 3x3 neighbourhood (LIIF).
        local_ensemble (bool): Blend the predictions from the 4 nearest codes (LIIF).
        cell_decode (bool): Give the decoders the query pixel's size (LIIF).
        image_residual (bool): Add a bicubic sample of the LR image, so an untrained network starts at bicubic.
        temperature (float): Gumbel-softmax temperature during training.
        routing_bias (float): Test-time routing: ``routing_bias * cost_e / cost_max`` off expert e's logit.
        chunk_size (int): Query pixels per image decoded at once in :meth:`upscale` (bounds memory).
        scale (float): Output scale of ``forward(lq)``; :meth:`upscale` takes any other.
    """

    def __init__(self,
                 num_in_ch=3,
                 num_out_ch=3,
                 num_feat=64,
                 num_block=16,
                 res_scale=1.0,
                 encoder=None,
                 expert_depths=(1, 2, 3, 4),
                 hidden_dim=256,
                 mapper_dim=64,
                 feat_unfold=True,
                 local_ensemble=True,
                 cell_decode=True,
                 image_residual=False,
                 temperature=1.0,
                 routing_bias=0.0,
                 chunk_size=16384,
                 scale=4.0):
        super().__init__()
        expert_depths = [int(d) for d in expert_depths]
        if not expert_depths or min(expert_depths) < 0:
            raise ValueError('MoEISR expert_depths must be a non-empty list of hidden-layer counts, '
                             f'got {expert_depths}')
        if temperature <= 0:
            raise ValueError(f'MoEISR temperature must be positive, got {temperature}')
        if chunk_size < 1:
            raise ValueError(f'MoEISR chunk_size must be positive, got {chunk_size}')
        self.num_in_ch, self.num_out_ch = num_in_ch, num_out_ch
        self.expert_depths = expert_depths
        self.feat_unfold, self.local_ensemble, self.cell_decode = feat_unfold, local_ensemble, cell_decode
        self.image_residual = image_residual
        self.temperature, self.routing_bias = float(temperature), float(routing_bias)
        self.chunk_size, self.scale = int(chunk_size), scale

        if encoder is None:
            self.own_encoder = True
            self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
            self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat, res_scale=res_scale,
                                   pytorch_init=True)
            self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            feat_dim = num_feat
        else:
            encoder = dict(encoder)
            arch = ARCH_REGISTRY.get(encoder.pop('type'))
            self.own_encoder = False
            self.encoder = _EncoderFeatures(arch(**encoder))
            with torch.no_grad():  # the feature width is whatever the encoder produces
                feat_dim = self.encoder(torch.zeros(1, num_in_ch, 16, 16)).shape[1]

        in_dim = feat_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.experts = nn.ModuleList(mlp(in_dim, hidden_dim, depth, num_out_ch) for depth in expert_depths)
        self.expert_macs = [linear_macs(expert) for expert in self.experts]
        costs = torch.tensor(self.expert_macs, dtype=torch.float32)
        self.register_buffer('expert_cost', costs / costs.max(), persistent=False)
        if len(self.experts) > 1:
            self.mapper_conv = nn.Sequential(nn.Conv2d(feat_dim, mapper_dim, 3, 1, 1), nn.ReLU(inplace=True))
            self.mapper_mlp = mlp(mapper_dim + 4, mapper_dim, 1, len(self.experts))
            self.mapper_conv_macs = feat_dim * 9 * mapper_dim
            self.mapper_pixel_macs = linear_macs(self.mapper_mlp)
        else:  # a single decoder: plain LIIF, nothing to route
            self.mapper_conv_macs = self.mapper_pixel_macs = 0

    # ------------------------------------------------------------------------------------------------
    # Encoding and decoding.

    def encode(self, lq):
        """LR features (B, C, h, w) and the mapper's LR features (or None with a single expert)."""
        if self.own_encoder:
            x = self.conv_first((lq - 0.5) / 0.5)  # LIIF's data normalisation
            feat = self.conv_after_body(self.body(x)) + x
        else:
            feat = self.encoder(lq)
        mapper_feat = self.mapper_conv(feat) if len(self.experts) > 1 else None
        if self.feat_unfold:
            b, c, h, w = feat.shape
            feat = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
        return feat, mapper_feat

    def _decoder_inputs(self, feat, coord, cell):
        """LIIF decoder inputs (V, B, Q, D) for the V nearest codes and their blending weights (V, B, Q)."""
        b, _, h, w = feat.shape
        size = coord.new_tensor([h, w])
        feat_coord = make_coord((h, w), coord.device).view(h, w, 2).permute(2, 0, 1).expand(b, 2, h, w)
        if self.local_ensemble:
            # Shifts by one code radius reach the 4 nearest codes; eps keeps exact borders unambiguous.
            shifts = [(vy, vx) for vy in (-1, 1) for vx in (-1, 1)]
            eps = 1e-6
        else:
            shifts, eps = [(0, 0)], 0.0
        inputs, areas = [], []
        for vy, vx in shifts:
            # LIIF's shift: the code radius 2 / n / 2 times the direction, plus eps, one float per axis.
            shift = coord.new_tensor([vy * (2 / h / 2) + eps, vx * (2 / w / 2) + eps])
            shifted = coord + shift if vy else coord
            shifted = shifted.clamp(-1 + 1e-6, 1 - 1e-6)
            q_feat = _sample(feat, shifted)
            rel_coord = (coord - _sample(feat_coord, shifted)) * size
            parts = [q_feat, rel_coord]
            if self.cell_decode:
                parts.append(cell * size)
            inputs.append(torch.cat(parts, dim=-1))
            areas.append((rel_coord[..., 0] * rel_coord[..., 1]).abs() + 1e-9)
        if not self.local_ensemble:
            return torch.stack(inputs), torch.ones_like(areas[0])[None]
        # Each prediction is weighted by the area of the rectangle opposite its code (bilinear blending);
        # the total is summed in the codes' order, as LIIF does, before the areas are swapped.
        total = torch.stack(areas).sum(0)
        return torch.stack(inputs), torch.stack(areas[::-1]) / total

    def route_logits(self, mapper_feat, coord, cell):
        """Mapper logits (B, Q, K) of each query pixel, from the code nearest to it."""
        h, w = mapper_feat.shape[-2:]
        size = coord.new_tensor([h, w])
        feat_coord = make_coord((h, w), coord.device).view(h, w, 2).permute(2, 0, 1).expand(coord.shape[0], 2, h, w)
        # LIIF's eps shift: a query on a code border (every other pixel at x2.5) goes to the same code
        # whatever the last bit of its coordinate, which differs between a tile and the whole image.
        inner = (coord + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
        rel_coord = (coord - _sample(feat_coord, inner)) * size
        return self.mapper_mlp(torch.cat([_sample(mapper_feat, inner), rel_coord, cell * size], dim=-1))

    def query(self, lq, feat, mapper_feat, coord, cell):
        """RGB in [0, 1] at ``coord`` (B, Q, 2) for pixels of size ``cell`` (B, Q, 2), each pixel's expert
        (B, Q) and, in training with several experts, the mapper's soft probabilities (B, Q, K)."""
        num_experts = len(self.experts)
        probs = None
        if num_experts > 1 and not self.training:
            logits = self.route_logits(mapper_feat, coord, cell)
            choice = (logits - self.routing_bias * self.expert_cost).argmax(-1)
            decoded = self._decode_sparse(feat, coord, cell, choice)
        else:
            inputs, weights = self._decoder_inputs(feat, coord, cell)  # (V, B, Q, D), (V, B, Q)
            if num_experts == 1:
                decoded = (self.experts[0](inputs) * weights.unsqueeze(-1)).sum(0)
                choice = torch.zeros(coord.shape[:2], dtype=torch.long, device=coord.device)
            else:
                logits = self.route_logits(mapper_feat, coord, cell)
                probs = logits.softmax(-1)
                # Straight-through hard sample: forward uses one expert, gradients reach the mapper.
                gates = F.gumbel_softmax(logits, tau=self.temperature, hard=True, dim=-1)
                decoded = 0
                for index, expert in enumerate(self.experts):
                    decoded = decoded + (expert(inputs) * weights.unsqueeze(-1)).sum(0) * gates[..., index:index + 1]
                choice = gates.argmax(-1)
        if self.image_residual:
            base = _sample(lq, coord.clamp(-1, 1), mode='bicubic')
        else:
            base = 0.5
        return decoded * 0.5 + base, choice, probs

    def _decode_sparse(self, feat, coord, cell, choice):
        """Each query pixel decoded by its chosen expert only.

        The pixels of each expert are gathered first and only their decoder inputs are built, so neither
        compute nor memory is spent on the (pixel, expert) pairs that were not chosen.
        """
        out = coord.new_zeros(*choice.shape, self.num_out_ch)
        for image in range(choice.shape[0]):
            for index, expert in enumerate(self.experts):
                rows = (choice[image] == index).nonzero(as_tuple=True)[0]
                if rows.numel():
                    inputs, weights = self._decoder_inputs(feat[image:image + 1], coord[image:image + 1, rows],
                                                           cell[image:image + 1, rows])
                    out[image, rows] = (expert(inputs) * weights.unsqueeze(-1)).sum(0)[0]
        return out

    def forward(self, lq, coord=None, cell=None, return_routing=False, return_stats=False):
        """The SR image (``coord`` None), or RGB at ``coord`` (B, Q, 2) for pixels of size ``cell``; with
        ``return_routing`` the mapper's probabilities follow, with ``return_stats`` the routing statistics
        (for queries ``expert_map`` is (B, Q))."""
        if coord is None:
            if return_routing:
                raise ValueError('MoEISR.forward: return_routing needs query coord and cell (training)')
            return self.upscale(lq, self.scale, return_stats=return_stats)
        if cell is None:
            raise ValueError('MoEISR.forward: give cell (B, Q, 2) together with coord')
        feat, mapper_feat = self.encode(lq)
        values, choice, probs = self.query(lq, feat, mapper_feat, coord, cell)
        extras = ([probs] if return_routing else []) + \
            ([self.routing_stats(choice, feat.shape[-2] * feat.shape[-1])] if return_stats else [])
        return (values, *extras) if extras else values

    def upscale(self, lq, scale, return_stats=False):
        """SR image (B, C, round(scale * H), round(scale * W)) of the LR batch ``lq`` at any ``scale``.

        ``scale`` is a number or a ``(scale_h, scale_w)`` pair; query pixels are decoded ``chunk_size`` per
        image at a time. In eval mode the output is clamped to [0, 1]. With ``return_stats`` returns
        ``(sr, stats)``, ``stats`` describing the routing of this call (:meth:`routing_stats`).
        """
        out_h, out_w = output_size(lq.shape[-2], lq.shape[-1], scale)
        b = lq.shape[0]
        feat, mapper_feat = self.encode(lq)
        coord_all = make_coord((out_h, out_w), lq.device)
        cell_size = lq.new_tensor([2 / out_h, 2 / out_w])
        rgb, choices = [], []
        for start in range(0, out_h * out_w, self.chunk_size):
            coord = coord_all[start:start + self.chunk_size].unsqueeze(0).expand(b, -1, -1)
            cell = cell_size.expand_as(coord)
            values, choice, _ = self.query(lq, feat, mapper_feat, coord, cell)
            rgb.append(values)
            choices.append(choice)
        sr = torch.cat(rgb, 1).permute(0, 2, 1).reshape(b, -1, out_h, out_w)
        if not self.training:
            sr = sr.clamp(0, 1)
        if not return_stats:
            return sr
        return sr, self.routing_stats(torch.cat(choices, 1).view(b, out_h, out_w), feat.shape[-2] * feat.shape[-1])

    # ------------------------------------------------------------------------------------------------
    # FLOPs accounting and routing statistics.

    def decoder_flops(self, pixels_per_expert, lr_pixels):
        """Decoder FLOPs (2 x linear-layer multiply-accumulates, mapper included) for these pixel counts."""
        evaluations = 4 if self.local_ensemble else 1
        macs = sum(evaluations * int(n) * m for n, m in zip(pixels_per_expert, self.expert_macs))
        pixels = sum(int(n) for n in pixels_per_expert)
        macs += pixels * self.mapper_pixel_macs + lr_pixels * self.mapper_conv_macs
        return 2 * macs

    def deepest_decoder_flops(self, pixels):
        """FLOPs of decoding ``pixels`` with the deepest expert alone (the LIIF baseline)."""
        return 2 * (4 if self.local_ensemble else 1) * int(pixels) * max(self.expert_macs)

    def routing_stats(self, expert_map, lr_pixels):
        """The statistics of one call: ``expert_pixels`` (ordered ``{expert name: pixels}``), ``expert_map``
        (each output pixel's expert index), ``flops`` (decoder FLOPs spent, mapper included) and
        ``flops_deepest`` (those of the deepest decoder alone); ``lr_pixels`` per image."""
        counts = torch.bincount(expert_map.flatten(), minlength=len(self.experts)).cpu().tolist()
        return {'expert_pixels': OrderedDict(zip(self.expert_names(), map(float, counts))), 'expert_map': expert_map,
                'flops': self.decoder_flops(counts, lr_pixels * expert_map.shape[0]),
                'flops_deepest': self.deepest_decoder_flops(expert_map.numel())}

    def expert_names(self):
        return [f'expert{i}_{depth}hidden' for i, depth in enumerate(self.expert_depths)]


def describe_flops(flops):
    """Human-readable FLOPs."""
    if flops <= 0:
        return '0'
    unit = min(int(math.log10(flops) // 3), 4)
    return f'{flops / 10 ** (3 * unit):.3g}{["", "K", "M", "G", "T"][unit]}'
