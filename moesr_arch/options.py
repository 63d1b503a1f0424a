"""Typed validation of BasicSR option files, run before any work starts.

BasicSR reads option YAML into plain dicts: a misspelt key is silently ignored and a wrong type fails
hours later. Here every section has a schema, every registered class contributes its own (archs and
losses through their constructor signatures, datasets and models through ``OPTIONS`` attributes), and
the first problem raises :class:`OptionError` naming the file, the key and the value.

Spec language (used by the package's datasets and models too):
- a type (``str``, ``int``, ``float``, ``bool``), ``Number`` (int or float), ``Any``;
- ``Optional[X]``, ``Union[X, Y]``, ``Literal['a', 'b']``, ``List[X]``, ``Dict[str, X]``;
- a dict ``{key: spec}``: a section whose unknown keys are errors; keys listed in ``REQUIRED`` of
  :func:`section` must be present.
"""
import contextvars
import inspect
import os
import typing
from typing import Any, Dict, List, Literal, Optional, Union

import yaml

Number = Union[int, float]


class OptionError(ValueError):
    """A problem in an option file, with the file and the key path in the message."""


# False while checking option files away from their data (validate_options(check_paths=False)).
_checking_paths = contextvars.ContextVar('checking_paths', default=True)


def require_path(path, where, source, kind='file or folder'):
    """OptionError naming the key unless ``path`` exists; a no-op when validating without paths."""
    if not _checking_paths.get():
        return
    if not isinstance(path, str) or not os.path.exists(os.path.expanduser(path)):
        raise OptionError(f'{source}: {where}: no such {kind}: {path}')


def checking_paths():
    return _checking_paths.get()


class Section(dict):
    """A dict spec with required keys and, optionally, a check of extra keys by a callback."""

    def __init__(self, spec, required=(), extra=None):
        super().__init__(spec)
        self.required = tuple(required)
        self.extra = extra  # callable(key, value, where) or None: unknown keys are errors


def section(spec, required=(), extra=None):
    return Section(spec, required, extra)


def _describe(spec):
    if spec is Any or isinstance(spec, Checker):
        return 'anything'
    if isinstance(spec, dict):
        return 'a mapping'
    origin = typing.get_origin(spec)
    if origin is Union:
        arms = typing.get_args(spec)
        if int in arms and float in arms:  # Number
            arms = tuple(a for a in arms if a is not int)
        return ' or '.join(_describe(s) for s in arms)
    if origin is Literal:
        return 'one of ' + ', '.join(repr(a) for a in typing.get_args(spec))
    if origin in (list, List):
        return f'a list of {_describe(typing.get_args(spec)[0])}'
    if origin in (dict, Dict):
        return 'a mapping'
    if spec is type(None):
        return '~ (null)'
    if spec is float:
        return 'a number'
    return {int: 'an integer', str: 'a string', bool: 'true or false'}.get(spec, getattr(spec, '__name__', str(spec)))


def _matches(value, spec):
    """True if ``value`` fits ``spec`` (leaf check only; sections are walked by :func:`check`)."""
    if spec is Any:
        return True
    origin = typing.get_origin(spec)
    if origin is Union:
        return any(_matches(value, s) for s in typing.get_args(spec))
    if origin is Literal:
        return value in typing.get_args(spec)
    if origin in (list, List):
        item = typing.get_args(spec)[0] if typing.get_args(spec) else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if origin in (dict, Dict) or spec is dict:
        return isinstance(value, dict)
    if isinstance(spec, dict):
        return isinstance(value, dict)
    if spec is type(None):
        return value is None
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


