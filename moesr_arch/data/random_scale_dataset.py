import math
import os
import random

import numpy as np
import torch
from basicsr.data.data_util import paths_from_lmdb
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from PIL import Image
from torch.utils import data

from moesr_arch.archs.moeisr_arch import make_coord
from moesr_arch.utils.image_io import decode_image, list_images


def bicubic_resize(image, size):
    """LIIF's ``resize_fn``: a CHW tensor in [0, 1] resized to ``size`` (h, w) by PIL's bicubic filter on 8 bits.

    As torchvision's ``ToPILImage`` -> ``Resize(size, BICUBIC)`` -> ``ToTensor`` in LIIF's
    ``sr-implicit-downsampled``: the values are scaled by 255 and truncated to uint8 (exact for images read
    from 8-bit files), resized by PIL (anti-aliased, 8-bit arithmetic) and divided by 255, so the LR is
    quantised to 8 bits like an LR file.
    """
    channels = image.shape[0]
    if channels not in (1, 3):
        raise ValueError(f'bicubic_resize: need 1 or 3 channels, got a {tuple(image.shape)} tensor')
    pixels = image.mul(255).byte().permute(1, 2, 0).cpu().numpy()
    picture = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, 'L' if channels == 1 else 'RGB')
    resized = np.asarray(picture.resize((size[1], size[0]), Image.BICUBIC))
    return torch.from_numpy(resized.reshape(size[0], size[1], channels).copy()).permute(2, 0, 1).float().div(255)


def liif_augment(images, hflip=True, rot=True):
    """LIIF's training augmentation of CHW tensors (the same draws for every image of ``images``).

    LIIF draws three coins in this order: flip the rows, flip the columns, transpose. ``hflip`` enables
    the column flip (a horizontal flip) and ``rot`` the row flip and the transpose (together with the
    column flip they make BasicSR's rotations); with both, the draws and the result are LIIF's.
    """
    if not (hflip or rot):
        return images
    flip_rows, flip_cols, transpose = (random.random() < 0.5 for _ in range(3))
    out = []
    for image in images:
        if rot and flip_rows:
            image = image.flip(-2)
        if hflip and flip_cols:
            image = image.flip(-1)
        if rot and transpose:
            image = image.transpose(-2, -1)
        out.append(image.contiguous())
    return out


def hr_paths(opt):
    """Keys of the HR images: an LMDB's keys, the names of a meta_info file, or the images of a folder."""
    folder = opt['dataroot_gt']
    if opt['io_backend']['type'] == 'lmdb':
        return paths_from_lmdb(folder)
    if opt.get('meta_info_file'):
        with open(opt['meta_info_file'], encoding='utf-8') as f:
            names = [line.split(' ')[0].strip() for line in f if line.strip()]
        return [os.path.join(folder, name) for name in names]
    try:
        return [str(path) for path in list_images(folder, allow_empty=True)]
    except FileNotFoundError:
        raise FileNotFoundError(f'no such data folder: {folder}') from None


