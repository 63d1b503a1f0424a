"""Registration, arch shapes, and reading real-world image files."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from moesr_arch.data.image_io import ImageReadError, read_image
from moesr_arch.data.paired_image_dataset import CheckedPairedImageDataset
from moesr_arch.utils.ensemble import self_ensemble


def test_import_registers_the_package_and_unknown_names_list_the_known_ones():
    assert 'VDSR' in ARCH_REGISTRY and 'EDSR' in ARCH_REGISTRY
    assert 'ExpertSRModel' in MODEL_REGISTRY and 'CheckedPairedImageDataset' in DATASET_REGISTRY
    assert 'L1Loss' in LOSS_REGISTRY
    with pytest.raises(KeyError, match="No object named 'VDSRR'.*Registered names: .*VDSR"):
        ARCH_REGISTRY.get('VDSRR')


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('size', [(17, 23), (32, 32), (5, 9)])
@pytest.mark.parametrize('arch', [
    {'type': 'VDSR', 'num_feat': 8, 'num_layer': 4},
    {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1},
])
def test_arch_output_is_scale_times_input(arch, scale, size):
    kwargs = dict(arch)
    net = ARCH_REGISTRY.get(kwargs.pop('type'))(upscale=scale, **kwargs).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


def test_vdsr_defaults_are_the_paper_network_and_start_as_bicubic():
    net = ARCH_REGISTRY.get('VDSR')(upscale=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and all(c.out_channels == 64 for c in convs[:-1])
    assert abs(sum(p.numel() for p in net.parameters()) - 668_227) < 1000
    lr = torch.rand(1, 3, 12, 12)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=3, mode='bicubic', align_corners=False)
    with torch.no_grad():
        assert (net(lr) - bicubic).abs().mean() < 0.05


def test_self_ensemble_of_an_equivariant_network_is_the_network():
    net = torch.nn.Upsample(scale_factor=2, mode='nearest')
    x = torch.rand(1, 3, 7, 5)
    assert torch.allclose(self_ensemble(net, x), net(x))
    shifted = torch.nn.Conv2d(3, 3, 3, padding=1)  # not rotation-equivariant: the ensemble averages it
    assert not torch.allclose(self_ensemble(shifted, x), shifted(x))


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
