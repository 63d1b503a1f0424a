"""MoESRNet: expert container, alpha-blend fusion and sparse execution (synthetic tensors, tiny experts)."""
import pytest
import torch
from basicsr.archs import build_network
from torch import nn

from moesr_arch.archs.fusion import blend_weights
from moesr_arch.archs.sparse_crops import receptive_radius, support_boxes
from moesr_arch.archs.moesr_arch import MoESRNet

EDSR = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=2)
VDSR = dict(type='VDSR', num_feat=8, num_layer=5, upscale=2)


def moesr(experts=None, **kwargs):
    torch.manual_seed(0)
    experts = experts or {'people': EDSR, 'cat': VDSR, 'background': EDSR}
    return build_network(dict(type='MoESRNet', experts=experts, **kwargs)).eval()


def gate_weights(h=40, w=48, regions=(), batch=1):
    """Gate weights with ``regions``: (channel, y0, y1, x0, x1, confidence); background gets the rest."""
    weights = torch.zeros(batch, 3, h, w)
    for channel, y0, y1, x0, x1, confidence in regions:
        weights[:, channel, y0:y1, x0:x1] += confidence
    weights[:, :2] /= weights[:, :2].sum(1, keepdim=True).clamp(min=1)
    weights[:, 2] = 1 - weights[:, :2].sum(1)
    return weights


# ---------------------------------------------------------------------------------------------
# Expert container


def test_experts_follow_category_order_and_background_comes_last():
    net = moesr({'background': VDSR, 'cat': EDSR, 'people': EDSR}, categories=['people', 'cat'])
    assert isinstance(net, MoESRNet)
    assert net.names == ['people', 'cat', 'background'] and list(net.experts) == net.names
    assert net.scale == 2
    assert isinstance(net.experts['people'], nn.Module) and type(net.experts['background']).__name__ == 'VDSR'


@pytest.mark.parametrize('experts, categories, message', [
    ({'people': EDSR}, (), "needs a 'background' expert"),
    ({'people': EDSR, 'background': EDSR}, ['people', 'cat'], 'no expert for category cat'),
    ({'people': EDSR, 'dog': EDSR, 'background': EDSR}, ['people'], 'expert dog name no category'),
    ({'people': EDSR, 'background': EDSR}, ['people', 'background'], 'implicit last gate channel'),
])
def test_container_errors_name_the_problem(experts, categories, message):
    with pytest.raises(ValueError, match=message):
        moesr(experts, categories=categories)


def test_scale_mismatch_names_every_expert_and_scale():
    with pytest.raises(ValueError, match=r'share one scale; got people: x2, background: x3'):
        moesr({'people': EDSR, 'background': dict(VDSR, upscale=3)})
    with pytest.raises(ValueError, match=r'scale is 4 but the experts upscale by x2'):
        moesr(scale=4)


def test_expert_weights_are_loaded_per_expert(tmp_path):
    torch.manual_seed(3)
    trained = build_network(dict(EDSR))
    torch.save({'params': {}, 'params_ema': trained.state_dict()}, tmp_path / 'people.pth')
    net = moesr(expert_weights={'people': str(tmp_path / 'people.pth')}, param_key='params_ema')
    lq = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(net.experts['people'](lq), trained.eval()(lq))
        assert not torch.equal(net.experts['background'](lq), trained(lq))
    with pytest.raises(ValueError, match="expert_weights.dog: no such expert; experts: people, cat, background"):
        moesr(expert_weights={'dog': str(tmp_path / 'people.pth')})
    torch.save({'params': build_network(dict(VDSR)).state_dict()}, tmp_path / 'vdsr.pth')
    with pytest.raises(RuntimeError, match=r"vdsr.pth does not fit MoESRNet expert 'people': 16 missing"):
        moesr(expert_weights={'people': str(tmp_path / 'vdsr.pth')})


