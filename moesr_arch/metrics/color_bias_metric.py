import numpy as np
from basicsr.metrics.metric_util import reorder_image
from basicsr.utils.registry import METRIC_REGISTRY


@METRIC_REGISTRY.register()
def calculate_color_bias(img, img2, crop_border=0, input_order='HWC', **kwargs):
    """Colour bias: the largest absolute mean difference of one colour channel, in grey levels (0-255).

    A model that tints its output (a constant offset per channel, e.g. a green-yellow cast) shows it here
    even where PSNR barely moves; a faithful one stays well within 1 grey level. Use it with
    ``better: lower`` in ``val.metrics``.

    Its option-file keys (``val.metrics.<name>``): docs/options.md#calculate_color_bias.

    Args:
        img (ndarray): Image with range [0, 255] (the output).
        img2 (ndarray): Image with range [0, 255] (the ground truth).
        crop_border (int): Pixels cropped from each edge before the comparison. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
    """
    if img.shape != img2.shape:
        raise ValueError(f'calculate_color_bias: image shapes differ: {img.shape}, {img2.shape}')
    img = reorder_image(img, input_order=input_order).astype(np.float64)
    img2 = reorder_image(img2, input_order=input_order).astype(np.float64)
    if crop_border:
        img, img2 = img[crop_border:-crop_border, crop_border:-crop_border], img2[crop_border:-crop_border,
                                                                                  crop_border:-crop_border]
    difference = (img - img2).reshape(-1, img.shape[-1] if img.ndim == 3 else 1).mean(axis=0)
    return float(np.abs(difference).max())
