"""Category labels, categories file and CategoryPairedImageDataset (MoE-SR data, issue 4 points 1-2)."""
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import checked_dataset
from moesr_arch.data.categories import CategoriesError, load_categories
from moesr_arch.data.category_labels import LabelError, parse_label_text, read_labels, rasterize_category_map
from moesr_arch.data.category_paired_image_dataset import CategoryPairedImageDataset
from moesr_arch.options import OptionError, check_dataset

ROOT = Path(__file__).resolve().parents[1]
DEMO_LABELS = ROOT / 'scripts' / 'data_preparation' / 'demo_labels'
CATEGORIES = ['people', 'cat', 'vehicle']
DEMO_CATEGORIES = ['people', 'vehicle']
# BGR colours painted into the synthetic images: the colour of a pixel says its category.
COLOURS = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0], [128, 128, 128]], dtype=np.uint8)  # people, cat, vehicle, bg


def write_categories(folder, names=CATEGORIES):
    path = Path(folder) / 'categories.yml'
    path.write_text(''.join(f'{i}: {n}\n' for i, n in enumerate(names)))
    return path


# ------------------------------------------------------------------------------------------------
# categories file


def test_categories_file_gives_names_in_id_order(tmp_path):
    path = tmp_path / 'c.yml'
    path.write_text('2: vehicle\n0: people\n1: cat\n')
    assert load_categories(path) == ['people', 'cat', 'vehicle']


@pytest.mark.parametrize('text, message', [
    ('0: people\n2: cat\n', r'missing \[1\]'),
    ('0: people\n1: people\n', 'duplicate'),
    ('a: people\n', 'not a non-negative integer'),
    ('- people\n- cat\n', 'mapping'),
    ('0: people\n1: background\n', 'implicit'),
])
def test_bad_categories_file_names_the_file(tmp_path, text, message):
    path = tmp_path / 'bad.yml'
    path.write_text(text)
    with pytest.raises(CategoriesError, match=message) as info:
        load_categories(path)
    assert str(path) in str(info.value)


def test_missing_categories_file(tmp_path):
    with pytest.raises(CategoriesError, match='not found'):
        load_categories(tmp_path / 'none.yml')


# ------------------------------------------------------------------------------------------------
# label parsing


def test_polygons_and_boxes_parse():
    regions = parse_label_text('# comment\n\n0 0.1 0.1 0.5 0.1 0.3 0.6\n2 0.5 0.5 0.2 0.4\n', 'x.txt', 3)
    assert [r.category for r in regions] == [0, 2]
    assert [r.line for r in regions] == [3, 4]
    np.testing.assert_allclose(regions[1].points, [[0.4, 0.3], [0.6, 0.3], [0.6, 0.7], [0.4, 0.7]])
    assert regions[1].area == pytest.approx(0.08)


@pytest.mark.parametrize('line, message', [
    ('3 0.1 0.1 0.5 0.1 0.3 0.6', 'unknown class id 3'),
    ('-1 0.1 0.1 0.5 0.1 0.3 0.6', 'unknown class id -1'),
    ('0 0.1 0.1 1.5 0.1 0.3 0.6', r'normalised to \[0, 1\], got 1.5'),
    ('0 0.1 -0.2 0.5 0.1 0.3 0.6', 'got -0.2'),
    ('0 0.1 0.1 0.5 0.1 0.3', 'odd number of coordinates'),
    ('0 0.1 0.1', 'at least 3 points'),
    ('0 0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4 0.1 0.9 0.2 0.8', None),  # valid: 6 points
    ('cat 0.1 0.1 0.5 0.1 0.3 0.6', 'class id must be an integer'),
    ('0 0.1 x 0.5 0.1 0.3 0.6', 'must be numbers'),
    ('0 0.5 0.5 0 0.2', 'must be positive'),
])
def test_bad_label_lines_name_file_and_line(line, message):
    text = '1 0.2 0.2 0.1 0.1\n' + line + '\n'
    if message is None:
        assert len(parse_label_text(text, 'labels/a.txt', 3)) == 2
        return
    with pytest.raises(LabelError, match=message) as info:
        parse_label_text(text, 'labels/a.txt', 3)
    assert 'labels/a.txt:2:' in str(info.value)


