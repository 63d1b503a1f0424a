"""PSNR and SSIM inside a region of an image, computed exactly as BasicSR's metrics on the whole image, and the
regions of a category map.

``masked_psnr`` / ``masked_ssim`` take the same arguments as ``basicsr.metrics.calculate_psnr`` /
``calculate_ssim`` (HWC images in [0, 255], ``crop_border``, ``test_y_channel``) plus a boolean HR mask;
with an all-true mask they return BasicSR's values. The SSIM map is BasicSR's (11x11 Gaussian window,
valid part only), averaged over the masked pixels.
"""
from collections import OrderedDict

import cv2
import numpy as np
from basicsr.metrics.metric_util import to_y_channel

BACKGROUND = 'background'


def region_masks(category_map, categories, scale):
    """HR masks of each category's labelled pixels and of the unlabelled rest (``background``), for the regions
    present. ``category_map``: ``[h, w]`` LR ids (``len(categories)`` where unlabelled)."""
    hr = np.kron(category_map, np.ones((scale, scale), dtype=category_map.dtype))
    masks = OrderedDict((name, hr == index) for index, name in enumerate(categories))
    masks[BACKGROUND] = hr == len(categories)
    return OrderedDict((name, mask) for name, mask in masks.items() if mask.any())


def _prepare(img, img2, mask, crop_border, test_y_channel):
    if img.shape != img2.shape or img.shape[:2] != mask.shape:
        raise ValueError(f'masked metric: shapes differ: {img.shape}, {img2.shape}, mask {mask.shape}')
    if crop_border:
        img, img2 = img[crop_border:-crop_border, crop_border:-crop_border], img2[crop_border:-crop_border,
                                                                                  crop_border:-crop_border]
        mask = mask[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    if img.ndim == 2:
        img, img2 = img[..., None], img2[..., None]
    return img.astype(np.float64), img2.astype(np.float64), mask


def masked_psnr(img, img2, mask, crop_border=0, test_y_channel=False):
    """PSNR (dB) over the pixels where ``mask`` is true; NaN when the mask is empty after the border crop."""
    img, img2, mask = _prepare(img, img2, mask, crop_border, test_y_channel)
    if not mask.any():
        return float('nan')
    mse = np.mean((img[mask] - img2[mask])**2)
    return float('inf') if mse == 0 else float(10. * np.log10(255. * 255. / mse))


def ssim_map(img, img2):
    """BasicSR's SSIM map of one channel (valid part of the 11x11 window: 5 pixels smaller each side)."""
    c1, c2 = (0.01 * 255)**2, (0.03 * 255)**2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    sigma1 = cv2.filter2D(img**2, -1, window)[5:-5, 5:-5] - mu1**2
    sigma2 = cv2.filter2D(img2**2, -1, window)[5:-5, 5:-5] - mu2**2
    sigma12 = cv2.filter2D(img * img2, -1, window)[5:-5, 5:-5] - mu1 * mu2
    return ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1 + sigma2 + c2))


def masked_ssim(img, img2, mask, crop_border=0, test_y_channel=False):
    """Mean SSIM over the pixels where ``mask`` is true; NaN when none is left after the crops."""
    img, img2, mask = _prepare(img, img2, mask, crop_border, test_y_channel)
    mask = mask[5:-5, 5:-5]
    if not mask.any():
        return float('nan')
    return float(np.mean([ssim_map(img[..., c], img2[..., c])[mask].mean() for c in range(img.shape[2])]))
