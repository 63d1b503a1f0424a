"""Targeted fixes to BasicSR 1.4.2, applied once when :mod:`moesr_arch` is imported.

- Registry look-ups of unknown names fail with the list of registered names.
- Option files are validated (:mod:`moesr_arch.options`) before BasicSR parses them, in every pipeline.
- Resuming works on CPU (BasicSR maps states onto ``torch.cuda.current_device()``), ``--auto_resume``
  looks in this run's own ``experiments/<name>/training_states`` (BasicSR looks relative to the current
  directory) and skips unreadable states, so a state cut short by a crash never blocks a resume.
- ``--launcher pytorch`` (torchrun) works without GPUs: gloo on CPU, NCCL on CUDA with the device
  chosen by LOCAL_RANK (BasicSR always asks for NCCL and picks the device by global rank).
- A resumed run continues the interrupted epoch where it stopped (BasicSR restarts the epoch, so the
  resumed run would see other batches than an uninterrupted one); with the random generators restored
  by the model, resumed training retraces the uninterrupted run.
"""
import argparse
import logging
import os
import sys

import torch
from basicsr import test as basicsr_test
from basicsr import train as basicsr_train
from basicsr.utils import options as basicsr_options
from basicsr.utils.dist_util import init_dist as basicsr_init_dist
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import check_resume
from basicsr.utils.registry import Registry

from moesr_arch.options import OptionError, apply_force_yml, load_options, validate_options

_original_parse_options = basicsr_train.parse_options
_original_create_dataloaders = basicsr_train.create_train_val_dataloader
_resumed = {}  # {'epoch', 'iter'} of the state being resumed, read when the train loader is built


def registry_get(self, name, suffix='basicsr'):
    found = self._obj_map.get(name)
    if found is None:
        found = self._obj_map.get(f'{name}_{suffix}')
    if found is None:
        raise KeyError(f"No object named '{name}' found in '{self._name}' registry. Registered names: " +
                       ', '.join(sorted(self._obj_map)))
    return found


def validate_argv_options(argv=None, is_train=True):
    """Validate the option file named by ``-opt`` in ``argv`` (BasicSR's command line) and return it."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    opt = apply_force_yml(load_options(args.opt), args.force_yml, args.opt)
    validate_options(opt, args.opt, is_train=is_train)
    return opt


def parse_options(root_path, is_train=True):
    try:
        validate_argv_options(is_train=is_train)
    except OptionError as error:
        raise SystemExit(f'Invalid options: {error}') from None
    opt, args = _original_parse_options(root_path, is_train)
    if opt['num_gpu'] and not torch.cuda.is_available():
        raise SystemExit(f'{args.opt}: num_gpu is {opt["num_gpu"]} but CUDA is not available; '
                         'set num_gpu: 0 to run on the CPU')
    return opt, args


def init_dist(launcher, backend='nccl', **kwargs):
    if launcher != 'pytorch':
        return basicsr_init_dist(launcher, backend, **kwargs)
    import torch.distributed as dist
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        dist.init_process_group(backend='nccl')
    else:
        dist.init_process_group(backend='gloo')


def _state_files(folder):
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.endswith('.state') and n[:-len('.state')].isdigit()]
    return sorted((os.path.join(folder, n) for n in names), key=lambda p: int(os.path.basename(p)[:-6]),
                  reverse=True)


def map_location(opt):
    if opt.get('num_gpu', 0) and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
        return lambda storage, loc: storage.to(device)
    return 'cpu'


def remove_partial_checkpoints(opt, logger):
    """Delete the temporary files a crash left mid-write (see ``atomic_torch_save``): they are never complete."""
    if opt.get('rank', 0) != 0:
        return
    for key in ('training_states', 'models'):
        folder = opt['path'].get(key)
        if not folder or not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith('.') and name.endswith('.tmp'):
                path = os.path.join(folder, name)
                logger.warning(f'Removing a checkpoint an interrupted run left incomplete: {path}')
                os.remove(path)


def load_resume_state(opt):
    """BasicSR's ``load_resume_state``, device-agnostic and robust to states cut short by a crash."""
    # BasicSR's file logger is set up only after this runs; initialising it here would disable it.
    logger = logging.getLogger(__name__)
    if opt['auto_resume'] or opt['path'].get('resume_state'):
        remove_partial_checkpoints(opt, logger)
    if opt['auto_resume']:
        candidates = _state_files(opt['path']['training_states'])
    else:
        candidates = [opt['path']['resume_state']] if opt['path'].get('resume_state') else []
    for path in candidates:
        try:
            state = torch.load(path, map_location=map_location(opt), weights_only=False)
        except Exception as error:  # a truncated or corrupt file: fall back to the previous state
            if not opt['auto_resume']:
                raise RuntimeError(f'cannot read resume state {path}: {error}') from error
            logger.warning(f'Skipping unreadable training state {path}: {error}')
            continue
        opt['path']['resume_state'] = path
        models = opt['path'].get('models')
        network_file = models and os.path.join(models, f"net_g_{state['iter']}.pth")
        if opt['auto_resume'] and network_file and not os.path.isfile(network_file):
            logger.warning(f'Skipping training state {path}: its weights {network_file} are missing')
            continue
        check_resume(opt, state['iter'])
        _resumed.update(epoch=state['epoch'], iter=state['iter'])
        return state
    return None


class ResumableEnlargedSampler(EnlargedSampler):
    """BasicSR's sampler, able to leave out the samples an interrupted epoch already used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = {}  # epoch -> number of this rank's samples to leave out

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip.pop(self.epoch, 0):])


def create_train_val_dataloader(opt, logger):
    result = _original_create_dataloaders(opt, logger)
    train_loader, train_sampler = result[0], result[1]
    if _resumed and train_loader is not None and isinstance(train_sampler, ResumableEnlargedSampler):
        done_in_epoch = _resumed['iter'] - _resumed['epoch'] * len(train_loader)
        if done_in_epoch > 0:
            train_sampler.skip[_resumed['epoch']] = done_in_epoch * train_loader.batch_size
            logger.info(f"Resuming inside epoch {_resumed['epoch']}: skipping its first {done_in_epoch} batches")
        _resumed.clear()
    return result


def apply():
    Registry.get = registry_get
    basicsr_train.parse_options = parse_options
    basicsr_options.init_dist = init_dist
    basicsr_test.parse_options = parse_options_test
    basicsr_train.load_resume_state = load_resume_state
    basicsr_train.EnlargedSampler = ResumableEnlargedSampler
    basicsr_train.create_train_val_dataloader = create_train_val_dataloader


def parse_options_test(root_path, is_train=False):
    return parse_options(root_path, is_train=is_train)
