"""The demo recipes validate on the held-out photos with colour bias, and scripts/heldout_table.py tables them."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]

# recipe -> the scales it is for (its held-out validation sets)
DEMO_RECIPES = {'edsr_demo': [2], 'vdsr_demo': [2], 'seemore_demo': [2], 'moeisr_demo': [2, 3, 4]}


def load_table_script():
    spec = importlib.util.spec_from_file_location('heldout_table', ROOT / 'scripts' / 'heldout_table.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validation_sets(opt):
    return {key: dataset for key, dataset in opt['datasets'].items() if not key.startswith('train')}


@pytest.mark.parametrize('recipe', sorted(DEMO_RECIPES))
def test_demo_recipe_validates_on_the_heldout_photos_with_colour_bias(recipe):
    from moesr_arch.options import load_options, validate_options
    source = ROOT / 'options' / f'train_{recipe}.yml'
    opt = load_options(source)
    validate_options(opt, str(source), is_train=True, check_paths=False)
    sets = validation_sets(opt)
    first = next(iter(sets.values()))  # val: (MoEISR: val_x2) stays on demo_val
    assert first['dataroot_gt'] == 'datasets/demo/val/HR' and first['name'].startswith('demo_val')
    heldout = {dataset['name']: dataset for dataset in sets.values() if dataset['dataroot_gt'].startswith('datasets/demo/heldout')}
    scales = DEMO_RECIPES[recipe]
    if len(scales) == 1:
        assert list(heldout) == ['demo_heldout']
        assert heldout['demo_heldout']['dataroot_lq'] == f'datasets/demo/heldout/LR_bicubic/X{scales[0]}'
        assert opt['scale'] == scales[0]
    else:
        assert sorted(heldout) == [f'demo_heldout_x{s}' for s in scales]
        for s in scales:
            assert heldout[f'demo_heldout_x{s}']['scale'] == s
            assert heldout[f'demo_heldout_x{s}']['dataroot_lq'] == f'datasets/demo/heldout/LR_bicubic/X{s}'
    metrics = opt['val']['metrics']
    types = {m['type']: m for m in metrics.values()}
    assert types['calculate_psnr']['test_y_channel'] and types['calculate_ssim']['test_y_channel']
    bias = types['calculate_color_bias']
    assert bias['better'] == 'lower' and bias['crop_border'] == max(scales)


def test_the_bicubic_residual_recipes_start_at_bicubic():
    from moesr_arch.options import load_options
    for recipe in ('edsr_demo', 'seemore_demo'):
        net = load_options(ROOT / 'options' / f'train_{recipe}.yml')['network_g']
        assert net['type'] == 'BicubicResidual' and net['upscale'] == 2
        inner = net['network']
        assert inner.get('scale', inner.get('upscale')) == 2
        if inner['type'] == 'EDSR':  # a pure residual: no mean shift added back
            assert inner['img_range'] == 1 and inner['rgb_mean'] == [0, 0, 0]


@pytest.fixture(scope='module')
def tiny_heldout(tmp_path_factory):
    """A held-out folder of 3 small photos-like images, LR made MATLAB-style as make_demo_dataset.py does, and
    an untrained BicubicResidual (gain 0, PyTorch's bicubic) with its option file and weights."""
    from basicsr.archs import build_network
    from basicsr.utils.matlab_functions import imresize
    root = tmp_path_factory.mktemp('tiny')
    rng = np.random.default_rng(0)
    for d in ('HR', 'LR_bicubic/X2'):
        (root / 'heldout' / d).mkdir(parents=True)
    for i in range(3):
        base = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (32, 24), interpolation=cv2.INTER_CUBIC)
        hr = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).round().astype(np.uint8)
        lr = np.clip(np.round(imresize(hr.astype(np.float32) / 255., 0.5) * 255.), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / 'heldout' / 'HR' / f'p{i}.png'), hr)
        cv2.imwrite(str(root / 'heldout' / 'LR_bicubic' / 'X2' / f'p{i}.png'), lr)
    # PyTorch's kernel for the base, so that the model's column differs from the (MATLAB) bicubic one.
    network_g = {'type': 'BicubicResidual', 'upscale': 2, 'upsampler': 'torch',
                 'network': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1,
                             'upscale': 2, 'img_range': 1., 'rgb_mean': [0., 0., 0.]}}
    torch.manual_seed(0)
    net = build_network(dict(network_g))
    torch.save({'params': net.state_dict()}, root / 'net.pth')
    (root / 'tiny.yml').write_text(yaml.safe_dump({'name': 'tiny', 'scale': 2, 'network_g': network_g}))
    return root


