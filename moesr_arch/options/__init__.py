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

Public functions: :func:`read_options` (what every command runs: read, checked, filled),
:func:`read_network_options` (the sections inference reads), :func:`load_options`, :func:`validate_options`,
:func:`check_network`,
:func:`check_dataset`, :func:`validate_gate`, :func:`apply_force_yml`, :func:`resolve_derived_options`,
:func:`json_schema`.
"""
import os

from moesr_arch.options.core import OptionError
from moesr_arch.options.training import OPTIMIZERS

__all__ = ['OptionError', 'OPTIMIZERS', 'load_options', 'read_options', 'read_network_options', 'validate_options',
           'check_network', 'check_dataset', 'validate_gate', 'apply_force_yml', 'resolve_derived_options',
           'json_schema']


def validate_options(opt, source, is_train=True, check_paths=True):
    """The options that run, from ``opt`` (a dict read from ``source``); :class:`OptionError` lists its problems.

    The file's values are checked against the schema, the categories files of MoE-SR networks and gates read
    (once, here: they become ``categories``), every declared default filled in (:func:`~moesr_arch.options.core.
    filled`) and ``shipped:<name>`` weights resolved to their files. ``opt`` itself is left as it was.

    ``is_train``: the file is for ``basicsr train`` (training sections required). ``check_paths=False``
    checks everything but the existence of data folders, weight and categories files.
    """
    import copy

    from moesr_arch.options.core import filled
    from moesr_arch.options.schema import schema, validate
    if not isinstance(opt, dict):
        raise OptionError(f'{source}: an option file is a mapping of keys, got {type(opt).__name__}')
    if opt.get('model_type') is None:
        raise OptionError(f'{source}: model_type is required')
    opt = resolve_categories_files(copy.deepcopy(opt), source)
    opt.setdefault('path', {})  # BasicSR needs the section: left out, it holds its defaults
    checked = filled(validate(schema().option_file, opt, '', source, check_paths=check_paths, is_train=is_train), opt)
    return resolve_shipped_paths(checked)


def read_options(path, force_yml=None, is_train=True, check_paths=True):
    """The options that run, read from the option file ``path`` with BasicSR's ``--force_yml`` entries applied:
    checked and filled (:func:`validate_options`). Every command reads its option file through here, once."""
    return validate_options(apply_force_yml(load_options(path), force_yml, path), path, is_train=is_train,
                            check_paths=check_paths)


def read_network_options(path):
    """The sections of the option file ``path`` that ``basicsr infer``, ``export`` and ``benchmark`` use, checked and
    filled like :func:`read_options` does: ``network_g``, ``path`` and ``gate`` (the other keys as the file has them).
    The file may be one of ``basicsr test`` (its test sets need not be here) or hold just these sections."""
    from pydantic import TypeAdapter

    from moesr_arch.options.core import filled
    from moesr_arch.options.models import DECLARED, OptionFile, gate_category_problem
    from moesr_arch.options.schema import schema, validate
    opt = load_options(path)
    if not isinstance(opt, dict) or 'network_g' not in opt:
        raise OptionError(f'{path}: needs a network_g section naming the network')
    opt = resolve_categories_files(opt, path)
    network = validate(schema().network, opt['network_g'], 'network_g', path)
    opt['network_g'] = filled(network, opt['network_g'])
    sections = DECLARED.get(opt.get('model_type'), OptionFile).model_fields
    raw = opt.get('path') or {}
    # Weights are checked where they are loaded: --model_path may stand in for path.pretrain_network_g.
    opt['path'] = filled(validate(TypeAdapter(sections['path'].annotation), raw, 'path', path, check_paths=False), raw)
    if opt.get('gate') is not None:
        gate = validate(schema().gate, opt['gate'], 'gate', path)
        message = gate_category_problem(network, gate) if opt['network_g']['type'] == 'MoESRNet' else None
        if message:
            raise OptionError(f'{path}: {message}')
        opt['gate'] = filled(gate, opt['gate'])
    return resolve_shipped_paths(opt)


def check_network(value, where, source, check_paths=True):
    """Validate network options (``{type: <registered arch>, ...}``) found at ``where`` in ``source``."""
    from moesr_arch.options.schema import schema, validate
    validate(schema().network, value, where, source, check_paths=check_paths)


def check_dataset(value, where, source, is_train, check_paths=True):
    """The dataset options found at ``where`` (``datasets.<phase>``) in ``source``, checked and filled (as
    :func:`validate_options` fills a whole file's)."""
    from moesr_arch.options.core import filled
    from moesr_arch.options.schema import schema, validate
    from pydantic_core import PydanticCustomError

    from moesr_arch.options.datasets import check_training_set
    section = validate(schema().dataset, value, where, source, check_paths=check_paths)
    key = where.split('.')[-1]
    if is_train and key.split('_')[0] == 'train':
        try:
            check_training_set(key, section)
        except PydanticCustomError as error:  # the rule as the whole file's check words it
            raise OptionError(f'{source}: {error.context["message"].lstrip("@")}') from None
    return filled(section, value)


def validate_gate(value, where='gate', source='gate options', check_paths=True):
    """Validate gate options (``{type: LabelGate|YOLOGate, ...}``) found at ``where`` in ``source``."""
    from moesr_arch.options.schema import schema, validate
    validate(schema().gate, value, where, source, check_paths=check_paths)


def resolve_categories_files(opt, source='options'):
    """``categories_file`` of MoE-SR networks (``network_g``, ``network_ref``, nested ones too) and of the ``gate``
    read into ``categories``, in place; returns ``opt``. The one place options read categories files: networks
    and gates take names only. A file that does not exist is left for the schema to report."""
    from moesr_arch.data.categories import CategoriesError, load_categories

    def read(node, where):
        path = node['categories_file']
        if not isinstance(path, str) or not os.path.isfile(os.path.expanduser(path)):
            return
        try:
            found = load_categories(path)
        except CategoriesError as error:
            raise OptionError(f'{source}: {where}.categories_file: {error}') from None
        if node.get('categories') and list(node['categories']) != found:
            raise OptionError(f'{source}: {where}.categories {list(node["categories"])} differ from {path}: {found}')
        del node['categories_file']
        node['categories'] = found

    def resolve(node, where):
        if isinstance(node, dict):
            if node.get('type') == 'MoESRNet' and node.get('categories_file'):
                read(node, where)
            for key, value in node.items():
                resolve(value, f'{where}.{key}')
        elif isinstance(node, list):
            for index, value in enumerate(node):
                resolve(value, f'{where}[{index}]')

    if isinstance(opt, dict):
        for key in ('network_g', 'network_ref'):
            resolve(opt.get(key), key)
        gate = opt.get('gate')
        # A gate takes one of the two: given both, it is left for the schema to refuse.
        if isinstance(gate, dict) and gate.get('categories_file') and 'categories' not in gate:
            read(gate, 'gate')
    return opt


def resolve_shipped_paths(opt):
    """``path`` values ``shipped:<name>`` replaced by the shipped file's path (:mod:`moesr_arch.weights`), in place."""
    from moesr_arch.weights import resolve_shipped
    paths = (opt or {}).get('path') or {}
    for key, value in paths.items():
        paths[key] = resolve_shipped(value)
    return opt


def resolve_derived_options(opt, source='options'):
    """What the options layer derives, for options checked in part (a network alone): categories files read
    (:func:`resolve_categories_files`) and shipped weights resolved; in place, returns ``opt``.
    :func:`validate_options` does both for a whole file."""
    return resolve_shipped_paths(resolve_categories_files(opt, source))


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
    """Apply BasicSR's ``--force_yml a:b=value`` entries without exec. A key the file leaves out is added (BasicSR
    only overrides keys): the schema check that follows refuses a misspelt one, naming it."""
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries or ():
        if '=' not in entry:
            raise OptionError(f'--force_yml {entry!r}: expected key:subkey=value')
        keys, value = (part.strip() for part in entry.split('=', 1))
        node = opt
        *parents, last = keys.split(':')
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise OptionError(f'--force_yml {entry!r}: {key!r} of {source} is a value, not a section')
        node[last] = _postprocess_yml_value(value)
    return opt
