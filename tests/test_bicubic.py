"""Bicubic inside the networks: MATLAB's imresize as a torch operation, and the kernel option of VDSR and
BicubicResidual (PyTorch's kernel keeps the checkpoints trained with it)."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.matlab_functions import imresize

from moesr_arch.utils.bicubic import bicubic_upsample, matlab_upsample, phase_convolution

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2,
        'img_range': 1., 'rgb_mean': [0., 0., 0.]}


def imresize_batch(x, scale):
    return torch.stack([imresize(image, scale) for image in x])


@pytest.mark.parametrize('upsample', [matlab_upsample, phase_convolution])
@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('size', [(3, 5), (17, 23), (2, 2), (8, 31)])
def test_matlab_upsampling_equals_basicsr_imresize(upsample, scale, size):
    """Both ways (the fast one, and the convolutions ONNX exports) give MATLAB's pixels, borders included."""
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(scale))
    out = upsample(x, scale)
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert (out - imresize_batch(x, scale)).abs().max() < 1e-5


@pytest.mark.parametrize('upsample', [matlab_upsample, phase_convolution])
def test_a_one_pixel_side_is_mirrored_again_and_again_as_matlab_does(upsample):
    """basicsr's imresize stops at one mirroring (it fails on a 1-pixel side); MATLAB's indices repeat the
    mirroring, so a single row acts as a constant column: the same as that row stacked 4 times."""
    x = torch.rand(1, 3, 1, 7, generator=torch.Generator().manual_seed(0))
    stacked = imresize_batch(x.repeat(1, 1, 4, 1), 3)[:, :, :3]
    assert (upsample(x, 3) - stacked).abs().max() < 1e-5
    pixel = torch.rand(1, 1, 1, 1)
    assert torch.allclose(upsample(pixel, 4), pixel.expand(1, 1, 4, 4))


def test_matlab_upsampling_is_differentiable_and_keeps_the_dtype():
    x = torch.rand(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: matlab_upsample(t, 3), (x, ))
    half = torch.rand(1, 3, 6, 6).bfloat16()  # the CPU kernel has no bf16: computed in float32, given back
    assert matlab_upsample(half, 2).dtype == torch.bfloat16
    with pytest.raises(ValueError, match='positive integer scale, got 2.5'):
        matlab_upsample(x, 2.5)
    with pytest.raises(ValueError, match="bicubic kernel must be one of matlab, torch, got 'pil'"):
        bicubic_upsample(x, 2, 'pil')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_matlab_upsampling_on_cuda_equals_the_cpu():
    x = torch.rand(2, 3, 17, 23)
    assert (matlab_upsample(x.cuda(), 3).cpu() - matlab_upsample(x, 3)).abs().max() < 1e-5


def test_vdsr_upsamples_with_matlab_by_default_and_keeps_torch_for_old_checkpoints():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 9, 11)
    old = build_network({'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 3, 'upsampler': 'torch'}).eval()
    with torch.no_grad():  # the formula of the VDSR checkpoints trained until now
        torch_base = F.interpolate(lr, scale_factor=3, mode='bicubic', align_corners=False)
        assert torch.equal(old(lr), torch_base + old.body(torch_base))
        new = build_network({'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 3}).eval()
        new.load_state_dict(old.state_dict())  # same parameter names: old checkpoints load either way
        matlab_base = imresize_batch(lr, 3)
        assert (new(lr) - (matlab_base + new.body(matlab_base))).abs().max() < 1e-5


def test_vdsr_without_bias_and_on_a_pre_upsampled_input():
    net = build_network({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'num_layer': 4, 'upscale': 1,
                         'bias': False}).eval()
    assert sorted(net.state_dict()) == ['body.0.weight', 'body.2.weight', 'body.4.weight', 'body.6.weight']
    upsampled = torch.rand(1, 1, 24, 30)
    with torch.no_grad():
        assert torch.equal(net(upsampled), upsampled + net.body(upsampled))
    # One set of weights serves every scale: the x2 and x4 networks hold the same parameters.
    x2 = build_network({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'upscale': 2, 'bias': False})
    x4 = build_network({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'upscale': 4, 'bias': False})
    x4.load_state_dict(x2.state_dict(), strict=True)


def test_bicubic_residual_base_is_matlab_by_default_and_torch_on_request():
    lq = torch.rand(1, 3, 10, 12)
    net = build_network({'type': 'BicubicResidual', 'upscale': 2, 'network': EDSR})  # gain 0: the base alone
    assert (net(lq) - imresize_batch(lq, 2)).abs().max() < 1e-5
    old = build_network({'type': 'BicubicResidual', 'upscale': 2, 'network': EDSR, 'upsampler': 'torch'})
    old.load_state_dict(net.state_dict())
    assert torch.equal(old(lq), F.interpolate(lq, scale_factor=2, mode='bicubic', align_corners=False))
