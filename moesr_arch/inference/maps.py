"""Maps drawn beside SR outputs: MoE-SR's gate overlay and MoEISR's expert map, with one palette and legend.

Both are uint8 RGB pictures (cv2 drawing, no fonts needed): small images are enlarged by an integer factor
(nearest) until the shorter side reaches ``min_size`` so the legend stays readable, and the legend sits in
the top-left corner on a darkened panel.
"""
import cv2
import numpy as np
import torch

from moesr_arch.utils.image_io import to_uint8

# RGB colours by category or expert index (cycled for more); the background is left uncoloured.
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


def category_colour(index):
    return PALETTE[index % len(PALETTE)]


def enlarge(image, min_size, planes=None):
    """``(image, planes, factor)``: ``image`` (h, w[, C]) and the ``planes`` (N, h, w) enlarged by the smallest
    integer factor that brings the shorter side to ``min_size`` (nearest)."""
    factor = max(1, int(np.ceil(min_size / max(1, min(image.shape[:2])))))
    if factor > 1:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        if planes is not None:
            planes = np.stack([cv2.resize(p, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
                               for p in planes])
    return np.ascontiguousarray(image), planes, factor


def draw_legend(image, rows):
    """Colour swatches and texts, ``rows`` = ``[(rgb colour, text)]``, in the top-left corner (in place)."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    line = 18
    width = max(cv2.getTextSize(text, font, scale, thick)[0][0] for _, text in rows) + 30
    height = line * len(rows) + 6
    panel = image[:height, :width].astype(np.float32)
    image[:height, :width] = (panel * 0.4).astype(np.uint8)  # darken behind the text
    for row, (colour, text) in enumerate(rows):
        y = 4 + row * line
        cv2.rectangle(image, (4, y + 2), (16, y + 14), tuple(int(c) for c in colour), -1)
        cv2.putText(image, text, (22, y + 13), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image


def draw_overlay(lq_rgb_uint8, weights, categories=None, alpha=0.55, min_size=256):
    """An image (the LR image, or the SR output) tinted by gate weights of its size, region outlines and a
    legend; returns uint8 RGB.

    Args:
        lq_rgb_uint8 (ndarray): ``[h, w, 3]`` uint8 RGB image.
        weights (Tensor | ndarray): ``[K + 1, h, w]`` gate weights (background last).
        categories (list[str] | None): names for the legend (default ``category 0`` ...).
        alpha (float): opacity of a fully weighted category colour.
        min_size (int): small images are enlarged (see the module docstring).
    """
    # OpenCV draws only into C-contiguous arrays; a transposed tensor's numpy view is not one.
    image = np.ascontiguousarray(lq_rgb_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'draw_overlay: expected an [h, w, 3] uint8 image, got {image.shape} {image.dtype}')
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 3 or weights.shape[1:] != image.shape[:2]:
        raise ValueError(f'draw_overlay: weights {list(weights.shape)} do not match the image {list(image.shape)}')
    k = weights.shape[0] - 1
    names = list(categories) if categories is not None else [f'category {i}' for i in range(k)]
    image, weights, factor = enlarge(image, min_size, weights)
    colours = np.array([category_colour(i) for i in range(k)], dtype=np.float32).reshape(k, 1, 1, 3)
    tint = (weights[:k, :, :, None] * colours).sum(axis=0)
    cover = np.clip(weights[:k].sum(axis=0), 0, 1)[:, :, None] * alpha
    out = image.astype(np.float32) * (1 - cover) + tint * alpha
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    winner = weights.argmax(axis=0)
    for i in range(k):
        mask = (winner == i).astype(np.uint8)
        if mask.any():
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, category_colour(i), 1 + factor // 4)
    share = weights.reshape(weights.shape[0], -1).mean(axis=1)
    rows = [(category_colour(i), f'{name} {100 * share[i]:.0f}%') for i, name in enumerate(names)]
    rows.append(((255, 255, 255), f'background {100 * share[-1]:.0f}%'))
    return draw_legend(out, rows)


def gate_overlay(image, weights, categories):
    """:func:`draw_overlay` of one image tensor ``image`` (3, h, w) RGB in [0, 1] (the LR image or the SR output)
    and gate weights of its size."""
    return draw_overlay(to_uint8(image), weights, categories)


def depth_names(expert_depths):
    """Legend names of MoEISR's decoder experts: their hidden layers."""
    return tuple(f'{d} hidden layer{"s" if d != 1 else ""}' for d in expert_depths)


def expert_map_image(expert_map, labels, min_size=256):
    """An RGB uint8 picture of ``expert_map`` (H, W expert indices) with a legend: ``labels[i]`` describes
    expert ``i``."""
    expert_map = np.asarray(expert_map)
    colours = np.array([category_colour(i) for i in range(len(labels))], dtype=np.uint8)
    picture, _, _ = enlarge(colours[expert_map], min_size)
    return draw_legend(picture, [(colour, f'E{i}: {label}') for i, (colour, label) in enumerate(zip(colours, labels))])


def expert_map_picture(expert_map, names):
    """:func:`expert_map_image` of ``expert_map`` labelled by the experts' ``names`` and their share of the pixels."""
    expert_map = np.asarray(expert_map)
    shares = np.bincount(expert_map.ravel(), minlength=len(names)) / max(expert_map.size, 1)
    return expert_map_image(expert_map, [f'{name}, {share:.1%} of pixels' for name, share in zip(names, shares)])
