"""train.amp, train.channels_last, train.compile and val.amp_and_channels_last, on every model of the package:
short trainings on the CPU (bf16 and fp16 autocast run there), a forced fp16 overflow, checkpoints and resume
with compile switched."""
import shutil

import pytest
import torch
from conftest import build_checked_model

from moesr_arch.models.speedups import amp_dtype
from moesr_arch.options import OptionError, load_options, validate_options

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
NETWORKS = {
    'SingleNetworkSRModel': EDSR,
    'MoEISRModel': {'type': 'MoEISR', 'num_feat': 8, 'num_block': 1, 'hidden_dim': 16, 'mapper_dim': 8},
    'MoESRModel': {'type': 'MoESRNet', 'categories': ['people', 'vehicle'],
                   'experts': dict.fromkeys(('people', 'vehicle', 'background'), EDSR)},
}
# MoE-SR: each stage in turn (joint for the rest of total_iter), with the equal-budget control beside it.
MOESR_TRAIN = {'stages': [{'stage': 'generalist', 'iters': 1}, {'stage': 'experts', 'iters': 1},
                          {'stage': 'joint', 'iters': 2}], 'background_in_experts': True}


def has_compiler():
    return shutil.which('cc') or shutil.which('gcc') or shutil.which('g++') or shutil.which('clang')


needs_compiler = pytest.mark.skipif(not has_compiler(), reason="torch.compile's CPU backend (inductor) needs a C++ "
                                    'compiler, and this machine has none (cc, gcc, g++, clang)')


def build(model_type, tmp_path, pretrain=None, val=None, **train):
    torch.manual_seed(0)
    opt = {
        'name': 'speed', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'dist': False, 'is_train': True,
        'rank': 0, 'world_size': 1, 'network_g': dict(NETWORKS[model_type]),
        'path': {'pretrain_network_g': pretrain, 'strict_load_g': True, 'resume_state': None,
                 'models': str(tmp_path), 'training_states': str(tmp_path)},
        'train': {'ema_decay': 0.5, 'optim_g': {'type': 'Adam', 'lr': 1e-3},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, 'total_iter': 4,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
                  **(MOESR_TRAIN if model_type == 'MoESRModel' else {}), **train},
        'val': {'metrics': {}, **(val or {})},
    }
    if model_type == 'MoESRModel':
        opt['network_ref'] = dict(EDSR)
    return build_checked_model(opt)


def batch(model_type, seed):
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(2, 3, 8, 8, generator=generator)
    if model_type == 'MoEISRModel':  # LIIF-style queries: values at 40 coordinates of the HR image
        return {'lq': lq, 'coord': torch.rand(2, 40, 2, generator=generator) * 2 - 1,
                'cell': torch.full((2, 40, 2), 2 / 16), 'gt': torch.rand(2, 40, 3, generator=generator)}
    data = {'lq': lq, 'gt': torch.rand(2, 3, 16, 16, generator=generator)}
    if model_type == 'MoESRModel':  # people, vehicle and unlabelled pixels (2) in every crop
        data['category_map'] = torch.arange(64).reshape(1, 8, 8).repeat(2, 1, 1) % 3
    return data


def train(model, model_type, iterations, first=1):
    for current_iter in range(first, first + iterations):
        model.update_learning_rate(current_iter)
        model.feed_data(batch(model_type, current_iter))
        model.optimize_parameters(current_iter)
    return model


def weights(model):
    return {name: value.detach().clone() for name, value in model.get_bare_model(model.net_g).state_dict().items()}


def conv_dtypes(model, side=8):
    """The dtypes of the first convolution's outputs on the batches' images (``side`` pixels wide: not on the
    probes that measure a network's scale), recorded while the model runs."""
    seen = []
    conv = next(m for m in model.get_bare_model(model.net_g).modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype) if output.shape[-1] == side
                               else None)
    return seen


@pytest.mark.parametrize('model_type', sorted(NETWORKS))
def test_bf16_trains_every_model_under_autocast_with_fp32_weights(model_type, tmp_path):
    model = build(model_type, tmp_path, amp='bf16')
    seen = conv_dtypes(model)
    before = weights(model)
    train(model, model_type, 3)
    assert set(seen) == {torch.bfloat16}
    after = weights(model)
    assert all(value.dtype == torch.float32 for value in after.values())
    assert any(not torch.equal(before[name], after[name]) for name in before), 'no weight moved'
    assert all(torch.isfinite(value).all() for value in after.values())
    assert 'fp16_skipped_steps' not in model.get_current_log()


