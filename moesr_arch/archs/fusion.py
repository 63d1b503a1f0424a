"""Alpha-blend fusion and sparse execution for :class:`~moesr_arch.archs.moesr_arch.MoESRNet`.

Fusion turns the gate's per-pixel weights at LR size (``[B, K+1, h, w]``: K categories in id order, the
background last) into blending weights at HR size:

1. nearest upsampling by the scale (each LR pixel becomes an ``s x s`` block);
2. context dilation of every category channel by ``dilation`` HR pixels (grey dilation = max-pool);
3. a feathered edge: a linear ramp from 1 at the dilated region's border down to 0 at ``feather`` HR
   pixels outside it. The ramp is the mean of ``feather`` successive 3x3 grey dilations, i.e.
   ``1 - d / feather`` for a pixel at chessboard distance ``d`` from the region: the distance-transform
   ramp of the reference blend, with the chessboard instead of the Euclidean metric. It is plain torch
   (max-pools and sums), so the same code runs in training (differentiable) and at inference, and the
   sparse and dense paths share it exactly;
4. normalisation: where the categories' feathered weights add up to more than 1 (overlaps) they are
   divided by their sum, so overlapping regions share pixels in proportion to their confidence and never
   by paste order; the background gets the rest, ``1 - sum``. Weights sum to 1 at every pixel, and an
   image without categories gets weight exactly 1 on the background expert.

Steps 1-3 run only inside each category's bounding box grown by the reach of dilation and feather
(outside it the weight is exactly 0), and step 4 only inside the union of those boxes (outside it the
background's weight is exactly 1), so their cost follows the area the categories cover.

Sparse execution runs an expert only on crops of the LR image: the bounding boxes of the connected
components of its weight's support (``core``), each widened by a context ``margin``. A convolutional
expert's output on a core pixel depends only on input pixels within its receptive field, so it equals
the whole-image output exactly when the margin covers the receptive-field radius (in LR pixels); crops
at the image border see the same zero padding as the whole image. Crops are batched: every window is
grown to the largest window's size (taking more real image context, never padding), shifted to stay
inside the image. The background expert runs on the whole image, or tiled with the same machinery.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F


def mask_box(mask):
    """Bounding box ``(y0, y1, x0, x1)`` (end exclusive) of the True pixels of a non-empty 2-D bool mask."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def grey_dilate(x, radius):
    """Max over a ``(2 radius + 1)`` square around each pixel (separable; pixels outside are ignored).

    Element-wise maxima of shifted views: on a CPU, 4 to 10 times faster than ``max_pool2d`` with stride 1,
    whose kernel also computes the argmax indices.
    """
    if radius <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (radius, radius, radius, radius), value=float('-inf'))
    rows = padded[..., :h, :]
    for offset in range(1, 2 * radius + 1):
        rows = torch.maximum(rows, padded[..., offset:offset + h, :])
    out = rows[..., :w]
    for offset in range(1, 2 * radius + 1):
        out = torch.maximum(out, rows[..., offset:offset + w])
    return out


def feather_ramp(alpha, width):
    """Linear ramp outside each region: ``alpha`` at the region, ``1 - d / width`` at chessboard distance d.

    Args:
        alpha (Tensor): ``[B, K, H, W]`` region weights in [0, 1].
        width (int): Ramp width in pixels; 0 or 1 keep hard edges.
    """
    if width <= 1:
        return alpha
    total, grown = alpha, alpha
    for _ in range(width - 1):
        grown = grey_dilate(grown, 1)
        total = total + grown
    return total / width


