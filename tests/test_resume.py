"""Crash safety: a training run killed with SIGKILL resumes and ends with the weights of an uninterrupted run."""
import os
import re
import signal
import subprocess
import sys
import time

import torch

from conftest import cli_env, run_cli, write_options

# Long enough that the kill, sent as soon as the 4th iteration's state appears, lands mid-run.
TOTAL = 40


def options(workdir, name):
    return write_options(
        'options/train_edsr_demo.yml', workdir / f'{name}.yml', name=name, train__total_iter=TOTAL,
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, network_g__num_feat=8,
        network_g__num_block=1, val__val_freq=1000, logger__print_freq=1, logger__save_checkpoint_freq=2,
        logger__use_tb_logger=False, train__scheduler__milestones=[5], datasets__train__dataset_enlarge_ratio=2)


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
