"""The demo data's split is fair: no scene in two of train/val/heldout, and every category in train and val."""
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts' / 'data_preparation'))
from make_demo_dataset import CATEGORIES, PHOTOS, SPLITS, photo  # noqa: E402

from moesr_arch.data.category_labels import rasterize_category_map, read_labels  # noqa: E402


def test_no_scene_in_two_splits():
    splits_of = defaultdict(set)
    for name, entry in PHOTOS.items():
        assert entry['split'] in SPLITS, name
        splits_of[entry['scene']].add(entry['split'])
    shared = {scene: sorted(splits) for scene, splits in splits_of.items() if len(splits) > 1}
    assert not shared, f'scenes in more than one split: {shared}'


def test_the_stereo_pair_is_one_scene():
    """scikit-image's two motorcycle views show one scene: one can't be in val and the other in train."""
    left = photo('skimage', 'motorcycle_left.png', 'train')
    right = photo('skimage', 'motorcycle_right.png', 'val')
    assert left['scene'] == right['scene']
    assert photo('skimage', 'chelsea.png', 'train', crop=(0, 10, 0, 10))['scene'] == 'skimage/chelsea.png'


def test_heldout_set_size():
    heldout = [name for name, entry in PHOTOS.items() if entry['split'] == 'heldout']
    assert 8 <= len(heldout) <= 12, heldout


def test_every_category_has_two_train_and_one_val_photo(demo_root):
    data = demo_root / 'datasets' / 'demo'
    names = {}
    for line in (data / 'categories.yml').read_text().splitlines():
        if line and not line.startswith('#'):
            key, name = line.split(':')
            names[int(key)] = name.strip()
    assert names == CATEGORIES
    photos = defaultdict(lambda: defaultdict(set))  # split -> category -> photos with labelled pixels of it
    for name, entry in PHOTOS.items():
        split = entry['split']
        hr = cv2.imread(str(data / split / 'HR' / f'{name}.png'))
        assert hr is not None, name
        assert max(hr.shape[:2]) <= 640 and hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0, (name, hr.shape)
        label = data / split / 'labels' / f'{name}.txt'
        if not label.is_file():
            continue
        category_map = rasterize_category_map(read_labels(label, len(CATEGORIES)), hr.shape[0], hr.shape[1],
                                             len(CATEGORIES))
        for index, category in CATEGORIES.items():
            if (category_map == index).any():
                photos[split][category].add(name)
    for category in CATEGORIES.values():
        assert len(photos['train'][category]) >= 2, (category, dict(photos['train']))
        assert len(photos['val'][category]) >= 1, (category, dict(photos['val']))


@pytest.mark.parametrize('split', SPLITS)
def test_built_split_matches_the_photo_list(demo_root, split):
    data = demo_root / 'datasets' / 'demo'
    expected = sorted(f'{name}.png' for name, entry in PHOTOS.items() if entry['split'] == split)
    assert sorted(p.name for p in (data / split / 'HR').glob('*.png')) == expected
    for scale in (2, 3, 4):
        assert sorted(p.name for p in (data / split / 'LR_bicubic' / f'X{scale}').glob('*.png')) == expected
    meta = (data / 'meta_info' / f'demo_{split}_HR.txt').read_text().split()
    assert sorted(line for line in meta if line.endswith('.png')) == expected
