"""DDP through torchrun with the gloo backend on CPU: both ranks end with the same weights."""
import re
import socket
import subprocess
import sys

import pytest
import torch

from conftest import cli_env, write_options

TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
COMMON = dict(train__total_iter=4, datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32,
              val__val_freq=4, logger__print_freq=1, logger__save_checkpoint_freq=2, logger__use_tb_logger=False)
RUNS = {
    'edsr': ('options/train_edsr_demo.yml', dict(network_g__network__num_feat=8, network_g__network__num_block=1)),
    'seemore': ('options/train_seemore_demo.yml', dict(network_g__network__num_layers=1)),
    # each MoE-SR stage trains only some experts: DDP must be told that parameters may go unused
    'moesr': ('options/train_moesr.yml', dict(
        network_g__experts={name: TINY_EDSR for name in ('people', 'vehicle', 'background')},
        train__stages=[{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 1},
                       {'stage': 'joint', 'iters': 1}], find_unused_parameters=True)),
}


def free_port():
    with socket.socket() as probe:  # torchrun's --master_port=0 hangs: pick a free port ourselves
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def torchrun(workdir, options, nproc=2):
    command = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
               '--master_addr=127.0.0.1', f'--master_port={free_port()}',
               '-m', 'moesr_arch.train', '-opt', str(options), '--launcher', 'pytorch']
    proc = subprocess.run(command, cwd=workdir, env=cli_env(workdir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# EDSR runs in make test; the MoE-SR and SeemoRe runs (25-50 s each) in make test-all.
@pytest.mark.parametrize('system', [pytest.param(name, marks=[pytest.mark.slow] if name != 'edsr' else [])
                                    for name in sorted(RUNS)])
def test_two_process_gloo_training_keeps_replicas_identical(workdir, system):
    source, overrides = RUNS[system]
    options = write_options(source, workdir / 'ddp.yml', name=f'ddp_{system}', **COMMON, **overrides)
    torchrun(workdir, options)
    run_dir = workdir / 'experiments' / f'ddp_{system}'
    log = next(run_dir.glob('train_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    agreements = re.findall(r'DDP replicas agree at iteration (-?\d+) \(world size 2, max fingerprint difference (\S+)\)',
                            log)
    assert [it for it, _ in agreements] == ['2', '4', '-1']
    assert all(float(diff) == 0.0 for _, diff in agreements)
    assert torch.load(run_dir / 'models' / 'net_g_4.pth', weights_only=True)['params']


@pytest.mark.slow  # make test-all: two torchrun processes through every MoE-SR stage, about 50 s
def test_shipped_moesr_recipe_trains_under_torchrun(workdir):
    """The main job as shipped (no find_unused_parameters): its stages leave experts without gradients,
    which DDP must be told about; the model derives it."""
    stages = [{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 1}, {'stage': 'joint', 'iters': 1}]
    options = write_options('options/train_moesr.yml', workdir / 'ddp.yml', name='ddp_shipped', train__stages=stages,
                            val__save_img=False, **COMMON)
    assert 'find_unused_parameters' not in options.read_text()
    torchrun(workdir, options)
    log = next((workdir / 'experiments' / 'ddp_shipped').glob('train_*.log')).read_text()
    assert 'DDP: find_unused_parameters set to true (the experts and generalist stages train only some experts)' in log
    assert 'Stage joint starts at iteration 4' in log and 'End of training' in log


def test_moesr_recipe_that_forbids_unused_parameters_fails_at_start(workdir):
    from moesr_arch.options import OptionError, load_options, validate_options
    options = write_options('options/train_moesr.yml', workdir / 'bad.yml', find_unused_parameters=False)
    with pytest.raises(OptionError, match='find_unused_parameters is false, but the experts and generalist stages'):
        validate_options(load_options(str(options)), str(options))


@pytest.mark.parametrize('num_gpu,given,expected', [(0, None, 'gloo'), (1, None, 'nccl'), ('auto', None, 'nccl'),
                                                    (0, 'gloo', 'gloo'), (1, 'gloo', 'gloo')])
def test_process_group_backend_follows_the_models_device(monkeypatch, num_gpu, given, expected):
    """On a machine with CUDA, a CPU model (num_gpu: 0, as every demo recipe says) gets gloo, not NCCL."""
    from moesr_arch import pipeline
    calls = {}
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: calls.setdefault('device', device))
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda backend: calls.setdefault('backend', backend))
    monkeypatch.setenv('LOCAL_RANK', '1')
    opt = {'num_gpu': num_gpu, 'dist_params': {'backend': given} if given else {'port': 29500}}
    pipeline.init_process_group(opt, 'x.yml')
    assert calls['backend'] == expected
    assert calls.get('device') == (None if num_gpu == 0 else 1)


def test_nccl_for_a_cpu_model_fails_naming_the_option():
    from moesr_arch import pipeline
    from moesr_arch.options import OptionError
    with pytest.raises(OptionError, match='x.yml: dist_params.backend is nccl, which needs CUDA'):
        pipeline.dist_backend({'num_gpu': 0, 'dist_params': {'backend': 'nccl'}}, 'x.yml')


@pytest.mark.slow  # make test-all: three torchrun runs, about 40 s
def test_resumed_ddp_run_continues_like_an_uninterrupted_one(workdir):
    """torchrun, 2 ranks: a run resumed mid-epoch continues the same batches, and each rank gets its own
    random generators back (ranks keep drawing different crops), so it ends with the same weights.

    (With a prefetcher or loader workers, batches are loaded ahead of the saved generators: the resumed
    run sees the same images in the same order, tested in test_resume.py, with crops drawn afresh.)"""
    def options(name, total):
        return write_options('options/train_edsr_demo.yml', workdir / f'{name}.yml', name=name,
                             network_g__network__num_feat=8, network_g__network__num_block=1,
                             **dict(COMMON, train__total_iter=total, val__val_freq=1000),
                             train__scheduler={'type': 'MultiStepLR', 'milestones': [6], 'gamma': 0.5})
    torchrun(workdir, options('straight', 8))
    torchrun(workdir, options('cut', 4))
    state = torch.load(workdir / 'experiments/cut/training_states/4.state', weights_only=False)
    assert len(state['rng']) == 2, 'the state must hold the generators of both ranks'
    assert not torch.equal(state['rng'][0]['torch'], state['rng'][1]['torch']), 'ranks drew the same numbers'
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={free_port()}', '-m', 'moesr_arch.train', '-opt', str(options('cut', 8)),
               '--launcher', 'pytorch', '--auto_resume']
    proc = subprocess.run(command, cwd=workdir, env=cli_env(workdir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = sorted((workdir / 'experiments/cut').glob('train_*.log'))[-1].read_text()
    assert 'Resuming inside epoch 0: skipping its first 4 batches' in log
    reference = torch.load(workdir / 'experiments/straight/models/net_g_8.pth', weights_only=True)
    resumed = torch.load(workdir / 'experiments/cut/models/net_g_8.pth', weights_only=True)
    for key in ('params', 'params_ema'):
        for name, value in reference[key].items():
            assert torch.allclose(resumed[key][name], value, atol=1e-6), f'{key}.{name} differs after resuming'
