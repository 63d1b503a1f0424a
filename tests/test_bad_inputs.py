"""The bad-input suite: every kind of bad input a user meets gives a clear error naming the thing.

Here: image files (truncated, empty, not images, wrong extensions, grey/RGBA/16-bit), data folders
(non-image files, empty, unpaired, LR/HR size mismatch), option files (typos, wrong types, unknown
names), MoE-SR set-ups (missing expert weights, experts of different scales), label files with bad
lines, a 1x1 image, and a corrupt image met during training and inference. Further cases live beside
their feature: every option mistake (test_options.py), every label error (test_moesr_data.py), the
10000x10000 inference request (test_tools_infer.py), half-written LMDBs (test_tools_prepare.py),
truncated checkpoints (test_resume.py). Issue 11 adds: outputs that collide with each other or with an
input, writes that fail half-way (a full disk, a read-only folder), file modes, a gate-less MoE-SR export,
gate overlays of large images, training sets that make no batch, duplicate YAML keys, a scale the network
does not produce, LMDB sets killed between their renames, looping links, and every subcommand answering
bad inputs with one line.
"""
import shutil

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from conftest import ROOT, checked_dataset, run_cli, write_options

from moesr_arch.utils.image_io import ImageReadError, read_image
from moesr_arch.data.paired_image_dataset import CheckedPairedImageDataset
from moesr_arch.inference import Upscaler
from moesr_arch.options import OptionError, read_options


def write(path, image):
    assert cv2.imwrite(str(path), image)
    return path


def test_grey_rgba_and_16_bit_pngs_become_3_channel_float(tmp_path):
    rng = np.random.default_rng(0)
    grey = write(tmp_path / 'grey.png', rng.integers(0, 256, (6, 5), dtype=np.uint8))
    rgba = write(tmp_path / 'rgba.png', rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))
    deep = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    write(tmp_path / 'deep.png', deep)
    for path in (grey, rgba, tmp_path / 'deep.png'):
        image = read_image(path)
        assert image.shape == (6, 5, 3) and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 1
    np.testing.assert_allclose(read_image(tmp_path / 'deep.png'), deep / 65535., atol=1e-6)
    assert read_image(rgba, keep_alpha=True).shape == (6, 5, 4)