def test_missing_label_file_is_background_unless_required(tmp_path):
    assert read_labels(tmp_path / 'none.txt', 3) == []
    with pytest.raises(LabelError, match='none.txt: label file missing'):
        read_labels(tmp_path / 'none.txt', 3, required=True)


# ------------------------------------------------------------------------------------------------
# rasterising


def category_masks(category_map, num_categories):
    """Boolean masks ``[K, H, W]`` (one per category, id order) of a category map; background is ``map == K``."""
    category_map = np.asarray(category_map)
    return category_map[None] == np.arange(num_categories).reshape(-1, 1, 1)


def test_box_rasterises_to_exact_pixels():
    regions = parse_label_text('1 0.5 0.25 0.5 0.5\n', 'a', 3)  # x 0.25..0.75, y 0..0.5
    category_map = rasterize_category_map(regions, 8, 16, 3)
    assert category_map.dtype == np.int64
    expected = np.full((8, 16), 3)
    expected[0:4, 4:12] = 1
    np.testing.assert_array_equal(category_map, expected)
    masks = category_masks(category_map, 3)
    assert masks.shape == (3, 8, 16) and masks[1].sum() == 32 and not masks[0].any()


def test_smaller_region_wins_overlaps_whatever_the_line_order():
    big = '2 0 0 1 0 1 1 0 1'  # whole image, vehicle
    small = '0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75'  # centre square, people
    for text in (f'{big}\n{small}\n', f'{small}\n{big}\n'):
        category_map = rasterize_category_map(parse_label_text(text, 'a', 3), 8, 8, 3)
        assert (category_map[2:6, 2:6] == 0).all()
        assert (category_map == 2).sum() == 64 - 16


def test_lr_map_uses_the_hr_extent_when_hr_is_not_a_multiple_of_the_scale():
    regions = parse_label_text('0 0.5 0.5 0.5 0.5\n', 'a', 3)  # HR 10x10: pixels 2.5..7.5
    hr = rasterize_category_map(regions, 10, 10, 3)
    lr = rasterize_category_map(regions, 3, 3, 3, extent=(10 / 3, 10 / 3))
    # LR pixel (i, j) has its centre at HR (3 i + 1.5): the map must agree with HR there.
    np.testing.assert_array_equal(lr, hr[1::3, 1::3][:3, :3])


# ------------------------------------------------------------------------------------------------
# dataset


def group_sizes(dataset):
    """How many entries of one epoch of a CategoryPairedImageDataset target each category name (``background``
    for none)."""
    counts = {}
    for _, c in dataset.index:
        name = 'background' if c is None else dataset.categories[c]
        counts[name] = counts.get(name, 0) + 1
    return counts


