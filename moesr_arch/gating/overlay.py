"""Gate overlays: the LR image with coloured category regions and a legend (cv2 only, no fonts needed)."""
import cv2
import numpy as np
import torch

# RGB colours by category id (cycled for more categories); background is left uncoloured.
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)]


def category_colour(index):
    return PALETTE[index % len(PALETTE)]


def draw_overlay(lq_rgb_uint8, weights, categories=None, alpha=0.55, min_size=256):
    """The LR image tinted by the gate weights, region outlines and a legend; returns uint8 RGB.

    Args:
        lq_rgb_uint8 (ndarray): ``[h, w, 3]`` uint8 RGB LR image.
        weights (Tensor | ndarray): ``[K + 1, h, w]`` gate weights (background last).
        categories (list[str] | None): names for the legend (default ``category 0`` ...).
        alpha (float): opacity of a fully weighted category colour.
        min_size (int): small images are enlarged (nearest, integer factor) until the shorter side reaches
            this, so the legend stays readable.
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
    factor = max(1, int(np.ceil(min_size / max(1, min(image.shape[:2])))))
    if factor > 1:
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        weights = np.stack([cv2.resize(w, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
                            for w in weights])
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
    return draw_legend(out, names, weights)


def draw_legend(image, names, weights):
    """Colour swatches and names (with the share of the image each category covers) in the top-left corner."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    share = weights.reshape(weights.shape[0], -1).mean(axis=1)
    rows = [(category_colour(i), f'{name} {100 * share[i]:.0f}%') for i, name in enumerate(names)]
    rows.append(((255, 255, 255), f'background {100 * share[-1]:.0f}%'))
    line = 18
    width = max(cv2.getTextSize(text, font, scale, thick)[0][0] for _, text in rows) + 30
    height = line * len(rows) + 6
    panel = image[:height, :width].astype(np.float32)
    image[:height, :width] = (panel * 0.4).astype(np.uint8)  # darken behind the text
    for row, (colour, text) in enumerate(rows):
        y = 4 + row * line
        cv2.rectangle(image, (4, y + 2), (16, y + 14), colour, -1)
        cv2.putText(image, text, (22, y + 13), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