def blend_weights(weights, scale, dilation=0, feather=0):
    """HR blending weights from the gate's LR weights (see the module docstring for the steps).

    Args:
        weights (Tensor): ``[B, K+1, h, w]`` gate weights (K categories, background last).
        scale (int): Upscale factor.
        dilation (int): Context dilation of each category region, HR pixels.
        feather (int): Width of the feathered edge, HR pixels.

    Returns:
        Tensor: ``[B, K+1, h*scale, w*scale]`` weights, non-negative and summing to 1 at every pixel.
    """
    if weights.dim() != 4 or weights.shape[1] < 1:
        raise ValueError(f'gate weights must be [B, K+1, h, w], got shape {tuple(weights.shape)}')
    b, channels, h, w = weights.shape
    low = weights[:, :-1].clamp(0, 1)
    # Each category is processed only inside its weight's bounding box (over the batch) grown by the
    # reach of dilation and feather: outside, its weight is exactly zero, so the cost follows the coverage.
    reach = -(-(dilation + max(feather - 1, 0)) // scale)  # LR pixels, rounded up
    boxes = {}
    for k in range(channels - 1):
        used = low[:, k].detach().amax(0) > 0
        if used.any():
            y0, y1, x0, x1 = mask_box(used)
            boxes[k] = (max(y0 - reach, 0), min(y1 + reach, h), max(x0 - reach, 0), min(x1 + reach, w))
    if not boxes:
        return torch.cat([weights.new_zeros(b, channels - 1, h * scale, w * scale),
                          weights.new_ones(b, 1, h * scale, w * scale)], 1)
    # Normalisation runs on the union of the boxes only; outside it the background's weight is exactly 1.
    uy0, uy1 = min(box[0] for box in boxes.values()), max(box[1] for box in boxes.values())
    ux0, ux1 = min(box[2] for box in boxes.values()), max(box[3] for box in boxes.values())
    parts = []
    for k in range(channels - 1):
        if k not in boxes:
            parts.append(low.new_zeros(b, 1, (uy1 - uy0) * scale, (ux1 - ux0) * scale))
            continue
        y0, y1, x0, x1 = boxes[k]
        crop = F.interpolate(low[:, k:k + 1, y0:y1, x0:x1], scale_factor=scale, mode='nearest')
        part = feather_ramp(grey_dilate(crop, dilation), feather)
        parts.append(F.pad(part, [scale * n for n in (x0 - ux0, ux1 - x1, y0 - uy0, uy1 - y1)]))
    categories = torch.cat(parts, 1)
    categories = categories / categories.sum(1, keepdim=True).clamp(min=1)
    background = (1 - categories.sum(1, keepdim=True)).clamp(min=0)
    result = weights.new_zeros(b, channels, h * scale, w * scale)
    result[:, -1] = 1
    result[:, :, uy0 * scale:uy1 * scale, ux0 * scale:ux1 * scale] = torch.cat([categories, background], 1)
    return result


def support_cores(mask, margin):
    """Core boxes ``(y0, y1, x0, x1)`` covering ``mask`` (bool ``[h, w]``), merged where windows meet.

    Each connected component gives its bounding box; boxes whose margin-widened windows overlap are
    merged (their union box), so no image area is super-resolved twice for the same expert.
    """
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = [(y, y + bh, x, x + bw) for x, y, bw, bh, _ in stats[1:count]]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if (a[0] - margin < b[1] + margin and b[0] - margin < a[1] + margin and a[2] - margin < b[3] + margin
                        and b[2] - margin < a[3] + margin):
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def tile_cores(height, width, tile_size):
    """Core boxes of a grid of ``tile_size`` tiles covering an image (one box if it fits)."""
    if tile_size <= 0 or (height <= tile_size and width <= tile_size):
        return [(0, height, 0, width)]
    return [(y, min(y + tile_size, height), x, min(x + tile_size, width))
            for y in range(0, height, tile_size) for x in range(0, width, tile_size)]


def split_cores(cores, tile_size):
    """Cores cut into boxes of at most ``tile_size`` per side (0: unchanged), so no expert call sees more."""
    if tile_size <= 0:
        return cores
    return [(y0 + ty0, y0 + ty1, x0 + tx0, x0 + tx1) for y0, y1, x0, x1 in cores
            for ty0, ty1, tx0, tx1 in tile_cores(y1 - y0, x1 - x0, tile_size)]


def crop_windows(cores, margin, height, width):
    """Windows of one common size around each core: core + margin, grown to the largest and kept inside."""
    padded = [(max(y0 - margin, 0), min(y1 + margin, height), max(x0 - margin, 0), min(x1 + margin, width))
              for y0, y1, x0, x1 in cores]
    win_h = max(y1 - y0 for y0, y1, _, _ in padded)
    win_w = max(x1 - x0 for _, _, x0, x1 in padded)
    windows = []
    for y0, y1, x0, x1 in padded:
        # Grow symmetrically, then shift back inside the image: more real context, never padding.
        top = min(max(y0 - (win_h - (y1 - y0)) // 2, 0), height - win_h)
        left = min(max(x0 - (win_w - (x1 - x0)) // 2, 0), width - win_w)
        windows.append((top, top + win_h, left, left + win_w))
    return windows


def run_on_crops(expert, image, cores, scale, margin, max_batch=8):
    """Run ``expert`` on margin-widened crops of ``image``; yield each core box and its HR output.

    Args:
        expert (nn.Module): SR network, ``[N, C, h, w] -> [N, C', h*scale, w*scale]``.
        image (Tensor): ``[1, C, h, w]`` LR image.
        cores (list): Boxes ``(y0, y1, x0, x1)`` in LR pixels whose output is wanted.
        scale (int): Upscale factor.
        margin (int): Context around each core, LR pixels (>= the expert's receptive-field radius for an
            exact result).
        max_batch (int): Crops per expert call.

    Yields:
        tuple: ``(core, output)`` with ``output`` ``[C', (y1-y0)*scale, (x1-x0)*scale]``.
    """
    _, _, height, width = image.shape
    windows = crop_windows(cores, margin, height, width) if cores else []
    step = max(1, max_batch)
    for start in range(0, len(cores), step):
        chunk = list(zip(cores, windows))[start:start + step]
        result = expert(torch.cat([image[:, :, y0:y1, x0:x1] for _, (y0, y1, x0, x1) in chunk]))
        for index, ((cy0, cy1, cx0, cx1), (wy0, _, wx0, _)) in enumerate(chunk):
            y0, x0 = (cy0 - wy0) * scale, (cx0 - wx0) * scale
            yield (cy0, cy1, cx0, cx1), result[index, :, y0:y0 + (cy1 - cy0) * scale, x0:x0 + (cx1 - cx0) * scale]


def support_mask(hr_weight, scale):
    """LR pixels whose ``s x s`` HR block has any positive weight (``hr_weight``: ``[H, W]``)."""
    low = F.max_pool2d(hr_weight[None, None], scale, stride=scale)[0, 0]
    return (low > 0).cpu().numpy()


def covered_fraction(cores, margin, height, width):
    """Share of the LR image inside the margin-widened crops (for statistics and benchmarks)."""
    if not cores:
        return 0.0
    covered = np.zeros((height, width), bool)
    for y0, y1, x0, x1 in crop_windows(cores, margin, height, width):
        covered[y0:y1, x0:x1] = True
    return float(covered.mean())


def receptive_radius(net, scale, channels=3, size=41):
    """Receptive-field radius of ``net`` in LR pixels, measured by back-propagating from one output pixel.

    Returns ``size // 2`` or more when the field covers the whole probe (e.g. global pooling): then no
    finite crop margin makes sparse execution exact.
    """
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand(1, channels, size, size, generator=generator).requires_grad_(True)
    was_training = net.training
    net.eval()
    with torch.enable_grad():
        out = net(probe)
        centre = size // 2
        out[..., centre * scale:(centre + 1) * scale, centre * scale:(centre + 1) * scale].sum().backward()
    net.train(was_training)
    rows, cols = np.nonzero(probe.grad.abs().sum((0, 1)).numpy() > 0)
    return int(max(np.abs(rows - centre).max(), np.abs(cols - centre).max()))
