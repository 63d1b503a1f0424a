"""`basicsr infer`: tiled inference, blending, precision, ensemble, odd image formats, capabilities, gated pipeline."""
import re
from argparse import Namespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY
from PIL import Image
from torch import nn

from conftest import run_cli, run_cli_in_terminal
from moesr_arch import inference
from moesr_arch.archs.sparse_crops import tile_cores
from moesr_arch.inference import (Capabilities, InferenceError, Tiler, Upscaler, blend_ramp, describe, describes,
                                  estimate_memory, scale_alignment, tile_spans)
from moesr_arch.inference import device as inference_device
from moesr_arch.inference.maps import gate_overlay
from moesr_arch.tools import infer
from moesr_arch.utils.ensemble import self_ensemble

GIB = 1 << 30


def tiny_edsr(scale=2):
    torch.manual_seed(0)
    return EDSR(3, 3, num_feat=8, num_block=1, upscale=scale).eval()


def smooth_image(h, w, seed=0, dtype=np.uint8):
    small = np.random.RandomState(seed).rand(max(h // 6, 2), max(w // 6, 2), 3)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    peak = 65535 if dtype == np.uint16 else 255
    return (image * peak).round().astype(dtype)


def write_options(folder, network, weights=None, scale=2):
    opt = {'name': 'infer_test', 'scale': scale, 'network_g': network,
           'path': {'pretrain_network_g': str(weights) if weights else None, 'param_key_g': 'params_ema'}}
    path = folder / 'infer.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_tiles_cover_the_image_and_blend_weights_never_vanish():
    assert tile_spans(100, 40, 10) == [(0, 40), (30, 70), (60, 100)]
    assert tile_spans(30, 40, 10) == [(0, 30)] and tile_spans(100, 0, 10) == [(0, 100)]
    assert scale_alignment(2.5) == 2 and scale_alignment(4) == 1
    assert tile_spans(101, 40, 10, align=2) == [(0, 40), (30, 70), (60, 101)]  # starts on the x2.5 grid
    # Without overlap the same grid gives disjoint tiles (MoE-SR's expert cores: added in place, exact).
    assert tile_spans(100, 40) == [(0, 40), (40, 80), (80, 100)]
    assert tile_spans(100, 40, align=3) == [(0, 39), (39, 78), (78, 100)]
    assert tile_cores(50, 30, 20) == [(y0, y1, x0, x1) for y0, y1 in ((0, 20), (20, 40), (40, 50))
                                      for x0, x1 in ((0, 20), (20, 30))]
    weight = blend_ramp(20, 8, 8)
    assert weight.min() > 0 and weight[6:14].tolist() == [1.0] * 8 and weight[0] == weight[1] == 1e-3
    assert weight[2] < weight[3] < weight[5] and np.allclose(weight, weight[::-1])
    border = blend_ramp(20, 0, 8)  # image border side keeps full weight
    assert border[0] == 1.0


def test_tiled_matches_untiled_within_one_level():
    net, image = tiny_edsr(), smooth_image(70, 90)
    whole, _ = Upscaler(net, 2, 'cpu', tile=0, progress=False).upscale_array(image, 255.)
    tiled, _ = Upscaler(net, 2, 'cpu', tile=32, tile_overlap=12, progress=False).upscale_array(image, 255.)
    assert whole.shape == tiled.shape == (140, 180, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1
    with torch.no_grad():
        direct = net(torch.from_numpy(image[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float())
    direct = (direct[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(whole.astype(int) - direct).max() <= 1


def test_ensemble_and_precision():
    net, image = tiny_edsr(), smooth_image(24, 20)
    ensembled, _ = Upscaler(net, 2, 'cpu', tile=0, ensemble=True, progress=False).upscale_array(image, 255.)
    x = torch.from_numpy(image[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = self_ensemble(net, x)[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255
    assert np.abs(ensembled - expected).max() <= 0.51
    assert inference.precision_dtype('auto', torch.device('cpu')) is None  # fp32 on CPU
    assert inference.precision_dtype('bf16', torch.device('cpu')) is torch.bfloat16
    bf16, _ = Upscaler(net, 2, 'cpu', precision='bf16', tile=0, progress=False).upscale_array(image, 255.)
    fp32, _ = Upscaler(net, 2, 'cpu', precision='fp32', tile=0, progress=False).upscale_array(image, 255.)
    assert bf16.dtype == np.uint8 and np.abs(bf16.astype(int) - fp32).mean() < 3


def test_a_huge_request_is_tiled_within_memory_or_refused_clearly(monkeypatch):
    # 3840x2160 at x4, tiles of 512: well under 8 GiB although the float output alone would be 1.6 GB.
    assert estimate_memory(2160, 3840, 4, 512) < 2 * GIB
    tiled, whole = estimate_memory(10000, 10000, 4, 512), estimate_memory(10000, 10000, 4, 0)
    assert tiled < 8 * GIB < whole
    upscaler = Upscaler(tiny_edsr(4), 4, 'cpu', tile=512, progress=False)
    monkeypatch.setattr(inference_device, 'available_memory', lambda: 64 * GIB)
    assert upscaler.memory_check(10000, 10000, 255.) == tiled
    monkeypatch.setattr(inference_device, 'available_memory', lambda: 4 * GIB)
    with pytest.raises(InferenceError, match=r'10000x10000 image at x4 gives a 40000x40000 output that needs about '
                                             r'\d+\.\d GiB .* only 4\.0 GiB is available'):
        upscaler.memory_check(10000, 10000, 255.)


def test_a_huge_moesr_request_is_refused_before_it_runs_out_of_memory(monkeypatch):
    """MoE-SR holds whole-image HR tensors (blend, weights): its own estimate decides, before any work."""
    expert = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    net = ARCH_REGISTRY.get('MoESRNet')(experts={'people': expert, 'cat': expert, 'background': expert})
    upscaler = Upscaler(net, 2, 'cpu', progress=False)
    monkeypatch.setattr(inference_device, 'available_memory', lambda: 64 * GIB)
    need = upscaler.memory_check(10000, 10000, 255.)
    assert need > 4 * 20000**2 * (6 + 2 * 3)  # background, blend and 2 x 3 weight maps, float32 at HR
    assert upscaler.memory_check(100, 100, 255.) < GIB
    monkeypatch.setattr(inference_device, 'available_memory', lambda: 16 * GIB)
    with pytest.raises(InferenceError, match=r'10000x10000 image at x2 gives a 20000x20000 output that needs about '
                                             r'\d+\.\d GiB .* only 16\.0 GiB is available: MoESRNet holds the whole'):
        upscaler.upscale_array(np.zeros((10000, 10000, 3), np.uint8), 255.)


class ArbitraryScale(nn.Module):
    """A stand-in for MoEISR: ``upscale(lr, scale, return_stats)`` at any float scale."""

    scale_seen = None

    def forward(self, x):
        return self.upscale(x, 2)

    def upscale(self, x, scale, return_stats=False):
        ArbitraryScale.scale_seen = scale
        h, w = x.shape[-2:]
        sr = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode='bilinear', align_corners=False)
        return (sr, {'expert_pixels': {}}) if return_stats else sr


@describes(ArbitraryScale)
def _arbitrary_scale(network):
    return Capabilities('arbitrary_scale', None)


def test_float_scale_goes_through_upscale_and_tiles():
    image = smooth_image(50, 64)
    whole, _ = Upscaler(ArbitraryScale(), 2, 'cpu', tile=0, out_scale=2.5, progress=False).upscale_array(image, 255.)
    tiled, _ = Upscaler(ArbitraryScale(), 2, 'cpu', tile=24, tile_overlap=8, out_scale=2.5,
                        progress=False).upscale_array(image, 255.)
    assert ArbitraryScale.scale_seen == 2.5
    assert whole.shape == tiled.shape == (125, 160, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1  # tiles on the x2.5 grid sample like the whole image
    with pytest.raises(InferenceError, match='only upscales x2; --scale 2.5 needs an arbitrary-scale network'):
        Upscaler(tiny_edsr(), 2, 'cpu', out_scale=2.5)


class MultipleOfFour(nn.Module):
    """A network that takes only sides that are multiples of 4 (like window-attention archs): nearest x2."""

    def forward(self, x):
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f'MultipleOfFour got {tuple(x.shape)}')
        return F.interpolate(x, scale_factor=2, mode='nearest')


@describes(MultipleOfFour)
def _multiple_of_four(network):
    return Capabilities('plain', 2, size_multiple=4, min_size=8)


@pytest.mark.parametrize('tile', [0, 10])
def test_size_requirements_pad_the_image_and_align_the_tiles(tile):
    image = smooth_image(6, 23)
    upscaler = Upscaler(MultipleOfFour(), 2, 'cpu', tile=tile, tile_overlap=4, progress=False)
    output, _ = upscaler.upscale_array(image, 255.)
    np.testing.assert_array_equal(output, image.repeat(2, 0).repeat(2, 1))


def tiny_moesr(categories=('people', 'cat')):
    torch.manual_seed(0)
    expert = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    return ARCH_REGISTRY.get('MoESRNet')(experts={**{name: expert for name in categories}, 'background': expert})


def test_capabilities_are_declared_per_network_kind():
    edsr = describe(tiny_edsr(3))
    assert edsr == Capabilities('plain', 3) and not edsr.arbitrary_scale and not edsr.whole_image
    vdsr = describe(ARCH_REGISTRY.get('VDSR')(num_feat=4, num_layer=2, upscale=2))
    assert (vdsr.kind, vdsr.scale, vdsr.map_names) == ('plain', 2, ())
    moeisr = describe(ARCH_REGISTRY.get('MoEISR')(num_feat=8, num_block=1, expert_depths=[1, 2], hidden_dim=8))
    assert (moeisr.kind, moeisr.scale, moeisr.arbitrary_scale, moeisr.whole_image) == ('arbitrary_scale', None, True,
                                                                                    False)
    assert moeisr.map_names == ('experts', ) and moeisr.experts == ('1 hidden layer', '2 hidden layers')
    moesr = describe(tiny_moesr())
    assert (moesr.kind, moesr.scale, moesr.whole_image, moesr.map_names) == ('gated', 2, True, ('gate', ))
    assert moesr.memory(100, 100, 0) > 4 * 200**2 * (6 + 2 * 3)
    assert edsr.memory is None and edsr.size_multiple == moesr.size_multiple == 1
    with pytest.raises(ValueError, match='a plain network needs a fixed scale'):
        Capabilities('plain', None)
    with pytest.raises(ValueError, match='kind must be one of plain, arbitrary_scale, gated'):
        Capabilities('tiled', 2)


class ConstantGate:
    """A gate stand-in: ``people`` on a square, background elsewhere (any batch)."""

    categories = ['people', 'cat']

    def __call__(self, lq, data=None):
        weights = torch.zeros(lq.shape[0], 3, *lq.shape[-2:])
        weights[:, 0, 4:12, 6:16] = 1
        weights[:, 2] = 1 - weights[:, 0]
        return weights.to(lq)


def test_gated_pipeline_tiles_experts_and_draws_the_gate(tmp_path):
    net, image = tiny_moesr(), smooth_image(20, 30)
    whole, maps = Upscaler(net, 2, 'cpu', tile=0, want_maps=True, gate=ConstantGate(),
                           progress=False).upscale_array(image, 255.)
    tiled, _ = Upscaler(net, 2, 'cpu', tile=8, tile_overlap=4, gate=ConstantGate(),
                        progress=False).upscale_array(image, 255.)
    np.testing.assert_array_equal(whole, tiled)  # the experts' tiles have the full receptive-field margin
    lq = torch.from_numpy(image[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        dense = net.run(lq, ConstantGate()(lq), sparse=False)['output']
    expected = (dense[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(whole.astype(int) - expected).max() <= 1
    # Drawn on the 40x60 SR output (not the 20x30 LR image), enlarged x7 for a readable legend.
    assert list(maps) == ['gate'] and maps['gate'].shape == (280, 420, 3)
    background, _ = Upscaler(net, 2, 'cpu', tile=0, progress=False).upscale_array(image, 255.)
    with torch.no_grad():
        alone = net.experts['background'](lq)
    np.testing.assert_array_equal(background, (alone[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255)
                                  .round().astype(np.uint8))


def moesr_option_file(folder):
    """An inference option file of :func:`tiny_moesr` (no gate: the background expert answers) with its weights."""
    torch.save({'params_ema': tiny_moesr().state_dict()}, folder / 'net.pth')
    expert = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    return write_options(folder, {'type': 'MoESRNet', 'categories': ['people', 'cat'],
                                  'experts': {'people': expert, 'cat': expert, 'background': expert}},
                         folder / 'net.pth')


def test_save_maps_writes_the_gate_overlay_of_a_moesr_option_file(tmp_path):
    options = moesr_option_file(tmp_path)
    cv2.imwrite(str(tmp_path / 'in.png'), smooth_image(20, 30))
    args = Namespace(opt=str(options), input=str(tmp_path / 'in.png'), output=str(tmp_path / 'out'), model_path=None,
                     tile=16, tile_overlap=4, precision='auto', device='cpu', ensemble=False, scale=None,
                     save_maps=True, suffix='sr', channels_last=False, compile='none')
    assert infer.main(args) == 0
    sr = cv2.imread(str(tmp_path / 'out' / 'in_sr.png'))
    assert sr.shape == (40, 60, 3)
    gate = cv2.imread(str(tmp_path / 'out' / 'in_sr_gate.png'))
    everything_background = torch.zeros(3, 40, 60)
    everything_background[2] = 1  # no gate in the options: the background expert answers everywhere
    # The overlay is drawn over the SR output written beside it, at its size (enlarged for the legend).
    expected = gate_overlay(torch.from_numpy(sr[:, :, ::-1] / 255.).permute(2, 0, 1).float(), everything_background,
                            ['people', 'cat'])
    np.testing.assert_array_equal(gate[:, :, ::-1], expected)


def test_infer_command_on_real_file_formats(tmp_path):
    net = tiny_edsr()
    torch.save({'params_ema': net.state_dict(), 'params': net.state_dict()}, tmp_path / 'edsr.pth')
    options = write_options(tmp_path, {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                                       'upscale': 2}, tmp_path / 'edsr.pth')
    folder = tmp_path / 'in'
    folder.mkdir()
    rgb = smooth_image(20, 24)
    cv2.imwrite(str(folder / 'rgb.png'), rgb)
    cv2.imwrite(str(folder / 'grey.png'), rgb[:, :, 1])
    rgba = np.dstack([rgb, np.linspace(0, 255, 24, dtype=np.uint8)[None].repeat(20, 0)])
    cv2.imwrite(str(folder / 'rgba.png'), rgba)
    cv2.imwrite(str(folder / 'deep.png'), smooth_image(20, 24, dtype=np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(rgb[:, :, ::-1]).save(folder / 'rotated.jpg', exif=exif.tobytes(), quality=95)
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
    (folder / 'readme.txt').write_text('not an image')
    proc = run_cli(['infer', '-opt', options, '-i', folder, '-o', tmp_path / 'out', '--tile', '16',
                    '--tile_overlap', '4'], tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'broken.png: not a readable image' in proc.stderr and '1 of 6 image(s) failed' in proc.stderr
    out = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / 'out').iterdir()}
    assert sorted(out) == ['deep.png', 'grey.png', 'rgb.png', 'rgba.png', 'rotated.png']
    assert out['rgb.png'].shape == (40, 48, 3) and out['rgb.png'].dtype == np.uint8
    assert out['grey.png'].shape == (40, 48)
    assert out['rgba.png'].shape == (40, 48, 4)
    alpha = cv2.resize(rgba[:, :, 3], (48, 40), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out['rgba.png'][:, :, 3], alpha)
    assert out['deep.png'].dtype == np.uint16 and out['deep.png'].max() > 255
    assert out['rotated.png'].shape == (48, 40, 3)  # EXIF orientation applied
    # The same pixels as the in-process engine, i.e. the command adds nothing of its own.
    expected, _ = Upscaler(net, 2, 'cpu', tile=16, tile_overlap=4, progress=False).upscale_array(rgb, 255.)
    np.testing.assert_array_equal(out['rgb.png'], expected)


def test_clear_errors_for_bad_setups(tmp_path):
    options = write_options(tmp_path, {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                                       'upscale': 2})
    with pytest.raises(InferenceError, match='no weights; set path.pretrain_network_g or pass --model_path'):
        inference.build_from_options(options)
    with pytest.raises(InferenceError, match='weights file not found: missing.pth'):
        inference.build_from_options(options, 'missing.pth')
    torch.save({'params_ema': tiny_edsr(4).state_dict()}, tmp_path / 'x4.pth')
    with pytest.raises(InferenceError, match=r'x4.pth does not fit network_g of .*infer.yml: 2 unexpected '
                                             r'\(upsample.2.weight, upsample.2.bias\)$'):
        inference.build_from_options(options, tmp_path / 'x4.pth')
    with pytest.raises(InferenceError, match='tile_overlap < tile'):
        Tiler(torch.device('cpu'), tile=16, overlap=16)


def test_moeisr_any_scale_tiles_and_expert_map(tmp_path):
    torch.manual_seed(0)
    network = {'type': 'MoEISR', 'num_feat': 8, 'num_block': 1, 'expert_depths': [1, 2], 'hidden_dim': 16,
               'mapper_dim': 8, 'image_residual': True}
    built = inference.build_from_options(write_options(tmp_path, network, scale=4), require_weights=False)[0]
    image = smooth_image(30, 36)
    whole, _ = Upscaler(built, 4, 'cpu', tile=0, out_scale=2.5, progress=False).upscale_array(image, 255.)
    # 3 x 2 tiles. Routing is hard, so the overlap's outer quarter (blend weight ~0) must cover the LR pixels
    # whose codes see the tile's padding (6 here: 4 encoder convs, the unfold, the ensemble's neighbour);
    # with overlap 8 a near-tie pixel routed otherwise by a tile's padded edge differs by 50 levels.
    tiled, maps = Upscaler(built, 4, 'cpu', tile=28, tile_overlap=24, out_scale=2.5, want_maps=True,
                           progress=False).upscale_array(image, 255.)
    assert whole.shape == tiled.shape == (75, 90, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1
    picture = maps['experts']
    assert picture.shape[0] > 75 and picture.shape[1] >= 90 and picture.dtype == np.uint8  # map + colour key


def test_infer_shows_the_images_and_moesr_gate_and_experts_on_a_terminal(tmp_path):
    options = moesr_option_file(tmp_path)
    (tmp_path / 'in').mkdir()
    for index in range(2):
        cv2.imwrite(str(tmp_path / 'in' / f'{index}.png'), smooth_image(40, 60, seed=index))
    code, shown = run_cli_in_terminal(['infer', '-opt', options, '-i', 'in', '-o', 'out', '--tile', '16'], tmp_path)
    assert code == 0, shown[-3000:]
    assert re.search(r'images: 100%\|.*\| 2/2', shown) and 'gate: 0crop' in shown, shown[-3000:]
    piped = run_cli(['infer', '-opt', options, '-i', 'in', '-o', 'again', '--tile', '16'], tmp_path)
    assert 'gate:' not in piped.stderr and '2/2' not in piped.stderr  # no bars in a log file or a pipe
    assert '0.png -> again/0.png (120x80' in piped.stdout  # but a line per image


def test_small_tiles_overlap_by_a_quarter_unless_told_and_a_costly_overlap_is_warned_about(tmp_path):
    overlaps = [Upscaler(tiny_edsr(), 2, 'cpu', tile=tile).tiler.overlap for tile in (16, 48, 128, 512, 0)]
    assert overlaps == [4, 12, 32, 32, 0]  # a tile of 48 no longer computes the image 6 times over
    assert Upscaler(tiny_edsr(), 2, 'cpu', tile=48, tile_overlap=32).tiler.overlap == 32
    torch.save({'params_ema': tiny_edsr().state_dict()}, tmp_path / 'net.pth')
    options = write_options(tmp_path, {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                                       'upscale': 2}, tmp_path / 'net.pth')
    cv2.imwrite(str(tmp_path / 'in.png'), smooth_image(20, 24))
    proc = run_cli(['infer', '-opt', options, '-i', 'in.png', '-o', 'out', '--tile', '48', '--tile_overlap', '32'],
                   tmp_path)
    assert 'tiles step by 16 pixels, so the network computes about 9 times the pixels' in proc.stderr
