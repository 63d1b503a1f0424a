"""Shared fixtures: the demo dataset built once per test session, and helpers to run the CLI."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (registration for in-process tests)

# 2 threads as on CI; OMP_NUM_THREADS=1 when several test runs share the machine.
TEST_THREADS = int(os.environ.get('OMP_NUM_THREADS') or 2)
torch.set_num_threads(TEST_THREADS)


def cli_env(tmp_home, **extra):
    """Environment for CLI subprocesses: CPU only (unless ``extra`` says otherwise), offline, no writes
    outside the test folders."""
    env = dict(os.environ)
    env.update({
        'CUDA_VISIBLE_DEVICES': '',
        'YOLO_OFFLINE': '1',
        'YOLO_AUTOINSTALL': '0',
        'YOLO_CONFIG_DIR': str(Path(tmp_home) / 'ultralytics'),
        'OMP_NUM_THREADS': str(TEST_THREADS),
        'PYTHONPATH': os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')]),
    })
    env.update(extra)
    return env


def run_cli(args, cwd, check=True, timeout=600, env=None):
    """Run ``python -m moesr_arch ARGS`` (the ``basicsr`` command) in ``cwd``; return the process.

    ``env`` adds environment variables (e.g. ``{'CUDA_VISIBLE_DEVICES': '0'}`` for GPU tests)."""
    proc = subprocess.run([sys.executable, '-m', 'moesr_arch', *map(str, args)], cwd=cwd,
                          env=cli_env(cwd, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'basicsr {" ".join(map(str, args))} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


def write_options(source, dest, **overrides):
    """Copy option file ``source`` (relative to the repo) to ``dest`` with ``a__b=value`` overrides.

    ``datasets__train__batch_size_per_gpu=2`` sets ``opt['datasets']['train']['batch_size_per_gpu']``;
    a value of ``DELETE`` removes the key.
    """
    opt = yaml.safe_load((ROOT / source).read_text())
    for dotted, value in overrides.items():
        *parents, last = dotted.split('__')
        node = opt
        for key in parents:
            node = node[key]
        if value == 'DELETE':
            node.pop(last, None)
        else:
            node[last] = value
    Path(dest).write_text(yaml.safe_dump(opt, sort_keys=False))
    return Path(dest)


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A work folder holding ``datasets/demo`` (built once per session from the packaged photos)."""
    sys.path.insert(0, str(ROOT / 'scripts' / 'data_preparation'))
    from make_demo_dataset import build
    root = tmp_path_factory.mktemp('work')
    build(root / 'datasets' / 'demo')
    return root


@pytest.fixture
def workdir(tmp_path, demo_root, monkeypatch):
    """An empty run folder, made the current directory, whose ``datasets/`` is the session's demo data.

    Option files name data relative to the current directory, as for a user running ``basicsr``.
    """
    (tmp_path / 'datasets').symlink_to(demo_root / 'datasets', target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tb_scalars(folder):
    """TensorBoard scalars written under ``folder`` (e.g. ``tb_logger/<name>``): ``{tag: [(step, value), ...]}``
    in the order written, over every event file (a resumed run adds one); nothing is dropped when steps go back.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={'scalars': 0}, purge_orphaned_data=False)
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()['scalars']}
