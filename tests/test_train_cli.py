"""`basicsr train` / `basicsr test` end to end on the demo photos, on the CPU."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, run_cli_in_terminal, tb_scalars, tiny_test_setup, write_options


def tiny_edsr_options(workdir, total_iter=4, **extra):
    overrides = dict(name='tiny_edsr', train__total_iter=total_iter, datasets__train__batch_size_per_gpu=2,
                     datasets__train__gt_size=32, network_g__network__num_feat=8, network_g__network__num_block=1,
                     val__val_freq=2, logger__print_freq=1, logger__save_checkpoint_freq=2,
                     train__scheduler={'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5})
    return write_options('options/train_edsr_demo.yml', workdir / 'train.yml', **{**overrides, **extra})


def test_train_validates_saves_and_resumes_on_cpu(workdir):
    options = tiny_edsr_options(workdir)
    run_cli(['train', '-opt', options], workdir)
    run_dir = workdir / 'experiments' / 'tiny_edsr'
    assert sorted(p.name for p in (run_dir / 'training_states').iterdir()) == ['2.state', '4.state']
    checkpoint = torch.load(run_dir / 'models' / 'net_g_latest.pth', weights_only=True)
    assert set(checkpoint) == {'params', 'params_ema'}
    scalars = tb_scalars(workdir / 'tb_logger' / 'tiny_edsr')
    assert [step for step, _ in scalars['losses/l_pix']] == [1, 2, 3, 4]
    # Validation every 2 iterations, then once more after the loop (BasicSR logs that one at a later step).
    psnr = scalars['metrics/demo_val/psnr']
    assert [step for step, _ in psnr[:2]] == [2, 4] and len(psnr) == 3 and psnr[2][0] > 4, psnr
    assert all(10 < value < 60 for _, value in psnr) and psnr[2][1] == psnr[1][1], psnr  # same weights
    saved = torch.load(run_dir / 'training_states' / '4.state', weights_only=False)
    assert saved['iter'] == 4
    weights_4 = torch.load(run_dir / 'models' / 'net_g_4.pth', weights_only=True)['params']
    first_logs = set(run_dir.glob('train_*.log'))

    # Longer schedule, resumed from the newest state on the CPU (BasicSR alone crashes here).
    options = tiny_edsr_options(workdir, total_iter=6)
    run_cli(['train', '-opt', options, '--auto_resume'], workdir)
    new_logs = set(run_dir.glob('train_*.log')) - first_logs
    assert len(new_logs) == 1
    log = new_logs.pop().read_text()
    resumed = re.findall(r'Resuming training from epoch: (\d+), iter: (\d+)\.', log)
    assert resumed == [(str(saved['epoch']), '4')], log[-2000:]
    # The resumed run trained iterations 5 and 6 only (a restart from 1 would log steps 1-4 again).
    scalars = tb_scalars(workdir / 'tb_logger' / 'tiny_edsr')
    assert [step for step, _ in scalars['losses/l_pix']] == [1, 2, 3, 4, 5, 6]
    resumed_psnr = scalars['metrics/demo_val/psnr'][3:]
    assert len(resumed_psnr) == 2 and resumed_psnr[0][0] == 6 and resumed_psnr[1][0] > 6, resumed_psnr
    assert torch.load(run_dir / 'training_states' / '6.state', weights_only=False)['iter'] == 6
    weights_6 = torch.load(run_dir / 'models' / 'net_g_6.pth', weights_only=True)['params']
    assert set(weights_6) == set(weights_4)
    assert any(not torch.equal(weights_6[key], weights_4[key]) for key in weights_4)


def test_test_command_writes_images_and_metrics(workdir):
    import cv2
    import numpy as np
    from basicsr.metrics import calculate_psnr
    run_cli(['train', '-opt', tiny_edsr_options(workdir, total_iter=2)], workdir)
    options = write_options('options/test_edsr_demo.yml', workdir / 'test.yml', name='tiny_edsr',
                            network_g__network__num_feat=8, network_g__network__num_block=1, val__self_ensemble=True,
                            path__pretrain_network_g='experiments/tiny_edsr/models/net_g_latest.pth')
    run_cli(['test', '-opt', options], workdir)
    images = sorted(p.name for p in (workdir / 'results' / 'tiny_edsr' / 'visualization' / 'demo_val').iterdir())
    assert images == ['motorcycle_tiny_edsr.png', 'zidane_tiny_edsr.png']
    # `basicsr test` reports its metrics in the log only: the PSNR there is, per test set, that of the
    # images it wrote (PSNR-Y, border 2, as test_edsr_demo.yml says), to the 4 decimals printed.
    expected = []
    for split in ('val', 'heldout'):
        written = sorted((workdir / 'results' / 'tiny_edsr' / 'visualization' / f'demo_{split}').iterdir())
        hr = workdir / 'datasets' / 'demo' / split / 'HR'
        expected.append(np.mean([calculate_psnr(cv2.imread(str(path)),
                                                cv2.imread(str(hr / path.name.replace('_tiny_edsr', ''))),
                                                crop_border=2, test_y_channel=True) for path in written]))
    reported = [json.loads((workdir / 'results' / 'tiny_edsr' / f'metrics_demo_{split}.json').read_text())['psnr']
                for split in ('val', 'heldout')]
    assert reported == [pytest.approx(value, abs=1e-9) for value in expected], (reported, expected)


def test_non_finite_loss_stops_training_naming_iteration_and_term(workdir):
    options = tiny_edsr_options(workdir, total_iter=6, train__optim_g__lr=1e30, logger__save_checkpoint_freq=1)
    proc = run_cli(['train', '-opt', options], workdir, check=False)
    assert proc.returncode != 0
    match = re.search(r'iteration (\d+): (the gradient of )?loss l_pix is (nan|inf)', proc.stderr)
    assert match, proc.stderr[-2000:]
    bad_iter = int(match.group(1))
    models = workdir / 'experiments' / 'tiny_edsr' / 'models'
    assert not (models / f'net_g_{bad_iter}.pth').exists()
    for path in models.glob('net_g_*.pth'):  # everything saved before the blow-up is finite
        params = torch.load(path, weights_only=True)['params']
        assert all(torch.isfinite(v).all() for v in params.values())


@pytest.mark.slow  # make test-all: three trainings; test_options_read_once checks the forced seed in-process
def test_force_yml_manual_seed_changes_the_seed(workdir):
    """BasicSR seeds before it applies --force_yml; a forced manual_seed must still train another seed."""
    weights = {}
    for seed in (0, 0, 1):
        options = tiny_edsr_options(workdir, total_iter=2, name=f'seed{seed}_{len(weights)}')
        run_cli(['train', '-opt', options, '--force_yml', f'manual_seed={seed}'], workdir)
        path = workdir / 'experiments' / f'seed{seed}_{len(weights)}' / 'models' / 'net_g_latest.pth'
        weights[len(weights)] = torch.load(path, weights_only=True)['params']
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    different = any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert same, 'one seed must train the same weights twice'
    assert different, '--force_yml manual_seed=1 trained the weights of seed 0'


def test_a_failed_test_run_leaves_the_last_results_in_place(tmp_path):
    from basicsr.archs.edsr_arch import EDSR
    options = tiny_test_setup(tmp_path, {'pic': np.full((32, 40, 3), 120, np.uint8)})
    run_cli(['test', '-opt', options], tmp_path)
    results = tmp_path / 'results' / 'tiny_test'
    good = sorted(path.relative_to(results) for path in results.rglob('*'))
    assert Path('visualization/pair/pic_sr.png') in good and Path('metrics_pair.json') in good
    torch.save({'params': EDSR(3, 3, num_feat=16, num_block=1, upscale=2).state_dict()}, tmp_path / 'net.pth')
    for _ in range(2):  # weights of another network: the model cannot be built
        proc = run_cli(['test', '-opt', options], tmp_path, check=False)
        assert proc.returncode != 0 and 'does not fit EDSR' in proc.stderr, proc.stderr[-2000:]
    assert sorted(path.name for path in (tmp_path / 'results').iterdir()) == ['tiny_test']
    assert sorted(path.relative_to(results) for path in results.rglob('*')) == good


def test_the_first_iterations_are_logged_before_print_freq(workdir):
    options = tiny_edsr_options(workdir, total_iter=12, logger__print_freq=10, logger__save_checkpoint_freq=100,
                                val__val_freq=100, logger__use_tb_logger=False, name='early_logs')
    run_cli(['train', '-opt', options], workdir)
    log = next((workdir / 'experiments' / 'early_logs').glob('train_*.log')).read_text()
    logged = [int(n.replace(',', '')) for n in re.findall(r'\[epoch:\s*\d+, iter:\s*([\d,]+),', log)]
    assert logged == [1, 2, 5, 10], log[-3000:]  # then every 10th: 20 is past the end


def test_test_shows_a_bar_over_the_images_on_a_terminal_only(tmp_path):
    options = tiny_test_setup(tmp_path, {'first': np.full((32, 40, 3), 90, np.uint8),
                                         'second': np.full((32, 40, 3), 160, np.uint8)})
    code, shown = run_cli_in_terminal(['test', '-opt', options], tmp_path)
    assert code == 0 and re.search(r'Test second: 100%\|.*\| 2/2', shown), shown[-3000:]
    piped = run_cli(['test', '-opt', options], tmp_path)  # a log file or a pipe gets no bar
    assert 'Test second' not in piped.stderr and '2/2' not in piped.stderr
