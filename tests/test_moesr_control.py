"""MoE-SR's evidence: the equal-budget control, bicubic and the specialisation matrix, and experts that
stand still when their category is absent."""
import cv2
import pytest
import torch
import yaml
from basicsr.losses.basic_loss import L1Loss
from torch.optim import Adam

from conftest import ROOT, run_cli, tb_scalars, write_options

TINY_EXPERT = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def expert_names():
    return list(yaml.safe_load((ROOT / 'options/train_moesr.yml').read_text())['network_g']['experts'])


def test_control_trains_on_the_same_budget_and_is_reported_beside_the_blend(workdir):
    total = 6
    stages = [{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 2}, {'stage': 'joint', 'iters': 2}]
    options = write_options(
        'options/train_moesr.yml', workdir / 'train.yml', name='control', train__stages=stages,
        train__total_iter=total, network_g__experts={name: TINY_EXPERT for name in expert_names()},
        network_ref=TINY_EXPERT, datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32,
        val__val_freq=total, logger__print_freq=1, logger__save_checkpoint_freq=total,
        train__scheduler__milestones=[100])
    run_cli(['train', '-opt', options], workdir)
    run_dir = workdir / 'experiments' / 'control'

    state = torch.load(run_dir / 'training_states' / f'{total}.state', weights_only=False)
    steps = [int(next(iter(opt['state'].values()))['step']) for opt in state['optimizers']]
    assert steps[1] == total, 'the control must take one step per iteration'
    assert len(state['schedulers']) == 2
    reference = torch.load(run_dir / 'models' / 'net_ref_latest.pth', weights_only=True)
    assert set(reference) == {'params', 'params_ema'}

    values = tb_scalars(workdir / 'tb_logger' / 'control')
    for key in ('psnr', 'psnr_reference', 'psnr_background', 'psnr_bicubic', 'ssim_reference'):
        assert f'metrics/demo_val/{key}' in values, sorted(values)
    names = expert_names()
    spec = [tag for tag in values if tag.startswith('specialisation/demo_val/')]
    for row in names + ['MoE-SR', 'single network', 'bicubic']:
        assert any(tag.startswith(f'specialisation/demo_val/{row}/') for tag in spec), (row, spec)
    assert any(tag.endswith('/background') for tag in spec)
    heat_maps = sorted((run_dir / 'visualization').glob('specialisation_demo_val_*.png'))
    assert heat_maps, 'no specialisation heat map'
    assert cv2.imread(str(heat_maps[-1])).shape[0] > 100
    table = (run_dir / 'comparison_demo_val.txt').read_text()
    header = table.splitlines()[1].split()
    assert header[:7] == ['region', 'images', 'area', 'PSNR', 'MoE-SR', 'single', 'bg'], header

    # test: the control's weights come back from its checkpoint and stand in the same table
    test = write_options('options/test_moesr.yml', workdir / 'test.yml', name='control_test',
                         network_g__experts={name: TINY_EXPERT for name in names}, network_ref=TINY_EXPERT,
                         gate={'type': 'LabelGate', 'categories_file': 'datasets/demo/categories.yml'},
                         path__pretrain_network_g=str(run_dir / 'models/net_g_latest.pth'),
                         path__pretrain_network_ref=str(run_dir / 'models/net_ref_latest.pth'), val__save_img=False)
    run_cli(['test', '-opt', test], workdir)
    assert 'single' in (workdir / 'results' / 'control_test' / 'comparison_demo_val.txt').read_text()


