import json
import os
import random

import numpy as np
import torch
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from moesr_arch.data.categories import load_categories
from moesr_arch.data.category_labels import (LabelError, categories_present, parse_label_text, read_labels,
                                             rasterize_category_map)
from moesr_arch.data.paired_image_dataset import CheckedPairedImageDataset

LMDB_LABELS_FILE = 'labels.json'


def label_key(path, io_backend):
    """The key of an image in the label store: its file stem (disk) or its LMDB key."""
    return path if io_backend == 'lmdb' else os.path.splitext(os.path.basename(path))[0]


def random_crop_with_map(img_gt, img_lq, category_map, gt_size, scale, gt_path, focus=None, rng=random):
    """Crop an HR/LR pair and the LR-size category map at the same place (LR pixels ``top, left``).

    With ``focus`` (a class id present in the map) the window is drawn among those containing a pixel of it.
    """
    h_lq, w_lq = img_lq.shape[:2]
    if gt_size % scale:
        raise ValueError(f'gt_size {gt_size} is not a multiple of the scale {scale}')
    size = gt_size // scale
    if h_lq < size or w_lq < size:
        raise ValueError(f'{gt_path}: LR image {w_lq}x{h_lq} is smaller than the crop {size}x{size} '
                         f'(gt_size {gt_size} / scale {scale})')
    ys = xs = None
    if focus is not None:
        ys, xs = np.nonzero(category_map == focus)
    if ys is not None and len(ys):
        pick = rng.randrange(len(ys))
        # Windows containing (y, x): top in [y - size + 1, y], clipped to the image.
        top = rng.randint(max(0, ys[pick] - size + 1), min(h_lq - size, ys[pick]))
        left = rng.randint(max(0, xs[pick] - size + 1), min(w_lq - size, xs[pick]))
    else:
        top, left = rng.randint(0, h_lq - size), rng.randint(0, w_lq - size)
    return (img_gt[top * scale:(top + size) * scale, left * scale:(left + size) * scale],
            img_lq[top:top + size, left:left + size], category_map[top:top + size, left:left + size])


def augment_all(images, hflip, rotation, rng=random):
    """BasicSR's flip/rotation augmentation (same draw for every array; 2-D maps included)."""
    flip_h = hflip and rng.random() < 0.5
    flip_v = rotation and rng.random() < 0.5
    transpose = rotation and rng.random() < 0.5
    out = []
    for image in images:
        if flip_h:
            image = image[:, ::-1]
        if flip_v:
            image = image[::-1]
        if transpose:
            image = image.swapaxes(0, 1)
        out.append(np.ascontiguousarray(image))
    return out


