"""scripts/metrics/calculate_psnr_ssim.py gives BasicSR's own PSNR/SSIM numbers."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_psnr, calculate_ssim

from conftest import ROOT, cli_env, run_cli, tiny_test_setup
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


def test_the_script_gives_basicsr_tests_numbers_on_grey_and_colour_images(tmp_path):
    """The script on `basicsr test`'s own output equals its metrics_<set>.json: a grey GT against the 3-channel
    output is measured as three equal channels, as the test pipeline measures it (not as one grey plane, whose
    Y-PSNR would be 1.3 dB lower)."""
    rng = np.random.RandomState(1)
    colour = (cv2.resize(rng.rand(8, 10, 3), (40, 32), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).round()
    tiny_test_setup(tmp_path, {'colour': colour.astype(np.uint8), 'grey': colour[:, :, 1].astype(np.uint8)},
                    name='grey_and_colour')
    run_cli(['test', '-opt', 'test.yml'], tmp_path)
    results = tmp_path / 'results' / 'grey_and_colour'
    reported = json.loads((results / 'metrics_pair.json').read_text())
    rows = psnr_ssim.evaluate(tmp_path / 'HR', results / 'visualization' / 'pair', crop_border=2, test_y_channel=True,
                              suffix='_sr')
    assert [name for name, _, _ in rows] == ['colour.png', 'grey.png']
    assert np.mean([psnr for _, psnr, _ in rows]) == pytest.approx(reported['psnr'], abs=1e-9)
    assert np.mean([ssim for _, _, ssim in rows]) == pytest.approx(reported['ssim'], abs=1e-9)
    # `basicsr infer` keeps a grey image grey: a 1-channel output scores as its three equal channels do.
    sr_grey = cv2.imread(str(results / 'visualization' / 'pair' / 'grey_sr.png'), cv2.IMREAD_GRAYSCALE)
    scores = []
    for folder, image in (('one_channel', sr_grey), ('three_channels', np.dstack([sr_grey] * 3))):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / 'grey.png'), image)
        scores.append(psnr_ssim.evaluate(tmp_path / 'HR' / 'grey.png', tmp_path / folder / 'grey.png', 2, True))
    assert scores[0] == scores[1]
