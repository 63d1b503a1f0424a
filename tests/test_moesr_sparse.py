"""Top-1 sparse MoE-SR: every expert, the background included, runs only where its blend weight is positive.

Random soft gates (several components per category, touching the image borders, overlapping) at about
10%, 30% and 60% coverage; the sparse output must equal the dense blend within 1e-5, with and without
tile splits, for a batch whose images cover differently. Tiny experts keep it fast.
"""
import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from torch import nn

from moesr_arch.archs.fusion import blend_weights
from moesr_arch.archs.sparse_crops import (CPU_BATCH_PIXELS, batch_groups, batch_pixels, receptive_radius,
                                           support_boxes, support_mask, window_area)

EDSR = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
VDSR = dict(type='VDSR', num_feat=8, num_layer=4, upscale=2)
RADIUS = 6  # of both experts, LR px (checked below): the smallest exact crop margin


class Counting(nn.Module):
    """An expert that records the shape of every input it is called on."""

    def __init__(self, expert):
        super().__init__()
        self.expert, self.calls = expert, []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.expert(x)


def moesr(margin=RADIUS, **kwargs):
    torch.manual_seed(0)
    net = build_network(dict(type='MoESRNet', experts={'people': EDSR, 'cat': VDSR, 'background': EDSR},
                             crop_margin=margin, **kwargs)).eval()
    for name in net.names:
        net.experts[name] = Counting(net.experts[name])
    return net


def random_gate(h, w, coverage, seed):
    """Soft weights ``[3, h, w]``: random boxes and discs of both categories (confidence 0.4-1, overlaps
    shared), some cut by the image border, added until ``coverage`` of the pixels has a category."""
    rng = np.random.default_rng(seed)
    categories = np.zeros((2, h, w), np.float32)
    ys, xs = np.mgrid[:h, :w]
    while (categories.sum(0) > 0).mean() < coverage:
        k, confidence = rng.integers(2), rng.uniform(0.4, 1)
        cy, cx = rng.integers(-4, h + 4), rng.integers(-4, w + 4)
        size = coverage**0.5 / 4  # blob radius up to this share of the side: several blobs reach the coverage
        ry, rx = rng.integers(2, max(3, int(h * size))), rng.integers(2, max(3, int(w * size)))
        inside = (((ys - cy) / ry)**2 + ((xs - cx) / rx)**2 <= 1) if rng.random() < 0.5 else \
            ((abs(ys - cy) <= ry) & (abs(xs - cx) <= rx))
        categories[k][inside] = np.maximum(categories[k][inside], confidence)
    categories /= np.maximum(categories.sum(0, keepdims=True), 1)
    return torch.from_numpy(np.concatenate([categories, 1 - categories.sum(0, keepdims=True)]))


def components(weights):
    """Connected components of all category regions of a ``[3, h, w]`` gate."""
    return sum(cv2.connectedComponents((weights[k] > 0).numpy().astype(np.uint8))[0] - 1 for k in range(2))


def test_the_margin_is_the_receptive_radius_of_the_test_experts():
    assert max(receptive_radius(build_network(dict(expert)), 2) for expert in (EDSR, VDSR)) == RADIUS


@pytest.mark.parametrize('coverage', [0.1, 0.3, 0.6])
@pytest.mark.parametrize('tile_size', [0, 12])
def test_top1_equals_the_dense_blend(coverage, tile_size):
    net = moesr(tile_size=tile_size, max_batch=3)
    h, w = 44, 52
    lq = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    # The second image covers about half as much: the batch's images need different boxes.
    weights = torch.stack([random_gate(h, w, coverage, seed=int(coverage * 10)),
                           random_gate(h, w, coverage / 2, seed=7)])
    for image in weights:
        assert components(image) >= 3
    covered = (weights[:, :2].sum(1) > 0).float().mean((1, 2))
    assert abs(covered[0] - coverage) < 0.1 and covered[1] < covered[0]
    assert (weights[:, :2].sum(1) > 0)[..., [0, -1]].any() and (weights[:, :2].sum(1) > 0)[..., [0, -1], :].any()
    with torch.no_grad():
        sparse = net.run(lq, weights)
        calls = {name: list(net.experts[name].calls) for name in net.names}
        dense = net.run(lq, weights, sparse=False)
    torch.testing.assert_close(sparse['output'], dense['output'], rtol=0, atol=1e-5)
    side = tile_size + 2 * net.crop_margin if tile_size else max(h, w)
    assert all(max(shape[-2:]) <= side for shapes in calls.values() for shape in shapes)
    assert sparse['background'] is None  # the dense path's whole background image is not computed
    torch.testing.assert_close(dense['background'], net.experts['background'].expert(lq))


