"""BicubicResidual: any arch learns the residual over bicubic, starting as bicubic itself."""
import pytest
import torch
from basicsr.archs import build_network

from moesr_arch.options import OptionError
from moesr_arch.utils.bicubic import matlab_upsample

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2,
        'img_range': 1., 'rgb_mean': [0., 0., 0.]}


def test_untrained_model_is_bicubic_and_learns_a_residual():
    torch.manual_seed(0)
    net = build_network({'type': 'BicubicResidual', 'upscale': 2, 'network': EDSR})
    lq = torch.rand(1, 3, 10, 12)
    assert torch.equal(net(lq), matlab_upsample(lq, 2))  # the LR images' own kernel (tests/test_bicubic.py)
    loss = (net(lq) - torch.rand(1, 3, 20, 24)).abs().mean()
    loss.backward()
    assert net.gain.grad.abs() > 0, 'the gain must learn, so that the residual comes in'
    assert sorted(net.state_dict())[0] == 'gain' and any(k.startswith('network.conv_first') for k in net.state_dict())


def test_a_wrapped_network_of_another_scale_is_refused():
    net = build_network({'type': 'BicubicResidual', 'upscale': 3, 'network': EDSR})
    with pytest.raises(ValueError, match=r'returned \(1, 3, 8, 8\) .* not x3'):
        net(torch.rand(1, 3, 4, 4))


def test_the_wrapped_networks_options_are_checked():
    from moesr_arch.options import check_network
    with pytest.raises(OptionError, match="x.yml: .*network_g.network.*num_fet"):
        check_network({'type': 'BicubicResidual', 'upscale': 2, 'network': dict(EDSR, num_fet=8)}, 'network_g', 'x.yml')


def test_statistics_of_a_wrapped_router_pass_through():
    seemore = {'type': 'SeemoRe', 'scale': 2, 'variant': 'T', 'num_layers': 1, 'embedding_dim': 8}
    net = build_network({'type': 'BicubicResidual', 'upscale': 2, 'network': seemore}).eval()
    lq = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        out, stats = net(lq, return_stats=True)
        _, inner = net.network(lq, return_stats=True)
        assert torch.equal(out, net(lq))
    assert stats == inner and sum(stats['expert_pixels'].values()) == 2 * 10 * 12  # 1 layer, top-1
    plain = build_network({'type': 'BicubicResidual', 'upscale': 2, 'network': EDSR})
    with torch.no_grad():
        out, stats = plain(lq, return_stats=True)
    assert stats == {'expert_pixels': {}} and torch.equal(out, plain(lq))