def test_option_validation_checks_nested_experts(tmp_path):
    from moesr_arch.options import OptionError, check_network
    good = dict(type='MoESRNet', experts={'people': EDSR, 'background': EDSR})
    check_network(good, 'network_g', 'x.yml')
    with pytest.raises(OptionError, match=r"x.yml: unknown key 'network_g.experts.people.num_feats'"):
        check_network(dict(good, experts={'people': dict(EDSR, num_feats=3), 'background': EDSR}), 'network_g', 'x.yml')
    with pytest.raises(OptionError, match=r"x.yml: network_g: MoESRNet needs a 'background' expert \(it answers "
                                          r"wherever no category is found\); experts: people"):
        check_network(dict(good, experts={'people': EDSR}), 'network_g', 'x.yml')
    with pytest.raises(OptionError, match=r'expert_weights.people: no such file'):
        check_network(dict(good, expert_weights={'people': str(tmp_path / 'nope.pth')}), 'network_g', 'x.yml')


# ---------------------------------------------------------------------------------------------
# Fusion


def test_blend_weights_are_a_partition_of_unity_with_a_linear_feathered_edge():
    weights = gate_weights(regions=[(0, 10, 20, 10, 30, 1.0), (1, 15, 30, 20, 40, 0.6)])
    hr = blend_weights(weights, scale=2, dilation=3, feather=8)
    assert hr.shape == (1, 3, 80, 96) and hr.min() >= 0
    torch.testing.assert_close(hr.sum(1), torch.ones(1, 80, 96), rtol=0, atol=1e-6)
    # Left edge of the people region: HR x = 20, dilated by 3 -> weight 1 from x = 17, then 1 - d/8.
    row = hr[0, 0, 24]
    assert row[17:21].eq(1).all()
    torch.testing.assert_close(row[9:17].flip(0), torch.tensor([1 - d / 8 for d in range(1, 9)]))
    assert row[:9].eq(0).all()


def test_hard_edges_without_dilation_or_feather():
    weights = gate_weights(regions=[(0, 2, 4, 2, 4, 1.0)], h=6, w=6)
    hr = blend_weights(weights, scale=2)
    assert hr[0, 0].sum() == 16 and hr[0, 0, 4:8, 4:8].eq(1).all()


def test_overlaps_are_shared_by_confidence_not_by_order():
    net = moesr({'people': EDSR, 'cat': EDSR, 'background': VDSR})
    swapped = moesr({'people': EDSR, 'cat': EDSR, 'background': VDSR})
    swapped.experts['people'].load_state_dict(net.experts['cat'].state_dict())
    swapped.experts['cat'].load_state_dict(net.experts['people'].state_dict())
    lq = torch.rand(1, 3, 32, 32)
    weights = gate_weights(h=32, w=32, regions=[(0, 4, 20, 4, 20, 0.5), (1, 10, 28, 10, 28, 0.5)])
    with torch.no_grad():
        out = net(lq, weights)
        out_swapped = swapped(lq, weights[:, [1, 0, 2]])
    torch.testing.assert_close(out, out_swapped, rtol=0, atol=1e-6)
    hr = blend_weights(weights, 2, dilation=4, feather=8)
    overlap = hr[0, :, 30:38, 30:38]
    torch.testing.assert_close(overlap[0], overlap[1])
    torch.testing.assert_close(overlap[0], torch.full_like(overlap[0], 0.5))


@pytest.mark.parametrize('sparse', [False, True])
def test_no_detection_is_the_background_expert_exactly(sparse):
    net = moesr()
    lq = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        expected = net.experts['background'](lq)
        assert torch.equal(net.run(lq, gate_weights(20, 24, batch=2), sparse=sparse)['output'], expected)
        assert torch.equal(net(lq), expected)


def test_weights_of_the_wrong_shape_fail_clearly():
    with pytest.raises(ValueError, match=r"\[B, K\+1, h, w\] = \[1, 3, 8, 8\] for categories \['people', 'cat'\]"):
        moesr()(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8))


