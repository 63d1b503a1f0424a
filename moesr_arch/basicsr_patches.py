"""Targeted fixes to BasicSR 1.4.2, applied once when :mod:`moesr_arch` is imported.

- Registry look-ups of unknown names fail with the list of registered names.
- Option files are validated (:mod:`moesr_arch.options`) before BasicSR parses them, in every pipeline.
- Resuming works on CPU (BasicSR maps states onto ``torch.cuda.current_device()``), ``--auto_resume``
  looks in this run's own ``experiments/<name>/training_states`` (BasicSR looks relative to the current
  directory) and skips unreadable states, so a state cut short by a crash never blocks a resume.
- ``--launcher pytorch`` (torchrun): the process-group backend follows the model's device (gloo for
  ``num_gpu: 0``, NCCL on CUDA with the device chosen by LOCAL_RANK); BasicSR always asks for NCCL,
  ignores ``dist_params.backend`` and picks the device by global rank.
- Resume states are read onto the CPU whatever the device (the optimizer moves its state to the
  parameters' device when it loads it); only a truncated or corrupt state counts as unreadable.
- A resumed run continues the interrupted epoch where it stopped (BasicSR restarts the epoch, so the
  resumed run would see other batches than an uninterrupted one), also behind BasicSR's prefetchers and
  with loader workers, whose throw-away first iterators would otherwise use the skip up; with the random
  generators restored per rank by the model, resumed training retraces the uninterrupted run.
"""
import argparse
import logging
import os
import pickle
import sys

import torch
from basicsr import test as basicsr_test
from basicsr import train as basicsr_train
from basicsr.utils import options as basicsr_options
from basicsr.utils.dist_util import init_dist as basicsr_init_dist
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils import check_resume
from basicsr.utils.registry import Registry

from moesr_arch.options import OptionError, apply_force_yml, load_options, resolve_derived_options, validate_options
from moesr_arch.utils.atomic import remove_stale_temporaries

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


def parse_argv(argv=None):
    """``-opt``, ``--force_yml`` and ``--launcher`` of BasicSR's command line (the rest is BasicSR's)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', default=None)
    parser.add_argument('--launcher', default='none')
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def validate_argv_options(argv=None, is_train=True):
    """Validate the option file named by ``-opt`` in ``argv`` (BasicSR's command line) and return it."""
    args = parse_argv(argv)
    opt = apply_force_yml(load_options(args.opt), args.force_yml, args.opt)
    validate_options(opt, args.opt, is_train=is_train)
    return opt


def uses_cuda(opt):
    """Whether the model of ``opt`` runs on CUDA (``num_gpu`` > 0, or ``auto`` with a visible GPU)."""
    num_gpu = opt.get('num_gpu', 0)
    if num_gpu == 'auto':
        return torch.cuda.is_available() and torch.cuda.device_count() > 0
    return bool(num_gpu)


def dist_backend(opt, source):
    """The process-group backend for the model's device: ``dist_params.backend`` when given (it must suit
    the device), else NCCL on CUDA and gloo on the CPU."""
    cuda = uses_cuda(opt)
    backend = (opt.get('dist_params') or {}).get('backend')
    if backend == 'nccl' and not cuda:
        raise OptionError(f'{source}: dist_params.backend is nccl, which needs CUDA, but the model runs on the '
                          f'CPU (num_gpu: {opt.get("num_gpu")}); use gloo or leave dist_params.backend out')
    return backend or ('nccl' if cuda else 'gloo')


def init_process_group(opt, source):
    """torchrun's process group, on the backend of the model's device (one GPU per process by LOCAL_RANK)."""
    import torch.distributed as dist
    backend = dist_backend(opt, source)
    if uses_cuda(opt):
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    dist.init_process_group(backend=backend)


def parse_options(root_path, is_train=True):
    args = parse_argv()
    try:
        opt = validate_argv_options(is_train=is_train)
        if args.launcher == 'pytorch':
            init_process_group(opt, args.opt)
    except OptionError as error:
        raise SystemExit(f'Invalid options: {error}') from None
    opt, args = _original_parse_options(root_path, is_train)
    resolve_derived_options(opt, args.opt)  # e.g. network_g.categories_file -> categories, before any build
    if any(entry.split('=', 1)[0].strip() == 'manual_seed' for entry in args.force_yml or ()):
        # BasicSR seeds from the file before it applies --force_yml: seed again with the forced value.
        from basicsr.utils import set_random_seed
        set_random_seed(opt['manual_seed'] + opt['rank'])
    if opt['num_gpu'] and not torch.cuda.is_available():
        raise SystemExit(f'{args.opt}: num_gpu is {opt["num_gpu"]} but CUDA is not available; '
                         'set num_gpu: 0 to run on the CPU')
    return opt, args


def init_dist(launcher, backend='nccl', **kwargs):
    """BasicSR's ``init_dist``; under torchrun the group already exists (:func:`init_process_group`)."""
    import torch.distributed as dist
    if launcher == 'pytorch' and dist.is_initialized():
        return
    return basicsr_init_dist(launcher, backend, **kwargs)


def _state_files(folder):
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.endswith('.state') and n[:-len('.state')].isdigit()]
    return sorted((os.path.join(folder, n) for n in names), key=lambda p: int(os.path.basename(p)[:-6]),
                  reverse=True)


def is_unreadable_state_error(error):
    """True for what ``torch.load`` raises on a truncated or corrupt file (and only that)."""
    if isinstance(error, (EOFError, pickle.UnpicklingError)):
        return True
    return isinstance(error, RuntimeError) and 'PytorchStreamReader' in str(error)


def remove_partial_checkpoints(opt, logger):
    """Delete the temporary files a crash left mid-write (see ``atomic_torch_save``): they are never complete."""
    if opt.get('rank', 0) != 0:
        return
    for key in ('training_states', 'models'):
        folder = opt['path'].get(key)
        for path in remove_stale_temporaries(folder) if folder else ():
            logger.warning(f'Removed a checkpoint an interrupted run left incomplete: {path}')


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
            # On the CPU whatever the device: the optimizers move their state onto the parameters' device.
            state = torch.load(path, map_location='cpu', weights_only=False)
        except Exception as error:
            if not (opt['auto_resume'] and is_unreadable_state_error(error)):
                raise SystemExit(f'cannot read resume state {path}: {type(error).__name__}: {error}') from error
            logger.warning(f'Skipping unreadable training state {path} (truncated or corrupt: {error})')
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
    """BasicSR's sampler, able to leave out the samples an interrupted epoch already used.

    Every iterator made during that epoch leaves them out, until the next epoch is set: BasicSR's
    prefetchers and loader workers also make iterators of their own (and throw them away, at times from a
    background thread), and those must not use the skip up.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = {}  # epoch -> number of this rank's samples to leave out

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.skip = {key: value for key, value in self.skip.items() if key >= epoch}

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip.get(self.epoch, 0):])


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