def test_an_expert_whose_category_is_absent_keeps_its_weights():
    """Adam moves a parameter whose gradient is zero (its momentum); an absent expert must not move."""
    from basicsr.archs import build_network
    from moesr_arch.models.moesr_model import MoESRModel
    from moesr_arch.models.speedups import Speedups
    torch.manual_seed(0)
    names = expert_names()
    model = MoESRModel.__new__(MoESRModel)  # the training-step parts only, without BasicSR's set-up
    model.net_g = build_network({'type': 'MoESRNet', 'experts': {name: TINY_EXPERT for name in names},
                                 'categories': names[:-1]})
    model.opt = {'dist': False, 'train': {'background_in_experts': False, 'other_pixels_weight': 0.0}}
    model.speedups = Speedups(model.opt)  # no amp, channels_last or compile (outside training)
    model.cri_pix = L1Loss()
    model.get_bare_model = lambda net: net
    optimizer = Adam(model.net_g.parameters(), lr=1e-2)
    model.optimizers, model.device = [optimizer], torch.device('cpu')
    model.lq, model.gt = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)
    everywhere = torch.arange(len(names) - 1).repeat_interleave(12 * 12 * 2 // (len(names) - 1) + 1)[:288]
    for category_map in (everywhere.view(2, 12, 12), torch.zeros(2, 12, 12, dtype=torch.long)):
        model.category_map = category_map  # second step: only the first category is there
        before = {name: [p.detach().clone() for p in model.net_g.experts[name].parameters()] for name in names}
        optimizer.zero_grad(set_to_none=True)
        model.step(model.net_g, optimizer, model.expert_losses(), 1)
    moved = {name: any(not torch.equal(a, b) for a, b in zip(before[name], model.net_g.experts[name].parameters()))
             for name in names}
    assert moved[names[0]], 'the present expert must learn'
    for name in names[1:]:
        assert not moved[name], f'expert {name} moved although its category was absent'


@pytest.mark.slow  # make test-all: a training, killed and resumed, beside a whole one, about 16 s
def test_a_run_with_its_control_resumes_both(workdir):
    stages = [{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 2}]

    def options(total, last_stage_iters):
        return write_options(
            'options/train_moesr.yml', workdir / 'train.yml', name='resumed',
            train__stages=stages[:1] + [dict(stages[1], iters=last_stage_iters)], train__total_iter=total,
            network_g__experts={name: TINY_EXPERT for name in expert_names()}, network_ref=TINY_EXPERT,
            datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, val__val_freq=100,
            logger__print_freq=1, logger__save_checkpoint_freq=2, train__scheduler__milestones=[100],
            datasets__val__name='demo_val', val__metrics={'psnr': {'type': 'calculate_psnr', 'crop_border': 2}})
    run_cli(['train', '-opt', options(4, 2)], workdir)
    models = workdir / 'experiments' / 'resumed' / 'models'
    first = torch.load(models / 'net_ref_4.pth', weights_only=True)['params']
    run_cli(['train', '-opt', options(6, 4), '--auto_resume'], workdir)
    state = torch.load(workdir / 'experiments/resumed/training_states/6.state', weights_only=False)
    assert int(next(iter(state['optimizers'][1]['state'].values()))['step']) == 6, 'the control resumed at step 4'
    log = sorted((workdir / 'experiments/resumed').glob('train_*.log'))[-1].read_text()
    assert 'Resuming training from epoch: 0, iter: 4.' in log
    resumed = torch.load(models / 'net_ref_6.pth', weights_only=True)['params']
    # two more Adam steps (lr 5e-4) from the saved control, not a fresh network
    difference = max((first[k] - resumed[k]).abs().max().item() for k in first)
    assert 0 < difference < 5e-3, difference


def test_experts_and_control_start_from_a_generalist_file(workdir):
    """path.pretrain_network_experts (the shipped generalist in the main job): every expert it fits starts from it,
    and path.pretrain_network_ref starts the control there too, so the mixture and its control share a start."""
    from basicsr.archs import build_network
    from safetensors.torch import save_file

    import moesr_arch  # noqa: F401
    torch.manual_seed(7)
    generalist = {k: v.contiguous() for k, v in build_network(dict(TINY_EXPERT)).state_dict().items()}
    save_file(generalist, str(workdir / 'generalist.safetensors'))
    names = expert_names()
    options = write_options(
        'options/train_moesr.yml', workdir / 'train.yml', name='from_generalist',
        train__stages=[{'stage': 'generalist', 'iters': 1}], train__total_iter=1,
        network_g__experts={name: TINY_EXPERT for name in names}, network_ref=TINY_EXPERT,
        path__pretrain_network_experts='generalist.safetensors', path__pretrain_network_ref='generalist.safetensors',
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, val__val_freq=100,
        logger__print_freq=1, logger__save_checkpoint_freq=1, train__scheduler__milestones=[100])
    run_cli(['train', '-opt', options], workdir)
    models = workdir / 'experiments' / 'from_generalist' / 'models'
    saved = torch.load(models / 'net_g_1.pth', weights_only=True)
    for entry in ('params', 'params_ema'):
        for name in names:
            if name == 'background':
                continue  # the generalist stage trained it for one step
            for key, value in generalist.items():  # the EMA average of equal weights rounds in the last bit
                assert torch.allclose(saved[entry][f'experts.{name}.{key}'], value, rtol=0, atol=1e-6), (entry, key)
    moved = max((saved['params'][f'experts.background.{k}'] - v).abs().max().item() for k, v in generalist.items())
    assert 0 < moved < 5e-3, 'the background expert trained one step from the generalist'
    reference = torch.load(models / 'net_ref_1.pth', weights_only=True)['params']
    assert 0 < max((reference[k] - v).abs().max().item() for k, v in generalist.items()) < 5e-3
    log = sorted((workdir / 'experiments/from_generalist').glob('train_*.log'))[-1].read_text()
    assert f'Experts {", ".join(names)} start from generalist.safetensors' in log

    wrong = dict(TINY_EXPERT, num_feat=4)
    torch.manual_seed(7)
    save_file(build_network(wrong).state_dict(), str(workdir / 'other.safetensors'))
    options = write_options('options/train_moesr.yml', workdir / 'train.yml', name='unfit',
                            train__stages=[{'stage': 'generalist', 'iters': 1}], train__total_iter=1,
                            network_g__experts={name: TINY_EXPERT for name in names}, network_ref=None,
                            path__pretrain_network_experts='other.safetensors', datasets__train__gt_size=32)
    result = run_cli(['train', '-opt', options], workdir, check=False)
    assert result.returncode != 0
    assert 'path.pretrain_network_experts other.safetensors: its weights fit none of the experts' in result.stderr
