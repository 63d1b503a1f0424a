"""The sparse crop scheduler of :class:`~moesr_arch.archs.moesr_arch.MoESRNet`: which crops of the LR image
each expert computes, in which batches, and how wide their context must be.

An expert's output is needed only where its blending weight (:func:`moesr_arch.archs.fusion.blend_weights`) is
positive, so running it on the whole image wastes the rest. Sparse execution runs every expert, the background
included, only on crops of the LR image: disjoint boxes covering its weight's support (:func:`support_boxes`,
the ``cores``), each widened by a context ``margin``. A convolutional expert's output on a core pixel depends
only on input pixels within its receptive field, so it equals the whole-image output exactly when the margin
covers the receptive-field radius (in LR pixels, :func:`receptive_radius`); crops at the image border see the
same zero padding as the whole image. Crops of similar sizes are batched (:func:`batch_groups`): their windows
are grown to the batch's common size (taking more real image context, never padding), shifted to stay inside
the image.
"""
import numpy as np
import torch
import torch.nn.functional as F

from moesr_arch.utils.modes import eval_mode
from moesr_arch.utils.tiling import tile_spans


def support_boxes(mask, margin, cell=0):
    """Disjoint core boxes ``(y0, y1, x0, x1)`` covering the True pixels of ``mask`` (bool ``[h, w]``).

    An expert computes each box widened by ``margin`` (its window), so the boxes are chosen for a small
    total window area: a region with large holes (the background around big category regions) gets
    several boxes that leave the holes out, small holes and nearby pieces share one box.

    1. The mask is cut into square cells of ``cell`` LR pixels (0: ``max(margin, 8)``). Cells holding
       support form rectangles: the maximal runs of such cells along each row of cells, each stacked
       onto the run below while that run spans exactly the same cells.
    2. Each rectangle shrinks to the bounding box of its support.
    3. Boxes merge while one box around two of them (and around every box it meets, so the boxes stay
       disjoint) has a window no larger than theirs together: pairs whose box meets no other first, the
       largest saving first. The result is never worse than one box around all the support.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    height, width = mask.shape
    cell = int(cell) or max(int(margin), 8)
    rows, cols = -(-height // cell), -(-width // cell)
    grid = np.zeros((rows * cell, cols * cell), bool)
    grid[:height, :width] = mask
    occupied = grid.reshape(rows, cell, cols, cell).any((1, 3))
    taken = np.zeros_like(occupied)
    boxes = []
    for i in range(rows):
        free = occupied[i] & ~taken[i]
        # Runs of free cells: starts where a free cell follows a non-free one, ends after the last.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], free, [False]]).astype(np.int8)))
        for j0, j1 in zip(edges[::2], edges[1::2]):
            i1 = i + 1
            while i1 < rows and _run_is(occupied[i1] & ~taken[i1], j0, j1):
                i1 += 1
            taken[i:i1, j0:j1] = True
            part = mask[i * cell:i1 * cell, j0 * cell:j1 * cell]
            ys, xs = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
            y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
            boxes.append((i * cell + y0, i * cell + y1, j0 * cell + x0, j0 * cell + x1))
    boxes = _merge_boxes(boxes, margin, height, width)
    whole = union_box(np.array(boxes))
    # Never worse than one box around everything (the greedy merging may stop short of it).
    if window_area(boxes, margin, height, width).sum() > window_area(whole, margin, height, width)[0]:
        return [tuple(int(v) for v in whole)]
    return boxes


def _run_is(free, j0, j1):
    """Whether the free cells of a row include exactly the run ``[j0, j1)`` (it starts and ends there)."""
    return bool(free[j0:j1].all()) and (j0 == 0 or not free[j0 - 1]) and (j1 == len(free) or not free[j1])


def window_area(boxes, margin, height, width):
    """Area of each box widened by ``margin`` and clipped to the image (``boxes``: ``[n, 4]`` array)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    tall = np.minimum(boxes[:, 1] + margin, height) - np.maximum(boxes[:, 0] - margin, 0)
    wide = np.minimum(boxes[:, 3] + margin, width) - np.maximum(boxes[:, 2] - margin, 0)
    return tall * wide


