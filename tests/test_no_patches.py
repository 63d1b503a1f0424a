"""`import moesr_arch` leaves BasicSR as it is; the fixes live in the plugin's own pipelines."""
import json
import subprocess
import sys

from conftest import cli_env, run_cli, write_options

# Names an earlier version replaced (its basicsr_patches and loader_check), checked one by one; the
# script below also compares every other attribute of every BasicSR module and class.
NAMED = [
    'basicsr.train.parse_options', 'basicsr.utils.options.parse_options', 'basicsr.train.load_resume_state',
    'basicsr.train.create_train_val_dataloader', 'basicsr.train.EnlargedSampler', 'basicsr.train.build_dataloader',
    'basicsr.utils.dist_util.init_dist', 'basicsr.utils.options.init_dist', 'basicsr.test.parse_options',
    'basicsr.utils.registry.Registry.get', 'basicsr.data.build_dataloader', 'basicsr.train.train_pipeline',
    'basicsr.test.test_pipeline',
]

SCRIPT = r'''
import importlib, inspect, json, sys, types

# moesr_arch.compat's alias, made here so that BasicSR is imported (and recorded) before moesr_arch.
from torchvision.transforms import functional
alias = types.ModuleType('torchvision.transforms.functional_tensor')
alias.rgb_to_grayscale = functional.rgb_to_grayscale
sys.modules[alias.__name__] = alias
import basicsr  # noqa: E402  (imports its train, test, registries, ...)
from basicsr.utils import registry


def resolve(dotted):
    parts = dotted.split('.')
    for cut in range(len(parts), 0, -1):
        if '.'.join(parts[:cut]) in sys.modules:
            node = sys.modules['.'.join(parts[:cut])]
            for name in parts[cut:]:
                node = getattr(node, name)
            return node
    raise LookupError(dotted)


def snapshot():
    """Every attribute of every BasicSR module and of every class defined in one, and every registry entry."""
    values = {}
    for module_name, module in list(sys.modules.items()):
        if module_name.split('.')[0] != 'basicsr' or module is None:
            continue
        for name, value in list(vars(module).items()):
            values[f'{module_name}.{name}'] = value
            if inspect.isclass(value) and value.__module__.split('.')[0] == 'basicsr':
                for attr, member in list(vars(value).items()):
                    values[f'{module_name}.{name}.{attr}'] = member
    for name in ('ARCH_REGISTRY', 'DATASET_REGISTRY', 'LOSS_REGISTRY', 'METRIC_REGISTRY', 'MODEL_REGISTRY'):
        for key, value in getattr(registry, name)._obj_map.items():
            values[f'{name}[{key}]'] = value
    return values


def changed(before):
    after = snapshot()
    return sorted(key for key, value in before.items() if after.get(key, KeyError) is not value)


named = {dotted: resolve(dotted) for dotted in json.loads(sys.argv[1])}
before = snapshot()
import moesr_arch  # noqa: E402
report = {
    'after_import': changed(before),
    'named_after_import': [d for d, value in named.items() if resolve(d) is not value],
    'registered': 'MoEISRModel' in registry.MODEL_REGISTRY and 'VDSR' in registry.ARCH_REGISTRY,
}
from moesr_arch.pipeline import test_pipeline, train_pipeline  # noqa: E402
argv = ['-opt', sys.argv[2]]
train_pipeline('.', argv)
report['trained'] = sorted(p for p in __import__('os').listdir('experiments/no_patches/models'))
train_pipeline('.', argv + ['--auto_resume', '--force_yml', 'manual_seed=3'])
report['after_pipeline'] = changed(before)
report['named_after_pipeline'] = [d for d, value in named.items() if resolve(d) is not value]
print('REPORT ' + json.dumps(report))
'''


def test_import_and_pipeline_leave_basicsr_unchanged(workdir):
    options = write_options('options/train_edsr_demo.yml', workdir / 'tiny.yml', name='no_patches', train__total_iter=2,
                            datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32,
                            network_g__network__num_feat=4, network_g__network__num_block=1, val='DELETE',
                            logger__print_freq=1, logger__save_checkpoint_freq=2, logger__use_tb_logger=False)
    proc = subprocess.run([sys.executable, '-c', SCRIPT, json.dumps(NAMED), str(options)], cwd=workdir,
                          env=cli_env(workdir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.split('REPORT ', 1)[1])
    assert report['registered']
    assert report['named_after_import'] == [] and report['after_import'] == []
    assert report['trained'] == ['net_g_2.pth', 'net_g_latest.pth']  # the pipeline really ran
    assert report['named_after_pipeline'] == [] and report['after_pipeline'] == []


def test_train_command_refuses_a_training_set_that_makes_no_batch(workdir):
    """Fix 8 of moesr_arch.pipeline, through the command (BasicSR's own pipeline would train 0 iterations)."""
    options = write_options('options/train_edsr_demo.yml', workdir / 'big_batch.yml', name='no_batch',
                            datasets__train__batch_size_per_gpu=1000, datasets__train__dataset_enlarge_ratio=1)
    proc = run_cli(['train', '-opt', options], workdir, check=False)
    assert proc.returncode != 0
    assert 'make no batch of batch_size_per_gpu 1000' in proc.stderr, proc.stderr[-2000:]
    assert not list(workdir.glob('experiments/no_batch/models/*.pth'))


def test_cuda_asked_on_a_machine_without_it_stops_naming_the_option(workdir, monkeypatch):
    """Fix 3 of moesr_arch.pipeline, before any work (and before a process group is made)."""
    import pytest
    import torch

    from moesr_arch.pipeline import parse_options
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    options = write_options('options/train_edsr_demo.yml', workdir / 'gpu.yml', num_gpu=1)
    with pytest.raises(SystemExit, match='gpu.yml: num_gpu is 1 but CUDA is not available; set num_gpu: 0'):
        parse_options(str(workdir), ['-opt', str(options), '--launcher', 'pytorch'])
    assert not (workdir / 'experiments').exists()
