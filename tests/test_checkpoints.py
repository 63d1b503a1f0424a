"""The checkpoint loader: pickled whole models read without running them, published layouts converted, strict
param keys (infer, test, pretrain), and state-dict mismatches in one short line."""
import os
import sys
import textwrap

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.archs.edsr_arch import EDSR

from conftest import ROOT, build_checked_model, run_cli, write_options
from moesr_arch import cli
from moesr_arch.utils.checkpoint import CheckpointError, load_weights, read_weights

TINY = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def tiny(seed=0, **changes):
    torch.manual_seed(seed)
    return build_network(dict(TINY, **changes))


def same_weights(state, network):
    expected = network.state_dict()
    return set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())


def photo(folder):
    import cv2
    import numpy as np
    path = folder / 'photo.png'
    cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))
    return path


def error_line(argv, capsys):
    """``basicsr ARGV`` in this process: (exit code, its one error line)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if ': error: ' in line]
    assert len(lines) == 1, lines
    return code, lines[0]


# ------------------------------------------------------------------------------------------------
# Pickles


class ReadsAFile:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class Evaluates:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code, )


@pytest.mark.parametrize('legacy', [False, True])
def test_a_pickled_whole_model_is_read_without_importing_its_module(tmp_path, monkeypatch, legacy):
    # A module whose import would leave a mark, holding the class of a pickled model.
    package = tmp_path / 'pkg'
    package.mkdir()
    marker = tmp_path / 'imported'
    (package / 'user_net.py').write_text(textwrap.dedent(f'''
        import pathlib
        from torch import nn
        pathlib.Path({str(marker)!r}).touch()

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(4, 4, 3, bias=False)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.input = nn.Conv2d(1, 4, 3)
                self.layers = nn.Sequential(Block(), nn.ReLU(), Block())
                self.register_buffer('kept', torch.ones(2))
                self.register_buffer('dropped', torch.ones(3), persistent=False)
        import torch
    '''))
    monkeypatch.syspath_prepend(str(package))
    import user_net
    model = user_net.Net()
    torch.save({'epoch': 3, 'model': model}, tmp_path / 'whole.pth', _use_new_zipfile_serialization=not legacy)
    del sys.modules['user_net']
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if p != str(package)])
    marker.unlink()
    weights = read_weights(tmp_path / 'whole.pth')
    assert not marker.exists() and 'user_net' not in sys.modules
    assert weights.entry == 'model' and same_weights(weights.state, model)
    assert list(weights.state) == ['kept', 'input.weight', 'input.bias', 'layers.0.conv.weight', 'layers.2.conv.weight']


@pytest.mark.parametrize('payload, name', [(ReadsAFile, 'posix.system'), (Evaluates, 'builtins.eval')])
@pytest.mark.parametrize('legacy', [False, True])
def test_a_pickle_that_would_run_code_is_refused_naming_what_it_calls(tmp_path, payload, name, legacy, capsys):
    marker = tmp_path / 'ran'
    command = f'touch {marker}' if payload is ReadsAFile else f"open({str(marker)!r}, 'w').close()"
    torch.save({'params': tiny().state_dict(), 'extra': payload(command)}, tmp_path / 'evil.pth',
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=rf'evil.pth: refused: the pickle calls {name}; only tensors'):
        read_weights(tmp_path / 'evil.pth')
    assert not marker.exists()
    code, line = error_line(['infer', '--model', tmp_path / 'evil.pth', '-i', photo(tmp_path), '-o', tmp_path / 'out'],
                            capsys)
    assert code == 2 and f'calls {name}' in line and not marker.exists() and not (tmp_path / 'out').exists()


def test_state_dicts_in_both_torch_formats_and_safetensors_read_the_same(tmp_path):
    from safetensors.torch import save_file
    network = tiny()
    torch.save({'params': network.state_dict()}, tmp_path / 'zip.pth')
    torch.save({'params': network.state_dict()}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    torch.save({'module.' + k: v for k, v in network.state_dict().items()}, tmp_path / 'bare.pth')
    save_file(network.state_dict(), tmp_path / 'net.safetensors')
    for name in ('zip.pth', 'legacy.pth', 'bare.pth', 'net.safetensors'):
        assert same_weights(read_weights(tmp_path / name).state, network), name


# ------------------------------------------------------------------------------------------------
# Published layouts


def edsr_pytorch_state(num_feat=8, num_block=2, scale=2, rgb_range=255, seed=0):
    """Random weights under EDSR-PyTorch's names (src/model/edsr.py, common.py), with its MeanShift convs."""
    generator = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k=3):
        return 0.1 * torch.randn(cout, cin, k, k, generator=generator), 0.01 * torch.randn(cout, generator=generator)
    state = {}

    def add(name, cin, cout):
        state[f'{name}.weight'], state[f'{name}.bias'] = conv(cin, cout)
    mean = torch.tensor([0.4488, 0.4371, 0.4040])
    for sign, name in ((-1, 'sub_mean'), (1, 'add_mean')):
        state[f'{name}.weight'] = torch.eye(3).view(3, 3, 1, 1)
        state[f'{name}.bias'] = sign * rgb_range * mean
    add('head.0', 3, num_feat)
    for i in range(num_block):
        add(f'body.{i}.body.0', num_feat, num_feat)
        add(f'body.{i}.body.2', num_feat, num_feat)
    add(f'body.{num_block}', num_feat, num_feat)
    ups = [(0, 9 * num_feat)] if scale == 3 else [(2 * i, 4 * num_feat) for i in range(scale.bit_length() - 1)]
    for index, width in ups:
        add(f'tail.0.{index}', num_feat, width)
    add('tail.1', num_feat, 3)
    return state