class Checker:
    """A spec that validates with a function ``function(value, where, source)``."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args):  # typing accepts only callables as arguments of Dict[...] etc.
        return self.function(*args)


def check(value, spec, where, source):
    """Validate ``value`` against ``spec``; ``where`` is the dotted key path used in messages."""
    if isinstance(spec, Checker):
        return spec.function(value, where, source)
    if typing.get_origin(spec) is Union:
        arms = [s for s in typing.get_args(spec) if s is not type(None)]
        if value is None and len(arms) < len(typing.get_args(spec)):
            return
        errors = []
        for arm in arms:
            try:
                return check(value, arm, where, source)
            except OptionError as error:
                errors.append(error)
        if len(arms) == 1:
            raise errors[0]
        raise OptionError(f'{source}: {where} must be {_describe(spec)}, got {value!r}{_hint(value)}')
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise OptionError(f'{source}: {where} must be a mapping, got {value!r}')
        for key in getattr(spec, 'required', ()):
            if key not in value or value[key] is None and not _matches(None, spec[key]):
                raise OptionError(f'{source}: {_join(where, key)} is required')
        for key, val in value.items():
            if key in spec:
                check(val, spec[key], _join(where, key), source)
            elif getattr(spec, 'extra', None) is not None:
                spec.extra(key, val, _join(where, key), source)
            else:
                raise OptionError(f'{source}: unknown key {_join(where, key)!r}' + _suggest(key, spec))
        return
    if typing.get_origin(spec) in (dict, Dict) and isinstance(value, dict):
        item = typing.get_args(spec)[1] if typing.get_args(spec) else Any
        for key, val in value.items():
            check(val, item, _join(where, key), source)
        return
    if not _matches(value, spec):
        raise OptionError(f'{source}: {where} must be {_describe(spec)}, got {value!r}{_hint(value)}')


def _join(where, key):
    return f'{where}.{key}' if where else str(key)


def _hint(value):
    """Explain PyYAML's habit of reading ``2e-4`` (no dot) as a string."""
    try:
        float(value) if isinstance(value, str) else None
    except ValueError:
        return ''
    if isinstance(value, str):
        return f' (YAML reads {value} as text: write it with a dot, e.g. 1.0e-4, or as !!float {value})'
    return ''


def _suggest(key, names):
    import difflib
    close = difflib.get_close_matches(str(key), [str(n) for n in names], n=1)
    return f' (did you mean {close[0]!r}?)' if close else f' (known keys: {", ".join(sorted(map(str, names)))})'


# ----------------------------------------------------------------------------------------------
# Registered classes: constructor signatures are their schemas.


def _type_of_default(default):
    if default is inspect.Parameter.empty or default is None:
        return Any
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float if isinstance(default, float) else int
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        return list
    if isinstance(default, dict):
        return dict
    return Any


def check_kwargs(callable_, kwargs, where, source, skip=('self', ), loose_numbers=False):
    """Check ``kwargs`` against the signature of ``callable_``: unknown, missing and mistyped arguments.

    The type expected is that of the default value; ``loose_numbers`` accepts any number where the
    default is an int (torch's optimizers write ``momentum=0`` for a float argument).
    """
    signature = inspect.signature(callable_)
    params = {n: p for n, p in signature.parameters.items() if n not in skip}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    for key, val in kwargs.items():
        if key not in named:
            if takes_any:
                continue
            raise OptionError(f'{source}: unknown key {_join(where, key)!r} for {callable_.__name__}' +
                              _suggest(key, named))
        expected = _type_of_default(named[key].default)
        if val is not None and expected is not Any:
            if expected is list:
                expected = List[Any]
            if expected is dict:
                expected = Dict[str, Any]
            if expected is int and loose_numbers:
                expected = float
            check(val, expected, _join(where, key), source)
    for name, param in named.items():
        if param.default is inspect.Parameter.empty and name not in kwargs:
            raise OptionError(f'{source}: {_join(where, name)} is required by {callable_.__name__}')


def registered(registry, name, where, source):
    """The class registered as ``name``, or an OptionError listing the registered names."""
    if not isinstance(name, str):
        raise OptionError(f'{source}: {where} must be a registered name, got {name!r}')
    if name in registry:
        return registry.get(name)
    raise OptionError(f"{source}: {where}: no {registry._name} named {name!r}; registered: " +
                      ', '.join(sorted(registry.keys())))