def _merge_boxes(boxes, margin, height, width, tries=16):
    boxes = np.array(boxes, np.int64).reshape(-1, 4)
    while len(boxes) > 1:
        area = window_area(boxes, margin, height, width)
        # Pairs whose windows meet; boxes further apart never gain by one window over the gap between.
        near = ((boxes[:, None, 0] - margin < boxes[None, :, 1] + margin)
                & (boxes[None, :, 0] - margin < boxes[:, None, 1] + margin)
                & (boxes[:, None, 2] - margin < boxes[None, :, 3] + margin)
                & (boxes[None, :, 2] - margin < boxes[:, None, 3] + margin))
        near &= np.triu(near, 1)
        pairs = np.flatnonzero(near)
        if not len(pairs):
            break
        i, j = np.divmod(pairs, len(boxes))
        union = np.stack([np.minimum(boxes[i, 0], boxes[j, 0]), np.maximum(boxes[i, 1], boxes[j, 1]),
                          np.minimum(boxes[i, 2], boxes[j, 2]), np.maximum(boxes[i, 3], boxes[j, 3])], 1)
        saving = area[i] + area[j] - window_area(union, margin, height, width)
        # The most promising pairs (their own saving) are tried with every box their union meets taken in:
        # a pair may lose on its own and win with its neighbours (a band beside a small hole). A pair whose
        # box meets no other goes first: merging strips into blocks before blocks into one box keeps holes
        # out that one large absorbing merge would swallow.
        best, best_key = None, (False, -1)
        for k in np.argsort(-saving)[:tries]:
            members = np.zeros(len(boxes), bool)
            members[[i[k], j[k]]] = True
            while True:
                box = union_box(boxes[members])
                meets = ((boxes[:, 0] < box[1]) & (boxes[:, 1] > box[0]) & (boxes[:, 2] < box[3])
                         & (boxes[:, 3] > box[2]))
                if not (meets & ~members).any():
                    break
                members |= meets
            gain = area[members].sum() - window_area(box, margin, height, width)[0]
            key = (gain >= 0 and members.sum() == 2, gain)
            if gain >= 0 and key > best_key:
                best, best_key = (members, box), key
            if key[0]:  # a lone pair's gain is its saving, so no later pair alone gains more
                break
        if best is None:
            break
        members, box = best
        boxes = np.concatenate([boxes[~members], np.array(box)[None]])
    return [tuple(int(v) for v in box) for box in boxes]


def union_box(boxes):
    """The bounding box of ``[n, 4]`` boxes."""
    return boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()


def tile_cores(height, width, tile_size):
    """Disjoint core boxes of the package's tile grid (:func:`moesr_arch.utils.tiling.tile_spans`) covering an
    image (one box if it fits)."""
    return [(y0, y1, x0, x1) for y0, y1 in tile_spans(height, tile_size) for x0, x1 in tile_spans(width, tile_size)]


def split_cores(cores, tile_size):
    """Cores cut into boxes of at most ``tile_size`` per side (0: unchanged), so no expert call sees more."""
    if tile_size <= 0:
        return cores
    return [(y0 + ty0, y0 + ty1, x0 + tx0, x0 + tx1) for y0, y1, x0, x1 in cores
            for ty0, ty1, tx0, tx1 in tile_cores(y1 - y0, x1 - x0, tile_size)]


