"""`basicsr infer` / `basicsr benchmark` --channels_last and --compile: the plain fp32 output, faster or not."""
import argparse

import numpy as np
import pytest
import torch
from basicsr.archs.edsr_arch import EDSR

from moesr_arch.archs.seemore_arch import SeemoRe
from moesr_arch.inference import InferenceError, Upscaler
from moesr_arch.tools import benchmark, infer


def tiny_edsr():
    torch.manual_seed(0)
    return EDSR(3, 3, num_feat=8, num_block=1, upscale=2).eval()


def tiny_seemore():
    torch.manual_seed(0)
    return SeemoRe(scale=2, variant='T', num_layers=1).eval()


def sr_floats(upscaler, image):
    """The blended float output (H, W, 3) of the upscaler's network over its tiles, before any rounding."""
    rows = []
    upscaler.tiler.blend(upscaler.forward, image.shape[-2], image.shape[-1], upscaler.scale,
                         lambda y0, y1, x0, x1: image[..., y0:y1, x0:x1], lambda row, done: rows.append(done))
    return np.concatenate(rows)


@pytest.mark.parametrize('make', [tiny_edsr, tiny_seemore])
def test_channels_last_gives_the_plain_fp32_output(make):
    image = torch.rand(1, 3, 37, 45)
    plain = Upscaler(make(), 2, 'cpu', precision='fp32', tile=24, tile_overlap=8, progress=False)
    fast = Upscaler(make(), 2, 'cpu', precision='fp32', tile=24, tile_overlap=8, progress=False, channels_last=True)
    layouts = []
    first_conv = next(module for module in fast.network.modules() if isinstance(module, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda module, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last) and first_conv.weight.stride(1) == 1))
    np.testing.assert_allclose(sr_floats(fast, image), sr_floats(plain, image), rtol=0, atol=1e-5)
    assert layouts and all(layouts)  # weights and tiles really were channels-last


def test_compile_is_refused_where_it_would_miss_the_network(monkeypatch):
    from moesr_arch.inference import Capabilities, describes

    class Arbitrary(torch.nn.Module):
        def forward(self, x):
            return x

    describes(Arbitrary)(lambda network: Capabilities('arbitrary_scale', None))
    with pytest.raises(InferenceError, match='--compile is supported for plain networks'):
        Upscaler(Arbitrary(), 2, 'cpu', compile='default', progress=False)
    with pytest.raises(InferenceError, match="--compile 'fast'"):
        Upscaler(tiny_edsr(), 2, 'cpu', compile='fast', progress=False)


def test_infer_and_benchmark_take_the_same_speed_options():
    for tool in (infer, benchmark):
        parser = argparse.ArgumentParser()
        tool.add_arguments(parser)
        args = parser.parse_args(['--model', 'm.pth', '-i', 'x', '-o', 'y'] if tool is infer else ['--model', 'm.pth'])
        assert (args.channels_last, args.compile) == (False, 'none')  # fp32, eager: the defaults
        args = parser.parse_args(['--model', 'm.pth', '--channels_last', '--compile', 'max-autotune'] +
                                 (['-i', 'x', '-o', 'y'] if tool is infer else []))
        assert (args.channels_last, args.compile) == (True, 'max-autotune')


@pytest.mark.slow  # inductor builds C++ for every tile size: about a minute on a 2-core CPU
def test_compile_gives_the_plain_fp32_output():
    image = torch.rand(1, 3, 30, 30)
    plain = Upscaler(tiny_seemore(), 2, 'cpu', precision='fp32', tile=0, progress=False)
    compiled = Upscaler(tiny_seemore(), 2, 'cpu', precision='fp32', tile=0, progress=False, compile='default',
                        channels_last=True)
    np.testing.assert_allclose(sr_floats(compiled, image), sr_floats(plain, image), rtol=0, atol=1e-5)
