"""scripts/metrics/calculate_psnr_ssim.py gives BasicSR's own PSNR/SSIM numbers."""
import subprocess
import sys

import cv2
import numpy as np
from basicsr.metrics import calculate_psnr, calculate_ssim

from conftest import ROOT, cli_env
from moesr_arch.tools import psnr_ssim


def test_values_equal_basicsr_metrics_on_the_same_pair(tmp_path):
    rng = np.random.RandomState(0)
    gt = cv2.resize(rng.rand(6, 8, 3), (40, 30), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    gt = (gt * 255).round().astype(np.uint8)
    restored = np.clip(gt.astype(int) + rng.randint(-6, 7, gt.shape), 0, 255).astype(np.uint8)
    (tmp_path / 'gt').mkdir()
    (tmp_path / 'sr').mkdir()
    cv2.imwrite(str(tmp_path / 'gt' / 'pic.png'), gt)
    cv2.imwrite(str(tmp_path / 'sr' / 'pic_out.png'), restored)
    for y_channel in (False, True):
        rows = psnr_ssim.evaluate(tmp_path / 'gt', tmp_path / 'sr', crop_border=3, test_y_channel=y_channel,
                                  suffix='_out')
        kwargs = dict(crop_border=3, input_order='HWC', test_y_channel=y_channel)
        assert rows == [('pic.png', calculate_psnr(gt, restored, **kwargs), calculate_ssim(gt, restored, **kwargs))]
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'metrics' / 'calculate_psnr_ssim.py'), '--gt',
                           'gt', '--restored', 'sr', '--suffix', '_out', '--crop_border', '3', '--test_y_channel'],
                          cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, check=True)
    psnr = calculate_psnr(gt, restored, crop_border=3, test_y_channel=True)
    assert f'PSNR {psnr:.4f} dB' in proc.stdout
    assert psnr_ssim.cli(['--gt', str(tmp_path / 'gt'), '--restored', str(tmp_path / 'sr')]) == 1  # no suffix


def test_color_bias_is_the_largest_mean_channel_offset_in_grey_levels():
    import numpy as np
    from basicsr.metrics import calculate_metric
    rng = np.random.default_rng(0)
    gt = rng.integers(20, 230, (32, 40, 3)).astype(np.uint8)
    noisy = np.clip(gt + rng.normal(0, 6, gt.shape).round(), 0, 255).astype(np.uint8)
    tinted = gt.astype(np.int16)
    tinted[..., 1] += 4  # a green cast of 4 grey levels
    tinted[..., 2] -= 1
    opt = {'type': 'calculate_color_bias', 'crop_border': 2}
    assert calculate_metric({'img': tinted.astype(np.uint8), 'img2': gt}, opt) == 4.0
    assert calculate_metric({'img': noisy, 'img2': gt}, opt) < 0.3  # zero-mean noise is no tint
