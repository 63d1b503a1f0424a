"""The plugin's train and test pipelines: BasicSR 1.4.2's, built from BasicSR's own parts, with fixes.

``basicsr train|test`` (:mod:`moesr_arch.cli`) runs :func:`train_pipeline` / :func:`test_pipeline`.
They follow BasicSR's ``train_pipeline`` / ``test_pipeline`` step by step and call BasicSR's building
blocks (its option parser, ``build_dataset``, ``build_dataloader``, ``build_model``, loggers, prefetchers,
``MessageLogger``); BasicSR itself is never modified, so other code in the process sees it unchanged.
The fixes, each applied here explicitly (docs/training.md lists them):

1. **options read once, checked and filled** (:func:`parse_options`): the option file, with ``--force_yml``
   applied, is validated (:mod:`moesr_arch.options`) before any work and filled with its declared defaults,
   and that tree is what the builders and models receive (BasicSR reads the file again and applies
   ``--force_yml`` with ``exec``); unknown registry names are reported with the registered ones (BasicSR's
   ``Registry.get`` says only "not found").
2. **forced seed** (:func:`add_run_keys`): the seed is set after ``--force_yml`` is applied (BasicSR seeds
   before, so a forced ``manual_seed`` was not the one used).
3. **CUDA asked, none there** (:func:`parse_options`): ``num_gpu`` > 0 without CUDA stops naming the option.
4. **process group from the device** (:func:`init_process_group`): under torchrun (``--launcher
   pytorch``) the backend follows the model's device (gloo for ``num_gpu: 0``, NCCL on CUDA with the
   GPU of ``LOCAL_RANK``); BasicSR always asks for NCCL and picks the GPU by global rank.
5. **CPU resume** (:func:`load_resume_state`): states are read onto the CPU whatever the device (BasicSR
   maps them onto ``torch.cuda.current_device()``, which fails without CUDA); the optimizers move their
   state to the parameters' device when they load it.
6. **auto-resume in the run's own folder, robust to crashes** (:func:`load_resume_state`):
   ``--auto_resume`` looks in ``experiments/<name>/training_states`` under the run's root (BasicSR looks
   relative to the current directory), skips truncated or corrupt states and states without their
   weights, and removes the temporary files a killed run left mid-write.
7. **resumed epoch continues** (:class:`ResumableEnlargedSampler`): a resumed run leaves out the batches
   the interrupted epoch already used (BasicSR restarts the epoch), so it retraces an uninterrupted run.
8. **empty training loader** (:func:`moesr_arch.data.loader_check.build_dataloader`): a training set
   that cannot fill one batch stops the run at start (BasicSR "trains" zero iterations and exits 0).
9. **scale against the network** (:func:`check_model_scale`): a top-level ``scale`` the network does not
   produce stops training and testing before any image runs, with ``basicsr infer``'s one line (BasicSR
   dies in its metrics: ``Image shapes are different``).
10. **progress from the start**: iterations 1, 2, 5, 10, 20, ... of a run are logged until the
    ``print_freq`` cadence begins (:func:`logs_iteration`; BasicSR is silent until iteration ``print_freq``),
    and ``val.pbar`` left out shows BasicSR's bar over the test images when stderr is a terminal
    (:func:`parse_options`; BasicSR shows none unless asked).
11. **a failed test keeps the last results** (:func:`results_folder`): ``basicsr test`` archives an existing
    ``results/<name>`` as BasicSR does, but puts it back when the run fails before writing any result
    (BasicSR leaves one ``_archived_<time>`` folder per mistake).
"""
import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
import time
from os import path as osp

import torch
from basicsr.data import build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.train import init_tb_loggers
from basicsr.utils import (AvgTimer, MessageLogger, check_resume, get_env_info, get_root_logger, get_time_str,
                           make_exp_dirs, mkdir_and_rename, set_random_seed)
from basicsr.utils import options as basicsr_options
from basicsr.utils.dist_util import get_dist_info, init_dist

from moesr_arch.data.loader_check import build_dataloader
from moesr_arch.options import OptionError, read_options
from moesr_arch.utils.atomic import atomic_write_text, remove_stale_temporaries

# ------------------------------------------------------------------------------------------------
# Options (fixes 1-4)