def test_heldout_table_of_an_untrained_bicubic_residual(tiny_heldout):
    table = load_table_script()
    lines = []
    rows = table.table([f'{tiny_heldout / "tiny.yml"}:{tiny_heldout / "net.pth"}'], tiny_heldout / 'heldout',
                       out=lines.append)
    lines = '\n'.join(lines).splitlines()
    assert lines[0].startswith('| model | scale | PSNR-Y') and len(lines) == 3
    [row] = rows
    assert row['model'] == 'tiny' and row['scale'] == 2 and row['photos'] == 3
    # gain 0: the model is bicubic itself (PyTorch's kernel), so its PSNR is that of bicubic done here ...
    from basicsr.metrics.psnr_ssim import calculate_psnr
    from basicsr.utils.matlab_functions import imresize
    psnrs, matlab = [], []
    for name in sorted(p.name for p in (tiny_heldout / 'heldout' / 'HR').iterdir()):
        hr = cv2.imread(str(tiny_heldout / 'heldout' / 'HR' / name))
        lr = cv2.imread(str(tiny_heldout / 'heldout' / 'LR_bicubic' / 'X2' / name))
        lq = torch.from_numpy(lr[:, :, ::-1].astype(np.float32) / 255.).permute(2, 0, 1)[None]
        sr = F.interpolate(lq, scale_factor=2, mode='bicubic', align_corners=False)[0].permute(1, 2, 0).numpy()
        sr = np.round(np.clip(sr, 0, 1) * 255.)[:, :, ::-1]
        psnrs.append(calculate_psnr(sr, hr, 2, test_y_channel=True))
        bicubic = np.clip(np.round(imresize(lr.astype(np.float32) / 255., 2) * 255.), 0, 255)
        matlab.append(calculate_psnr(bicubic, hr, 2, test_y_channel=True))
    assert row['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-9)
    # ... and the column beside it is MATLAB-style bicubic (a = -0.5 where PyTorch's kernel has -0.75).
    assert row['bicubic_psnr'] == pytest.approx(np.mean(matlab), abs=1e-9)
    assert row['bias_max'] < 1 and row['bicubic_bias_max'] < 1
    assert f'{row["psnr"]:.2f} / {row["bicubic_psnr"]:.2f}' in lines[2]


def test_heldout_table_command_line(tiny_heldout):
    script = ROOT / 'scripts' / 'heldout_table.py'
    done = subprocess.run([sys.executable, str(script), str(tiny_heldout / 'tiny.yml') + ':' + str(tiny_heldout / 'net.pth'),
                           '--heldout', str(tiny_heldout / 'heldout')], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '| tiny | x2 |' in done.stdout
    table = load_table_script()
    with pytest.raises(table.TableError, match='no trained weights'):
        table.table([f'{tiny_heldout / "tiny.yml"}:{tiny_heldout / "none.pth"}'], tiny_heldout / 'heldout', out=print)
    with pytest.raises(table.TableError, match='not a recipe name'):
        table.table(['no_such_recipe'], tiny_heldout / 'heldout', out=print)


@pytest.mark.parametrize('recipe', sorted(r for r in DEMO_RECIPES if (ROOT / 'options' / f'test_{r}.yml').is_file()))
def test_demo_test_files_match_their_recipe_and_test_on_the_heldout_photos(recipe):
    from moesr_arch.options import load_options, validate_options
    source = ROOT / 'options' / f'test_{recipe}.yml'
    opt = load_options(source)
    validate_options(opt, str(source), is_train=False, check_paths=False)
    train = load_options(ROOT / 'options' / f'train_{recipe}.yml')
    assert opt['network_g'] == train['network_g'] or opt['network_g']['type'] == 'MoEISR'
    assert opt['name'] == train['name']
    names = [dataset['name'] for dataset in opt['datasets'].values()]
    assert 'demo_heldout' in names
    assert 'calculate_color_bias' in {m['type'] for m in opt['val']['metrics'].values()}


def test_moesr_control_file_tests_the_main_jobs_equal_budget_network():
    from moesr_arch.options import load_options, validate_options
    source = ROOT / 'options' / 'test_moesr_control.yml'
    opt = load_options(source)
    validate_options(opt, str(source), is_train=False, check_paths=False)
    train = load_options(ROOT / 'options' / 'train_moesr.yml')
    assert opt['network_g'] == train['network_ref']
    assert opt['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_ref_latest.pth'
    assert opt['path']['param_key_g'] == 'params_ema'  # what the main job's validation shows beside the blend