def test_unreadable_images_are_named(tmp_path):
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(ImageReadError, match='empty.png: empty file'):
        read_image(tmp_path / 'empty.png')
    good = cv2.imencode('.png', np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(good[:len(good) // 2])
    with pytest.raises(ImageReadError, match='cut.png: not a readable image'):
        read_image(tmp_path / 'cut.png')
    (tmp_path / 'notes.png').write_text('not an image')
    with pytest.raises(ImageReadError, match='notes.png'):
        read_image(tmp_path / 'notes.png')


def paired_folders(tmp_path, hr_size, lr_size, extra_files=()):
    for sub in ('HR', 'LR'):
        (tmp_path / sub).mkdir()
    write(tmp_path / 'HR' / 'a.png', np.zeros(hr_size + (3, ), np.uint8))
    write(tmp_path / 'LR' / 'a.png', np.zeros(lr_size + (3, ), np.uint8))
    for name in extra_files:
        (tmp_path / 'HR' / name).write_text('x')
    return {'name': 't', 'type': 'CheckedPairedImageDataset', 'dataroot_gt': str(tmp_path / 'HR'),
            'dataroot_lq': str(tmp_path / 'LR'), 'io_backend': {'type': 'disk'}, 'scale': 4, 'phase': 'val'}


def test_lr_of_the_wrong_size_names_both_files(tmp_path):
    dataset = CheckedPairedImageDataset(checked_dataset(paired_folders(tmp_path, (64, 64), (15, 16))))
    with pytest.raises(ValueError, match=r'LR .*LR/a.png is 16x15 but HR .*HR/a.png is 64x64'):
        dataset[0]


def test_hr_not_a_multiple_of_the_scale_is_cropped_and_non_images_ignored(tmp_path):
    dataset = CheckedPairedImageDataset(checked_dataset(paired_folders(tmp_path, (66, 67), (16, 16),
                                                                       ['README.txt', 'Thumbs.db'])))
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample['gt'].shape == (3, 64, 64) and sample['lq'].shape == (3, 16, 16)


def test_empty_or_unpaired_folders_fail_clearly(tmp_path):
    opt = paired_folders(tmp_path, (64, 64), (16, 16))
    (tmp_path / 'LR' / 'a.png').unlink()
    with pytest.raises(ValueError, match='HR/a.png: no LR partner a.* in'):
        CheckedPairedImageDataset(checked_dataset(opt))
    (tmp_path / 'HR' / 'a.png').unlink()
    with pytest.raises(ValueError, match='HR: no image files'):
        CheckedPairedImageDataset(checked_dataset(opt))


def test_wrong_extensions_are_read_by_content(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    (tmp_path / 'png_named.jpg').write_bytes(cv2.imencode('.png', image)[1].tobytes())
    (tmp_path / 'jpg_named.png').write_bytes(cv2.imencode('.jpg', image)[1].tobytes())
    np.testing.assert_allclose(read_image(tmp_path / 'png_named.jpg'), image / 255., atol=1e-6)
    assert read_image(tmp_path / 'jpg_named.png').shape == (8, 9, 3)


@pytest.mark.parametrize('override, message', [
    ({'datasets__val__dataroot_lqq': 'x'}, "unknown key 'datasets.val.dataroot_lqq' (did you mean 'dataroot_lq'?)"),
    ({'train__total_iter': 'many'}, "train.total_iter must be a number, got 'many'"),
    ({'network_g__type': 'SeemoRE'}, "network_g.type: no arch named 'SeemoRE'; registered: "),
])
def test_option_file_mistakes_stop_before_any_work(workdir, override, message):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', **override)
    with pytest.raises(OptionError) as error:
        read_options(str(path))
    assert message in str(error.value) and str(path) in str(error.value)


def moesr_network(**changes):
    expert = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1, 'upscale': 2}
    experts = {name: dict(expert) for name in ('people', 'background')}
    opt = {'type': 'MoESRNet', 'categories': ['people'], 'experts': experts}
    for key, value in changes.items():
        opt[key] = value
    return opt


def test_missing_expert_weights_are_named(workdir):
    network = moesr_network(expert_weights={'people': 'experts/people.pth'})
    path = write_options('options/train_moesr.yml', workdir / 'bad.yml', network_g=network, gate='DELETE')
    with pytest.raises(OptionError, match=r'network_g.expert_weights.people: no such file: experts/people.pth'):
        read_options(str(path))


def test_experts_of_different_scales_are_refused_naming_them():
    network = moesr_network()
    network['experts']['background']['upscale'] = 4
    with pytest.raises(ValueError, match=r'people: x2.*background: x4'):
        build_network(network)


def test_bad_label_lines_fail_the_dataset_check_naming_file_and_line(tmp_path, demo_root):
    data = tmp_path / 'data'
    shutil.copytree(demo_root / 'datasets' / 'demo' / 'val', data)
    (data / 'labels' / 'zidane.txt').write_text('0 0.1 0.1 0.5 0.1 0.5 0.6\n7 0.1 0.1 0.2 0.2\n')
    proc = run_cli(['prepare', 'check_dataset', '--gt', data / 'HR', '--lq', data / 'LR_bicubic' / 'X2',
                    '--scale', 2, '--labels', data / 'labels',
                    '--categories', demo_root / 'datasets' / 'demo' / 'categories.yml'], tmp_path, check=False)
    assert proc.returncode != 0
    assert 'zidane.txt:2' in proc.stdout + proc.stderr


@pytest.mark.parametrize('network', [
    {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2},
    {'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 2},
    {'type': 'SeemoRe', 'variant': 'T', 'scale': 2},
])
def test_a_one_pixel_image_is_upscaled(network):
    net = build_network(dict(network)).eval()
    pixel = np.full((1, 1, 3), 200, np.uint8)
    output, _ = Upscaler(net, 2, 'cpu', tile=64, tile_overlap=8, progress=False).upscale_array(pixel, 255.)
    assert output.shape == (2, 2, 3) and output.dtype == np.uint8


def test_a_corrupt_image_met_in_training_stops_it_naming_the_file(workdir):
    data = workdir / 'mydata'
    shutil.copytree(workdir / 'datasets' / 'demo' / 'train', data)
    corrupt = data / 'HR' / 'coffee.png'
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    photos = len(list((data / 'HR').glob('*.png')))  # one batch of every photo: the corrupt one is met
    path = write_options('options/train_edsr_demo.yml', workdir / 'train.yml', name='corrupt',
                         datasets__train__dataroot_gt='mydata/HR', datasets__train__dataroot_lq='mydata/LR_bicubic/X2',
                         datasets__train__batch_size_per_gpu=photos, datasets__train__dataset_enlarge_ratio=1,
                         network_g__network__num_feat=8, network_g__network__num_block=1, train__total_iter=2)
    proc = run_cli(['train', '-opt', path], workdir, check=False)
    assert proc.returncode != 0
    assert 'mydata/HR/coffee.png: not a readable image' in proc.stderr


def test_inference_skips_unreadable_files_and_processes_the_rest(workdir):
    images = workdir / 'photos'
    images.mkdir()
    shutil.copy(workdir / 'datasets/demo/val/LR_bicubic/X4/motorcycle.png', images / 'good.png')
    (images / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    (images / 'empty.jpg').write_bytes(b'')
    net = {'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 2}
    torch.save({'params': build_network(dict(net)).state_dict()}, workdir / 'vdsr.pth')
    options = write_options('options/test_edsr_demo.yml', workdir / 'infer.yml', network_g=net,
                            path__pretrain_network_g='vdsr.pth', path__param_key_g='params')
    proc = run_cli(['infer', '-opt', options, '-i', images, '-o', 'out'], workdir, check=False)
    assert proc.returncode != 0
    assert 'broken.png' in proc.stdout + proc.stderr and 'empty.jpg' in proc.stdout + proc.stderr
    assert sorted(p.name for p in (workdir / 'out').iterdir()) == ['good.png']


# ------------------------------------------------------------------------------------------------------
# Issue 11: nothing lost, nothing silent.

import errno  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from moesr_arch import cli  # noqa: E402
from moesr_arch.data.categories import CategoriesError, load_categories  # noqa: E402
from moesr_arch.inference.maps import draw_overlay  # noqa: E402
from moesr_arch.inference import InferenceError, build_from_options  # noqa: E402
from moesr_arch.options import load_options  # noqa: E402
from moesr_arch.tools.prepare import create_lmdb  # noqa: E402
from moesr_arch.utils import atomic  # noqa: E402
from moesr_arch.utils.atomic import atomic_torch_save  # noqa: E402

TINY = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1, 'upscale': 2}


def tiny_options(folder, network=None, scale=2, **top):
    """An inference option file with saved random weights of a tiny x2 network."""
    network = dict(network or TINY)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(network)).state_dict()}, folder / 'net.pth')
    opt = {'name': 'tiny', 'model_type': 'SingleNetworkSRModel', 'scale': scale, 'num_gpu': 0, 'network_g': network,
           'path': {'pretrain_network_g': str(folder / 'net.pth')}, **top}
    (folder / 'tiny.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return folder / 'tiny.yml'


def basicsr(argv, capsys, monkeypatch):
    """``basicsr ARGV`` in this process: ``(exit code, stderr)``. An exception escaping it is a traceback."""
    monkeypatch.setattr(sys, 'argv', ['basicsr'])
    from moesr_arch.tools.common import get_tool_logger
    for handler in get_tool_logger().handlers:  # made in an earlier test: point it at this test's stderr
        if type(handler) is logging.StreamHandler:  # not pytest's own capture handlers
            monkeypatch.setattr(handler, 'stream', sys.stderr)
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(err):
    lines = [line for line in err.splitlines() if ': error: ' in line]
    assert len(lines) == 1, err
    return lines[0]


def photo(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_infer_stops_before_any_work_when_two_inputs_share_an_output(tmp_path, capsys, monkeypatch):
    options = tiny_options(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    write(photos / 'upper.JPG', photo(8, 8))
    write(photos / 'upper.PNG', photo(8, 8, 1))
    code, err = basicsr(['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out'], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 2 and line.startswith('basicsr infer: error: ')
    assert 'upper.JPG' in line and 'upper.PNG' in line and 'out/upper.png' in line
    assert 'rename one of them' in line and 'give another -o or a --suffix' not in line  # neither would part them
    assert not (tmp_path / 'out').exists()


def test_infer_never_writes_over_another_input(tmp_path, capsys, monkeypatch):
    options = tiny_options(tmp_path)
    folder = tmp_path / 'photos'
    folder.mkdir()
    write(folder / 'b.jpg', photo(8, 8))
    write(folder / 'b.png', photo(8, 8, 1))
    before = (folder / 'b.png').read_bytes()
    code, err = basicsr(['infer', '-opt', options, '-i', folder, '-o', folder], capsys, monkeypatch)
    assert code == 2 and 'would overwrite the input' in one_error_line(err) and 'b.png' in err
    assert one_error_line(err).endswith('; give another -o or a --suffix')
    assert (folder / 'b.png').read_bytes() == before


def test_preparation_tools_refuse_two_images_of_one_stem(tmp_path, capsys, monkeypatch):
    (tmp_path / 'HR').mkdir()
    write(tmp_path / 'HR' / 'a.png', photo(16, 16))
    write(tmp_path / 'HR' / 'a.jpg', photo(16, 16, 1))
    for argv in (['prepare', 'generate_lr', '-i', tmp_path / 'HR', '-o', tmp_path / 'gen', '-s', 2],
                 ['prepare', 'extract_subimages', '-i', tmp_path / 'HR', '-o', tmp_path / 'sub', '--crop_size', 8,
                  '--step', 8, '--n_thread', 1]):
        code, err = basicsr(argv, capsys, monkeypatch)
        line = one_error_line(err)
        assert code == 2 and 'a.jpg' in line and 'a.png' in line and 'would both be written' in line
    assert not (tmp_path / 'gen').exists() and not (tmp_path / 'sub').exists()


def test_a_write_failing_half_way_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / 'out.png'
    target.write_bytes(b'old')

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.os, 'fsync', full_disk)
    with pytest.raises(OSError) as error:
        atomic.atomic_write_bytes(target, b'new content')
    assert error.value.filename == str(target) and error.value.strerror == 'No space left on device'
    assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['out.png']


def test_checkpoints_and_images_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_torch_save({'iter': 1}, tmp_path / 'models' / 'net_g_1.pth')
        atomic.atomic_write_bytes(tmp_path / 'a.png', b'x')
    finally:
        os.umask(old)
    for path in (tmp_path / 'models' / 'net_g_1.pth', tmp_path / 'a.png'):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert torch.load(tmp_path / 'models' / 'net_g_1.pth') == {'iter': 1}


def test_infer_interrupted_in_a_write_leaves_no_truncated_image_and_runs_the_rest(tmp_path, capsys, monkeypatch):
    options = tiny_options(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name in ('a', 'b', 'c'):
        write(photos / f'{name}.png', photo(8, 8))
    real_fdopen, calls = os.fdopen, []

    class HalfWritten:  # the first image's file: half its bytes reach the disk, then the disk is full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(memoryview(data)[:len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode):
        calls.append(fd)
        return HalfWritten(real_fdopen(fd, mode)) if len(calls) == 1 else real_fdopen(fd, mode)
    monkeypatch.setattr(atomic.os, 'fdopen', fdopen)
    code, err = basicsr(['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out'], capsys, monkeypatch)
    assert code == 1
    assert sorted(os.listdir(tmp_path / 'out')) == ['b.png', 'c.png']  # a.png absent, not truncated; no .tmp left
    assert 'out/a.png: No space left on device' in err


def moesr_options(folder, categories_file=None):
    """A tiny MoE-SR option file (EDSR experts, label-free: no gate) with saved weights."""
    network = moesr_network()
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(network)).state_dict()}, folder / 'moesr.pth')
    opt = {'name': 'moesr', 'model_type': 'MoESRModel', 'scale': 2, 'num_gpu': 0, 'network_g': network,
           'path': {'pretrain_network_g': str(folder / 'moesr.pth')}}
    (folder / 'moesr.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return folder / 'moesr.yml'


def test_moesr_onnx_export_is_refused_and_one_expert_can_be_exported(tmp_path, capsys, monkeypatch):
    options = moesr_options(tmp_path)
    code, err = basicsr(['export', '-opt', options, '--onnx', tmp_path / 'moesr.onnx'], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 2 and 'MoESRNet cannot be exported as one ONNX graph' in line and '--expert' in line
    assert 'people, background' in line and not (tmp_path / 'moesr.onnx').exists()
    code, err = basicsr(['export', '-opt', options, '--onnx', tmp_path / 'bg.onnx', '--expert', 'background',
                         '--trace_size', 16], capsys, monkeypatch)
    assert code == 0 and (tmp_path / 'bg.onnx').stat().st_size > 0


def test_a_failed_onnx_check_leaves_no_file(tmp_path, capsys, monkeypatch):
    options = tiny_options(tmp_path)
    code, err = basicsr(['export', '-opt', options, '--onnx', tmp_path / 'net.onnx', '--trace_size', 16,
                         '--tolerance', 0], capsys, monkeypatch)
    assert code == 2 and 'ONNX and PyTorch differ by' in one_error_line(err)
    assert not [name for name in os.listdir(tmp_path) if 'onnx' in name]  # neither the file nor a temporary


def test_infer_refuses_a_label_gate_once_before_any_image(tmp_path, capsys, monkeypatch):
    options = moesr_options(tmp_path)
    opt = yaml.safe_load(options.read_text())
    opt['gate'] = {'type': 'LabelGate', 'categories': ['people']}  # as in train_moesr.yml
    options.write_text(yaml.safe_dump(opt, sort_keys=False))
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name in ('a', 'b'):
        write(photos / f'{name}.png', photo(16, 16))
    code, err = basicsr(['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out'], capsys, monkeypatch)
    line = one_error_line(err)
    assert code == 2 and f'{options}: gate.type LabelGate reads the category labels of a dataset' in line
    assert 'YOLOGate as in options/test_moesr.yml' in line and not (tmp_path / 'out').exists()


def test_gate_overlays_draw_on_images_of_256_pixels_and_more(tmp_path, capsys, monkeypatch):
    # A transposed tensor's numpy view, as MoE-SR hands it over: OpenCV cannot draw into it in place.
    rgb = torch.from_numpy(photo(256, 260)).permute(2, 0, 1).permute(1, 2, 0).numpy()[:, :, ::-1]
    weights = np.zeros((2, 256, 260), np.float32)
    weights[0, 50:100, 60:120], weights[1] = 1, 1
    weights[1, 50:100, 60:120] = 0
    assert draw_overlay(rgb, weights, ['people']).shape == (256, 260, 3)
    options = moesr_options(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    write(photos / 'big.png', photo(256, 264))
    code, err = basicsr(['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out', '--save_maps'],
                        capsys, monkeypatch)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / 'out')) == ['big.png', 'big_gate.png']


def test_infer_reports_any_per_image_failure_and_runs_the_rest(tmp_path, capsys, monkeypatch):
    from moesr_arch.inference import Upscaler as Engine
    options = tiny_options(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name in ('a', 'b'):
        write(photos / f'{name}.png', photo(8, 8))
    real = Engine.upscale_file

    def flaky(self, path):
        if path.name == 'a.png':
            raise IndexError('something unexpected')
        return real(self, path)
    monkeypatch.setattr(Engine, 'upscale_file', flaky)
    code, err = basicsr(['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out'], capsys, monkeypatch)
    assert code == 1 and 'a.png: IndexError: something unexpected' in err
    assert os.listdir(tmp_path / 'out') == ['b.png']


def test_a_training_set_that_makes_no_batch_stops_at_start(tmp_path):
    from moesr_arch.data.loader_check import build_dataloader
    opt = paired_folders(tmp_path, (64, 64), (16, 16))
    opt.update(phase='train', batch_size_per_gpu=2, num_worker_per_gpu=0, name='tiny_train')
    opt = checked_dataset(opt, is_train=True)
    dataset = CheckedPairedImageDataset(opt)
    with pytest.raises(ValueError, match=r'datasets.train \(tiny_train\): 1 training images make no batch of '
                                         r'batch_size_per_gpu 2'):
        build_dataloader(dataset, opt, num_gpu=0, dist=False, sampler=None, seed=0)


def test_duplicate_yaml_keys_are_refused_with_file_line_and_key(tmp_path):
    (tmp_path / 'opt.yml').write_text('name: x\nnum_gpu: 1\nscale: 2\nnum_gpu: 0\n')
    with pytest.raises(OptionError, match=r"opt.yml:4: duplicate key 'num_gpu' \(first at line 2\)"):
        load_options(str(tmp_path / 'opt.yml'))
    (tmp_path / 'cats.yml').write_text('0: people\n1: cat\n1: vehicle\n')
    with pytest.raises(CategoriesError, match=r'cats.yml:3: duplicate key 1 \(first at line 2\)'):
        load_categories(tmp_path / 'cats.yml')


@pytest.mark.parametrize('scale', [3, 4])
def test_a_scale_the_network_does_not_produce_is_refused(tmp_path, scale):
    with pytest.raises(InferenceError, match=rf'scale is {scale} but network_g \(EDSR\) upscales x2'):
        build_from_options(str(tiny_options(tmp_path, scale=scale)))


def lmdb_pair(tmp_path):
    for sub, size in (('HR', 16), ('LR', 8)):
        (tmp_path / sub).mkdir()
        for name in ('a', 'b'):
            write(tmp_path / sub / f'{name}.png', photo(size, size))
    return [tmp_path / 'HR', tmp_path / 'X_HR.lmdb', [tmp_path / 'LR'], [tmp_path / 'X_LR.lmdb']]


KILL_BETWEEN_RENAMES = '''
import os, sys
sys.path.insert(0, sys.argv[1])
from moesr_arch.tools.prepare import create_lmdb
real, renamed = os.replace, []
def replace(src, dst):
    if str(src).endswith('.lmdb.partial'):
        if renamed:
            os._exit(9)  # killed between the two renames: no cleanup runs
        renamed.append(dst)
    real(src, dst)
create_lmdb.os.replace = replace
root = sys.argv[2]
create_lmdb.create_lmdb(root + '/HR', root + '/X_HR.lmdb', [root + '/LR'], [root + '/X_LR.lmdb'])
'''


def test_an_lmdb_pair_killed_between_its_renames_is_completed_by_the_next_run(tmp_path):
    args = lmdb_pair(tmp_path)
    proc = subprocess.run([sys.executable, '-c', KILL_BETWEEN_RENAMES, str(ROOT), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (tmp_path / 'X_HR.lmdb').exists() and (tmp_path / 'X_LR.lmdb.partial').exists()  # the half state
    assert create_lmdb.create_lmdb(*args) == []  # the re-run finishes the pair instead of refusing
    from moesr_arch.data.lmdb_util import read_meta_info
    for name in ('X_HR.lmdb', 'X_LR.lmdb'):
        assert [key for key, _ in read_meta_info(tmp_path / name)] == ['a', 'b']
    assert sorted(os.listdir(tmp_path)) == ['HR', 'LR', 'X_HR.lmdb', 'X_LR.lmdb']


def test_an_lmdb_rename_that_fails_leaves_neither_lmdb(tmp_path, monkeypatch):
    args = lmdb_pair(tmp_path)
    real = os.replace

    def replace(src, dst):
        if str(src).endswith('X_LR.lmdb.partial'):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src))
        real(src, dst)
    monkeypatch.setattr(create_lmdb.os, 'replace', replace)
    with pytest.raises(PermissionError):
        create_lmdb.create_lmdb(*args)
    assert sorted(os.listdir(tmp_path)) == ['HR', 'LR']


def test_an_lmdb_on_a_full_disk_names_the_lmdb_and_the_reason(tmp_path, monkeypatch):
    import lmdb
    args = lmdb_pair(tmp_path)

    def full(*a, **k):
        raise lmdb.Error(f'{tmp_path}/X_HR.lmdb.partial: No space left on device')
    monkeypatch.setattr(create_lmdb.lmdb, 'open', full)
    with pytest.raises(OSError, match=r'X_HR.lmdb: could not write the LMDB: .*No space left on device'):
        create_lmdb.create_lmdb(*args)


def test_check_dataset_reports_looping_links_doubled_stems_and_images_smaller_than_the_crop(tmp_path):
    from moesr_arch.tools.prepare.check_dataset import check_dataset
    for sub, size in (('HR', 32), ('LR', 16)):
        (tmp_path / sub).mkdir()
        for name in ('a', 'b'):
            write(tmp_path / sub / f'{name}.png', photo(size, size))
    (tmp_path / 'HR' / 'b.png').unlink()
    os.symlink('b.png', tmp_path / 'HR' / 'b.png')  # a link to itself: Errno 40 when read
    write(tmp_path / 'LR' / 'a.jpg', photo(16, 16))
    text = '\n'.join(check_dataset(tmp_path / 'HR', [tmp_path / 'LR'], [2], gt_size=48))
    assert 'HR/b.png: cannot read: Too many levels of symbolic links' in text
    assert 'LR image without an HR partner' not in text  # b's LR partner is not an orphan
    assert 'two images for one stem' in text and 'LR/a.jpg' in text
    assert 'HR/a.png: 32x32 is smaller than gt_size 48' in text
    pair = {'name': 't', 'type': 'CheckedPairedImageDataset', 'phase': 'val', 'scale': 2,
            'dataroot_gt': str(tmp_path / 'HR'), 'dataroot_lq': str(tmp_path / 'LR'), 'io_backend': {'type': 'disk'}}
    with pytest.raises(ValueError, match='HR/b.png: Too many levels of symbolic links'):  # training: at start
        CheckedPairedImageDataset(checked_dataset(pair))
    os.remove(tmp_path / 'HR' / 'b.png')
    with pytest.raises(ValueError, match='LR/a.jpg and .*LR/a.png: two LR images for one stem'):
        CheckedPairedImageDataset(checked_dataset(pair))


def test_derived_path_keys_are_refused_not_ignored(workdir):
    path = write_options('options/train_edsr_demo.yml', workdir / 'bad.yml', path__experiments_root='elsewhere')
    with pytest.raises(OptionError, match='path.experiments_root is set by BasicSR from name'):
        read_options(str(path))


def test_a_two_point_polygon_is_not_silently_a_box():
    from moesr_arch.data.category_labels import LabelError, parse_label_line
    with pytest.raises(LabelError, match=r'f.txt:1: .*4 numbers are read as a box cx cy w h.*at least 3 points'):
        parse_label_line('0 0.1 0.1 0.6 0.7', 'f.txt', 1, 2)


def bad_inputs(tmp_path):
    """``{case: (argv, words the one error line must hold)}`` for every tool subcommand."""
    options = tiny_options(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    write(photos / 'a.png', photo(8, 8))
    (tmp_path / 'a_file').write_text('x')
    truncated = tmp_path / 'cut.pth'
    truncated.write_bytes((tmp_path / 'net.pth').read_bytes()[:300])
    torch.save({'epoch': 0, 'iter': 1, 'optimizers': [{}], 'schedulers': []}, tmp_path / '1.state')
    infer = ['infer', '-opt', options, '-i', photos, '-o', tmp_path / 'out']
    export = ['export', '-opt', options, '--trace_size', 16]
    return {
        'infer -o is a file': (infer[:-1] + [tmp_path / 'a_file'], ['a_file: is a file, not a folder']),
        'infer truncated checkpoint': (infer + ['--model_path', truncated], ['cut.pth: not a readable weights file']),
        'infer a .state as weights': (infer + ['--model_path', tmp_path / '1.state'], ['1.state: a training state']),
        'infer a PNG as weights': (infer + ['--model_path', photos / 'a.png'], ['a.png: not a readable weights file']),
        'infer --device gpu': (infer + ['--device', 'gpu'], ["--device 'gpu': not a device"]),
        'infer missing input': (infer[:4] + ['nowhere'] + infer[5:], ['no such file or folder: nowhere']),
        'infer missing option file': (['infer', '-opt', 'none.yml', '-i', photos, '-o', 'o'], ['none.yml']),
        'export ONNX under a file': (export + ['--onnx', tmp_path / 'a_file' / 'net.onnx'],
                                     ['a_file: Not a directory']),
        'export ONNX on a folder': (export + ['--onnx', photos], ['photos: Is a directory']),
        'export nothing to do': (export, ['nothing to do']),
        'generate_lr missing folder': (['prepare', 'generate_lr', '-i', 'nowhere', '-o', 'x'], ['nowhere']),
        'extract_subimages output not empty': (['prepare', 'extract_subimages', '-i', photos, '-o', photos],
                                               ['photos exists and is not empty']),
        'create_lmdb bad name': (['prepare', 'create_lmdb', '--gt', photos, '--gt_lmdb', tmp_path / 'x'],
                                 ['must end with .lmdb']),
        'check_dataset missing folder': (['prepare', 'check_dataset', '--gt', 'nowhere'], ['no such folder: nowhere']),
        'label_categories missing weights': (['prepare', 'label_categories', '-i', photos, '-o', tmp_path / 'labels',
                                              '--weights', 'none.pt', '--categories', 'none.yml'], ['none.pt']),
        'train-gate without data': (['train-gate', '--output', tmp_path / 'gate'], ['give --dataset']),
        'train-gate missing categories': (['train-gate', '--dataset', tmp_path, '--output', tmp_path / 'gate'],
                                          ['categories file not found']),
    }


def test_every_tool_subcommand_answers_bad_inputs_with_one_line_and_a_non_zero_exit(tmp_path, capsys, monkeypatch):
    for case, (argv, words) in bad_inputs(tmp_path).items():
        code, err = basicsr(argv, capsys, monkeypatch)  # an exception escaping here would be a traceback
        assert code != 0, case
        line = one_error_line(err)
        assert line.startswith(f'basicsr {argv[0]}') and all(word in line for word in words), (case, line)
        assert 'Traceback' not in err and 'Errno' not in line, (case, err)


def test_a_read_only_output_folder_fails_before_any_work(tmp_path, capsys, monkeypatch):
    options = tiny_options(tmp_path)
    (tmp_path / 'photos').mkdir()
    write(tmp_path / 'photos' / 'a.png', photo(8, 8))
    started = []
    monkeypatch.setattr(Upscaler, 'upscale_file', lambda self, path: started.append(path))

    def read_only(*args, **kwargs):  # the tests run as root, for whom chmod does not make a folder read-only
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(atomic.tempfile, 'mkstemp', read_only)
    code, err = basicsr(['infer', '-opt', options, '-i', tmp_path / 'photos', '-o', tmp_path / 'out'],
                        capsys, monkeypatch)
    assert code == 2 and one_error_line(err).endswith('out: Permission denied') and not started


@pytest.mark.parametrize('command, message', [
    ('train', "duplicate key 'num_gpu'"),
    ('test', 'path.results_root is set by BasicSR from name'),
])
def test_train_and_test_answer_bad_options_with_one_line(workdir, command, message):
    if command == 'train':  # a second num_gpu at the end of the file
        (workdir / 'bad.yml').write_text((ROOT / 'options/train_edsr_demo.yml').read_text() + 'num_gpu: 0\n')
    else:
        write_options('options/test_edsr_demo.yml', workdir / 'bad.yml', path__results_root='elsewhere')
    proc = run_cli([command, '-opt', 'bad.yml'], workdir, check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    line = one_error_line(proc.stderr)
    assert line.startswith(f'basicsr {command}: error: Invalid options: bad.yml') and message in line