def add_arguments(parser):
    """BasicSR's command line (what ``basicsr.utils.options.parse_options`` reads), with a help line each:
    ``basicsr train|test --help`` shows these, and :func:`parse_argv` refuses anything else."""
    parser.add_argument('-opt', required=True, metavar='FILE', help='the option file (YAML) of the run')
    parser.add_argument('--auto_resume', action='store_true',
                        help='train: continue from the newest complete state in experiments/<name>/training_states')
    parser.add_argument('--debug', action='store_true',
                        help="BasicSR's debug run: the name gets the prefix debug_; training logs every iteration, "
                        'validates and saves every 8 iterations, without tensorboard')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='pytorch under torchrun (one process per GPU or CPU worker); default: %(default)s')
    parser.add_argument('--local_rank', type=int, default=0,
                        help='set by torch.distributed.launch; torchrun sets LOCAL_RANK instead')
    parser.add_argument('--force_yml', nargs='+', metavar='KEY=VALUE',
                        help='override keys of the file, checked like it: e.g. train:ema_decay=0.999 num_gpu=1')


def parse_argv(argv):
    """BasicSR's command line ``argv`` (without the program) parsed; a usage error exits as argparse does."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return parser.parse_args(argv)


def uses_cuda(opt):
    """Whether the model of ``opt`` runs on CUDA (``num_gpu`` > 0, or ``auto`` with a visible GPU)."""
    num_gpu = opt['num_gpu']
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


def parse_options(root_path, argv, is_train=True):
    """The options of a run (fixes 1-4): the option file read once, ``--force_yml`` applied, checked and filled
    (:func:`moesr_arch.options.read_options`), then BasicSR's run keys added as its ``parse_options`` adds them
    (:func:`add_run_keys`). Returns ``(opt, args)`` as BasicSR's does."""
    args = parse_argv(argv)
    try:
        opt = read_options(args.opt, args.force_yml, is_train=is_train)
        num_gpu = opt['num_gpu']
        if num_gpu != 'auto' and num_gpu and not torch.cuda.is_available():  # fix 3
            raise SystemExit(f'{args.opt}: num_gpu is {num_gpu} but CUDA is not available; '
                             'set num_gpu: 0 to run on the CPU')
        if args.launcher == 'pytorch':
            init_process_group(opt, args.opt)
        elif args.launcher == 'slurm':
            init_dist('slurm', **opt.get('dist_params') or {})
    except OptionError as error:
        raise SystemExit(f'Invalid options: {error}') from None
    add_run_keys(opt, args, root_path, is_train)
    return opt, args


def add_run_keys(opt, args, root_path, is_train):
    """BasicSR's ``parse_options`` after it has read the file, on the checked options (in place): the process's
    rank and world size, the seed (drawn when none is given), the run's flags, each dataset's phase and scale,
    and the output folders; the file is neither read again nor changed by ``exec``."""
    opt['dist'] = args.launcher != 'none'
    opt['rank'], opt['world_size'] = get_dist_info()
    if opt.get('manual_seed') is None:
        opt['manual_seed'] = random.randint(1, 10000)
    set_random_seed(opt['manual_seed'] + opt['rank'])
    opt['auto_resume'], opt['is_train'] = args.auto_resume, is_train
    if args.debug and not opt['name'].startswith('debug'):
        opt['name'] = 'debug_' + opt['name']
    if opt['num_gpu'] == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        for key in ('dataroot_gt', 'dataroot_lq'):
            if dataset.get(key) is not None:
                dataset[key] = osp.expanduser(dataset[key])
    paths = opt.setdefault('path', {})
    for key, value in paths.items():
        if value is not None and ('resume_state' in key or 'pretrain_network' in key):
            paths[key] = osp.expanduser(value)
    if is_train:
        root = osp.join(root_path, 'experiments', opt['name'])
        paths.update(experiments_root=root, models=osp.join(root, 'models'), log=root,
                     training_states=osp.join(root, 'training_states'), visualization=osp.join(root, 'visualization'))
        if 'debug' in opt['name']:
            if 'val' in opt:
                opt['val']['val_freq'] = 8
            opt['logger'].update(print_freq=1, save_checkpoint_freq=8)
    else:
        root = osp.join(root_path, 'results', opt['name'])
        paths.update(results_root=root, log=root, visualization=osp.join(root, 'visualization'))
    if opt.get('val') is not None and opt['val'].get('pbar') is None:  # fix 10: a bar where someone watches
        opt['val']['pbar'] = sys.stderr.isatty()


# ------------------------------------------------------------------------------------------------
# Resume (fixes 5-7)


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
    """The training state to resume (None: a new run); BasicSR's ``load_resume_state`` with fixes 5 and 6."""
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


