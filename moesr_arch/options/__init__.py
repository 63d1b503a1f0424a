"""Typed validation of BasicSR option files, run before any work starts.

BasicSR reads option YAML into plain dicts: a misspelt key is silently ignored and a wrong type fails
hours later. Here the whole file has one declarative schema (pydantic models, one description per
field): the top level and the sections of each ``model_type`` (:mod:`~moesr_arch.options.models`),
networks (:mod:`~moesr_arch.options.networks`), datasets (:mod:`~moesr_arch.options.datasets`),
training, validation, losses and metrics (:mod:`~moesr_arch.options.training`) and gates
(:mod:`~moesr_arch.options.gates`). Every problem raises :class:`OptionError` naming the file, the key
and the value. ``basicsr schema`` writes the same schema as JSON for YAML editors, and
``basicsr schema --markdown -o docs/options.md`` as the option reference, every key with its type, default
and description (:mod:`~moesr_arch.options.reference`; docs/options.md, which a test keeps up to date).

Public functions: :func:`load_options`, :func:`validate_options`, :func:`check_network`,
:func:`check_dataset`, :func:`validate_gate`, :func:`apply_force_yml`, :func:`resolve_derived_options`,
:func:`json_schema`.
"""
from moesr_arch.options.core import OptionError
from moesr_arch.options.datasets import TRAIN_SET_KEYS
from moesr_arch.options.training import OPTIMIZERS

__all__ = ['OptionError', 'OPTIMIZERS', 'load_options', 'validate_options', 'check_network', 'check_dataset',
           'validate_gate', 'apply_force_yml', 'resolve_derived_options', 'json_schema']


def validate_options(opt, source, is_train=True, check_paths=True):
    """Raise :class:`OptionError` listing the problems of ``opt`` (a dict read from ``source``).

    ``is_train``: the file is for ``basicsr train`` (training sections required). ``check_paths=False``
    checks everything but the existence of data folders, weight and categories files.
    """
    from moesr_arch.options.schema import schema, validate
    if not isinstance(opt, dict):
        raise OptionError(f'{source}: an option file is a mapping of keys, got {type(opt).__name__}')
    if opt.get('model_type') is None:
        raise OptionError(f'{source}: model_type is required')
    validate(schema().option_file, opt, '', source, check_paths=check_paths, is_train=is_train)


def check_network(value, where, source, check_paths=True):
    """Validate network options (``{type: <registered arch>, ...}``) found at ``where`` in ``source``."""
    from moesr_arch.options.schema import schema, validate
    validate(schema().network, value, where, source, check_paths=check_paths)


def check_dataset(value, where, source, is_train, check_paths=True):
    """Validate dataset options found at ``where`` (``datasets.<phase>``) in ``source``."""
    from moesr_arch.options.schema import schema, validate
    validate(schema().dataset, value, where, source, check_paths=check_paths)
    if is_train and where.split('.')[-1].split('_')[0] == 'train':
        for key in TRAIN_SET_KEYS:
            if value.get(key) is None:
                raise OptionError(f'{source}: {where}.{key} is required for the training set')


def validate_gate(value, where='gate', source='gate options', check_paths=True):
    """Validate gate options (``{type: LabelGate|YOLOGate, ...}``) found at ``where`` in ``source``."""
    from moesr_arch.options.schema import schema, validate
    validate(schema().gate, value, where, source, check_paths=check_paths)


def resolve_derived_options(opt, source='options'):
    """Replace what the options layer derives before anything is built; returns ``opt`` (changed in place).

    MoE-SR networks (``network_g``, ``network_ref``, nested ones too) get ``categories`` read from their
    ``categories_file`` (the network takes names only; it reads no files); ``path`` values ``shipped:<name>``
    become the shipped file's path (:mod:`moesr_arch.weights`). Calling it again changes nothing.
    """
    from moesr_arch.data.categories import CategoriesError, load_categories

    def resolve(node, where):
        if isinstance(node, dict):
            if node.get('type') == 'MoESRNet' and node.get('categories_file'):
                path = node.pop('categories_file')
                try:
                    found = load_categories(path)
                except CategoriesError as error:
                    raise OptionError(f'{source}: {where}.categories_file: {error}') from None
                if node.get('categories') and list(node['categories']) != found:
                    raise OptionError(f'{source}: {where}.categories {list(node["categories"])} differ from '
                                      f'{path}: {found}')
                node['categories'] = found
            for key, value in node.items():
                resolve(value, f'{where}.{key}')
        elif isinstance(node, list):
            for index, value in enumerate(node):
                resolve(value, f'{where}[{index}]')

    for key in ('network_g', 'network_ref'):
        resolve((opt or {}).get(key), key)
    from moesr_arch.weights import resolve_shipped
    paths = (opt or {}).get('path') or {}
    for key, value in paths.items():
        paths[key] = resolve_shipped(value)
    return opt


def json_schema():
    """The JSON schema (draft 2020-12) of option files, for YAML editors and other validators."""
    from moesr_arch.options.schema import if_then_unions, schema
    out = schema().option_file.json_schema()
    if_then_unions(out, out.get('$defs', {}))
    return {'$schema': 'https://json-schema.org/draft/2020-12/schema',
            'title': 'moesr / BasicSR option file',
            'description': 'Option files of basicsr train / basicsr test with the moesr plugin '
                           '(generated by basicsr schema).', **out}


def load_options(path):
    """Read an option YAML file the way BasicSR does (keys in order), with readable errors."""
    from basicsr.utils.options import ordered_yaml

    from moesr_arch.utils.yaml_keys import load_yaml_file
    return load_yaml_file(path, ordered_yaml()[0], OptionError, 'option file')


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
