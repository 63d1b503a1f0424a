"""MoEISR decodes and samples data as LIIF does (Chen et al., CVPR 2021; github.com/yinboc/liif).

The reference functions below are written here from LIIF's formulas (``utils.make_coord``,
``models/liif.py query_rgb``, ``datasets/wrappers.py sr-implicit-downsampled``), independently of the
product code, and the product must give their values on the same weights and the same random draws.
"""
import random

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import checked_dataset
from moesr_arch.archs.moeisr_arch import MoEISR, make_coord
from moesr_arch.data.random_scale_dataset import RandomScaleSRDataset


def liif_make_coord(shape, flatten=True):
    seqs = []
    for n in shape:
        v0, v1 = -1, 1
        r = (v1 - v0) / (2 * n)
        seqs.append(v0 + r + (2 * r) * torch.arange(n).float())
    ret = torch.stack(torch.meshgrid(*seqs, indexing='ij'), dim=-1)
    return ret.view(-1, ret.shape[-1]) if flatten else ret


def liif_query_rgb(feat, imnet, coord, cell):
    """LIIF's query_rgb with feat_unfold, local_ensemble and cell_decode on."""
    feat = F.unfold(feat, 3, padding=1).view(feat.shape[0], feat.shape[1] * 9, feat.shape[2], feat.shape[3])
    eps_shift = 1e-6
    rx, ry = 2 / feat.shape[-2] / 2, 2 / feat.shape[-1] / 2
    feat_coord = liif_make_coord(feat.shape[-2:], flatten=False).permute(2, 0, 1) \
        .unsqueeze(0).expand(feat.shape[0], 2, *feat.shape[-2:])
    preds, areas = [], []
    for vx in (-1, 1):
        for vy in (-1, 1):
            coord_ = coord.clone()
            coord_[:, :, 0] += vx * rx + eps_shift
            coord_[:, :, 1] += vy * ry + eps_shift
            coord_.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = coord_.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(feat, grid, mode='nearest', align_corners=False)[:, :, 0, :].permute(0, 2, 1)
            q_coord = F.grid_sample(feat_coord, grid, mode='nearest', align_corners=False)[:, :, 0, :] \
                .permute(0, 2, 1)
            rel_coord = coord - q_coord
            rel_coord[:, :, 0] *= feat.shape[-2]
            rel_coord[:, :, 1] *= feat.shape[-1]
            rel_cell = cell.clone()
            rel_cell[:, :, 0] *= feat.shape[-2]
            rel_cell[:, :, 1] *= feat.shape[-1]
            inp = torch.cat([q_feat, rel_coord, rel_cell], dim=-1)
            bs, q = coord.shape[:2]
            preds.append(imnet(inp.view(bs * q, -1)).view(bs, q, -1))
            areas.append(torch.abs(rel_coord[:, :, 0] * rel_coord[:, :, 1]) + 1e-9)
    tot_area = torch.stack(areas).sum(dim=0)
    areas[0], areas[3] = areas[3], areas[0]
    areas[1], areas[2] = areas[2], areas[1]
    ret = 0
    for pred, area in zip(preds, areas):
        ret = ret + pred * (area / tot_area).unsqueeze(-1)
    return ret


def liif_resize_fn(img, size):
    """torchvision's ToPILImage -> Resize(size, BICUBIC) -> ToTensor, spelt out."""
    pil = Image.fromarray(img.mul(255).byte().permute(1, 2, 0).numpy(), 'RGB')
    if isinstance(size, int):
        size = (size, size)
    out = np.asarray(pil.resize((size[1], size[0]), Image.BICUBIC))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div(255)


def liif_downsampled_item(img, inp_size, scale_min, scale_max, augment, sample_q):
    """LIIF's SRImplicitDownsampled.__getitem__ for a (3, H, W) image (training crop)."""
    s = random.uniform(scale_min, scale_max)
    w_lr = inp_size
    w_hr = round(w_lr * s)
    x0 = random.randint(0, img.shape[-2] - w_hr)
    y0 = random.randint(0, img.shape[-1] - w_hr)
    crop_hr = img[:, x0:x0 + w_hr, y0:y0 + w_hr]
    crop_lr = liif_resize_fn(crop_hr, w_lr)
    if augment:
        hflip, vflip, dflip = random.random() < 0.5, random.random() < 0.5, random.random() < 0.5

        def flip(x):
            if hflip:
                x = x.flip(-2)
            if vflip:
                x = x.flip(-1)
            if dflip:
                x = x.transpose(-2, -1)
            return x
        crop_lr, crop_hr = flip(crop_lr), flip(crop_hr)
    hr_coord = liif_make_coord(crop_hr.shape[-2:])
    hr_rgb = crop_hr.contiguous().view(3, -1).permute(1, 0)
    sample_lst = np.random.choice(len(hr_coord), sample_q, replace=False)
    hr_coord, hr_rgb = hr_coord[sample_lst], hr_rgb[sample_lst]
    cell = torch.ones_like(hr_coord)
    cell[:, 0] *= 2 / crop_hr.shape[-2]
    cell[:, 1] *= 2 / crop_hr.shape[-1]
    return {'inp': crop_lr, 'coord': hr_coord, 'cell': cell, 'gt': hr_rgb}