@DATASET_REGISTRY.register()
class RandomScaleSRDataset(data.Dataset):
    """HR images cut into arbitrary-scale SR samples (LIIF's ``sr-implicit-downsampled`` protocol).

    Training (``phase: train``): a scale ``s ~ U[scale_min, scale_max]`` per sample, a random HR crop of
    ``round(lq_size * s)`` pixels square, made ``lq_size`` square by :func:`bicubic_resize` (8-bit, as
    LIIF), then LR and HR flipped/transposed alike (:func:`liif_augment`); ``sample_q`` HR pixels are
    drawn at random as queries. With the same seeds the samples are LIIF's bit for bit.
    Returns ``lq`` (C, lq_size, lq_size), ``coord`` (sample_q, 2) pixel centres in [-1, 1] (row, column),
    ``cell`` (sample_q, 2) pixel sizes, ``gt`` (sample_q, C) their RGB values, ``scale``.

    Validation/test: the whole image at the fixed ``scale`` (any number, e.g. 6 or 2.5): LR is
    ``floor(H / scale)`` by ``floor(W / scale)``, made by :func:`bicubic_resize` from the HR image cropped
    to ``round(scale x LR)``. Returns ``lq``, ``gt`` (C, H', W'), ``lq_path`` and ``gt_path`` (both the HR
    file), ``scale``.
    Paired sets with official LR files (DIV2K x2-x4) use ``CheckedPairedImageDataset`` instead.

    Options: BasicSR's loader keys, ``dataroot_gt`` (folder or .lmdb), ``io_backend``, the training sample
    (``lq_size``, ``scale_min``, ``scale_max``, ``sample_q``, flips) and ``scale`` (validation and test);
    their types and defaults are in docs/options.md#randomscalesrdataset. ``opt`` is the dataset section checked
    and filled with those defaults, as ``basicsr train|test`` give it (docs/options.md#datasets); from Python,
    :func:`moesr_arch.options.check_dataset` fills a hand-written dict.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.train = opt.get('phase', 'train') == 'train'
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        self.lq_size = int(opt['lq_size'])
        self.scale_min, self.scale_max = float(opt['scale_min']), float(opt['scale_max'])
        self.sample_q = int(opt['sample_q'])
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [opt['dataroot_gt']]
            self.io_backend_opt['client_keys'] = ['gt']
        self.paths = hr_paths(opt)
        if not self.paths:
            raise ValueError(f'{opt["dataroot_gt"]}: the dataset {opt.get("name")} has no image')
        name = opt.get('name')
        if self.train:
            if not 1 <= self.scale_min <= self.scale_max:
                raise ValueError(f'dataset {name}: need 1 <= scale_min <= scale_max, got {self.scale_min}, '
                                 f'{self.scale_max}')
            if self.sample_q > self.lq_size**2 * self.scale_min**2:
                raise ValueError(f'dataset {name}: sample_q {self.sample_q} exceeds the HR pixels of a crop at '
                                 f'scale_min ({round(self.lq_size * self.scale_min)}^2); lower sample_q or raise '
                                 'lq_size')
        elif not isinstance(opt.get('scale'), (int, float)) or opt['scale'] <= 0:
            raise ValueError(f'dataset {name}: a validation/test RandomScaleSRDataset needs a positive scale, '
                             f'got {opt.get("scale")!r}')

    def read(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        return decode_image(self.file_client.get(path, 'gt'), path), path

    def __getitem__(self, index):
        image, path = self.read(index)
        return self.train_sample(image, path) if self.train else self.test_sample(image, path)

    def train_sample(self, image, path):
        scale = random.uniform(self.scale_min, self.scale_max)
        size = round(self.lq_size * scale)
        h, w = image.shape[:2]
        if h < size or w < size:
            raise ValueError(f'{path}: {w}x{h} is smaller than the {size}x{size} HR crop of lq_size '
                             f'{self.lq_size} at scale {scale:.2f}')
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        # LIIF's order: crop, resize to the LR, then the same flips for both (resizing a flipped crop would
        # differ by PIL's rounding).
        hr = img2tensor(np.ascontiguousarray(image[top:top + size, left:left + size]), bgr2rgb=True, float32=True)
        lq = bicubic_resize(hr, (self.lq_size, self.lq_size))
        hr, lq = liif_augment([hr, lq], self.opt['use_hflip'], self.opt['use_rot'])
        coord = make_coord((size, size))
        picked = torch.from_numpy(np.random.choice(size * size, self.sample_q, replace=False))
        cell = torch.ones(self.sample_q, 2)
        cell[:, 0] *= 2 / size
        cell[:, 1] *= 2 / size
        gt = hr.reshape(hr.shape[0], -1)[:, picked].t().contiguous()
        return {'lq': lq, 'coord': coord[picked], 'cell': cell, 'gt': gt, 'scale': scale, 'gt_path': path}

    def test_sample(self, image, path):
        scale = float(self.opt['scale'])
        h, w = image.shape[:2]
        h_lq, w_lq = math.floor(h / scale + 1e-9), math.floor(w / scale + 1e-9)
        if h_lq < 1 or w_lq < 1:
            raise ValueError(f'{path}: {w}x{h} is too small for scale {scale}')
        hr = img2tensor(image[:round(h_lq * scale), :round(w_lq * scale)], bgr2rgb=True, float32=True)
        lq = bicubic_resize(hr, (h_lq, w_lq))
        return {'lq': lq, 'gt': hr, 'lq_path': path, 'gt_path': path, 'scale': scale}

    def __len__(self):
        return len(self.paths)