def test_feathered_blend_has_no_seam_at_the_region_border():
    """Across a region's border the blend may step by no more than the experts differ there, spread over the ramp.

    The experts differ by a lot (the cat expert adds 0.3): a hard paste steps by ~0.3 at the border; the
    feathered blend changes by at most (the experts' own steps) + |E_cat - E_bg| / feather per pixel.
    """
    class Offset(nn.Module):
        def __init__(self, base, offset):
            super().__init__()
            self.base, self.offset = base, offset

        def forward(self, x):
            return self.base(x) + self.offset

    net = moesr()
    base = build_network(dict(VDSR)).eval()
    net.experts['cat'] = Offset(base, 0.3)
    net.experts['background'] = base
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing='ij')
    lq = torch.stack([ys, xs, (ys + xs) / 2])[None]  # smooth image: the experts' own steps are small
    weights = gate_weights(32, 32, regions=[(1, 8, 24, 8, 24, 1.0)])
    with torch.no_grad():
        expert_step = base(lq).diff(dim=-1).abs().max()
        difference = 0.3
        for feather, bound in ((8, expert_step + difference / 8 + 1e-5), (0, None)):
            net.feather = feather
            step = net(lq, weights).diff(dim=-1).abs().max()
            if bound is not None:
                assert step <= bound, (step, bound)
            else:  # the hard paste the reference ended up with really does have the seam
                assert step > expert_step + difference / 2


# ---------------------------------------------------------------------------------------------
# Sparse execution


def test_default_margin_covers_the_receptive_field_of_the_demo_experts():
    assert receptive_radius(build_network(dict(EDSR)), 2) <= 16
    assert receptive_radius(build_network(dict(VDSR)), 2) <= 16
    demo_edsr = dict(EDSR, num_feat=32, num_block=4)  # the expert of options/train_moesr.yml
    assert receptive_radius(build_network(demo_edsr), 2) <= 16


@pytest.mark.parametrize('background', [EDSR, VDSR])
@pytest.mark.parametrize('tile_size', [0, 16])
def test_sparse_equals_dense(background, tile_size):
    """Every output pixel (whole HR image) is compared: the crop margin (16 LR px) is at least the
    receptive-field radius of these experts (checked above), so each crop sees all the input its core
    pixels depend on, and crops at the image border see the same zero padding as the whole image."""
    net = moesr({'people': EDSR, 'cat': VDSR, 'background': background}, tile_size=tile_size, max_batch=2)
    assert net.crop_margin >= max(receptive_radius(e, 2) for e in net.experts.values())
    lq = torch.rand(2, 3, 64, 72)
    regions = [(0, 0, 8, 0, 10, 0.9),  # touches the corner
               (0, 40, 52, 50, 60, 1.0), (0, 44, 46, 20, 22, 0.8),  # two small separate ones
               (1, 20, 40, 30, 60, 0.7), (1, 30, 45, 40, 70, 0.5)]  # overlap with people, touches the edge
    weights = gate_weights(64, 72, regions, batch=2)
    weights[1] = gate_weights(64, 72, regions[3:])[0]
    with torch.no_grad():
        dense = net.run(lq, weights, sparse=False)
        sparse = net.run(lq, weights)  # eval mode, no grad -> sparse
    torch.testing.assert_close(sparse['output'], dense['output'], rtol=0, atol=1e-5)
    # Top-1 sparse execution does not compute the background expert's whole image; dense does.
    assert sparse['background'] is None and torch.equal(dense['background'], net.experts['background'](lq))


