"""PSNR and SSIM of restored images against ground truth, with BasicSR's own metric functions.

GT and restored images are paired by name: ``<restored>/<gt stem><suffix><ext>`` (the GT extension, else
``.png``), as in BasicSR's ``scripts/metrics/calculate_psnr_ssim.py``. Both may also be single files.
Values are ``basicsr.metrics.calculate_psnr`` / ``calculate_ssim`` on the pixels ``basicsr test`` measures
(:func:`compared_pixels`), so they equal its ``metrics_<set>.json``: a grey image counts as three equal
channels (its Y is then ``16 + 0.859 * grey``, not the grey itself), so ``basicsr test``'s 3-channel output
pairs with a grey ground truth.
"""
from pathlib import Path

import numpy as np

from moesr_arch.tools.common import get_tool_logger, standalone
from moesr_arch.utils.image_io import list_images, read_image


def compared_pixels(path):
    """The 8-bit BGR pixels of the image file ``path`` as ``basicsr test`` compares them: read as the datasets
    read images (grey repeated to three channels, alpha dropped, 16-bit scaled to [0, 1]), then made 8-bit by
    BasicSR's ``tensor2img`` (rounded), as the validation loop does with the network's output and the GT."""
    from basicsr.utils import img2tensor, tensor2img
    return tensor2img(img2tensor(read_image(path), bgr2rgb=True, float32=True))


def pairs(gt, restored, suffix=''):
    gt, restored = Path(gt), Path(restored)
    if gt.is_file():
        return [(gt, restored)]
    result = []
    for path in list_images(gt):
        candidates = [restored / f'{path.stem}{suffix}{path.suffix}', restored / f'{path.stem}{suffix}.png']
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise FileNotFoundError(f'{path}: no restored image {candidates[0].name} in {restored}')
        result.append((path, match))
    return result


def evaluate(gt, restored, crop_border=0, test_y_channel=False, suffix=''):
    """``[(name, psnr, ssim)]`` for every pair."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    rows = []
    for gt_path, sr_path in pairs(gt, restored, suffix):
        img_gt, img_sr = compared_pixels(gt_path), compared_pixels(sr_path)
        if img_gt.shape != img_sr.shape:
            raise ValueError(f'{sr_path} is {img_sr.shape[1]}x{img_sr.shape[0]} but {gt_path} is '
                             f'{img_gt.shape[1]}x{img_gt.shape[0]}')
        kwargs = dict(crop_border=crop_border, input_order='HWC', test_y_channel=test_y_channel)
        rows.append((gt_path.name, calculate_psnr(img_gt, img_sr, **kwargs), calculate_ssim(img_gt, img_sr, **kwargs)))
    return rows


def add_arguments(parser):
    parser.add_argument('--gt', required=True, help='ground-truth image or folder')
    parser.add_argument('--restored', required=True, help='restored image or folder')
    parser.add_argument('--crop_border', type=int, default=0, help='pixels cut from each border (usually the scale)')
    parser.add_argument('--test_y_channel', action='store_true', help='measure on the Y channel (YCbCr)')
    parser.add_argument('--suffix', default='', help="restored name = GT stem + suffix (e.g. '_out')")


def main(args):
    logger = get_tool_logger()
    try:
        rows = evaluate(args.gt, args.restored, args.crop_border, args.test_y_channel, args.suffix)
    except (FileNotFoundError, ValueError) as error:
        logger.error(str(error))
        return 1
    for name, psnr, ssim in rows:
        print(f'{name:30s} PSNR {psnr:8.4f} dB  SSIM {ssim:.6f}')
    channel = 'Y' if args.test_y_channel else 'RGB'
    print(f'Average over {len(rows)} image(s) ({channel}, crop_border {args.crop_border}): '
          f'PSNR {np.mean([r[1] for r in rows]):.4f} dB  SSIM {np.mean([r[2] for r in rows]):.6f}')
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
