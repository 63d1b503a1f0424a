"""The weights that ship with the package, `basicsr infer` without a model, and the script that ships them."""
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_cli
from moesr_arch.weights import DEFAULT_MODELS, SHIPPED

sys.path.insert(0, str(ROOT / 'scripts'))
import ship_weights  # noqa: E402

SHARED = ROOT.parent / 'shared'


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_every_shipped_model_loads_as_its_recipe_builds_it_and_has_a_card(name):
    from basicsr.archs import build_network

    from moesr_arch.inference import build_from_model_file
    model = SHIPPED[name]
    assert model.path.is_file(), f'{model.path}: a shipped model is missing from the package'
    assert model.path.stat().st_size < 4 * 1024 * 1024
    card = model.card.read_text()
    for needed in (model.recipe, 'CPU-minutes', 'iterations', '## Standard table', 'Set5'):
        assert needed in card, (name, needed)
    recipe = yaml.safe_load((ROOT / model.recipe).read_text())
    network, scale, found = build_from_model_file(model.path, model.scale)  # VDSR's weights serve any scale
    assert scale == recipe['scale'] == model.scale
    expected = build_network(recipe['network_g'])
    assert {k: v.shape for k, v in network.state_dict().items()} == \
           {k: v.shape for k, v in expected.state_dict().items()}
    assert type(network) is type(expected)


def test_infer_without_a_model_uses_the_shipped_seemore_and_says_so(tmp_path):
    import skimage.data
    photo = skimage.data.astronaut()[200:264, 180:260, ::-1]  # BGR for cv2
    cv2.imwrite(str(tmp_path / 'face.png'), photo)
    for scale in DEFAULT_MODELS:
        out = tmp_path / f'x{scale}'
        result = run_cli(['infer', '-i', 'face.png', '-o', out, '--scale', scale], tmp_path)
        assert f'model: the shipped SeemoRe-T x{scale}' in result.stderr
        assert cv2.imread(str(out / 'face.png')).shape == (64 * scale, 80 * scale, 3)
    result = run_cli(['infer', '-i', 'face.png', '--scale', 3], tmp_path, check=False)
    assert result.returncode == 2
    assert '--scale 3: the shipped models upscale x2 and x4' in result.stderr.strip().splitlines()[-1]
    # the default output folder
    run_cli(['infer', '-i', 'face.png'], tmp_path)
    assert (tmp_path / 'results' / 'infer' / 'face.png').is_file()


@pytest.mark.skipif(not (SHARED / 'benchmarks' / 'Set5').is_dir(),
                    reason='needs ../shared/benchmarks/Set5 (development data, not in the repository)')