def test_sparse_runs_category_experts_only_on_their_crops():
    net = moesr()
    seen = {name: [] for name in net.names}
    for name, expert in net.experts.items():
        expert.register_forward_hook(lambda module, args, out, name=name: seen[name].append(tuple(args[0].shape)))
    weights = gate_weights(96, 96, regions=[(0, 40, 50, 40, 50, 1.0), (0, 42, 48, 60, 62, 1.0)])
    with torch.no_grad():
        net(torch.rand(1, 3, 96, 96), weights)
    assert seen['cat'] == []  # no region: never runs
    assert seen['background'] == [(1, 3, 96, 96)]
    # The two people regions merge (their margins meet) into one crop: 10x22 core + 16 px margin each side
    # (the dilated and feathered weight reaches (4 + 8) / 2 = 6 LR px further).
    assert seen['people'] == [(1, 3, 10 + 12 + 32, 22 + 12 + 32)]


def test_tile_size_bounds_every_expert_call_and_keeps_the_output_exact():
    net = moesr(tile_size=16, max_batch=3)
    seen = []
    for expert in net.experts.values():
        expert.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape[-2:])))
    lq = torch.rand(1, 3, 90, 80)
    weights = gate_weights(90, 80, regions=[(0, 5, 85, 5, 70, 1.0), (1, 50, 60, 60, 75, 0.6)])
    with torch.no_grad():
        sparse = net.run(lq, weights)['output']
        dense = net.run(lq, weights, sparse=False)['output']
    assert max(max(size) for size in seen[:-3]) <= 16 + 2 * net.crop_margin  # the dense pass is last
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-5)


def test_support_boxes_merge_only_neighbours():
    mask = torch.zeros(50, 50, dtype=torch.bool)
    mask[0:5, 0:5] = mask[0:5, 8:10] = mask[40:45, 40:45] = True
    assert sorted(support_boxes(mask.numpy(), margin=2)) == [(0, 5, 0, 10), (40, 45, 40, 45)]
    assert support_boxes(torch.zeros(4, 4, dtype=torch.bool).numpy(), margin=2) == []


def test_dense_training_path_gives_every_expert_a_gradient():
    net = moesr().train()
    weights = gate_weights(16, 16, regions=[(0, 2, 8, 2, 8, 1.0), (1, 8, 14, 8, 14, 1.0)])
    net(torch.rand(1, 3, 16, 16), weights).mean().backward()
    for name in net.names:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.experts[name].parameters()), name


SEEMORE = dict(type='SeemoRe', scale=2, variant='T', num_layers=1, embedding_dim=8)


def test_seemore_experts_blend_and_train():
    """SeemoRe (scale, not upscale) mixes with EDSR and VDSR experts; its routing pools the whole input."""
    net = moesr({'people': SEEMORE, 'cat': VDSR, 'background': EDSR})
    assert type(net.experts['people']).__name__ == 'SeemoRe' and net.scale == 2
    with pytest.raises(ValueError, match='people: x4, cat: x2'):
        moesr({'people': dict(SEEMORE, scale=4), 'cat': VDSR, 'background': EDSR})
    weights = gate_weights(32, 32, regions=[(0, 4, 20, 4, 20, 1.0), (1, 18, 30, 10, 30, 1.0)])
    lq = torch.rand(1, 3, 32, 32)
    net.train()
    net(lq, weights).mean().backward()
    assert all(p.grad is not None for p in net.experts['people'].parameters() if p.requires_grad)
    net.eval()
    with torch.no_grad():
        dense = net.run(lq, weights, sparse=False)['output']
        sparse = net.run(lq, weights)['output']
    # Its router averages over the whole input, so no finite margin is exact for it: the measured radius
    # covers the whole probe and sparse execution only approximates the dense output there.
    assert receptive_radius(net.experts['people'], 2, size=33) >= 16
    people = blend_weights(weights, 2, net.dilation, net.feather)[0, 0] > 0
    assert sparse.shape == dense.shape and torch.isfinite(sparse).all()
    # Where SeemoRe has no weight, the outputs are exact (EDSR/VDSR within their receptive field).
    torch.testing.assert_close(sparse[..., ~people], dense[..., ~people], rtol=0, atol=1e-5)