def crop_windows(cores, margin, height, width):
    """Windows of one common size around each core: core + margin, grown to the largest and kept inside."""
    padded = crop_windows_each(cores, margin, height, width)
    win_h = max(y1 - y0 for y0, y1, _, _ in padded)
    win_w = max(x1 - x0 for _, _, x0, x1 in padded)
    windows = []
    for y0, y1, x0, x1 in padded:
        # Grow symmetrically, then shift back inside the image: more real context, never padding.
        top = min(max(y0 - (win_h - (y1 - y0)) // 2, 0), height - win_h)
        left = min(max(x0 - (win_w - (x1 - x0)) // 2, 0), width - win_w)
        windows.append((top, top + win_h, left, left + win_w))
    return windows


# On a CPU a batch's activations leave the caches: EDSR f32b4 ran 4 crops of 268x268 1.7x slower as one
# batch than one by one, 4 of 76x76 1.1x faster. A CPU call gets at most this many LR pixels of crops.
CPU_BATCH_PIXELS = 1 << 15


def batch_groups(cores, margin, height, width, max_batch=8, slack=0.25, max_pixels=0):
    """Indices of ``cores`` in groups of at most ``max_batch`` whose windows are computed in one call.

    The windows of a group are grown to a common size (:func:`crop_windows`); a window joins a group only
    while that costs at most ``slack`` more pixels than the windows' own sizes, so crops of very different
    shapes run in separate calls instead of all growing to the largest, and (``max_pixels`` > 0) while the
    group's windows hold at most ``max_pixels`` pixels in all.
    """
    sizes = [(y1 - y0, x1 - x0) for y0, y1, x0, x1 in crop_windows_each(cores, margin, height, width)]
    order = sorted(range(len(cores)), key=lambda i: (-sizes[i][0] * sizes[i][1], sizes[i]))
    groups = []
    for index in order:
        h, w = sizes[index]
        for group in groups:
            count = len(group['members']) + 1
            tall, wide = max(group['tall'], h), max(group['wide'], w)
            if (count <= max(1, max_batch) and tall * wide * count <= (1 + slack) * (group['pixels'] + h * w)
                    and (max_pixels <= 0 or tall * wide * count <= max_pixels)):
                group.update(tall=tall, wide=wide, pixels=group['pixels'] + h * w)
                group['members'].append(index)
                break
        else:
            groups.append({'members': [index], 'tall': h, 'wide': w, 'pixels': h * w})
    return [group['members'] for group in groups]


def crop_windows_each(cores, margin, height, width):
    """Each core widened by ``margin`` and clipped to the image."""
    return [(max(y0 - margin, 0), min(y1 + margin, height), max(x0 - margin, 0), min(x1 + margin, width))
            for y0, y1, x0, x1 in cores]


def run_on_boxes(expert, images, boxes, scale, margin, max_batch=8):
    """Run ``expert`` on margin-widened crops of a batch of images; yield each box and its HR output.

    Args:
        expert (nn.Module): SR network, ``[N, C, h, w] -> [N, C', h*scale, w*scale]``.
        images (Tensor): ``[B, C, h, w]`` LR images.
        boxes (list): ``(image index, (y0, y1, x0, x1))``: the LR boxes whose output is wanted.
        scale (int): Upscale factor.
        margin (int): Context around each box, LR pixels (>= the expert's receptive-field radius for an
            exact result).
        max_batch (int): Crops per expert call (crops of similar sizes share a call, :func:`batch_groups`;
            on a CPU, at most :data:`CPU_BATCH_PIXELS` pixels of them unless one crop is larger).

    Yields:
        tuple: ``(image index, box, output)`` with ``output`` ``[C', (y1-y0)*scale, (x1-x0)*scale]``.
    """
    _, _, height, width = images.shape
    cores = [core for _, core in boxes]
    for members in batch_groups(cores, margin, height, width, max_batch, max_pixels=batch_pixels(images)):
        windows = crop_windows([cores[i] for i in members], margin, height, width)
        result = expert(torch.cat([images[boxes[i][0]:boxes[i][0] + 1, :, y0:y1, x0:x1]
                                   for i, (y0, y1, x0, x1) in zip(members, windows)]))
        for index, i, (wy0, _, wx0, _) in zip(range(len(members)), members, windows):
            image_index, (cy0, cy1, cx0, cx1) = boxes[i]
            y0, x0 = (cy0 - wy0) * scale, (cx0 - wx0) * scale
            yield image_index, boxes[i][1], result[index, :, y0:y0 + (cy1 - cy0) * scale,
                                                   x0:x0 + (cx1 - cx0) * scale]


def support_mask(hr_weight, scale):
    """LR pixels whose ``s x s`` HR block has any positive weight (``hr_weight``: ``[H, W]``)."""
    low = F.max_pool2d(hr_weight[None, None], scale, stride=scale)[0, 0]
    return (low > 0).cpu().numpy()


def batch_pixels(images):
    """Most crop pixels per expert call on the device of ``images`` (0: no limit)."""
    return CPU_BATCH_PIXELS if images.device.type == 'cpu' else 0


def receptive_radius(net, scale, channels=3, size=41):
    """Receptive-field radius of ``net`` in LR pixels, measured by back-propagating from one output pixel.

    Returns ``size // 2`` or more when the field covers the whole probe (e.g. global pooling): then no
    finite crop margin makes sparse execution exact.
    """
    generator = torch.Generator().manual_seed(0)
    device = next(net.parameters()).device
    probe = torch.rand(1, channels, size, size, generator=generator).to(device).requires_grad_(True)
    with eval_mode(net), torch.enable_grad():
        out = net(probe)
        centre = size // 2
        out[..., centre * scale:(centre + 1) * scale, centre * scale:(centre + 1) * scale].sum().backward()
    rows, cols = np.nonzero(probe.grad.abs().sum((0, 1)).cpu().numpy() > 0)
    return int(max(np.abs(rows - centre).max(), np.abs(cols - centre).max()))