@DATASET_REGISTRY.register()
class CategoryPairedImageDataset(CheckedPairedImageDataset):
    """HR/LR pairs with per-pixel category maps from YOLO-format region labels (MoE-SR training data).

    Reads image pairs like :class:`CheckedPairedImageDataset` (folders, meta_info file or LMDB) and, per
    HR image, a label file of polygons/boxes (see :mod:`moesr_arch.data.category_labels`). The labels are
    rasterised at LR size; random crops, flips and rotations move images and map together.
    ``balanced_sampling`` repeats images so that every category (and the group of images without any) is
    drawn equally often per epoch; with ``focus_crops`` a training crop contains a pixel of its target
    category: the balanced group's category, else one of ``category_filter``'s, else any of the image's.

    Options: those of CheckedPairedImageDataset and BasicSR's loader keys, plus the categories and labels
    (``categories_file``, ``dataroot_labels``, ...); their types and defaults are in
    docs/options.md#categorypairedimagedataset. ``opt`` is the dataset section checked and filled with those
    defaults, as ``basicsr train|test`` give it (docs/options.md#datasets); from Python,
    :func:`moesr_arch.options.check_dataset` fills a hand-written dict.

    Returns ``lq`` [3, h, w] and ``gt`` [3, H, W] (RGB float in [0, 1]), ``category_map`` int64 [h, w]
    (0..K-1 categories, K background), ``categories`` float [K] (multi-hot of the categories present in
    the returned sample), ``lq_path``, ``gt_path``.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.categories = load_categories(opt['categories_file'])
        self.num_categories = len(self.categories)
        self.backend_type = self.io_backend_opt['type']
        self.regions = [self._load_regions(p['gt_path']) for p in self.paths]
        self.image_categories = [sorted({r.category for r in regions}) for regions in self.regions]

        wanted = opt.get('category_filter')
        self.filter_ids = None
        if wanted is not None:
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            unknown = [name for name in wanted if name not in self.categories]
            if unknown:
                raise ValueError(f'category_filter: unknown categories {unknown}; {opt["categories_file"]} has '
                                 f'{self.categories}')
            self.filter_ids = [self.categories.index(name) for name in wanted]
            keep = [i for i, cats in enumerate(self.image_categories) if set(cats) & set(self.filter_ids)]
            if not keep:
                raise ValueError(f'{self.gt_folder}: no image of the dataset {opt.get("name")} contains '
                                 f'{", ".join(wanted)}')
        else:
            keep = list(range(len(self.paths)))

        # Each entry: (image index, category the crop should contain or None).
        if opt['balanced_sampling']:
            self.index = self._balanced_index(keep)
        else:
            self.index = [(i, None) for i in keep]

    # ------------------------------------------------------------------------------------------
    def _load_regions(self, gt_path):
        labels = self.opt.get('dataroot_labels')
        required = self.opt['labels_required']
        key = label_key(gt_path, self.backend_type)
        if labels is None and self.backend_type == 'lmdb':
            labels = os.path.join(self.gt_folder, LMDB_LABELS_FILE)
            if not os.path.isfile(labels) and not required:
                return []
        if labels is None:
            if required:
                raise LabelError(f'{self.opt.get("name")}: labels_required is true but dataroot_labels is not set')
            return []
        if os.path.isdir(labels):
            return read_labels(os.path.join(labels, f'{key}.txt'), self.num_categories, required)
        store = self._label_store(labels)
        if key not in store:
            if required:
                raise LabelError(f'{labels}: no labels for {key!r} (labels_required is true)')
            return []
        return parse_label_text(store[key], f'{labels}[{key}]', self.num_categories)

    def _label_store(self, path):
        if getattr(self, '_store', None) is None:
            try:
                with open(path, encoding='utf-8') as f:
                    self._store = json.load(f)
            except (OSError, json.JSONDecodeError) as error:
                raise LabelError(f'{path}: cannot read the label store: {error}') from error
            if not isinstance(self._store, dict) or not all(isinstance(v, str) for v in self._store.values()):
                raise LabelError(f'{path}: a label store is a JSON object {{"key": "label file text"}}')
        return self._store

    def _balanced_index(self, keep):
        groups = {}
        targets = self.filter_ids if self.filter_ids is not None else range(self.num_categories)
        for i in keep:
            cats = [c for c in self.image_categories[i] if c in targets]
            for c in cats:
                groups.setdefault(c, []).append((i, c))
            if not cats:
                groups.setdefault(None, []).append((i, None))
        size = max(len(g) for g in groups.values())
        index = []
        for key in sorted(groups, key=lambda k: self.num_categories if k is None else k):
            group = groups[key]
            index.extend(group[j % len(group)] for j in range(size))
        return index

    # ------------------------------------------------------------------------------------------
    def __getitem__(self, item):
        index, focus = self.index[item]
        img_gt, img_lq, gt_path, lq_path = self.read_pair(index)
        h_hr, w_hr = self.last_hr_size
        h_lq, w_lq = img_lq.shape[:2]
        # Labels are normalised to the full HR image, which may be a few pixels larger than scale x LR.
        category_map = rasterize_category_map(self.regions[index], h_lq, w_lq, self.num_categories,
                                              extent=(w_hr / self.scale, h_hr / self.scale))
        if self.opt.get('phase', 'val') == 'train':
            if self.opt['focus_crops'] and focus is None:
                choices = self.image_categories[index]
                if self.filter_ids is not None:
                    choices = [c for c in choices if c in self.filter_ids]
                focus = random.choice(choices) if choices else None
            elif not self.opt['focus_crops']:
                focus = None
            img_gt, img_lq, category_map = random_crop_with_map(img_gt, img_lq, category_map, self.opt['gt_size'],
                                                                self.scale, gt_path, focus)
            img_gt, img_lq, category_map = augment_all([img_gt, img_lq, category_map],
                                                       self.opt['use_hflip'], self.opt['use_rot'])
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        return {
            'lq': img_lq,
            'gt': img_gt,
            'category_map': torch.from_numpy(np.ascontiguousarray(category_map)).long(),
            'categories': torch.from_numpy(categories_present(category_map, self.num_categories)),
            'lq_path': lq_path,
            'gt_path': gt_path,
        }

    def __len__(self):
        return len(self.index)