def test_the_shipped_seemore_x2_keeps_its_gain_over_bicubic_on_set5():
    """The quality claim of the card, on Set5's five images (MATLAB-bicubic LR at 8 bits, PSNR-Y, border 2)."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils.matlab_functions import imresize

    from moesr_arch.inference import Upscaler, build_from_model_file
    network, scale, _ = build_from_model_file(SHIPPED['seemore_t_photos_x2'].path)
    upscaler = Upscaler(network, scale, 'cpu', 'fp32', tile=0)
    gains = []
    for path in sorted((SHARED / 'benchmarks' / 'Set5').glob('*.png')):
        hr = cv2.imread(str(path))
        hr = hr[:hr.shape[0] // 2 * 2, :hr.shape[1] // 2 * 2]
        lr = np.clip(np.round(imresize(hr.astype(np.float64) / 255, 0.5) * 255), 0, 255).astype(np.uint8)
        sr, _ = upscaler.upscale_array(lr, 255)
        bicubic = np.clip(np.round(imresize(lr.astype(np.float64) / 255, 2) * 255), 0, 255).astype(np.uint8)
        gains.append(calculate_psnr(sr, hr, 2, test_y_channel=True) -
                     calculate_psnr(bicubic, hr, 2, test_y_channel=True))
    # Its card: 35.36 dB against bicubic's 33.66 on Set5 (+1.70); the goal of 2.5 dB was not reached in 38
    # CPU-minutes (README, Shipped models). A model that broke in shipping would fall near bicubic.
    assert np.mean(gains) > 1.5, gains


def fake_run(folder, scale=2, iters=4):
    """A finished run folder as BasicSR leaves it: weights, its option copy and a log."""
    from basicsr.archs import build_network

    import moesr_arch  # noqa: F401
    options = yaml.safe_load((ROOT / 'options/train_seemore_photos_x2.yml').read_text())
    options['train']['total_iter'] = iters
    (folder / 'models').mkdir(parents=True)
    torch.manual_seed(0)
    params = build_network(dict(options['network_g'])).state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in params.items()}
    torch.save({'params': params, 'params_ema': ema}, folder / 'models' / f'net_g_{iters}.pth')
    torch.save({'params': params}, folder / 'models' / 'net_g_2.pth')
    (folder / 'train_seemore_photos_x2.yml').write_text(yaml.safe_dump(options))
    (folder / 'train_run_1.log').write_text(
        '2026-12-04 10:00:00,001 INFO: start\n2026-12-04 10:30:00,001 INFO: Validation Set5\n'
        '\t # psnr: 36.1234\tBest: 36.1234 @ 4 iter\n\t # ssim: 0.9512\tBest: 0.9512 @ 4 iter\n'
        '2026-12-04 10:42:00,500 INFO: End of training.\n')
    return ema


def test_ship_weights_writes_the_ema_weights_and_a_card_once(tmp_path):
    from safetensors.torch import load_file
    ema = fake_run(tmp_path / 'run')
    table = tmp_path / 'table.md'
    table.write_text('| set | x2 |\n|---|---|\n| Set5 | 36.12 |\n')
    out = tmp_path / 'weights'
    written = ship_weights.ship('seemore_t_photos_x2', tmp_path / 'run', 41.5, table=table, folder=out)
    assert set(written.values()) == {'written'}
    shipped = load_file(out / 'seemore_t_photos_x2.safetensors')
    assert all(torch.equal(shipped[k], ema[k].float()) for k in ema)
    card = (out / 'seemore_t_photos_x2.md').read_text()
    for needed in ('41.5 CPU-minutes', '4 of 4, seed 0', 'psnr 36.12, ssim 0.9512', '| Set5 | 36.12 |', '42 min',
                   '`params_ema`', 'options/train_seemore_photos_x2.yml'):
        assert needed in card, needed
    # the same run again changes nothing; other weights are refused without --replace
    assert set(ship_weights.ship('seemore_t_photos_x2', tmp_path / 'run', 41.5, table=table,
                                 folder=out).values()) == {'unchanged'}
    with pytest.raises(ship_weights.UserError, match='exists with other content; pass --replace'):
        ship_weights.ship('seemore_t_photos_x2', tmp_path / 'run', 41.5, table=table, half=True, folder=out)
    ship_weights.ship('seemore_t_photos_x2', tmp_path / 'run', 41.5, table=table, half=True, replace=True, folder=out)
    halved = load_file(out / 'seemore_t_photos_x2.safetensors')
    assert {t.dtype for t in halved.values() if t.is_floating_point()} == {torch.float16}
    assert 'stored as float16' in (out / 'seemore_t_photos_x2.md').read_text()


def test_ship_weights_refuses_a_run_without_weights(tmp_path):
    (tmp_path / 'run' / 'models').mkdir(parents=True)
    assert ship_weights.main(['seemore_t_photos_x2', '--run', str(tmp_path / 'run'), '--cpu-minutes', '1']) == 2


def test_option_files_name_shipped_weights_by_name(tmp_path):
    """``shipped:<name>`` in a path key resolves to the package's file from any folder; a wrong name is one line."""
    from moesr_arch.options import OptionError, resolve_derived_options, validate_options
    from moesr_arch.weights import resolve_shipped
    assert resolve_shipped('shipped:seemore_t_photos_x2') == str(SHIPPED['seemore_t_photos_x2'].path)
    assert resolve_shipped('experiments/x/net_g_4.pth') == 'experiments/x/net_g_4.pth'
    opt = yaml.safe_load((ROOT / 'options/train_moesr.yml').read_text())
    assert opt['path']['pretrain_network_experts'] == 'shipped:moesr_generalist_photos_x2'
    opt['path']['pretrain_network_experts'] = 'shipped:moesr_generalist_x3'
    with pytest.raises(OptionError, match=r'path\.pretrain_network_experts: no shipped model moesr_generalist_x3; '
                                          r'shipped: seemore_t_photos_x2, '):
        validate_options(opt, 'train.yml', check_paths=False)
    resolved = resolve_derived_options({'path': dict(opt['path'], pretrain_network_experts='shipped:'
                                                     'moesr_generalist_photos_x2')}, 'train.yml')['path']
    assert resolved['pretrain_network_experts'] == resolved['pretrain_network_ref'] == \
        str(SHIPPED['moesr_generalist_photos_x2'].path)
