"""DDP through torchrun with the gloo backend on CPU: both ranks end with the same weights."""
import re
import socket
import subprocess
import sys

import torch

from conftest import cli_env, write_options


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


def test_two_process_gloo_training_keeps_replicas_identical(workdir):
    options = write_options(
        'options/train_edsr_demo.yml', workdir / 'ddp.yml', name='ddp_edsr', train__total_iter=4,
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, network_g__num_feat=8,
        network_g__num_block=1, val__val_freq=4, logger__print_freq=1, logger__save_checkpoint_freq=2,
        logger__use_tb_logger=False)
    torchrun(workdir, options)
    run_dir = workdir / 'experiments' / 'ddp_edsr'
    log = next(run_dir.glob('train_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    agreements = re.findall(r'DDP replicas agree at iteration (-?\d+) \(world size 2, max fingerprint difference (\S+)\)',
                            log)
    assert [it for it, _ in agreements] == ['2', '4', '-1']
    assert all(float(diff) == 0.0 for _, diff in agreements)
    assert torch.load(run_dir / 'models' / 'net_g_4.pth', weights_only=True)['params']
