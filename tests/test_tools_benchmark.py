"""`basicsr prepare benchmark` and `basicsr benchmark`: the standard-set layout, the paper-style table, and the
scale check that `basicsr test` shares with `infer`."""
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr
from basicsr.utils.matlab_functions import imresize

from conftest import ROOT, checked_dataset, run_cli
from moesr_arch.cli import main as cli_main
from moesr_arch.inference import InferenceError, build_from_options
from moesr_arch.tools import published
from moesr_arch.tools.prepare.benchmark import prepare_benchmark

SHARED = ROOT.parent / 'shared'
TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
TINY_VDSR = {'type': 'VDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_layer': 3, 'upscale': 2}


def smooth(h, w, seed=0, channels=3):
    small = np.random.RandomState(seed).rand(max(h // 6, 2), max(w // 6, 2), channels)
    image = (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).round().astype(np.uint8)
    return image  # cv2.resize drops a single channel: grey comes back 2-D


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def tiny_options(folder, network, scale=2, name='tiny', **top):
    """An option file with saved random weights of ``network``."""
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(network)).state_dict()}, folder / f'{name}.pth')
    opt = {'name': name, 'model_type': 'SingleNetworkSRModel', 'scale': scale, 'num_gpu': 0, 'network_g': network,
           'path': {'pretrain_network_g': str(folder / f'{name}.pth')}, **top}
    (folder / f'{name}.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return folder / f'{name}.yml'


def y_psnr(hr, sr, scale):
    three = [np.repeat(x[:, :, None], 3, 2) if x.ndim == 2 else x for x in (hr, sr)]
    return calculate_psnr(*[x.astype(np.float64) for x in three], crop_border=scale, test_y_channel=True)


def matlab_8bit(image, factor):
    return np.clip(np.round(imresize(image / 255., factor) * 255), 0, 255).astype(np.uint8)


def test_prepare_benchmark_crops_to_12_names_like_basicsr_and_reuses_its_own_files(tmp_path):
    write(tmp_path / 'HR' / 'colour.png', smooth(50, 37))
    write(tmp_path / 'HR' / 'grey.bmp', smooth(30, 26, seed=1, channels=1))
    written, reused, errors = prepare_benchmark(tmp_path / 'HR', tmp_path / 'Set', scales=(2, 3, 4))
    assert (written, reused, errors) == (8, 0, [])
    hr = cv2.imread(str(tmp_path / 'Set' / 'HR' / 'colour.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(hr, smooth(50, 37)[:48, :36])  # bottom/right crop to a multiple of 12
    grey = cv2.imread(str(tmp_path / 'Set' / 'HR' / 'grey.png'), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (24, 24)  # grey stays grey
    for scale in (2, 3, 4):
        lr = cv2.imread(str(tmp_path / 'Set' / 'LR_bicubic' / f'X{scale}' / f'colourx{scale}.png'))
        np.testing.assert_array_equal(lr, matlab_8bit(hr, 1 / scale))
        grey_lr = cv2.imread(str(tmp_path / 'Set' / 'LR_bicubic' / f'X{scale}' / f'greyx{scale}.png'),
                             cv2.IMREAD_UNCHANGED)
        assert grey_lr.shape == (24 // scale, 24 // scale)
    # Again: every file is already there with the same pixels, so nothing is rewritten.
    stamp = (tmp_path / 'Set' / 'HR' / 'colour.png').stat().st_mtime_ns
    assert prepare_benchmark(tmp_path / 'HR', tmp_path / 'Set', scales=(2, 3, 4)) == (0, 8, [])
    assert (tmp_path / 'Set' / 'HR' / 'colour.png').stat().st_mtime_ns == stamp
    # A file it did not make (other pixels) is never replaced: that image fails, untouched; the others run.
    foreign = tmp_path / 'Set' / 'LR_bicubic' / 'X3' / 'colourx3.png'
    write(foreign, np.zeros((16, 12, 3), np.uint8))
    (tmp_path / 'Set' / 'LR_bicubic' / 'X2' / 'greyx2.png').unlink()
    written, reused, errors = prepare_benchmark(tmp_path / 'HR', tmp_path / 'Set', scales=(2, 3, 4))
    assert (written, reused) == (1, 3) and len(errors) == 1
    assert 'colourx3.png is already there with other pixels' in errors[0] and 'not replaced' in errors[0]
    assert not cv2.imread(str(foreign)).any()


def test_benchmark_table_json_and_bicubic_equal_a_direct_computation(tmp_path, capsys):
    for seed, name in enumerate(('a', 'b')):
        write(tmp_path / 'photos' / f'{name}.png', smooth(36, 48, seed=seed))
    prepare_benchmark(tmp_path / 'photos', tmp_path / 'bench' / 'Set5', scales=(2, 3))
    options = tiny_options(tmp_path, TINY_EDSR)
    argv = ['benchmark', '-opt', options, '--root', tmp_path / 'bench', '--output', tmp_path / 'out']
    assert cli_main([str(a) for a in argv]) == 0
    report = json.loads((tmp_path / 'out' / 'table.json').read_text())
    [result] = report['results']
    assert (result['set'], result['scale'], result['images']) == ('Set5', 2, 2)
    network, _, _ = build_from_options(str(options))
    bicubic, model = [], []
    for name in ('a', 'b'):
        hr = cv2.imread(str(tmp_path / 'bench' / 'Set5' / 'HR' / f'{name}.png'))
        lr = cv2.imread(str(tmp_path / 'bench' / 'Set5' / 'LR_bicubic' / 'X2' / f'{name}x2.png'))
        bicubic.append(y_psnr(hr, matlab_8bit(lr, 2), 2))
        with torch.no_grad():
            out = network(torch.from_numpy(lr[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float())
        sr = (out[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
        model.append(y_psnr(hr, sr, 2))
    assert result['bicubic_psnr'] == pytest.approx(np.mean(bicubic), abs=1e-9)
    assert result['psnr'] == pytest.approx(np.mean(model), abs=0.01)  # whole image, as here: only rounding differs
    assert [row['name'] for row in result['per_image']] == ['a.png', 'b.png']
    table = (tmp_path / 'out' / 'table.md').read_text()
    assert table in capsys.readouterr().out
    assert '| scale | method | Set5 (2 images) |' in table
    assert f'| x2 | bicubic | {np.mean(bicubic):.2f} / ' in table
    assert '| | bicubic, published [1] | 33.66 / 0.9299 |' in table  # the paper's Set5 bicubic, beside it
    assert f'|  | **tiny** (EDSR) | {result["psnr"]:.2f} / ' in table
    assert 'No published figures of this EDSR configuration' in table
    # A second run never replaces the table of the first, and stops before any image runs.
    before = (tmp_path / 'out' / 'table.json').read_bytes()
    assert cli_main([str(a) for a in argv]) == 2
    assert 'table.md is already there' in capsys.readouterr().err
    assert (tmp_path / 'out' / 'table.json').read_bytes() == before


def test_benchmark_scales_weights_that_serve_every_scale_and_refuses_others(tmp_path, capsys):
    write(tmp_path / 'photos' / 'a.png', smooth(36, 36))
    prepare_benchmark(tmp_path / 'photos', tmp_path / 'bench' / 'BSD68', scales=(2, 3))
    root = ['--root', tmp_path / 'bench']
    vdsr = tiny_options(tmp_path, TINY_VDSR, name='vdsr')
    argv = ['benchmark', '-opt', vdsr, '--scale', 2, 3, '--sets', 'BSD68', 'Urban100', '--output', tmp_path / 'v']
    assert cli_main([str(a) for a in argv + root]) == 0
    captured = capsys.readouterr()
    assert 'not under' in captured.err and 'Urban100' in captured.err and 'prepare benchmark' in captured.err
    report = json.loads((tmp_path / 'v' / 'table.json').read_text())
    assert [(r['set'], r['scale']) for r in report['results']] == [('BSD68', 2), ('BSD68', 3)]
    assert '| x3 | bicubic |' in captured.out and 'BSD68 (1 images, not B100)' in captured.out
    # Published B100 figures stand beside BSD68 only marked, with the note.
    assert '29.56 / 0.8431†' in captured.out and 'BSD68 holds 68 of them' in captured.out
    edsr = tiny_options(tmp_path, TINY_EDSR)
    argv = ['benchmark', '-opt', edsr, '--scale', 3, '--output', tmp_path / 'e']
    assert cli_main([str(a) for a in argv + root]) == 2
    assert 'EDSR upscales x2 and its weights do not fit a x3 network' in capsys.readouterr().err
    assert not (tmp_path / 'e').exists()
    (tmp_path / 'bench' / 'BSD68' / 'LR_bicubic' / 'X3' / 'ax3.png').unlink()  # every pair is found before any runs
    argv = ['benchmark', '-opt', vdsr, '--scale', 2, 3, '--output', tmp_path / 'm']
    assert cli_main([str(a) for a in argv + root]) == 2
    assert 'a.png: no LR ax3.png in' in capsys.readouterr().err and not (tmp_path / 'm').exists()


def test_benchmark_model_file_goes_through_the_detector_with_each_scale(tmp_path, monkeypatch, capsys):
    write(tmp_path / 'photos' / 'a.png', smooth(24, 24))
    prepare_benchmark(tmp_path / 'photos', tmp_path / 'bench' / 'Set14', scales=(2, 4))
    torch.manual_seed(0)
    state = build_network(dict(TINY_VDSR)).state_dict()
    asked = []

    def build_from_model_file(path, scale=None):  # the detector's interface (moesr_arch.inference.detect)
        asked.append(scale)
        network = build_network(dict(TINY_VDSR, upscale=scale or 2))
        network.load_state_dict(state)
        return network.eval(), scale or 2, f'VDSR from {Path(path).name}'

    monkeypatch.setitem(sys.modules, 'moesr_arch.inference.detect',
                        types.SimpleNamespace(build_from_model_file=build_from_model_file))
    argv = ['benchmark', '--model', tmp_path / 'vdsr.pth', '--scale', 2, 4, '--root', tmp_path / 'bench',
            '--output', tmp_path / 'out']
    assert cli_main([str(a) for a in argv]) == 0
    assert asked == [2, 4]
    report = json.loads((tmp_path / 'out' / 'table.json').read_text())
    assert report['description'] == 'VDSR from vdsr.pth' and report['model'] == 'vdsr'
    assert [r['scale'] for r in report['results']] == [2, 4]


def test_benchmark_runs_moesr_through_the_gated_pipeline(tmp_path):
    write(tmp_path / 'photos' / 'a.png', smooth(24, 36))
    prepare_benchmark(tmp_path / 'photos', tmp_path / 'bench' / 'Set5', scales=(2, ))
    experts = {name: dict(TINY_EDSR) for name in ('people', 'background')}
    options = tiny_options(tmp_path, {'type': 'MoESRNet', 'categories': ['people'], 'experts': experts}, name='moe')
    weights = torch.load(tmp_path / 'moe.pth')['params']
    torch.save({'params': {key[len('experts.background.'):]: value for key, value in weights.items()
                           if key.startswith('experts.background.')}}, tmp_path / 'bg.pth')
    alone = yaml.safe_load(options.read_text())
    alone.update(name='bg', network_g=TINY_EDSR, path={'pretrain_network_g': str(tmp_path / 'bg.pth')})
    (tmp_path / 'bg.yml').write_text(yaml.safe_dump(alone))
    psnr = {}
    for name in ('moe', 'bg'):
        argv = ['benchmark', '-opt', tmp_path / f'{name}.yml', '--root', tmp_path / 'bench',
                '--output', tmp_path / name]
        assert cli_main([str(a) for a in argv]) == 0
        report = json.loads((tmp_path / name / 'table.json').read_text())
        psnr[name] = report['results'][0]['psnr']
    assert report['arch'] == 'EDSR' and json.loads((tmp_path / 'moe' / 'table.json').read_text())['arch'] == 'MoESRNet'
    assert psnr['moe'] == psnr['bg']  # no gate in the options: the background expert answers everywhere, as in infer


def test_published_figures_match_the_networks_configuration():
    from basicsr.archs.edsr_arch import EDSR
    from moesr_arch.archs.seemore_arch import SeemoRe
    from moesr_arch.archs.vdsr_arch import VDSR
    assert published.published_model(SeemoRe(scale=2, variant='T')) == 'SeemoRe-T'
    assert published.published_model(SeemoRe(scale=2, variant='L')) == 'SeemoRe-L'
    assert published.published_model(SeemoRe(scale=2, variant='T', num_layers=4)) is None
    assert published.published_model(EDSR(3, 3, num_feat=64, num_block=16, upscale=2)) == 'EDSR-baseline'
    assert published.published_model(EDSR(3, 3, num_feat=256, num_block=32, upscale=2)) is None
    assert published.published_model(VDSR(num_feat=64, num_layer=20)) == 'VDSR'
    [row] = published.published_rows('SeemoRe-T', 4)
    assert row.figures['Urban100'] == (26.23, .7883) and 'seemoredetails' in row.source
    assert [r.label for r in published.published_rows('VDSR', 2)] == ['VDSR (paper)', 'VDSR (pytorch-vdsr weights)']
    assert all(row.source for row in published.PUBLISHED)


@pytest.mark.skipif(not (SHARED / 'benchmarks' / 'Set5').is_dir(),
                    reason='needs ../shared/benchmarks/Set5 (development data, not in the repository)')
def test_set5_bicubic_reproduces_the_measured_figures(tmp_path):
    """HR cropped to a multiple of 12, 8-bit MATLAB-bicubic LR: Set5 bicubic is 33.66 / 30.38 / 28.40 dB."""
    prepare_benchmark(SHARED / 'benchmarks' / 'Set5', tmp_path / 'bench' / 'Set5')
    options = tiny_options(tmp_path, TINY_VDSR)
    argv = ['benchmark', '-opt', options, '--scale', 2, 3, 4, '--root', tmp_path / 'bench', '--output', tmp_path / 'o']
    assert cli_main([str(a) for a in argv]) == 0
    report = json.loads((tmp_path / 'o' / 'table.json').read_text())
    assert [r['images'] for r in report['results']] == [5, 5, 5]
    bicubic = [r['bicubic_psnr'] for r in report['results']]
    assert bicubic == pytest.approx([33.66, 30.38, 28.40], abs=0.01)


def test_basicsr_test_refuses_a_scale_the_network_does_not_produce_before_any_image(tmp_path):
    for name in ('a', 'b'):
        hr = smooth(32, 32)
        write(tmp_path / 'HR' / f'{name}.png', hr)
        write(tmp_path / 'LR' / f'{name}.png', matlab_8bit(hr, 1 / 4))  # x4 pairs, a x2 network
    dataset = {'name': 'pairs', 'type': 'CheckedPairedImageDataset', 'dataroot_gt': str(tmp_path / 'HR'),
               'dataroot_lq': str(tmp_path / 'LR'), 'io_backend': {'type': 'disk'}}
    metrics = {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}
    options = tiny_options(tmp_path, TINY_EDSR, scale=4, datasets={'test_1': dataset},
                           val={'save_img': True, 'suffix': None, 'metrics': metrics})
    with pytest.raises(InferenceError) as infer_error:
        build_from_options(str(options))
    proc = run_cli(['test', '-opt', options], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f'basicsr test: error: {infer_error.value}'
    assert 'scale is 4 but network_g (EDSR) upscales x2; set scale: 2' in proc.stderr
    assert 'Traceback' not in proc.stderr
    results = tmp_path / 'results' / 'tiny'  # BasicSR makes its folders first; no image and no metric came
    assert not list(results.rglob('*.png')) and not list(results.glob('metrics_*.json'))


BENCHMARK_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')


def reads_benchmark(option_file):
    datasets = yaml.safe_load(option_file.read_text()).get('datasets', {})
    return {key: d for key, d in datasets.items() if str(d.get('dataroot_gt', '')).startswith('datasets/benchmark/')}


@pytest.mark.parametrize('option_file', sorted(p.name for p in (ROOT / 'options').glob('*.yml')
                                               if reads_benchmark(p)))
def test_shipped_option_files_read_the_layout_prepare_benchmark_writes(tmp_path, monkeypatch, option_file):
    from basicsr.data import build_dataset
    for number, name in enumerate(BENCHMARK_SETS):
        write(tmp_path / 'hr' / name / 'img.png', smooth(48, 36, seed=number))
        prepare_benchmark(tmp_path / 'hr' / name, tmp_path / 'datasets' / 'benchmark' / name, scales=(2, 3, 4))
    monkeypatch.chdir(tmp_path)  # the option files name their data relative to the folder basicsr runs in
    opt = yaml.safe_load((ROOT / 'options' / option_file).read_text())
    for key, dataset_opt in reads_benchmark(ROOT / 'options' / option_file).items():
        dataset = build_dataset(checked_dataset({**dataset_opt, 'phase': 'val', 'scale': opt['scale']}, key=key))
        pair = dataset[0]
        assert len(dataset) == 1, key
        assert pair['lq'].shape[-2:] == (48 // opt['scale'], 36 // opt['scale']), key
        assert pair['gt'].shape[-2:] == (48, 36), key
