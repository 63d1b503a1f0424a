"""PSNR and SSIM of restored images against ground truth, with BasicSR's own metric functions.

GT and restored images are paired by name: ``<restored>/<gt stem><suffix><ext>`` (the GT extension, else
``.png``), as in BasicSR's ``scripts/metrics/calculate_psnr_ssim.py``. Both may also be single files.
Values are ``basicsr.metrics.calculate_psnr`` / ``calculate_ssim`` on 8-bit BGR pixels (16-bit images are
brought to the 0-255 range), so they match BasicSR's validation numbers.
"""
from pathlib import Path

import numpy as np

from moesr_arch.tools.common import get_tool_logger, standalone
from moesr_arch.utils.image_io import list_images, read_raw


def to_255(image):
    image = image.astype(np.float64)
    return image / 257. if image.max() > 255 else image


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
        img_gt, img_sr = to_255(read_raw(gt_path)), to_255(read_raw(sr_path))
        if img_gt.shape != img_sr.shape:
            raise ValueError(f'{sr_path} is {img_sr.shape} but {gt_path} is {img_gt.shape}')
        if img_gt.ndim == 3 and img_gt.shape[2] == 4:  # alpha is not part of the metrics
            img_gt, img_sr = img_gt[:, :, :3], img_sr[:, :, :3]
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
