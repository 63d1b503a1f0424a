"""`basicsr infer --model FILE`: every arch of the package recognised from its weights alone (same options,
same output), the published files users have, what the weights do not say, and unknown files."""
import logging

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from safetensors.torch import save_file

from conftest import ROOT
from moesr_arch import cli
from moesr_arch.inference import InferenceError, build_from_model_file
from moesr_arch.inference.detect import DETECTORS, read_model_file

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_feat': 8, 'num_block': 2, 'num_out_ch': 3}
MOEISR = {'type': 'MoEISR', 'num_in_ch': 3, 'num_feat': 8, 'num_block': 1, 'expert_depths': [0, 1, 2],
          'hidden_dim': 16, 'feat_unfold': True, 'cell_decode': True, 'mapper_dim': 8, 'num_out_ch': 3,
          'scale': 3.0, 'image_residual': False}
# Options as the detectors write them: what the weights hold, and what the caller's scale gives.
ROUND_TRIPS = {
    'EDSR x2': (dict(EDSR, upscale=2), None),
    'EDSR x3': (dict(EDSR, upscale=3), None),
    'EDSR x4': (dict(EDSR, upscale=4), 4),
    'VDSR RGB x3': ({'type': 'VDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_layer': 5, 'upscale': 3}, 3),
    'VDSR Y without biases x2': ({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'num_feat': 8, 'num_layer': 4,
                                  'upscale': 2, 'bias': False}, 2),
    'SeemoRe-T x2': ({'type': 'SeemoRe', 'scale': 2, 'in_chans': 3, 'variant': 'T'}, None),
    'SeemoRe-T x3': ({'type': 'SeemoRe', 'scale': 3, 'in_chans': 3, 'variant': 'T'}, None),
    'SeemoRe-B x4': ({'type': 'SeemoRe', 'scale': 4, 'in_chans': 3, 'variant': 'B'}, None),
    'SeemoRe-L x2': ({'type': 'SeemoRe', 'scale': 2, 'in_chans': 3, 'variant': 'L'}, 2),
    'SeemoRe other width': ({'type': 'SeemoRe', 'scale': 2, 'in_chans': 3, 'variant': 'T', 'embedding_dim': 16,
                             'num_layers': 2, 'num_experts': 4, 'lr_space': 'linear', 'global_kernel_size': 7}, None),
    'BicubicResidual(EDSR)': ({'type': 'BicubicResidual', 'network': dict(EDSR, upscale=2), 'upscale': 2}, None),
    'BicubicResidual(SeemoRe-T)': ({'type': 'BicubicResidual', 'upscale': 3,
                                    'network': {'type': 'SeemoRe', 'scale': 3, 'in_chans': 3, 'variant': 'T'}}, None),
    'MoEISR': (MOEISR, 3.0),
    'MoEISR without unfold, cell, mapper': (dict(MOEISR, expert_depths=[2], feat_unfold=False, cell_decode=False,
                                                 mapper_dim=None, scale=2.5), 2.5),
    'MoEISR with an EDSR encoder': ({key: value for key, value in MOEISR.items()
                                     if key not in ('num_feat', 'num_block')} | {'encoder': dict(EDSR)}, 3.0),
}


def without_none(options):
    return {key: value for key, value in options.items() if value is not None}


def output(network, x, scale):
    with torch.no_grad():
        return network.upscale(x, scale) if type(network).__name__ == 'MoEISR' else network(x)


@pytest.mark.parametrize('case', sorted(ROUND_TRIPS))
def test_every_arch_comes_back_from_its_weights_with_the_same_options_and_output(case, tmp_path):
    options, scale = ROUND_TRIPS[case]
    options = without_none(options)
    torch.manual_seed(0)
    original = build_network(dict(options)).eval()
    channels = options.get('num_in_ch', options.get('in_chans', 3))
    if 'encoder' in options:  # the encoder's tail is removed: its num_out_ch is read as its num_in_ch
        options = dict(options, encoder=dict(options['encoder'], num_out_ch=channels))
    x = torch.rand(1, channels, 20, 18, generator=torch.Generator().manual_seed(1))
    torch.save({'params': original.state_dict(), 'params_ema': original.state_dict()}, tmp_path / 'net.pth')
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, tmp_path / 'net.safetensors')
    parameters = sum(p.numel() for p in original.parameters())
    for name, entry in (('net.pth', 'params_ema of '), ('net.safetensors', '')):
        found, _ = read_model_file(tmp_path / name, scale)
        assert found.options == options, name
        network, found_scale, description = build_from_model_file(tmp_path / name, scale)
        assert not network.training and found_scale == (scale or options.get('upscale', options.get('scale')))
        assert torch.equal(output(network, x, found_scale), output(original, x, found_scale)), name
        assert description.splitlines()[0].endswith(f'x{found_scale:g}{" (any scale)" if "MoEISR" in case else ""}, '
                                                    f'{channels} -> {channels} channels, {parameters:,} parameters '
                                                    f'({entry}{tmp_path / name})')