def test_each_pixel_is_computed_by_about_one_expert():
    """Two large regions (60% of the image): the background expert leaves them out, so the experts
    together compute about one image's pixels plus the seams and margins (1.35 images here), where the
    background on the whole image would make it 1.9."""
    net = moesr()
    h = w = 96
    weights = torch.zeros(1, 3, h, w)
    weights[0, 2] = 1
    weights[0, :, :58, :50] = torch.tensor([1., 0, 0])[:, None, None]
    weights[0, :, :58, 50:] = torch.tensor([0., 1, 0])[:, None, None]
    with torch.no_grad():
        net(torch.rand(1, 3, h, w), weights)
    computed = {name: sum(s[0] * s[2] * s[3] for s in net.experts[name].calls) / (h * w) for name in net.names}
    assert computed['background'] < 0.5, computed  # 40% of the image has background weight, plus its margin
    assert sum(computed.values()) < 1.4, computed


def test_the_background_expert_is_not_called_where_a_category_owns_every_pixel():
    net = moesr()
    lq = torch.rand(2, 3, 20, 24)
    weights = torch.zeros(2, 3, 20, 24)
    weights[:, 1] = 1  # the cat expert everywhere
    with torch.no_grad():
        result = net.run(lq, weights)
        alone = net.experts['cat'].expert(lq)
    assert net.experts['background'].calls == [] and net.experts['people'].calls == []
    assert net.experts['cat'].calls == [(2, 3, 20, 24)]  # both whole images in one call
    assert torch.equal(result['output'], alone)
    assert result['background'] is None


def test_a_margin_below_the_receptive_radius_is_not_exact():
    """The margin is what makes it exact: one pixel less and the borders of an inner crop show."""
    lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    weights = torch.zeros(1, 3, 64, 64)
    weights[0, 2] = 1
    weights[0, :, 28:36, 28:36] = torch.tensor([1., 0, 0])[:, None, None]
    hard = dict(dilation=0, feather=0)  # the crop's edge pixels then need the whole radius
    with torch.no_grad():
        dense = moesr(**hard).run(lq, weights, sparse=False)['output']
        short = moesr(margin=RADIUS - 1, **hard).run(lq, weights)['output']
        exact = moesr(**hard).run(lq, weights)['output']
    assert (short - dense).abs().max() > 1e-5
    torch.testing.assert_close(exact, dense, rtol=0, atol=1e-5)


@pytest.mark.parametrize('sparse', [True, False])
def test_a_forward_leaves_no_state_and_returns_its_statistics(sparse):
    net = moesr()
    before = {name: set(vars(module)) for name, module in net.named_modules()}
    lq = torch.rand(2, 3, 30, 34)
    weights = torch.stack([random_gate(30, 34, 0.3, seed=4), random_gate(30, 34, 0.1, seed=5)])
    with torch.no_grad():
        result = net.run(lq, weights, sparse=sparse)
        out, stats = net(lq, weights, return_stats=True) if sparse else (result['output'], result)
        alone, expert_stats = net(lq, expert=['cat', 'background'], return_stats=True)
    for module in net.modules():  # the counting wrappers' call lists are the test's, not the network's
        if isinstance(module, Counting):
            module.calls.clear()
    assert {name: set(vars(module)) for name, module in net.named_modules()} == before
    pixels = stats['expert_pixels']
    assert list(pixels) == ['people', 'cat', 'background']
    hr = blend_weights(weights, 2, net.dilation, net.feather)
    assert abs(sum(pixels.values()) - 2 * 60 * 68) < 1e-3  # every output pixel's weights sum to 1
    for index, name in enumerate(net.names):
        assert abs(pixels[name] - float(hr[:, index].double().sum())) < 1e-9
    torch.testing.assert_close(out, result['output'])
    assert len(alone) == 2 and dict(expert_stats['expert_pixels']) == {'people': 0.0, 'cat': 2 * 60 * 68.,
                                                                       'background': 2 * 60 * 68.}