def create_train_val_dataloader(opt, logger, resume_state=None):
    """BasicSR's ``create_train_val_dataloader`` with fixes 7 and 8 (same return value)."""
    train_loader = train_sampler = total_epochs = total_iters = None
    val_loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt['dataset_enlarge_ratio']
            train_set = build_dataset(dataset_opt)
            train_sampler = ResumableEnlargedSampler(train_set, opt['world_size'], opt['rank'], ratio)
            train_loader = build_dataloader(train_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=train_sampler, seed=opt['manual_seed'])
            batch = dataset_opt['batch_size_per_gpu'] * opt['world_size']
            iters_per_epoch = math.ceil(len(train_set) * ratio / batch)
            total_iters = int(opt['train']['total_iter'])
            total_epochs = math.ceil(total_iters / iters_per_epoch)
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {ratio}'
                        f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {iters_per_epoch}'
                        f'\n\tTotal epochs: {total_epochs}; iters: {total_iters}.')
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                                sampler=None, seed=opt['manual_seed']))
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise ValueError(f'Dataset phase {phase} is not recognized.')
    if resume_state and train_loader is not None:
        done_in_epoch = resume_state['iter'] - resume_state['epoch'] * len(train_loader)
        if done_in_epoch > 0:
            train_sampler.skip[resume_state['epoch']] = done_in_epoch * train_loader.batch_size
            logger.info(f"Resuming inside epoch {resume_state['epoch']}: skipping its first {done_in_epoch} batches")
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters


# ------------------------------------------------------------------------------------------------
# The pipelines


def make_prefetcher(opt, train_loader, logger):
    prefetch_mode = opt['datasets']['train'].get('prefetch_mode')
    if prefetch_mode is None or prefetch_mode == 'cpu':
        return CPUPrefetcher(train_loader)
    if prefetch_mode == 'cuda':
        logger.info(f'Use {prefetch_mode} prefetch dataloader')
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
        return CUDAPrefetcher(train_loader, opt)
    raise ValueError(f"Wrong prefetch_mode {prefetch_mode}. Supported ones are: None, 'cuda', 'cpu'.")


