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

# make test runs one pytest worker per core with OMP_NUM_THREADS=1; alone, 2 threads as on a 2-core CI machine.
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


def run_cli_in_terminal(args, cwd, timeout=600):
    """``basicsr ARGS`` with stderr on a pseudo-terminal, as in an interactive shell (where progress bars are
    drawn); returns ``(exit code, what the terminal showed)``."""
    import fcntl
    import pty
    import struct
    import termios
    import threading
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, and tqdm draws nothing in 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, '-m', 'moesr_arch', *map(str, args)], cwd=cwd, env=cli_env(cwd),
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = []

    def read():  # drained as it comes: a full terminal buffer would block the command
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the command has closed the terminal
                break
            if not data:
                break
            shown.append(data)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    return code, b''.join(shown).decode(errors='replace')


def write_options(source, dest, **overrides):
    """Copy option file ``source`` (relative to the repo) to ``dest`` with ``a__b=value`` overrides.

    ``datasets__train__batch_size_per_gpu=2`` sets ``opt['datasets']['train']['batch_size_per_gpu']``;
    a value of ``DELETE`` removes the key. Replacing MoE-SR's experts (``network_g[__experts]``) also drops the
    weights the file starts them and its control from (``path.pretrain_network_experts``/``_ref``, the shipped
    generalist), which fit the file's experts only, unless the call sets those keys itself.
    """
    opt = yaml.safe_load((ROOT / source).read_text())
    if 'network_g__experts' in overrides or 'network_g' in overrides:
        for key in ('path__pretrain_network_experts', 'path__pretrain_network_ref'):
            if key.split('__')[1] in (opt.get('path') or {}):
                overrides = {key: 'DELETE', **overrides}
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


RUN_KEYS = ('is_train', 'dist', 'rank', 'world_size')  # added by basicsr train|test, not written in files
PLACEHOLDER_SETS = {'val': {'name': 'none', 'type': 'PairedImageDataset', 'dataroot_gt': 'none', 'dataroot_lq': 'none',
                            'io_backend': {'type': 'disk'}}}


def build_checked_model(opt):
    """The model of a hand-written option dict, from the options ``basicsr train|test`` would give it: checked and
    filled (:func:`moesr_arch.options.validate_options`), then the run keys of ``opt`` (``RUN_KEYS`` and the
    derived paths) put back. Datasets may be left out (a placeholder is checked, none is built)."""
    import copy

    from basicsr.models import build_model

    from moesr_arch.options import validate_options
    from moesr_arch.options.training import DERIVED_PATHS
    opt = copy.deepcopy(opt)
    run = {key: opt.pop(key) for key in RUN_KEYS if key in opt}
    paths = {key: opt['path'].pop(key) for key in DERIVED_PATHS if key in opt.get('path', {})}
    opt.setdefault('datasets', copy.deepcopy(PLACEHOLDER_SETS))
    opt.setdefault('name', 'test')
    is_train = bool(run.get('is_train'))
    if is_train:  # what basicsr train needs besides the model's own sections (no loop runs here)
        opt.setdefault('logger', {'print_freq': 1, 'save_checkpoint_freq': 1, 'use_tb_logger': False})
        if opt.get('val') is not None:
            opt['val'] = {'val_freq': 1, 'save_img': False, **opt['val']}
    checked = validate_options(opt, 'test options', is_train=is_train, check_paths=False)
    checked.update(run)
    checked['path'].update(paths)
    return build_model(checked)


def checked_dataset(opt, is_train=False, key=None):
    """The options ``basicsr train|test`` would hand a dataset for the hand-written dataset section ``opt``: checked
    and filled with the schema's declared defaults (:func:`moesr_arch.options.check_dataset`; data paths are left to
    the dataset). The keys BasicSR adds at run time (``phase``, ``scale``) are kept: the schema declares them.
    ``key``: the set's key under ``datasets`` that messages name (default: its phase, else ``val``)."""
    from moesr_arch.options import check_dataset
    key = key or opt.get('phase') or 'val'
    return check_dataset(opt, f'datasets.{key}', 'test options', is_train, check_paths=False)


def tiny_test_setup(folder, images, name='tiny_test'):
    """A ``basicsr test`` set-up in ``folder``: x2 pairs of ``images`` ({stem: HR uint8 array}) in ``HR``/``LR``
    (test set ``pair``), a tiny random EDSR in ``net.pth`` and ``test.yml``, which saves the outputs with the
    suffix ``sr`` and measures PSNR/SSIM on Y with border 2. Returns the option file's path."""
    import cv2
    from basicsr.archs.edsr_arch import EDSR
    network = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    torch.manual_seed(0)
    torch.save({'params': EDSR(**{k: v for k, v in network.items() if k != 'type'}).state_dict()}, folder / 'net.pth')
    for kind in ('HR', 'LR'):
        (folder / kind).mkdir(exist_ok=True)
    for stem, hr in images.items():
        cv2.imwrite(str(folder / 'HR' / f'{stem}.png'), hr)
        low = cv2.resize(hr, (hr.shape[1] // 2, hr.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / 'LR' / f'{stem}.png'), low)
    metrics = {key: {'type': f'calculate_{key}', 'crop_border': 2, 'test_y_channel': True} for key in ('psnr', 'ssim')}
    options = {'name': name, 'model_type': 'SingleNetworkSRModel', 'scale': 2, 'num_gpu': 0,
               'datasets': {'test_1': {'name': 'pair', 'type': 'CheckedPairedImageDataset', 'dataroot_gt': 'HR',
                                       'dataroot_lq': 'LR', 'io_backend': {'type': 'disk'}}},
               'network_g': network, 'path': {'pretrain_network_g': 'net.pth', 'strict_load_g': True},
               'val': {'save_img': True, 'suffix': 'sr', 'metrics': metrics}}
    (folder / 'test.yml').write_text(yaml.safe_dump(options, sort_keys=False))
    return folder / 'test.yml'


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