def test_support_boxes_cover_the_mask_disjointly_and_leave_large_holes_out():
    h = w = 120
    margin = 6
    for seed in range(6):
        mask = (random_gate(h, w, 0.2 + 0.1 * seed, seed)[:2].sum(0) > 0).numpy()
        for wanted in (mask, ~mask):  # a category's support, and the background's around it
            boxes = support_boxes(wanted, margin)
            covered = np.zeros((h, w), np.int32)
            for y0, y1, x0, x1 in boxes:
                covered[y0:y1, x0:x1] += 1
            assert covered.max() == 1 and (covered[wanted] == 1).all()
            whole = np.argwhere(wanted)
            bbox = (whole[:, 0].min(), whole[:, 0].max() + 1, whole[:, 1].min(), whole[:, 1].max() + 1)
            assert window_area(boxes, margin, h, w).sum() <= window_area(bbox, margin, h, w)[0]
    background = np.ones((h, w), bool)
    background[30:100, 20:90] = False  # a large owned region: left out
    boxes = support_boxes(background, margin)
    assert window_area(boxes, margin, h, w).sum() < 0.9 * h * w  # one box would be the whole image
    background[:] = True
    background[50:56, 50:60] = False  # a small hole: not worth the margins of a cut
    assert support_boxes(background, margin) == [(0, h, 0, w)]
    assert support_boxes(np.zeros((5, 5), bool), margin) == []


def test_crops_of_very_different_sizes_are_not_batched_together():
    cores = [(0, 40, 0, 40), (50, 54, 50, 54), (60, 64, 60, 64), (70, 74, 70, 74)]
    groups = batch_groups(cores, 2, 100, 100, max_batch=2)
    assert groups == [[0], [1, 2], [3]]


def test_a_cpu_call_holds_a_bounded_number_of_crop_pixels():
    cores = [(0, 40, 0, 40), (0, 40, 50, 90), (50, 90, 0, 40), (50, 90, 50, 90)]
    assert batch_groups(cores, 0, 100, 100) == [[0, 1, 2, 3]]
    assert batch_groups(cores, 0, 100, 100, max_pixels=3200) == [[0, 1], [2, 3]]
    assert batch_pixels(torch.zeros(1)) == CPU_BATCH_PIXELS  # what run_on_boxes applies on a CPU


def test_support_mask_pools_hr_weight_to_lr_pixels():
    hr = torch.zeros(8, 8)
    hr[3, 6] = 0.1
    assert support_mask(hr, 2).tolist() == [[False] * 4, [False, False, False, True], [False] * 4, [False] * 4]


def test_progress_reports_every_crop_of_every_expert():
    net = moesr(tile_size=12, max_batch=3)
    lq = torch.rand(1, 3, 44, 52, generator=torch.Generator().manual_seed(3))
    reports = []
    with torch.no_grad():
        net.run(lq, random_gate(44, 52, 0.3, seed=3)[None], progress=lambda *report: reports.append(report))
    total = reports[-1][2]
    assert [done for _, done, _ in reports] == list(range(1, total + 1)) and {t for _, _, t in reports} == {total}
    for name in net.names:  # crops are batched: one call may run several
        assert sum(name == reported for reported, _, _ in reports) == sum(s[0] for s in net.experts[name].calls)
    assert reports[0][0] == 'background' and {name for name, _, _ in reports} == set(net.names)