def make_colour_set(root, regions_per_image, size=48, scale=2):
    """HR/LR images whose pixel colour encodes the category of their label; returns option dict."""
    root = Path(root)
    for sub in ('HR', 'LR', 'labels'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, text in regions_per_image.items():
        category_map = rasterize_category_map(parse_label_text(text, name, 3), size, size, 3)
        hr = COLOURS[category_map]
        cv2.imwrite(str(root / 'HR' / f'{name}.png'), hr)
        # Regions lie on multiples of `scale` HR pixels, so nearest downsampling keeps colours exact.
        cv2.imwrite(str(root / 'LR' / f'{name}.png'), hr[scale // 2::scale, scale // 2::scale])
        (root / 'labels' / f'{name}.txt').write_text(text)
    return {'name': 'colours', 'type': 'CategoryPairedImageDataset', 'phase': 'train', 'scale': scale,
            'dataroot_gt': str(root / 'HR'), 'dataroot_lq': str(root / 'LR'), 'dataroot_labels': str(root / 'labels'),
            'categories_file': str(write_categories(root)), 'io_backend': {'type': 'disk'}, 'gt_size': 16,
            'use_hflip': True, 'use_rot': True}


def colour_class(image_chw):
    """Category index of every pixel of an RGB float image painted with COLOURS."""
    rgb = (image_chw.permute(1, 2, 0).numpy() * 255).round()
    palette = COLOURS[:, ::-1].astype(np.float64)  # BGR -> RGB
    return np.abs(rgb[:, :, None, :] - palette[None, None]).sum(-1).argmin(-1)


MIXED = {
    'a': '0 0.0 0.0 0.5 0.0 0.5 0.5 0.0 0.5\n1 0.75 0.75 0.5 0.5\n',  # people top-left, cat bottom-right box
    'b': '2 0.25 0.0 1.0 0.0 1.0 0.25 0.25 0.25\n',  # vehicle strip at the top
    'c': '1 0.0 0.5 0.5 0.5 0.5 1.0 0.0 1.0\n',  # cat bottom-left
    'd': '',  # background only
}


def test_random_crops_and_augmentation_keep_images_and_map_aligned(tmp_path):
    random.seed(0)
    dataset = CategoryPairedImageDataset(checked_dataset(make_colour_set(tmp_path, MIXED)))
    seen = set()
    for _ in range(40):
        for i in range(len(dataset)):
            sample = dataset[i]
            category_map = sample['category_map']
            assert sample['lq'].shape == (3, 8, 8) and sample['gt'].shape == (3, 16, 16)
            assert category_map.shape == (8, 8) and category_map.dtype == torch.int64
            np.testing.assert_array_equal(colour_class(sample['lq']), category_map.numpy())
            np.testing.assert_array_equal(colour_class(sample['gt'])[::2, ::2], category_map.numpy())
            present = set(category_map.unique().tolist()) - {3}
            assert sample['categories'].tolist() == [float(c in present) for c in range(3)]
            seen.add(tuple(category_map[0, :2].tolist()))
    assert len(seen) > 3  # crops and flips really vary


def test_validation_returns_whole_image_map(tmp_path):
    opt = make_colour_set(tmp_path, MIXED)
    opt['phase'] = 'val'
    sample = CategoryPairedImageDataset(checked_dataset(opt))[0]
    assert sample['category_map'].shape == (24, 24)
    np.testing.assert_array_equal(colour_class(sample['lq']), sample['category_map'].numpy())
    assert sample['categories'].tolist() == [1.0, 1.0, 0.0]
    assert sample['gt_path'].endswith('a.png') and sample['lq_path'].endswith('a.png')


def test_category_filter_keeps_only_images_with_the_category(tmp_path):
    opt = make_colour_set(tmp_path, MIXED)
    dataset = CategoryPairedImageDataset(checked_dataset({**opt, 'category_filter': 'cat'}))
    assert sorted(Path(dataset.paths[i]['gt_path']).stem for i, _ in dataset.index) == ['a', 'c']
    dataset = CategoryPairedImageDataset(checked_dataset({**opt, 'category_filter': ['vehicle', 'people']}))
    assert len(dataset) == 2
    with pytest.raises(ValueError, match="unknown categories \\['dog'\\]"):
        CategoryPairedImageDataset(checked_dataset({**opt, 'category_filter': 'dog'}))


def test_balanced_sampling_draws_every_category_equally(tmp_path):
    regions = {'p1': MIXED['a'].splitlines()[0], 'p2': MIXED['a'].splitlines()[0], 'p3': MIXED['a'].splitlines()[0],
               'c': MIXED['c'], 'v': MIXED['b'], 'bg': ''}
    opt = make_colour_set(tmp_path, regions)
    plain = CategoryPairedImageDataset(checked_dataset(opt))
    assert len(plain) == 6
    dataset = CategoryPairedImageDataset(checked_dataset({**opt, 'balanced_sampling': True}))
    assert group_sizes(dataset) == {'people': 3, 'cat': 3, 'vehicle': 3, 'background': 3}
    counts = {}
    for i, _ in dataset.index:
        stem = Path(dataset.paths[i]['gt_path']).stem
        counts[stem] = counts.get(stem, 0) + 1
    assert counts == {'p1': 1, 'p2': 1, 'p3': 1, 'c': 3, 'v': 3, 'bg': 3}


def test_focus_crops_contain_the_target_category(tmp_path):
    # a tiny cat box in one corner: random crops would mostly miss it
    opt = make_colour_set(tmp_path, {'a': '1 0.0 0.0 0.125 0.0 0.125 0.125 0.0 0.125\n'})
    opt.update(focus_crops=True, gt_size=8)
    dataset = CategoryPairedImageDataset(checked_dataset(opt))
    random.seed(1)
    for _ in range(30):
        assert dataset[0]['categories'].tolist() == [0.0, 1.0, 0.0]


def test_missing_label_file_fails_when_labels_are_required(tmp_path):
    opt = make_colour_set(tmp_path, MIXED)
    (Path(opt['dataroot_labels']) / 'c.txt').unlink()
    assert CategoryPairedImageDataset(checked_dataset(opt)).image_categories[2] == []  # background when not required
    with pytest.raises(LabelError, match=r'labels[/\\]c.txt: label file missing'):
        CategoryPairedImageDataset(checked_dataset({**opt, 'labels_required': True}))


def test_bad_label_fails_at_dataset_build_naming_file_and_line(tmp_path):
    opt = make_colour_set(tmp_path, MIXED)
    (Path(opt['dataroot_labels']) / 'b.txt').write_text('2 0.1 0.1 0.2 0.2\n7 0.1 0.1 0.2 0.2\n')
    with pytest.raises(LabelError, match=r'b.txt:2: unknown class id 7'):
        CategoryPairedImageDataset(checked_dataset(opt))


def test_lmdb_backend_reads_labels_json_beside_the_images(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    opt = make_colour_set(tmp_path / 'folders', MIXED)
    for kind, folder in (('gt', opt['dataroot_gt']), ('lq', opt['dataroot_lq'])):
        names = sorted(p.name for p in Path(folder).iterdir())
        make_lmdb_from_imgs(folder, str(tmp_path / f'{kind}.lmdb'), names, [Path(n).stem for n in names],
                            multiprocessing_read=False, map_size=1 << 24)
    (tmp_path / 'gt.lmdb' / 'labels.json').write_text(json.dumps(MIXED))
    lmdb_opt = {**opt, 'dataroot_gt': str(tmp_path / 'gt.lmdb'), 'dataroot_lq': str(tmp_path / 'lq.lmdb'),
                'io_backend': {'type': 'lmdb'}, 'phase': 'val', 'labels_required': True}
    lmdb_opt.pop('dataroot_labels')
    dataset = CategoryPairedImageDataset(checked_dataset(lmdb_opt))
    disk = CategoryPairedImageDataset(checked_dataset({**opt, 'phase': 'val'}))
    for i in range(len(disk)):
        np.testing.assert_array_equal(dataset[i]['category_map'], disk[i]['category_map'])
        torch.testing.assert_close(dataset[i]['lq'], disk[i]['lq'])
    partial = {key: text for key, text in MIXED.items() if key != 'd'}  # 'd' missing from labels.json
    (tmp_path / 'gt.lmdb' / 'labels.json').write_text(json.dumps(partial))
    with pytest.raises(LabelError, match="no labels for 'd'"):
        CategoryPairedImageDataset(checked_dataset(lmdb_opt))


def test_dataset_options_are_checked(tmp_path):
    opt = make_colour_set(tmp_path, MIXED)
    opt.update(batch_size_per_gpu=2, num_worker_per_gpu=0)
    checked = check_dataset(opt, 'datasets.train', 'x.yml', True)
    assert checked['focus_crops'] is False and checked['use_shuffle'] is True  # filled with the schema's defaults
    assert {key: checked[key] for key in opt} == opt  # the file's own values, unchanged
    with pytest.raises(OptionError, match=r'^x.yml: datasets.train.batch_size_per_gpu is required for the training set$'):
        check_dataset({k: v for k, v in opt.items() if k != 'batch_size_per_gpu'}, 'datasets.train', 'x.yml', True)
    with pytest.raises(OptionError, match="unknown key 'datasets.train.label_dir'"):
        check_dataset({**opt, 'label_dir': 'x'}, 'datasets.train', 'x.yml', True)
    with pytest.raises(OptionError, match='categories_file is required'):
        check_dataset({k: v for k, v in opt.items() if k != 'categories_file'}, 'datasets.train', 'x.yml', True)
    with pytest.raises(OptionError, match='balanced_sampling must be true or false'):
        check_dataset({**opt, 'balanced_sampling': 'yes'}, 'datasets.train', 'x.yml', True)


# ------------------------------------------------------------------------------------------------
# demo labels

DEMO_EXPECTED = {
    # train
    'astronaut': {'people', 'vehicle'}, 'bus': {'people', 'vehicle'}, 'grace_hopper': {'people'},
    'rocket': {'vehicle'}, 'coffee': set(),
    # val
    'zidane': {'people'}, 'motorcycle': {'vehicle'},
    # heldout
    'luispedro': {'people'}, 'chelsea_left': set(), 'chelsea_right': set(), 'china_pagoda': set(),
    'china_lake': set(), 'china_roofs': set(), 'flower_left': set(), 'flower_right': set(),
}
BACKGROUND_ONLY = {name for name, found in DEMO_EXPECTED.items() if not found}


def test_demo_dataset_has_category_labels_for_every_photo(demo_root):
    demo = demo_root / 'datasets' / 'demo'
    assert load_categories(demo / 'categories.yml') == DEMO_CATEGORIES
    found = {}
    for split in ('train', 'val', 'heldout'):
        dataset = CategoryPairedImageDataset(checked_dataset({
            'name': split, 'type': 'CategoryPairedImageDataset', 'phase': 'val', 'scale': 4,
            'io_backend': {'type': 'disk'},
            'dataroot_gt': str(demo / split / 'HR'), 'dataroot_lq': str(demo / split / 'LR_bicubic' / 'X4'),
            'dataroot_labels': str(demo / split / 'labels'), 'categories_file': str(demo / 'categories.yml'),
            'labels_required': True}))
        for i in range(len(dataset)):
            sample = dataset[i]
            name = Path(sample['gt_path']).stem
            found[name] = {DEMO_CATEGORIES[c] for c in range(len(DEMO_CATEGORIES)) if sample['categories'][c]}
            coverage = (sample['category_map'] < len(DEMO_CATEGORIES)).float().mean().item()
            assert coverage < 0.98 and (coverage > 0.02 or name in BACKGROUND_ONLY), (name, coverage)
    assert found == DEMO_EXPECTED
    assert sorted(p.stem for p in DEMO_LABELS.glob('*.txt')) == sorted(DEMO_EXPECTED)


def test_one_reader_for_grey_rgba_16_bit_and_exif(tmp_path):
    """The package's one reader (moesr_arch/utils/image_io.py), as datasets, tools and inference see it."""
    import cv2
    import numpy as np
    from PIL import Image

    from moesr_arch.data import paired_image_dataset, random_scale_dataset
    from moesr_arch.inference import engine
    from moesr_arch.tools.prepare import check_dataset, generate_lr
    from moesr_arch.utils import image_io
    assert paired_image_dataset.decode_image is random_scale_dataset.decode_image is image_io.decode_image
    assert engine.read_raw is check_dataset.read_raw is generate_lr.read_raw is image_io.read_raw
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'grey.png'), rgb[:, :, 0])
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.dstack([rgb, np.full((6, 8), 7, np.uint8)]))
    cv2.imwrite(str(tmp_path / 'deep.png'), rgb.astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(rgb[:, :, ::-1]).save(tmp_path / 'rotated.jpg', exif=exif.tobytes(), quality=95)

    colour, alpha, grey = image_io.split_channels(image_io.read_raw(tmp_path / 'grey.png'))
    assert grey and alpha is None and colour.shape == (6, 8, 3) and (colour == rgb[:, :, :1]).all()
    raw = image_io.read_raw(tmp_path / 'rgba.png')
    colour, alpha, grey = image_io.split_channels(raw)
    assert raw.shape == (6, 8, 4) and not grey and (alpha == 7).all() and (colour == rgb).all()
    deep = image_io.read_raw(tmp_path / 'deep.png')
    assert deep.dtype == np.uint16 and image_io.peak_value(deep) == 65535.
    np.testing.assert_allclose(image_io.read_image(tmp_path / 'deep.png'), rgb / 255., atol=1e-6)
    assert image_io.read_raw(tmp_path / 'rotated.jpg').shape == (8, 6, 3)  # EXIF orientation applied
    floats = image_io.read_image(tmp_path / 'rgba.png', keep_alpha=True)
    assert floats.dtype == np.float32 and floats.shape == (6, 8, 4) and floats[..., 3].max() == np.float32(7 / 255.)
    assert image_io.read_image(tmp_path / 'grey.png').shape == (6, 8, 3)
    assert [p.name for p in image_io.list_images(tmp_path)] == ['deep.png', 'grey.png', 'rgba.png', 'rotated.jpg']
