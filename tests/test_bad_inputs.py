"""The bad-input suite: every kind of bad input a user meets gives a clear error naming the thing.

Here: image files (truncated, empty, not images, wrong extensions, grey/RGBA/16-bit), data folders
(non-image files, empty, unpaired, LR/HR size mismatch), option files (typos, wrong types, unknown
names), MoE-SR set-ups (missing expert weights, experts of different scales), label files with bad
lines, a 1x1 image, and a corrupt image met during training and inference. Further cases live beside
their feature: every option mistake (test_options.py), every label error (test_moesr_data.py), the
10000x10000 inference request (test_tools_infer.py), half-written LMDBs (test_tools_prepare.py),
truncated checkpoints (test_resume.py).
"""
import shutil

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from conftest import ROOT, run_cli, write_options
from moesr_arch.basicsr_patches import validate_argv_options
from moesr_arch.data.image_io import ImageReadError, read_image
from moesr_arch.data.paired_image_dataset import CheckedPairedImageDataset
from moesr_arch.inference import Upscaler
from moesr_arch.options import OptionError


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
    dataset = CheckedPairedImageDataset(paired_folders(tmp_path, (64, 64), (15, 16)))
    with pytest.raises(ValueError, match=r'LR .*LR/a.png is 16x15 but HR .*HR/a.png is 64x64'):
        dataset[0]


def test_hr_not_a_multiple_of_the_scale_is_cropped_and_non_images_ignored(tmp_path):
    dataset = CheckedPairedImageDataset(paired_folders(tmp_path, (66, 67), (16, 16), ['README.txt', 'Thumbs.db']))
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample['gt'].shape == (3, 64, 64) and sample['lq'].shape == (3, 16, 16)


def test_empty_or_unpaired_folders_fail_clearly(tmp_path):
    opt = paired_folders(tmp_path, (64, 64), (16, 16))
    (tmp_path / 'LR' / 'a.png').unlink()
    with pytest.raises(ValueError, match='HR/a.png: no LR partner a.* in'):
        CheckedPairedImageDataset(opt)
    (tmp_path / 'HR' / 'a.png').unlink()
    with pytest.raises(ValueError, match='HR: no image files'):
        CheckedPairedImageDataset(opt)


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
        validate_argv_options(['-opt', str(path)])
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
        validate_argv_options(['-opt', str(path)])


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
                         network_g__num_feat=8, network_g__num_block=1, train__total_iter=2)
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