def check_network(value, where, source):
    from basicsr.utils.registry import ARCH_REGISTRY
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    kwargs = dict(value)
    arch = registered(ARCH_REGISTRY, kwargs.pop('type'), _join(where, 'type'), source)
    check_kwargs(arch, kwargs, where, source)
    validate_nested = getattr(arch, 'validate_options', None)
    if validate_nested is not None:
        validate_nested(kwargs, where, source)


def check_loss(value, where, source):
    from basicsr.utils.registry import LOSS_REGISTRY
    if value is None:
        return
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    kwargs = dict(value)
    loss = registered(LOSS_REGISTRY, kwargs.pop('type'), _join(where, 'type'), source)
    check_kwargs(loss, kwargs, where, source)


OPTIMIZERS = ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop', 'Rprop')


def check_optimizer(value, where, source):
    import torch
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    kwargs = dict(value)
    name = kwargs.pop('type')
    if name not in OPTIMIZERS:
        raise OptionError(f'{source}: {where}.type: unsupported optimizer {name!r}; supported: {", ".join(OPTIMIZERS)}')
    check_kwargs(getattr(torch.optim, name), kwargs, where, source, skip=('self', 'params'), loose_numbers=True)


def check_scheduler(value, where, source):
    from basicsr.models import lr_scheduler
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    kwargs = dict(value)
    name = kwargs.pop('type')
    supported = {'MultiStepLR': lr_scheduler.MultiStepRestartLR, 'MultiStepRestartLR': lr_scheduler.MultiStepRestartLR,
                 'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR}
    if name not in supported:
        raise OptionError(f'{source}: {where}.type: unsupported scheduler {name!r}; supported: {", ".join(supported)}')
    check_kwargs(supported[name], kwargs, where, source, skip=('self', 'optimizer'), loose_numbers=True)


def check_metric(value, where, source):
    from basicsr.utils.registry import METRIC_REGISTRY
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    kwargs = dict(value)
    metric = registered(METRIC_REGISTRY, kwargs.pop('type'), _join(where, 'type'), source)
    if kwargs.pop('better', 'higher') not in ('higher', 'lower'):
        raise OptionError(f'{source}: {where}.better must be higher or lower')
    check_kwargs(metric, kwargs, where, source, skip=('img', 'img2', 'img1', 'kwargs'))


# ----------------------------------------------------------------------------------------------
# Datasets: BasicSR's own get schemas here; the package's datasets carry an OPTIONS attribute.

DATALOADER_OPTIONS = {
    'name': str,
    'type': str,
    'phase': str,
    'scale': Number,
    'num_worker_per_gpu': int,
    'batch_size_per_gpu': int,
    'dataset_enlarge_ratio': Number,
    'prefetch_mode': Optional[Literal['cpu', 'cuda']],
    'pin_memory': bool,
    'persistent_workers': bool,
    'use_shuffle': bool,
}

IO_BACKEND = section({'type': Literal['disk', 'lmdb', 'memcached'], 'db_paths': Any, 'client_keys': Any,
                      'server_list_cfg': str, 'client_cfg': str, 'sys_path': str}, required=('type', ))

PAIRED_IMAGE_OPTIONS = {
    'dataroot_gt': str,
    'dataroot_lq': str,
    'meta_info_file': Optional[str],
    'filename_tmpl': str,
    'io_backend': IO_BACKEND,
    'gt_size': int,
    'use_hflip': bool,
    'use_rot': bool,
    'mean': Optional[List[float]],
    'std': Optional[List[float]],
    'color': Optional[Literal['y']],
}

BASICSR_DATASETS = {
    'PairedImageDataset': section(PAIRED_IMAGE_OPTIONS, required=('dataroot_gt', 'dataroot_lq', 'io_backend')),
    'SingleImageDataset': section({'dataroot_lq': str, 'meta_info_file': Optional[str], 'io_backend': IO_BACKEND,
                                   'mean': Optional[List[float]], 'std': Optional[List[float]],
                                   'color': Optional[Literal['y']]}, required=('dataroot_lq', 'io_backend')),
}

PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file', 'dataroot', 'dataroot_labels', 'categories_file')


def check_dataset(value, where, source, is_train):
    from basicsr.utils.registry import DATASET_REGISTRY
    if not isinstance(value, dict) or 'type' not in value:
        raise OptionError(f'{source}: {where} must be a mapping with a type, got {value!r}')
    dataset_cls = registered(DATASET_REGISTRY, value['type'], _join(where, 'type'), source)
    own = getattr(dataset_cls, 'OPTIONS', None)
    if own is None:
        own = BASICSR_DATASETS.get(value['type'])
    if own is None:  # a dataset from another plugin without a schema: check only what the loader reads
        own = section({}, extra=lambda *args: None)
    spec = section({**DATALOADER_OPTIONS, **own}, required=('name', 'type') + getattr(own, 'required', ()),
                   extra=getattr(own, 'extra', None))
    check(value, spec, where, source)
    phase = where.split('.')[-1].split('_')[0]
    if phase == 'train' and is_train:
        for key in ('batch_size_per_gpu', 'num_worker_per_gpu'):
            if key not in value:
                raise OptionError(f'{source}: {_join(where, key)} is required for the training set')
    for key in PATH_KEYS:
        if isinstance(value.get(key), str):
            require_path(value[key], _join(where, key), source)


def check_datasets(value, where, source, is_train):
    if not isinstance(value, dict) or not value:
        raise OptionError(f'{source}: {where} must name at least one dataset')
    for phase, dataset in value.items():
        kind = str(phase).split('_')[0]
        if kind not in ('train', 'val', 'test'):
            raise OptionError(f'{source}: {_join(where, phase)}: dataset keys start with train, val or test')
        check_dataset(dataset, _join(where, phase), source, is_train)


# ----------------------------------------------------------------------------------------------
# Top level.

def _derived_path(value, where, source):
    """BasicSR sets these folders from ``name`` and overwrites what the file says: refuse instead of ignoring."""
    raise OptionError(f'{source}: {where} is set by BasicSR from name (experiments/<name>/..., results/<name>/...) '
                      'and a value here would be ignored; remove it and choose the folder with name')


PATH_SECTION = {
    'pretrain_network_g': Optional[str],
    'param_key_g': str,
    'strict_load_g': bool,
    'resume_state': Optional[str],
    **{key: Checker(_derived_path) for key in ('experiments_root', 'results_root', 'visualization', 'log', 'models',
                                                'training_states')},
}

TRAIN_SECTION = {
    'ema_decay': Number,
    'optim_g': Checker(check_optimizer),
    'scheduler': Checker(check_scheduler),
    'total_iter': Number,
    'warmup_iter': Number,
}

VAL_SECTION = {
    'val_freq': Number,
    'save_img': bool,
    'pbar': bool,
    'suffix': Optional[str],
    'metrics': Optional[Dict[str, Checker(check_metric)]],
    'self_ensemble': bool,
}

LOGGER_SECTION = {
    'print_freq': Number,
    'save_checkpoint_freq': Number,
    'use_tb_logger': bool,
    'wandb': Checker(lambda value, where, source: value is None or check(
        value, {'project': Optional[str], 'resume_id': Optional[str], 'entity': Optional[str]}, where, source)),
}

TOP_LEVEL = {
    'name': str,
    'model_type': str,
    'scale': Number,
    'num_gpu': Union[int, Literal['auto']],
    'manual_seed': Optional[int],
    'is_train': bool,
    'dist': bool,
    'dist_params': {'backend': Literal['nccl', 'gloo'], 'port': int},
    'find_unused_parameters': bool,
    'network_g': Checker(check_network),
}


def _loss_keys(key, value, where, source):
    if not key.endswith('_opt'):
        raise OptionError(f'{source}: unknown key {where!r} (losses are named <something>_opt; known keys: ' +
                          ', '.join(sorted(TRAIN_SECTION)) + ')')
    check_loss(value, where, source)


def validate_options(opt, source, is_train=True, check_paths=True):
    """Raise :class:`OptionError` on the first problem of ``opt`` (a dict read from ``source``).

    ``check_paths=False`` checks everything but the existence of data folders and weight files.
    """
    token = _checking_paths.set(check_paths)
    try:
        _validate_options(opt, source, is_train)
    finally:
        _checking_paths.reset(token)


def _validate_options(opt, source, is_train):
    from basicsr.utils.registry import MODEL_REGISTRY
    if not isinstance(opt, dict):
        raise OptionError(f'{source}: an option file is a mapping of keys, got {type(opt).__name__}')
    model_type = opt.get('model_type')
    if model_type is None:
        raise OptionError(f'{source}: model_type is required')
    model_cls = registered(MODEL_REGISTRY, model_type, 'model_type', source)
    top = dict(TOP_LEVEL)
    top.update(getattr(model_cls, 'TOP_OPTIONS', {}))
    top['path'] = section({**PATH_SECTION, **getattr(model_cls, 'PATH_OPTIONS', {})})
    top['train'] = section({**TRAIN_SECTION, **getattr(model_cls, 'TRAIN_OPTIONS', {})},
                           required=('optim_g', 'total_iter') if is_train else (), extra=_loss_keys)
    top['val'] = section({**VAL_SECTION, **getattr(model_cls, 'VAL_OPTIONS', {})})
    top['logger'] = section(LOGGER_SECTION)
    top['datasets'] = Checker(lambda v, w, s: check_datasets(v, w, s, is_train))
    required = ('name', 'model_type', 'num_gpu', 'datasets', 'network_g')
    if is_train:
        required += ('train', 'logger')
    check(opt, section(top, required=required), '', source)
    for key in ('pretrain_network_g', 'resume_state'):
        path = (opt.get('path') or {}).get(key)
        if isinstance(path, str):
            require_path(path, f'path.{key}', source, 'file')
    extra_check = getattr(model_cls, 'validate_options', None)
    if extra_check is not None:
        extra_check(opt, source, is_train)
    ddp_check = getattr(model_cls, 'check_ddp_options', None)
    if is_train and ddp_check is not None:
        ddp_check(opt, source)


def load_options(path):
    """Read an option YAML file the way BasicSR does (keys in order), with readable errors."""
    from basicsr.utils.options import ordered_yaml

    from moesr_arch.utils.yaml_keys import unique_keys_loader
    if not os.path.isfile(path):
        raise OptionError(f'option file not found: {path}')
    with open(path, encoding='utf-8') as f:
        try:
            return yaml.load(f, Loader=unique_keys_loader(ordered_yaml()[0], path, OptionError))
        except yaml.YAMLError as error:
            raise OptionError(f'{path}: not valid YAML: {error}') from error


def apply_force_yml(opt, entries, source):
    """Apply BasicSR's ``--force_yml a:b=value`` overrides without exec, failing on unknown keys."""
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries or ():
        if '=' not in entry:
            raise OptionError(f'--force_yml {entry!r}: expected key:subkey=value')
        keys, value = (part.strip() for part in entry.split('=', 1))
        node = opt
        *parents, last = keys.split(':')
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise OptionError(f'--force_yml {entry!r}: {source} has no section {key!r}')
            node = node[key]
        if last not in node:
            raise OptionError(f'--force_yml {entry!r}: {source} has no key {keys!r} (it only overrides keys)')
        node[last] = _postprocess_yml_value(value)
    return opt