@pytest.mark.parametrize('model_type', sorted(NETWORKS))
def test_fp16_trains_every_model_with_a_gradient_scaler(model_type, tmp_path):
    model = build(model_type, tmp_path, amp='fp16')
    seen = conv_dtypes(model)
    before = weights(model)
    train(model, model_type, 3)
    assert set(seen) == {torch.float16}
    after = weights(model)
    assert any(not torch.equal(before[name], after[name]) for name in before), 'no weight moved'
    assert model.get_current_log()['fp16_skipped_steps'] == 0
    scalers = model.speedups.scalers  # MoE-SR's control has its own optimizer, and its own scaler
    assert len(scalers) == len(model.optimizers) and all(s.get_scale() == 65536.0 for s in scalers.values())


def test_forced_fp16_overflow_is_skipped_and_counted_not_an_error(tmp_path, caplog):
    # The loss is finite in fp32, but its scaled gradient overflows float16 on the way back through the network.
    model = build('SingleNetworkSRModel', tmp_path, amp='fp16',
                  pixel_opt={'type': 'L1Loss', 'loss_weight': 1e30, 'reduction': 'mean'})
    before = weights(model)
    with caplog.at_level('INFO', logger='basicsr'):
        train(model, 'SingleNetworkSRModel', 2)
    after = weights(model)
    assert all(torch.equal(before[name], after[name]) for name in before), 'an overflowed step moved the weights'
    assert model.get_current_log()['fp16_skipped_steps'] == 2
    assert model.speedups.scalers[0].get_scale() == 65536.0 / 4  # halved at each skipped step
    assert 'iteration 2: fp16 gradients of loss l_pix overflowed at scale 32768; the step is skipped' in caplog.text


def test_non_finite_loss_under_fp16_still_stops_naming_iteration_and_term(tmp_path):
    model = build('SingleNetworkSRModel', tmp_path, amp='fp16',
                  pixel_opt={'type': 'L1Loss', 'loss_weight': 1e39, 'reduction': 'mean'})  # inf in fp32 too
    with pytest.raises(FloatingPointError, match=r'iteration 1: loss l_pix is inf; .*train.amp is fp16'):
        train(model, 'SingleNetworkSRModel', 1)


def test_overflowed_gradient_without_a_scaler_still_stops(tmp_path):
    model = build('SingleNetworkSRModel', tmp_path, amp='bf16',
                  pixel_opt={'type': 'L1Loss', 'loss_weight': 1e38, 'reduction': 'mean'})
    with pytest.raises(FloatingPointError, match=r'iteration 1: the gradient of loss l_pix is '):
        train(model, 'SingleNetworkSRModel', 1)


def test_fp16_scaler_continues_after_resume_and_is_ignored_without_fp16(tmp_path):
    model = train(build('SingleNetworkSRModel', tmp_path, amp='fp16'), 'SingleNetworkSRModel', 2)
    model.speedups.scalers[0].update(new_scale=1024.0)
    model.speedups.skipped_steps = 3
    model.save(0, 2)
    state = torch.load(tmp_path / '2.state', weights_only=False)
    resumed = build('SingleNetworkSRModel', tmp_path, pretrain=str(tmp_path / 'net_g_2.pth'), amp='fp16')
    resumed.resume_training(state)
    assert resumed.speedups.scalers[0].get_scale() == 1024.0 and resumed.speedups.skipped_steps == 3
    plain = build('SingleNetworkSRModel', tmp_path, pretrain=str(tmp_path / 'net_g_2.pth'))
    plain.resume_training(state)
    train(plain, 'SingleNetworkSRModel', 1, first=3)
    assert not plain.speedups.scalers and 'fp16_skipped_steps' not in plain.get_current_log()


