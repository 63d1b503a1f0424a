"""Ctrl-C ends every command with one line and exit code 130, keeping the finished files and no temporaries.

The commands run in a session of their own and get SIGINT on the whole process group, as a terminal's Ctrl-C
sends it (worker processes included), once they are busy.
"""
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.archs.edsr_arch import EDSR

from conftest import cli_env, write_options


def photos(folder, count, size=96):
    folder.mkdir()
    rng = np.random.RandomState(0)
    for index in range(count):
        small = rng.rand(size // 8, size // 8, 3)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        cv2.imwrite(str(folder / f'photo_{index:03d}.png'), (image * 255).round().astype(np.uint8))
    return folder


def as_from_a_shell():
    """SIGINT unblocked and default in the command, as a shell starts it: a blocked or ignored SIGINT is
    inherited across exec, and earlier tests in this process (torch's compile workers) can leave it so."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(args, cwd, busy, timeout=120):
    """Start ``basicsr ARGS``, send Ctrl-C once ``busy()`` holds; return (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, '-m', 'moesr_arch', *map(str, args)], cwd=cwd, env=cli_env(cwd),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_from_a_shell)
    deadline = time.time() + timeout
    while not busy():
        assert proc.poll() is None, f'ended before it was interrupted: {proc.stderr.read()[-2000:]}'
        assert time.time() < deadline, 'never got busy'
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def assert_one_line_and_130(code, stderr, prog):
    assert code == 130, stderr[-3000:]
    assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f'basicsr {prog}: interrupted; the files finished so far are kept'


def no_temporaries(folder):
    return [path for path in folder.rglob('*') if path.name.endswith('.tmp')]


def test_ctrl_c_during_infer_keeps_the_finished_images(tmp_path):
    torch.manual_seed(0)
    torch.save({'params': EDSR(3, 3, num_feat=32, num_block=4, upscale=2).state_dict()}, tmp_path / 'net.pth')
    network = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=32, num_block=4, upscale=2)
    (tmp_path / 'infer.yml').write_text(yaml.safe_dump({'name': 'interrupt', 'scale': 2, 'network_g': network,
                                                        'path': {'pretrain_network_g': 'net.pth'}}))
    photos(tmp_path / 'in', 60)
    out = tmp_path / 'out'
    code, stderr = interrupt_when(['infer', '-opt', 'infer.yml', '-i', 'in', '-o', 'out'], tmp_path,
                                  lambda: out.is_dir() and len([p for p in out.iterdir() if p.suffix == '.png']) >= 2)
    assert_one_line_and_130(code, stderr, 'infer')
    written = sorted(out.glob('*.png'))
    assert 2 <= len(written) < 60 and not no_temporaries(out)
    assert all(cv2.imread(str(path)).shape == (192, 192, 3) for path in written)  # each one whole


def test_ctrl_c_during_generate_lr_with_workers(tmp_path):
    photos(tmp_path / 'HR', 150, size=160)
    out = tmp_path / 'gen'
    code, stderr = interrupt_when(['prepare', 'generate_lr', '-i', 'HR', '-o', 'gen', '-s', '2', '3', '4',
                                   '--n_thread', '2'], tmp_path,
                                  lambda: out.is_dir() and len(list(out.rglob('*.png'))) >= 6)
    assert_one_line_and_130(code, stderr, 'prepare generate_lr')  # the workers leave Ctrl-C to the parent
    assert list(out.rglob('*.png')) and not no_temporaries(out)


@pytest.mark.usefixtures('workdir')
def test_ctrl_c_during_training_keeps_the_saved_checkpoints(workdir):
    options = write_options('options/train_edsr_demo.yml', workdir / 'train.yml', name='interrupted',
                            train__total_iter=100000, train__scheduler__periods=[100000], datasets__train__batch_size_per_gpu=2,
                            datasets__train__gt_size=32, logger__print_freq=1, logger__save_checkpoint_freq=2,
                            logger__use_tb_logger=False)
    models = workdir / 'experiments' / 'interrupted' / 'models'
    code, stderr = interrupt_when(['train', '-opt', options], workdir, lambda: (models / 'net_g_4.pth').exists())
    assert_one_line_and_130(code, stderr, 'train')
    saved = sorted(models.glob('net_g_*.pth'))
    assert saved and all(torch.load(path, weights_only=True)['params'] for path in saved)
    assert not no_temporaries(workdir / 'experiments')
