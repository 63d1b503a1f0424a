"""Long end-to-end runs (`make test-all`): the demo jobs reach their promised results; CUDA training."""
import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.metrics import calculate_psnr
from basicsr.utils.matlab_functions import imresize

from conftest import ROOT, run_cli, tb_scalars, write_options


def bicubic_psnr(workdir, scale=2):
    """Mean Y-PSNR of MATLAB bicubic upsampling on the demo validation photos (border = scale)."""
    values = []
    for hr_path in sorted((workdir / 'datasets/demo/val/HR').glob('*.png')):
        hr = cv2.imread(str(hr_path))
        lr = cv2.imread(str(workdir / f'datasets/demo/val/LR_bicubic/X{scale}' / hr_path.name))
        up = np.clip(np.round(imresize(lr / 255., scale) * 255), 0, 255)
        values.append(calculate_psnr(up, hr, scale, test_y_channel=True))
    return float(np.mean(values))


@pytest.mark.slow
def test_main_job_blend_beats_its_background_expert_and_bicubic(workdir):
    run_cli(['train', '-opt', write_options('options/train_moesr.yml', workdir / 'main.yml')], workdir)
    scalars = tb_scalars(workdir / 'tb_logger' / 'demo_MoESR_x2_EDSR_f32b4')
    blend = scalars['metrics/demo_val/psnr'][-1][1]  # the validation after the last iteration
    background = scalars['metrics/demo_val/psnr_background'][-1][1]
    assert blend > background > bicubic_psnr(workdir)


@pytest.mark.slow
def test_seemore_demo_beats_bicubic(workdir):
    run_cli(['train', '-opt', write_options('options/train_seemore_demo.yml', workdir / 'seemore.yml')], workdir)
    name = yaml.safe_load((ROOT / 'options/train_seemore_demo.yml').read_text())['name']
    final = tb_scalars(workdir / 'tb_logger' / name)['metrics/demo_val/psnr'][-1][1]
    assert final > bicubic_psnr(workdir)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_training_and_resume(workdir):
    options = write_options(
        'options/train_edsr_demo.yml', workdir / 'cuda.yml', name='cuda_edsr', num_gpu=1, train__total_iter=4,
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, val__val_freq=4,
        logger__save_checkpoint_freq=2)
    run_cli(['train', '-opt', options], workdir, env={'CUDA_VISIBLE_DEVICES': '0'})
    run_cli(['train', '-opt', write_options(options, options, train__total_iter=6), '--auto_resume'], workdir,
            env={'CUDA_VISIBLE_DEVICES': '0'})
    assert (workdir / 'experiments/cuda_edsr/training_states/6.state').is_file()