def start_logging(opt, kind):
    """BasicSR's root logger writing ``<kind>_<name>_<time>.log`` in the run's log folder."""
    # BasicSR's own order: nothing may call get_root_logger before this, or the file logger is lost.
    log_file = osp.join(opt['path']['log'], f"{kind}_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(basicsr_options.dict2str(opt))
    return logger


def copy_option_file(opt_path, opt):
    """BasicSR's ``copy_opt_file`` (the option file with the command line on top, in the experiment folder,
    rank 0 only), written all-or-nothing."""
    if opt['rank'] != 0:
        return
    with open(opt_path, encoding='utf-8') as source:
        text = source.read()
    header = f'# GENERATE TIME: {time.asctime()}\n# CMD:\n# {" ".join(sys.argv)}\n\n'
    atomic_write_text(osp.join(opt['path']['experiments_root'], osp.basename(opt_path)), header + text)


def train_pipeline(root_path, argv):
    """``basicsr train``: BasicSR's ``train_pipeline`` (same loop, logs and files) with the module's fixes.

    ``argv``: BasicSR's command line without the program (``['-opt', FILE, '--auto_resume', ...]``).
    """
    opt, args = parse_options(root_path, argv, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    resume_state = load_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_option_file(args.opt, opt)
    logger = start_logging(opt, 'train')
    tb_logger = init_tb_loggers(opt)

    train_loader, train_sampler, val_loaders, total_epochs, total_iters = \
        create_train_val_dataloader(opt, logger, resume_state)
    model = build_model(opt)
    check_model_scale(model, opt, args.opt)
    start_epoch = current_iter = 0
    if resume_state:
        model.resume_training(resume_state)  # optimizers, schedulers, random generators
        logger.info(f"Resuming training from epoch: {resume_state['epoch']}, iter: {resume_state['iter']}.")
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = make_prefetcher(opt, train_loader, logger)

    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    start_iter = current_iter
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    for epoch in range(start_epoch, total_epochs + 1):
        train_sampler.set_epoch(epoch)
        prefetcher.reset()
        train_data = prefetcher.next()
        while train_data is not None:
            data_timer.record()
            current_iter += 1
            if current_iter > total_iters:
                break
            model.update_learning_rate(current_iter, warmup_iter=opt['train']['warmup_iter'])
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()  # for a more accurate ETA (not in resume mode)
            if logs_iteration(current_iter - start_iter, current_iter, opt['logger']['print_freq']):
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                            'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
            if opt.get('val') is not None and current_iter % opt['val']['val_freq'] == 0:
                validate(model, val_loaders, current_iter, tb_logger, opt, logger)
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    consumed_time = str(datetime.timedelta(seconds=int(time.time() - start_time)))
    logger.info(f'End of training. Time consumed: {consumed_time}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)  # -1 stands for the latest
    if opt.get('val') is not None:
        validate(model, val_loaders, current_iter, tb_logger, opt)
    if tb_logger:
        tb_logger.close()


def logs_iteration(done, current_iter, print_freq):
    """Whether iteration ``current_iter``, the run's ``done``-th, is logged: every ``print_freq``-th, and before
    the first of those the run's 1st, 2nd, 5th, 10th, 20th, 50th, ... (fix 10), so the first lines come within
    seconds even when ``print_freq`` iterations take minutes."""
    if current_iter % print_freq == 0:
        return True
    if done >= print_freq:
        return False
    while done % 10 == 0:
        done //= 10
    return done in (1, 2, 5)


def validate(model, val_loaders, current_iter, tb_logger, opt, logger=None):
    if logger is not None and len(val_loaders) > 1:
        logger.warning('Multiple validation datasets are *only* supported by SRModel.')
    for val_loader in val_loaders:
        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])


def check_model_scale(model, opt, source):
    """Fix 9: the option file's top-level ``scale`` must be what the model's ``net_g`` produces (the check
    ``basicsr infer`` makes, :func:`moesr_arch.inference.check_scale`)."""
    from moesr_arch.inference import check_scale
    if opt.get('scale') is not None:
        check_scale(model.get_bare_model(model.net_g), opt['scale'], source)


def write_test_metrics(opt, dataset_name, metric_results):
    """``<results>/metrics_<dataset>.json``: the test set's metrics as numbers (the log has them as text;
    BasicSR's test writes no TensorBoard events), rank 0 only, all-or-nothing."""
    if opt['rank'] != 0 or not metric_results:
        return
    metrics = {key: float(value) for key, value in metric_results.items()}
    atomic_write_text(osp.join(opt['path']['results_root'], f'metrics_{dataset_name}.json'),
                      json.dumps(metrics, indent=1) + '\n')


def holds_results(folder):
    """Whether a test run wrote anything into ``folder`` besides its log."""
    return any(not name.endswith('.log') for _, _, names in os.walk(folder) for name in names)


def close_file_logs(folder):
    """Detach the root logger's files inside ``folder`` (it is about to be removed)."""
    logger = logging.getLogger('basicsr')
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler) and osp.abspath(handler.baseFilename).startswith(
                osp.abspath(folder) + os.sep):
            logger.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def results_folder(opt):
    """``basicsr test``'s folders (BasicSR's ``make_exp_dirs``, which first renames an existing
    ``results/<name>`` to ``results/<name>_archived_<time>``), with fix 11: when the run fails before it writes
    any result, the new folder (its log only) is removed and the archived one put back."""
    results = opt['path']['results_root']
    archive = None
    if opt['rank'] == 0 and osp.exists(results):
        archive = f'{results}_archived_{get_time_str()}'
        print(f'Path already exists. Rename it to {archive}', flush=True)  # BasicSR's words
        os.rename(results, archive)
    make_exp_dirs(opt)
    try:
        yield
    except BaseException:
        if archive is not None and not holds_results(results):
            close_file_logs(results)
            shutil.rmtree(results)
            os.rename(archive, results)
            print(f'The run wrote no result: {archive} renamed back to {results}', flush=True)
        raise


def test_pipeline(root_path, argv):
    """``basicsr test``: BasicSR's ``test_pipeline`` with the checked options (fixes 1-3, 9 and 11); each test set's
    metrics also go to ``results/<name>/metrics_<set>.json``."""
    opt, _ = parse_options(root_path, argv, is_train=False)
    torch.backends.cudnn.benchmark = True
    with results_folder(opt):
        run_tests(opt, parse_argv(argv).opt)


def run_tests(opt, opt_path):
    """The body of BasicSR's ``test_pipeline`` after its folders are made (``opt_path``: the option file, named
    in errors): logging, test sets, model, tests."""
    logger = start_logging(opt, 'test')
    test_loaders = []
    for _, dataset_opt in sorted(opt['datasets'].items()):
        test_set = build_dataset(dataset_opt)
        test_loaders.append(build_dataloader(test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                             sampler=None, seed=opt['manual_seed']))
        logger.info(f"Number of test images in {dataset_opt['name']}: {len(test_set)}")
    model = build_model(opt)
    check_model_scale(model, opt, opt_path)
    for test_loader in test_loaders:
        logger.info(f"Testing {test_loader.dataset.opt['name']}...")
        model.validation(test_loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val']['save_img'])
        write_test_metrics(opt, test_loader.dataset.opt['name'], getattr(model, 'metric_results', None))
