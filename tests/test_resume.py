"""Crash safety: a training run killed with SIGKILL resumes and ends with the weights of an uninterrupted run."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import cli_env, run_cli, write_options

# Long enough that the kill, sent as soon as the 4th iteration's state appears, lands mid-run.
TOTAL = 40


def options(workdir, name):
    return write_options(
        'options/train_edsr_demo.yml', workdir / f'{name}.yml', name=name, train__total_iter=TOTAL,
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, network_g__network__num_feat=8,
        network_g__network__num_block=1, val__val_freq=1000, logger__print_freq=1, logger__save_checkpoint_freq=2,
        logger__use_tb_logger=False, train__scheduler={'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.5}, datasets__train__dataset_enlarge_ratio=2)


def test_killed_run_resumes_to_the_same_weights(workdir):
    run_cli(['train', '-opt', options(workdir, 'straight')], workdir)
    reference = torch.load(workdir / f'experiments/straight/models/net_g_{TOTAL}.pth', weights_only=True)

    cut = options(workdir, 'cut')
    proc = subprocess.Popen([sys.executable, '-m', 'moesr_arch', 'train', '-opt', str(cut)], cwd=workdir,
                            env=cli_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    states = workdir / 'experiments/cut/training_states'
    deadline = time.time() + 300
    while not (states / '4.state').exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    assert saved and max(saved) < TOTAL, f'the run was not cut mid-way: states {saved}'

    run_cli(['train', '-opt', cut, '--auto_resume'], workdir)
    log = sorted((workdir / 'experiments/cut').glob('train_*.log'))[-1].read_text()
    assert re.search(rf'Resuming training from epoch: \d+, iter: {max(saved)}\.', log), log[-2000:]
    resumed = torch.load(workdir / f'experiments/cut/models/net_g_{TOTAL}.pth', weights_only=True)
    for key in ('params', 'params_ema'):
        for name, value in reference[key].items():
            assert torch.allclose(resumed[key][name], value, atol=1e-5), f'{key}.{name} differs after resuming'
    assert not list(workdir.glob('experiments/cut/**/*.tmp')), 'temporary checkpoint files left behind'


def test_truncated_latest_state_falls_back_to_the_previous_one(workdir):
    opt = options(workdir, 'trunc')
    run_cli(['train', '-opt', write_options(opt, opt, train__total_iter=4)], workdir)
    states = workdir / 'experiments/trunc/training_states'
    (states / '4.state').write_bytes((states / '4.state').read_bytes()[:100])  # as if cut while writing
    partial = states / '.6.state.abc123.tmp'  # what a kill during atomic_torch_save leaves
    partial.write_bytes(b'partial')
    proc = run_cli(['train', '-opt', write_options(opt, opt, train__total_iter=6), '--auto_resume'], workdir)
    assert 'Skipping unreadable training state' in proc.stderr
    assert not partial.exists(), 'the incomplete checkpoint of the interrupted run was not removed'
    log = sorted((workdir / 'experiments/trunc').glob('train_*.log'))[-1].read_text()
    assert 'Resuming training from epoch: 0, iter: 2' in log


def resume_opt(tmp_path, **extra):
    states, models = tmp_path / 'training_states', tmp_path / 'models'
    states.mkdir()
    models.mkdir()
    torch.save({'epoch': 0, 'iter': 4, 'optimizers': [], 'schedulers': [], 'rng': [{'torch': torch.get_rng_state()}]},
               states / '4.state')
    torch.save({'params': {}}, models / 'net_g_4.pth')
    opt = {'num_gpu': 1, 'auto_resume': True, 'rank': 0, 'network_g': {'type': 'EDSR'},
           'path': {'training_states': str(states), 'models': str(models), 'resume_state': None}}
    opt.update(extra)
    return opt


def test_resume_state_of_a_cuda_run_loads(tmp_path, monkeypatch):
    """A CUDA run's --auto_resume must read its states (they go to the CPU; the optimizers move them)."""
    from moesr_arch import pipeline
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    state = pipeline.load_resume_state(resume_opt(tmp_path))
    assert state is not None and state['iter'] == 4


def test_resume_error_that_is_not_a_damaged_file_stops_naming_the_file(tmp_path, monkeypatch):
    from moesr_arch import pipeline

    def refuse(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(torch, 'load', refuse)
    with pytest.raises(SystemExit, match=r'4\.state: PermissionError: .*Permission denied'):
        pipeline.load_resume_state(resume_opt(tmp_path, num_gpu=0))


class Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, index):
        return {'index': index}


@pytest.mark.parametrize('prefetch_mode,workers', [(None, 2), ('cpu', 0), ('cpu', 1)])
def test_resumed_epoch_skips_its_batches_behind_prefetchers_and_workers(prefetch_mode, workers):
    """BasicSR's prefetchers (and loader workers) make a throw-away iterator before the epoch starts; the
    resumed epoch must still leave out the batches the interrupted run used, and only those."""
    from basicsr.data import build_dataloader
    from basicsr.data.prefetch_dataloader import CPUPrefetcher
    from moesr_arch.pipeline import ResumableEnlargedSampler
    batch, done = 4, 2
    expected = list(ResumableEnlargedSampler(Indices(), 1, 0))  # epoch 0's order
    sampler = ResumableEnlargedSampler(Indices(), 1, 0)
    sampler.skip[0] = done * batch
    loader = build_dataloader(Indices(), {'phase': 'train', 'batch_size_per_gpu': batch, 'num_worker_per_gpu': workers,
                                          'prefetch_mode': prefetch_mode}, num_gpu=0, sampler=sampler, seed=0)
    prefetcher = CPUPrefetcher(loader)  # what train_pipeline does, in its order
    time.sleep(0.2)  # give a prefetch thread or the workers time to take their iterator
    seen = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        prefetcher.reset()
        while (data := prefetcher.next()) is not None:
            seen.append(data['index'].tolist())
    sampler.set_epoch(1)
    epoch_1 = list(iter(sampler))
    assert seen[0] == expected[done * batch:(done + 1) * batch], 'the resumed epoch replayed used batches'
    assert sum(seen, []) == expected[done * batch:] + epoch_1, 'the next epoch must be whole'