def edsr_pytorch_forward(state, x, scale, rgb_range=255, res_scale=1):
    """EDSR-PyTorch's forward pass, written from its definition: input in [0, rgb_range]."""
    import torch.nn.functional as F

    def conv(name, h):
        weight = state[f'{name}.weight']
        return F.conv2d(h, weight, state[f'{name}.bias'], padding=weight.shape[-1] // 2)
    h = conv('sub_mean', x * rgb_range)
    h = conv('head.0', h)
    res = h
    blocks = len({k.split('.')[1] for k in state if k.startswith('body.') and '.body.' in k[5:]})
    for i in range(blocks):
        res = res + res_scale * conv(f'body.{i}.body.2', F.relu(conv(f'body.{i}.body.0', res)))
    res = conv(f'body.{blocks}', res) + h
    index = 0
    while f'tail.0.{index}.weight' in state:
        res = F.pixel_shuffle(conv(f'tail.0.{index}', res), 3 if scale == 3 else 2)
        index += 2
    return conv('add_mean', conv('tail.1', res)) / rgb_range


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_edsr_pytorch_weights_give_edsr_pytorch_outputs(tmp_path, scale):
    state = edsr_pytorch_state(scale=scale)
    torch.save(state, tmp_path / 'edsr.pt')
    weights = read_weights(tmp_path / 'edsr.pt')
    assert weights.layout == 'EDSR-PyTorch' and weights.options == {'img_range': 255.0,
                                                                   'rgb_mean': [0.4488, 0.4371, 0.404]}
    assert {'conv_first.weight', 'body.1.conv2.bias', 'conv_after_body.weight', 'upsample.0.weight',
            'conv_last.weight'} <= set(weights.state) and not any('mean' in key for key in weights.state)
    # Loaded into BasicSR's EDSR of the same size (its defaults are EDSR-PyTorch's mean and range).
    network = load_weights(EDSR(3, 3, num_feat=8, num_block=2, upscale=scale), tmp_path / 'edsr.pt').eval()
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(network(x), edsr_pytorch_forward(state, x, scale), atol=1e-5)


def test_an_edsr_pytorch_file_with_a_scaled_mean_shift_is_refused(tmp_path):
    state = edsr_pytorch_state()
    state['sub_mean.weight'] = state['sub_mean.weight'] / 0.5
    torch.save(state, tmp_path / 'edsr.pt')
    with pytest.raises(CheckpointError, match=r'edsr.pt: .*rgb_std other than 1'):
        read_weights(tmp_path / 'edsr.pt')


# ------------------------------------------------------------------------------------------------
# Which weights of a file: param_key


def test_a_missing_param_key_stops_naming_file_key_and_entries(tmp_path):
    both = {'params': tiny(0).state_dict(), 'params_ema': tiny(1).state_dict()}
    torch.save(both, tmp_path / 'net.pth')
    with pytest.raises(CheckpointError) as error:
        read_weights(tmp_path / 'net.pth', 'params_emma', what='EDSR')
    message = str(error.value)
    assert message.startswith(f'{tmp_path / "net.pth"}: no weights under \'params_emma\' for EDSR; the file holds '
                              "'params', 'params_ema'") and '[params_emma, params]' in message
    assert '\n' not in message
    # Only a list falls back, in its order.
    assert same_weights(read_weights(tmp_path / 'net.pth', ['params_emma', 'params_ema']).state, tiny(1))
    torch.save({'params': both['params']}, tmp_path / 'plain.pth')
    with pytest.raises(CheckpointError, match="no weights under 'params_ema'"):
        read_weights(tmp_path / 'plain.pth', 'params_ema')
    assert read_weights(tmp_path / 'plain.pth', ['params_ema', 'params']).entry == 'params'
    # A file with one set of weights and no BasicSR entry has nothing to choose between.
    torch.save(both['params'], tmp_path / 'bare.pth')
    assert same_weights(read_weights(tmp_path / 'bare.pth', 'params_ema').state, tiny(0))
    torch.save({'epoch': 3, 'state_dict': both['params']}, tmp_path / 'other.pth')
    assert read_weights(tmp_path / 'other.pth').entry == 'state_dict'


def test_infer_stops_on_a_misspelt_param_key(tmp_path, capsys):
    torch.save({'params': tiny(0).state_dict(), 'params_ema': tiny(1).state_dict()}, tmp_path / 'net.pth')
    options = {'name': 'x', 'model_type': 'SingleNetworkSRModel', 'scale': 2, 'num_gpu': 0, 'network_g': TINY,
               'path': {'pretrain_network_g': str(tmp_path / 'net.pth'), 'param_key_g': 'params_emma'}}
    (tmp_path / 'x.yml').write_text(yaml.safe_dump(options))
    code, line = error_line(['infer', '-opt', tmp_path / 'x.yml', '-i', photo(tmp_path), '-o', tmp_path / 'out'],
                            capsys)
    assert code == 2 and "net.pth: no weights under 'params_emma' for network_g of" in line
    assert "the file holds 'params', 'params_ema'" in line


def test_a_list_of_param_keys_is_valid_in_an_option_file(tmp_path):
    from moesr_arch.options import OptionError, validate_options
    options = {'name': 'x', 'model_type': 'SingleNetworkSRModel', 'scale': 2, 'num_gpu': 0, 'network_g': TINY,
               'datasets': {'test': {'name': 't', 'type': 'PairedImageDataset', 'dataroot_gt': 'a',
                                     'dataroot_lq': 'b', 'io_backend': {'type': 'disk'}}},
               'path': {'param_key_g': ['params_ema', 'params']}}
    validate_options(options, 'x.yml', is_train=False, check_paths=False)
    options['path']['param_key_g'] = []
    with pytest.raises(OptionError, match='param_key_g'):
        validate_options(options, 'x.yml', is_train=False, check_paths=False)


def test_pretrain_loading_is_strict_and_a_list_falls_back(tmp_path):
    torch.save({'params': tiny(0).state_dict()}, tmp_path / 'net.pth')

    def model(param_key, ema_decay=0.999):
        return build_checked_model({
            'name': 'pretrain', 'model_type': 'SingleNetworkSRModel', 'scale': 2, 'num_gpu': 0, 'dist': False,
            'is_train': True, 'rank': 0, 'world_size': 1, 'network_g': dict(TINY),
            'path': {'pretrain_network_g': str(tmp_path / 'net.pth'), 'param_key_g': param_key,
                     'strict_load_g': True, 'resume_state': None},
            'train': {'ema_decay': ema_decay, 'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 1,
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [1], 'gamma': 0.5},
                      'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}})
    with pytest.raises(CheckpointError, match=r"net.pth: no weights under 'params_ema' for EDSR; the file holds "
                                              r"'params'"):
        model('params_ema')
    loaded = model(['params_ema', 'params'])
    assert same_weights(loaded.net_g.state_dict(), tiny(0))
    # The EMA copy starts from the file's params_ema when it has one, else from net_g's weights.
    assert same_weights(loaded.net_g_ema.state_dict(), tiny(0))
    torch.save({'params': tiny(0).state_dict(), 'params_ema': tiny(1).state_dict()}, tmp_path / 'net.pth')
    both = model('params')
    assert same_weights(both.net_g.state_dict(), tiny(0)) and same_weights(both.net_g_ema.state_dict(), tiny(1))


def test_moesr_controls_ema_starts_from_the_weights_of_a_file_without_params_ema(tmp_path):
    opt = yaml.safe_load((ROOT / 'options' / 'train_moesr.yml').read_text())
    network = opt['network_g']
    network['experts'] = {name: dict(TINY) for name in network['experts']}
    network.pop('categories_file')
    network['categories'] = [name for name in network['experts'] if name != 'background']
    opt.pop('gate', None)
    torch.save({'params': tiny(3).state_dict()}, tmp_path / 'ref.pth')
    opt.update({'network_ref': dict(TINY), 'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1,
                'num_gpu': 0, 'path': {'pretrain_network_ref': str(tmp_path / 'ref.pth')}})
    model = build_checked_model(opt)
    assert same_weights(model.net_ref.state_dict(), tiny(3)) and same_weights(model.net_ref_ema.state_dict(), tiny(3))


def test_basicsr_test_stops_on_a_misspelt_param_key(workdir):
    built = build_network(yaml.safe_load((ROOT / 'options' / 'test_edsr_demo.yml').read_text())['network_g'])
    torch.save({'params': built.state_dict(), 'params_ema': built.state_dict()}, workdir / 'net.pth')
    write_options('options/test_edsr_demo.yml', workdir / 'bad.yml', path__pretrain_network_g='net.pth',
                  path__param_key_g='params_emma')
    proc = run_cli(['test', '-opt', 'bad.yml'], workdir, check=False)
    lines = [line for line in proc.stderr.splitlines() if ': error: ' in line]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr and len(lines) == 1
    assert "net.pth: no weights under 'params_emma' for BicubicResidual; the file holds 'params', 'params_ema'" in \
        lines[0]


# ------------------------------------------------------------------------------------------------
# A network the weights do not fit


def test_weights_of_another_size_give_one_short_line(tmp_path):
    torch.save({'params': tiny(num_feat=64, num_block=4).state_dict()}, tmp_path / 'wide.pth')
    with pytest.raises(CheckpointError) as error:
        load_weights(tiny(num_feat=32, num_block=6), tmp_path / 'wide.pth', what='network_g of x.yml')
    message = str(error.value)
    assert '\n' not in message and len(message) < 600, message
    assert message.startswith(f'params of {tmp_path / "wide.pth"} does not fit network_g of x.yml: 8 missing '
                              '(body.4.conv1.weight, body.4.conv1.bias, body.4.conv2.weight, ... (5 more)); ')
    assert message.endswith('; 23 of another shape (conv_first.weight: checkpoint (64, 3, 3, 3), network (32, 3, '
                            '3, 3), conv_first.bias: checkpoint (64,), network (32,), body.0.conv1.weight: '
                            'checkpoint (64, 64, 3, 3), network (32, 32, 3, 3), ... (20 more))')
    # Without strictness missing and unexpected keys pass, and so do a few shapes, but not a file of mostly others.
    with pytest.raises(CheckpointError, match=r'does not fit EDSR: 23 of another shape'):
        load_weights(tiny(num_feat=32, num_block=6), tmp_path / 'wide.pth', strict=False)


def test_non_strict_loading_leaves_out_weights_of_another_shape(tmp_path, caplog):
    """strict_load_g false (the x4 recipe started from x2 weights): every weight but the upsampler's loads, the
    upsampler's are named in a warning and keep their initial values; strict loading still refuses them."""
    import moesr_arch  # noqa: F401
    torch.manual_seed(0)
    x2 = build_network({'type': 'SeemoRe', 'variant': 'T', 'scale': 2, 'num_layers': 1})
    torch.save({'params': x2.state_dict()}, tmp_path / 'x2.pth')
    x4 = build_network({'type': 'SeemoRe', 'variant': 'T', 'scale': 4, 'num_layers': 1})
    before = {k: v.clone() for k, v in x4.state_dict().items()}
    with pytest.raises(CheckpointError, match='2 of another shape'):
        load_weights(x4, str(tmp_path / 'x2.pth'), strict=True)
    load_weights(x4, str(tmp_path / 'x2.pth'), strict=False)
    assert 'weights of another shape left out (strict loading is off): upsampler.0.weight, upsampler.0.bias' \
        in caplog.text
    for key, value in x4.state_dict().items():
        expected = before[key] if key.startswith('upsampler.') else x2.state_dict()[key]
        assert torch.equal(value, expected), key
