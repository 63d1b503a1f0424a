"""The one training step every model shares: `train.grad_clip_norm` and VDSR's adjustable clipping."""
import pytest
import torch
from conftest import build_checked_model

from moesr_arch.options import OptionError, load_options, validate_options
from moesr_arch.models.single_network_sr_model import SingleNetworkSRModel

NETWORKS = {
    'SingleNetworkSRModel': {'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 2},
    'MoEISRModel': {'type': 'MoEISR', 'num_feat': 8, 'num_block': 1, 'hidden_dim': 16, 'mapper_dim': 8},
}


def build(model_type, tmp_path, lr=0.1, network=None, **train):
    opt = {
        'name': 'step', 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'dist': False, 'is_train': True,
        'rank': 0, 'world_size': 1, 'network_g': dict(network or NETWORKS[model_type]),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'models': str(tmp_path), 'training_states': str(tmp_path)},
        'train': {'ema_decay': 0, 'optim_g': {'type': 'SGD', 'lr': lr, 'momentum': 0.9},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.1}, 'total_iter': 4,
                  # a huge loss, so that the bounds bind
                  'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1e6, 'reduction': 'mean'}, **train},
    }
    return build_checked_model(opt)


def batch(model_type, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(2, 3, 8, 8, generator=generator)
    if model_type == 'MoEISRModel':  # LIIF-style queries: values at 40 coordinates of the HR image
        coord = torch.rand(2, 40, 2, generator=generator) * 2 - 1
        return {'lq': lq, 'coord': coord, 'cell': torch.full((2, 40, 2), 2 / 16),
                'gt': torch.rand(2, 40, 3, generator=generator)}
    return {'lq': lq, 'gt': torch.rand(2, 3, 16, 16, generator=generator)}


def gradients(model):
    return [p.grad for p in model.net_g.parameters() if p.grad is not None]


def train_step(model, model_type, current_iter):
    model.update_learning_rate(current_iter)
    model.feed_data(batch(model_type, current_iter))
    model.optimize_parameters(current_iter)  # gradients stay until the next step zeroes them


@pytest.mark.parametrize('model_type', sorted(NETWORKS))
def test_grad_clip_norm_bounds_the_gradient_norm_of_every_model(model_type, tmp_path):
    clip = 0.5
    unclipped = build(model_type, tmp_path)
    train_step(unclipped, model_type, 1)
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients(unclipped)])) > 10 * clip
    model = build(model_type, tmp_path, grad_clip_norm=clip)
    before = [p.detach().clone() for p in model.net_g.parameters()]
    train_step(model, model_type, 1)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients(model)]))
    assert norm == pytest.approx(clip, rel=1e-4)
    # plain SGD's first step (momentum buffer = gradient): no weight moved by more than lr x clip in all
    moved = torch.linalg.vector_norm(torch.cat([(p.detach() - b).flatten()
                                                for p, b in zip(model.net_g.parameters(), before)]))
    assert moved <= 0.1 * clip * (1 + 1e-4)


@pytest.mark.parametrize('model_type', sorted(NETWORKS))
def test_adjustable_clipping_bounds_every_gradient_element_by_theta_over_the_current_lr(model_type, tmp_path):
    theta = 1e-4
    model = build(model_type, tmp_path, grad_clip_value_over_lr=theta)
    for current_iter in (1, 2, 3):  # the scheduler divides lr by 10 after iteration 2
        train_step(model, model_type, current_iter)
        lr = model.optimizer_g.param_groups[0]['lr']
        assert lr == pytest.approx(0.1 if current_iter < 3 else 0.01)
        largest = max(g.abs().max().item() for g in gradients(model))
        assert largest <= theta / lr * (1 + 1e-6)
        assert largest >= 0.999 * theta / lr, 'the loss is huge: the bound must bind'


def test_adjustable_clipping_divides_theta_by_the_world_size(tmp_path):
    """theta is derived for one process's batch; DDP averages the gradients of world_size batches."""
    theta = 1e-4
    model = build('SingleNetworkSRModel', tmp_path, grad_clip_value_over_lr=theta)
    model.opt['world_size'] = 4
    train_step(model, 'SingleNetworkSRModel', 1)
    assert max(g.abs().max().item() for g in gradients(model)) == pytest.approx(theta / 4 / 0.1, rel=1e-6)


def test_adjustable_clipping_leaves_gradients_alone_without_the_option(tmp_path):
    model = build('SingleNetworkSRModel', tmp_path)
    train_step(model, 'SingleNetworkSRModel', 1)
    assert max(g.abs().max().item() for g in gradients(model)) > 1e-4 / 0.1 * 100


@pytest.mark.parametrize('value', [0, -1e-3, '1e-8', [0.01]])
def test_adjustable_clipping_option_is_checked_naming_the_key_and_file(value):
    """Through the public option check (its wording may change with the schema; the key and file stay)."""
    from conftest import ROOT
    source = str(ROOT / 'options' / 'train_vdsr_x2.yml')
    opt = load_options(source)
    validate_options(opt, source, check_paths=False)  # the recipe's own theta passes
    opt['train']['grad_clip_value_over_lr'] = value
    with pytest.raises(OptionError, match=f'{source}: train.grad_clip_value_over_lr '):
        validate_options(opt, source, check_paths=False)


def test_every_plugin_model_trains_through_the_one_step():
    """No model has a training step of its own (MoEISR once had a copy that ignored grad_clip_norm)."""
    import inspect
    from pathlib import Path

    from basicsr.utils.registry import MODEL_REGISTRY
    plugin = [cls for _, cls in MODEL_REGISTRY if cls.__module__.startswith('moesr_arch.')]
    assert {cls.__name__ for cls in plugin} >= {'SingleNetworkSRModel', 'MoEISRModel', 'MoESRModel'}
    for cls in plugin:
        assert issubclass(cls, SingleNetworkSRModel) and cls.step is SingleNetworkSRModel.step, cls.__name__
        own = cls.__dict__.get('optimize_parameters')
        assert own is None or cls is SingleNetworkSRModel or 'super().optimize_parameters(' in inspect.getsource(own)
    models = Path(inspect.getfile(SingleNetworkSRModel)).parent
    for path in models.glob('*.py'):
        text = path.read_text()
        calls = text.count('.backward(') + text.count('optimizer.step(') + text.count('clip_grad_')
        assert calls == (4 if path.name == 'single_network_sr_model.py' else 0), path.name


def test_the_old_name_expert_sr_model_validates_and_builds_a_single_network_model(tmp_path):
    """Option files written before the rename to SingleNetworkSRModel give ``model_type: ExpertSRModel``."""
    from conftest import write_options
    source = write_options('options/train_vdsr_x2.yml', tmp_path / 'old.yml', model_type='ExpertSRModel')
    validate_options(load_options(str(source)), str(source), check_paths=False)
    model = build('ExpertSRModel', tmp_path, network=NETWORKS['SingleNetworkSRModel'])
    assert isinstance(model, SingleNetworkSRModel)
    train_step(model, 'SingleNetworkSRModel', 1)
    assert gradients(model)
