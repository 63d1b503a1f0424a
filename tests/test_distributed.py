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
    'edsr': ('options/train_edsr_demo.yml', dict(network_g__num_feat=8, network_g__num_block=1)),
    'seemore': ('options/train_seemore_demo.yml', dict(network_g__num_layers=1)),
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


@pytest.mark.parametrize('system', sorted(RUNS))
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