@pytest.mark.parametrize('n', [1, 2, 3, 7, 16, 48, 54, 100, 171, 512])
def test_make_coord_is_liifs_bit_for_bit(n):
    assert torch.equal(make_coord((n, 5)), liif_make_coord((n, 5)))
    assert torch.equal(make_coord((3, n)), liif_make_coord((3, n)))


def test_old_pixel_centre_formula_differs_where_it_matters():
    # The formula used before, (2i + 1) / n - 1, is the same number but not the same float32 at x3 sizes:
    # the test above would fail with it.
    n = 48
    old = (torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1
    assert not torch.equal(old, liif_make_coord((n,)))


def liif_encoder_features(net, lq):
    x = net.conv_first((lq - 0.5) / 0.5)
    return net.conv_after_body(net.body(x)) + x


@pytest.mark.parametrize('scale', [2, 3, 4, 2.7])
def test_single_decoder_gives_liifs_values(scale):
    torch.manual_seed(0)
    net = MoEISR(num_feat=8, num_block=1, expert_depths=[4], hidden_dim=16).eval()
    lq = torch.rand(2, 3, 16, 13)
    h, w = round(16 * scale), round(13 * scale)
    coord = liif_make_coord((h, w)).unsqueeze(0).expand(2, -1, -1)
    cell = torch.ones_like(coord)
    cell[:, :, 0] *= 2 / h
    cell[:, :, 1] *= 2 / w
    with torch.no_grad():
        reference = liif_query_rgb(liif_encoder_features(net, lq), net.experts[0], coord, cell) * 0.5 + 0.5
        values = net(lq, coord, cell)  # query path, before any clamp
        image = net.upscale(lq, scale)
    assert (values - reference).abs().max() <= 1e-6
    reference_image = reference.clamp(0, 1).permute(0, 2, 1).reshape(2, 3, h, w)
    assert (image - reference_image).abs().max() <= 1e-6


@pytest.mark.parametrize('scale', [3, 2.7])
def test_sparse_routing_to_one_expert_gives_liifs_values_of_that_expert(scale):
    torch.manual_seed(1)
    net = MoEISR(num_feat=8, num_block=1, expert_depths=[1, 2], hidden_dim=16, mapper_dim=8,
                 routing_bias=-1e6).eval()  # every pixel to the deepest expert, through the sparse path
    lq = torch.rand(1, 3, 12, 15)
    h, w = round(12 * scale), round(15 * scale)
    coord = liif_make_coord((h, w))[None]
    cell = torch.ones_like(coord)
    cell[:, :, 0] *= 2 / h
    cell[:, :, 1] *= 2 / w
    with torch.no_grad():
        reference = liif_query_rgb(liif_encoder_features(net, lq), net.experts[1], coord, cell) * 0.5 + 0.5
        values = net(lq, coord, cell)
    assert (values - reference).abs().max() <= 1e-6


def test_random_scale_training_sample_is_liifs(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / 'HR').mkdir()
    image = rng.integers(0, 256, (70, 64, 3), dtype=np.uint8)
    image[10:40, 5:50] = 200  # flat areas and edges, so the bicubic filter's rounding shows
    cv2.imwrite(str(tmp_path / 'HR' / 'a.png'), image)
    hr = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float().div(255)
    opt = {'name': 'rs', 'type': 'RandomScaleSRDataset', 'phase': 'train', 'dataroot_gt': str(tmp_path / 'HR'),
           'io_backend': {'type': 'disk'}, 'lq_size': 12, 'scale_min': 1, 'scale_max': 4, 'sample_q': 144}
    dataset = RandomScaleSRDataset(checked_dataset(opt))
    for seed in range(6):  # different scales, crops and flips
        random.seed(seed)
        np.random.seed(seed)
        ours = dataset[0]
        random.seed(seed)
        np.random.seed(seed)
        theirs = liif_downsampled_item(hr, 12, 1, 4, True, 144)
        assert torch.equal(ours['lq'], theirs['inp'])
        assert torch.equal(ours['coord'], theirs['coord'])
        assert torch.equal(ours['cell'], theirs['cell'])
        assert torch.equal(ours['gt'], theirs['gt'])
        levels = ours['lq'] * 255  # an 8-bit LR, as read from a file
        assert torch.equal(levels, levels.round())


@pytest.mark.parametrize('scale', [2, 3, 2.5])
def test_random_scale_validation_sample_is_liifs(tmp_path, scale):
    (tmp_path / 'HR').mkdir()
    image = np.random.default_rng(4).integers(0, 256, (41, 37, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'HR' / 'a.png'), image)
    hr = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float().div(255)
    sample = RandomScaleSRDataset(checked_dataset({'name': 'rs', 'type': 'RandomScaleSRDataset', 'phase': 'val',
                                                   'dataroot_gt': str(tmp_path / 'HR'), 'io_backend': {'type': 'disk'},
                                                   'scale': scale}))[0]
    # LIIF, inp_size None: h_lr = floor(H / s + 1e-9), the image cut to round(h_lr * s), then resize_fn.
    h_lr, w_lr = int(41 / scale + 1e-9), int(37 / scale + 1e-9)
    crop = hr[:, :round(h_lr * scale), :round(w_lr * scale)]
    assert torch.equal(sample['gt'], crop)
    assert torch.equal(sample['lq'], liif_resize_fn(crop, (h_lr, w_lr)))
