"""Registration, arch shapes and the self-ensemble (bad image files: tests/test_bad_inputs.py)."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from moesr_arch.utils.bicubic import matlab_upsample
from moesr_arch.utils.ensemble import self_ensemble


def test_import_registers_the_package_and_unknown_names_list_the_known_ones():
    from moesr_arch.options import OptionError, check_network
    assert 'VDSR' in ARCH_REGISTRY and 'EDSR' in ARCH_REGISTRY
    assert 'SingleNetworkSRModel' in MODEL_REGISTRY and 'CheckedPairedImageDataset' in DATASET_REGISTRY
    assert 'L1Loss' in LOSS_REGISTRY
    with pytest.raises(KeyError, match="No object named 'VDSRR' found in 'arch' registry!\"$"):  # BasicSR's own
        ARCH_REGISTRY.get('VDSRR')
    # The plugin's option check, which runs before BasicSR builds anything, names the registered ones.
    with pytest.raises(OptionError, match="x.yml: network_g.type: no arch named 'VDSRR'; registered: .*VDSR"):
        check_network({'type': 'VDSRR'}, 'network_g', 'x.yml')


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
    bicubic = matlab_upsample(lr, 3)  # the paper's bicubic (tests/test_bicubic.py)
    with torch.no_grad():
        assert (net(lr) - bicubic).abs().mean() < 0.05


def test_self_ensemble_of_an_equivariant_network_is_the_network():
    net = torch.nn.Upsample(scale_factor=2, mode='nearest')
    x = torch.rand(1, 3, 7, 5)
    assert torch.allclose(self_ensemble(net, x), net(x))
    shifted = torch.nn.Conv2d(3, 3, 3, padding=1)  # not rotation-equivariant: the ensemble averages it
    assert not torch.allclose(self_ensemble(shifted, x), shifted(x))