def test_the_description_names_the_arch_and_what_was_assumed(tmp_path):
    torch.save({'params': build_network({'type': 'SeemoRe', 'scale': 4, 'variant': 'L'}).state_dict()},
               tmp_path / 'seemore.pth')
    assert build_from_model_file(tmp_path / 'seemore.pth')[2] == \
        f'SeemoRe-L x4, 3 -> 3 channels, 968,896 parameters (params of {tmp_path / "seemore.pth"})'
    vdsr = {'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 2}
    torch.save(build_network(dict(vdsr)).state_dict(), tmp_path / 'vdsr.pth')
    _, scale, description = build_from_model_file(tmp_path / 'vdsr.pth')
    assert scale == 4 and description.splitlines()[1] == \
        'note: the scale is not in VDSR weights: x4 (the default); give --scale for another'
    torch.save({'params': build_network(dict(EDSR, upscale=2)).state_dict()}, tmp_path / 'edsr.pth')
    lines = build_from_model_file(tmp_path / 'edsr.pth')[2].splitlines()
    assert lines[1] == 'note: res_scale is not in the weights: 1 (the default) is assumed'
    assert lines[2].startswith("note: img_range and rgb_mean not in the weights: BasicSR's img_range 255 and DIV2K "
                               'rgb_mean (the default; mean error on flat grey images ')
    with pytest.raises(InferenceError, match=r'edsr.pth: these EDSR weights upscale x2; --scale 3 needs other weights'):
        build_from_model_file(tmp_path / 'edsr.pth', 3)
    with pytest.raises(InferenceError, match=r'vdsr.pth: VDSR upscales by a whole factor; got --scale 2.5'):
        build_from_model_file(tmp_path / 'vdsr.pth', 2.5)


def test_options_the_weights_do_not_hold_are_read_from_flat_grey_images(tmp_path):
    """A trained SR network gives a flat image back; with the wrong normalisation or residual setting it
    does not. Weights that do so (the last layers zeroed: a residual of 0 on flat images, as training gives)
    are detected with the settings they were made for."""
    demo = {'type': 'BicubicResidual', 'upscale': 2,  # the demo recipe's EDSR: a pure residual
            'network': dict(EDSR, upscale=2, img_range=1.0, rgb_mean=[0.0, 0.0, 0.0])}
    network = build_network(dict(demo))
    with torch.no_grad():
        network.gain.fill_(0.3)
        network.network.conv_last.weight.zero_()
        network.network.conv_last.bias.zero_()
    torch.save({'params_ema': network.state_dict()}, tmp_path / 'demo.pth')
    found, _ = read_model_file(tmp_path / 'demo.pth')
    assert found.options == demo
    assert found.notes[-1].startswith('img_range and rgb_mean of the inner EDSR not in the weights: img_range 1 and '
                                      'rgb_mean 0 (a pure residual, as in BicubicResidual recipes) (it gives flat grey '
                                      'images back; mean error on flat grey images 0.000')
    # Untrained (gain 0: bicubic whatever the EDSR): every choice gives flat images back, the default is kept.
    torch.save({'params_ema': build_network(dict(demo)).state_dict()}, tmp_path / 'untrained.pth')
    found, _ = read_model_file(tmp_path / 'untrained.pth')
    assert found.options == dict(demo, network=dict(EDSR, upscale=2))
    assert "BasicSR's img_range 255 and DIV2K rgb_mean (the default: flat grey images do not tell the choices apart; " \
        'give -opt if it is not; mean error on flat grey images 0.000' in found.notes[-1]
    residual = build_network(dict(MOEISR, image_residual=True))
    with torch.no_grad():
        for expert in residual.experts:
            expert[-1].weight.zero_()
            expert[-1].bias.zero_()
    torch.save({'params': residual.state_dict()}, tmp_path / 'moeisr.pth')
    assert read_model_file(tmp_path / 'moeisr.pth', 3.0)[0].options == dict(MOEISR, image_residual=True)


@pytest.mark.parametrize('scale', [2, 4])
def test_an_edsr_pytorch_file_runs_as_edsr_pytorch_does(tmp_path, scale):
    from test_checkpoints import edsr_pytorch_forward, edsr_pytorch_state
    state = edsr_pytorch_state(scale=scale, seed=scale)
    torch.save(state, tmp_path / 'edsr_x.pt')
    network, found_scale, description = build_from_model_file(tmp_path / 'edsr_x.pt')
    assert found_scale == scale and description.startswith('EDSR x')
    assert description.splitlines()[0].endswith(f'({tmp_path / "edsr_x.pt"}, EDSR-PyTorch layout)')
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(network(x), edsr_pytorch_forward(state, x, scale), atol=1e-5)


PYTORCH_VDSR = ROOT.parent / 'shared' / 'weights' / 'pytorch-vdsr' / 'model_epoch_50.pth'


@pytest.mark.skipif(not PYTORCH_VDSR.is_file(), reason=f'{PYTORCH_VDSR} (the published pytorch-vdsr weights) is absent')
def test_the_published_pytorch_vdsr_file_is_a_y_channel_vdsr_without_biases():
    from moesr_arch.utils.checkpoint import read_checkpoint
    network, scale, description = build_from_model_file(PYTORCH_VDSR, 3)
    assert scale == 3 and description.splitlines()[0] == \
        f'VDSR x3, 1 -> 1 channels, 664,704 parameters (model of {PYTORCH_VDSR}, pytorch-vdsr layout)'
    # The published convolutions, in order, are the network's.
    model = read_checkpoint(PYTORCH_VDSR)['model']
    from moesr_arch.utils.safe_pickle import module_state_dict
    published = module_state_dict(model)
    order = ['input.weight'] + [f'residual_layer.{i}.conv.weight' for i in range(18)] + ['output.weight']
    convs = [m for m in network.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and all(torch.equal(conv.weight, published[key]) for conv, key in zip(convs, order))
    assert all(conv.bias is None for conv in convs)
    # Trained VDSR gives a flat Y image back: its residual there is about zero.
    flat = torch.full((1, 1, 12, 12), 0.5)
    with torch.no_grad():
        assert (network(flat) - 0.5).abs().max() < 0.02


def test_unknown_files_list_what_is_known_and_moesr_asks_for_its_option_file(tmp_path):
    torch.save({'params': {'encoder.weight': torch.zeros(4, 3), 'head.bias': torch.zeros(4)}}, tmp_path / 'other.pth')
    with pytest.raises(InferenceError) as error:
        build_from_model_file(tmp_path / 'other.pth')
    message = str(error.value)
    assert message.startswith(f'{tmp_path / "other.pth"}: no network this package knows (2 tensors: encoder.weight, '
                              'head.bias, ...); --model knows: ')
    for arch in ('SeemoRe-T/B/L', 'EDSR', 'VDSR', 'BicubicResidual', 'MoEISR', 'pytorch-vdsr', 'EDSR-PyTorch',
                 'MoE-SR needs its option file'):
        assert arch in message
    expert = dict(EDSR, upscale=2)
    moesr = build_network({'type': 'MoESRNet', 'experts': {'cat': expert, 'background': expert}})
    torch.save({'params': moesr.state_dict()}, tmp_path / 'moesr.pth')
    with pytest.raises(InferenceError, match=r'moesr.pth: a MoE-SR checkpoint: MoE-SR needs its gate and categories '
                                             r'from an option file; run basicsr infer -opt'):
        build_from_model_file(tmp_path / 'moesr.pth')


def test_the_table_has_one_detector_per_arch_of_the_package():
    from basicsr.utils.registry import ARCH_REGISTRY

    import moesr_arch.archs  # noqa: F401
    package = {name for name, cls in ARCH_REGISTRY._obj_map.items() if cls.__module__.startswith('moesr_arch.')}
    assert {detector.arch for detector in DETECTORS} == package | {'EDSR'}


def test_infer_with_model_alone_says_what_it_found_and_writes_the_image(tmp_path, capsys, monkeypatch):
    from moesr_arch.tools.common import get_tool_logger
    for handler in get_tool_logger().handlers:  # made in an earlier test: point it at this test's stderr
        if type(handler) is logging.StreamHandler:
            monkeypatch.setattr(handler, 'stream', __import__('sys').stderr)
    torch.save({'params_ema': build_network(dict(EDSR, upscale=2)).state_dict()}, tmp_path / 'edsr.pth')
    cv2.imwrite(str(tmp_path / 'photo.png'), np.full((10, 12, 3), 100, np.uint8))
    capsys.readouterr()
    assert cli.main(['infer', '--model', str(tmp_path / 'edsr.pth'), '-i', str(tmp_path / 'photo.png'),
                     '-o', str(tmp_path / 'out')]) == 0
    err = capsys.readouterr().err
    assert f'INFO: EDSR x2, 3 -> 3 channels, 5,699 parameters (params_ema of {tmp_path / "edsr.pth"})' in err
    assert cv2.imread(str(tmp_path / 'out' / 'photo.png')).shape == (20, 24, 3)
    assert cli.main(['infer', '--model', str(tmp_path / 'edsr.pth'), '--model_path', str(tmp_path / 'edsr.pth'),
                     '-i', str(tmp_path / 'photo.png'), '-o', str(tmp_path / 'out')]) == 2
    assert '--model_path goes with -opt' in capsys.readouterr().err