@pytest.mark.parametrize('model_type', sorted(NETWORKS))
def test_channels_last_trains_and_saves_the_checkpoint_of_a_plain_run(model_type, tmp_path):
    model = build(model_type, tmp_path / 'cl', channels_last=True)
    conv = next(m for m in model.get_bare_model(model.net_g).modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    model.feed_data(batch(model_type, 1))
    assert model.lq.is_contiguous(memory_format=torch.channels_last)
    train(model, model_type, 3)
    (tmp_path / 'cl').mkdir()
    model.save(0, 3)
    plain = build(model_type, tmp_path / 'plain')
    train(plain, model_type, 3)
    (tmp_path / 'plain').mkdir()
    plain.save(0, 3)
    saved, expected = (torch.load(tmp_path / run / 'net_g_3.pth', weights_only=True) for run in ('cl', 'plain'))
    assert list(saved) == list(expected) == ['params', 'params_ema']
    for key in saved:
        assert list(saved[key]) == list(expected[key])
        for name, value in saved[key].items():
            assert value.is_contiguous() and value.stride() == expected[key][name].stride()
            # the same training in another memory format: the same weights up to summation order
            assert torch.allclose(value, expected[key][name], atol=1e-5), name


@pytest.mark.parametrize('setting', [{'amp': 'bf16'}, {'amp': 'fp16'}, {'channels_last': True}],
                         ids=['bf16', 'fp16', 'channels_last'])
def test_same_seed_and_setting_give_the_same_weights(setting, tmp_path):
    runs = [weights(train(build('SingleNetworkSRModel', tmp_path, **setting), 'SingleNetworkSRModel', 3)) for _ in range(2)]
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])


def run_validation(model):
    """One validation pass over two random images; returns the conv output dtypes and input formats seen."""
    class Images(torch.utils.data.Dataset):
        opt = {'name': 'random'}

        def __len__(self):
            return 2

        def __getitem__(self, index):
            data = batch('SingleNetworkSRModel', 10 + index)
            return {'lq': data['lq'][0], 'gt': data['gt'][0], 'lq_path': f'image{index}.png'}
    seen, formats = conv_dtypes(model), []
    network = model.get_bare_model(model.test_network())
    network.register_forward_pre_hook(lambda module, args: formats.append(
        args[0].is_contiguous(memory_format=torch.channels_last)) if args[0].shape[-1] == 8 else None)
    model.validation(torch.utils.data.DataLoader(Images()), 1, None, save_img=False)
    return set(seen), set(formats)


@pytest.mark.parametrize('asked', [False, True])
def test_validation_runs_fp32_and_contiguous_unless_asked(asked, tmp_path):
    model = build('SingleNetworkSRModel', tmp_path, amp='bf16', channels_last=True, ema_decay=0,
                  val={'amp_and_channels_last': asked})
    dtypes, channels_last = run_validation(model)
    assert dtypes == ({torch.bfloat16} if asked else {torch.float32})
    assert channels_last == {asked}
    train(model, 'SingleNetworkSRModel', 1)  # and training goes on in its own precision and format
    assert model.lq.is_contiguous(memory_format=torch.channels_last)


def test_bf16_is_refused_on_a_gpu_that_only_emulates_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'Tesla T4')
    with pytest.raises(ValueError, match='train.amp is bf16, but Tesla T4 only emulates bfloat16 .*use train.amp: fp16'):
        amp_dtype('bf16', torch.device('cuda'))
    assert amp_dtype('fp16', torch.device('cuda')) is torch.float16
    assert amp_dtype('bf16', torch.device('cpu')) is torch.bfloat16  # the CPU computes bf16 natively
    assert amp_dtype('none', torch.device('cuda')) is None


@pytest.mark.parametrize('key, value, message', [
    ('amp', 'fp32', "train.amp must be one of 'none', 'bf16' or 'fp16', got 'fp32'"),
    ('channels_last', 'yes', 'train.channels_last must be true or false'),
    ('compile', True, r'train.compile must be false \(no compilation\) or a torch.compile mode \(default, '
                      r'reduce-overhead, max-autotune, max-autotune-no-cudagraphs\), got True'),
    ('compile', 'fast', "train.compile must be false .*, got 'fast'"),
])
def test_options_are_checked_naming_the_key_and_value(key, value, message):
    from conftest import ROOT
    source = str(ROOT / 'options' / 'train_edsr_demo.yml')
    opt = load_options(source)
    for accepted in {'amp': ('none', 'bf16', 'fp16'), 'channels_last': (False, True),
                     'compile': (False, 'default', 'max-autotune')}[key]:
        opt['train'][key] = accepted
        validate_options(opt, source, check_paths=False)
    opt['train'][key] = value
    with pytest.raises(OptionError, match=f'{source}: {message}'):
        validate_options(opt, source, check_paths=False)


def test_the_options_are_the_package_models_only():
    """BasicSR's own SRModel would ignore them: its option files refuse them."""
    from conftest import ROOT
    source = str(ROOT / 'options' / 'train_edsr_demo.yml')
    opt = load_options(source)
    opt['model_type'] = 'SRModel'
    opt['train']['amp'] = 'bf16'
    with pytest.raises(OptionError, match='train.amp'):
        validate_options(opt, source, check_paths=False)


@needs_compiler
def test_compiled_training_saves_eager_keys_and_resumes_with_compile_switched(tmp_path):
    """Compile on for iterations 1-2, off for 3-4 (and the other way round): the keys of an eager run in every
    file, and the weights of an eager run up to the compiled kernels' rounding; two compiled runs agree exactly."""
    eager = train(build('SingleNetworkSRModel', tmp_path / 'eager'), 'SingleNetworkSRModel', 4)
    for first, then, folder in (('default', False, 'on_off'), (False, 'default', 'off_on')):
        (tmp_path / folder).mkdir()
        model = train(build('SingleNetworkSRModel', tmp_path / folder, compile=first), 'SingleNetworkSRModel', 2)
        model.save(0, 2)
        saved = torch.load(tmp_path / folder / 'net_g_2.pth', weights_only=True)
        assert list(saved['params']) == list(eager.get_bare_model(eager.net_g).state_dict())
        assert list(saved['params_ema']) == list(eager.net_g_ema.state_dict())
        state = torch.load(tmp_path / folder / '2.state', weights_only=False)
        resumed = build('SingleNetworkSRModel', tmp_path / folder, pretrain=str(tmp_path / folder / 'net_g_2.pth'),
                        compile=then)
        resumed.resume_training(state)
        train(resumed, 'SingleNetworkSRModel', 2, first=3)
        assert (type(resumed.net_g).__name__ == 'OptimizedModule') == (then is not False)
        reference = weights(eager)
        for name, value in weights(resumed).items():
            assert torch.allclose(value, reference[name], atol=1e-5), name
    twice = [weights(train(build('SingleNetworkSRModel', tmp_path / 'eager', compile='default'), 'SingleNetworkSRModel', 2))
             for _ in range(2)]
    assert all(torch.equal(twice[0][name], twice[1][name]) for name in twice[0])


@needs_compiler
# Each compiles for about 45 s on a 2-core CPU the first time (inductor then caches the kernels).
@pytest.mark.parametrize('model_type', [pytest.param('MoEISRModel', marks=pytest.mark.slow), 'MoESRModel'])
def test_compiled_training_of_moeisr_and_moesr_with_its_control(model_type, tmp_path):
    """All speed-ups at once; MoE-SR's three stages and its control (compiled too) each take a step."""
    model = build(model_type, tmp_path, compile='default', amp='bf16', channels_last=True)
    before = weights(model)
    train(model, model_type, 3)
    assert type(model.net_g).__name__ == 'OptimizedModule'
    if model_type == 'MoESRModel':
        assert type(model.net_ref).__name__ == 'OptimizedModule'
    after = weights(model)
    assert list(after) == list(before) and not any(name.startswith('_orig_mod') for name in after)
    assert any(not torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize('setting', [
    pytest.param({'amp': 'bf16'}, id='bf16'), pytest.param({'amp': 'fp16'}, id='fp16'),
    pytest.param({'channels_last': True}, id='channels_last', marks=pytest.mark.slow),
    pytest.param({'compile': 'default'}, id='compile', marks=[needs_compiler, pytest.mark.slow])])
def test_each_option_trains_under_torchrun_with_replicas_identical(setting, workdir):
    """basicsr train under torchrun, 2 gloo processes on the CPU: the replicas agree at every checkpoint."""
    from conftest import write_options
    from test_distributed import COMMON, torchrun
    name = 'ddp_' + '_'.join(f'{key}_{value}' for key, value in setting.items())
    options = write_options('options/train_edsr_demo.yml', workdir / 'ddp.yml', name=name,
                            network_g__network__num_feat=8, network_g__network__num_block=1, **COMMON,
                            **{f'train__{key}': value for key, value in setting.items()})
    torchrun(workdir, options)
    run = workdir / 'experiments' / name
    log = next(run.glob('train_*.log')).read_text()
    assert 'DDP replicas agree at iteration 4 (world size 2, max fingerprint difference 0)' in log
    assert ('fp16_skipped_steps: 0.0000e+00' in log) == (setting.get('amp') == 'fp16')
    saved = torch.load(run / 'models' / 'net_g_4.pth', weights_only=True)
    assert not any(name.startswith(('_orig_mod', 'module')) for name in saved['params'])
