"""The option schema assembled from BasicSR's registries, and pydantic's errors turned into readable ones.

What ``type`` (``model_type``) may name is what is registered: every registered arch, loss, metric, dataset
and model gets an arm of its union, declared (:mod:`~moesr_arch.options.networks`, ...) or read from its
signature. The schema is built on first use and again only when a registry has changed.
"""
import re
from typing import Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model
from typing_extensions import Annotated

from moesr_arch.options import datasets, gates, models, networks, training
from moesr_arch.options.core import CHECK_PATHS, IS_TRAIN, OptionError, signature_section
from moesr_arch.options.recipes import missing_file_hint

UNKNOWN = {  # kind -> message for a type that names nothing; {where}: the section, {name}: the type given
    'arch': "{where}.type: no arch named {name!r}; registered: {names}",
    'loss': "{where}.type: no loss named {name!r}; registered: {names}",
    'metric': "{where}.type: no metric named {name!r}; registered: {names}",
    'dataset': "{where}.type: no dataset named {name!r}; registered: {names}",
    'model': "model_type: no model named {name!r}; registered: {names}",
    'gate': "{where}.type: no gate named {name!r}; gates: {names}",
    'optimizer': "{where}.type: unsupported optimizer {name!r}; supported: {names}",
    'scheduler': "{where}.type: unsupported scheduler {name!r}; supported: {names}",
}
MAX_PROBLEMS = 10  # lines of one report; the rest are counted


def tagged_union(arms, kind, tag_field='type'):
    """``arms`` ({tag: section class}) as one type, chosen by the value of ``tag_field``."""
    def tag_of(value):  # a dict when validating, a section when serialising
        tag = value.get(tag_field) if isinstance(value, dict) else getattr(value, tag_field, None)
        return tag if isinstance(tag, str) and tag in arms else None
    members = tuple(Annotated[cls, Tag(tag)] for tag, cls in arms.items())
    return Annotated[Union[members], Discriminator(tag_of, custom_error_type=f'unknown_{kind}',
                                                   custom_error_message=f'no such {kind}')]


_signature_sections = {}  # (kind, name, function) -> section read from the signature (built once)


def from_signature(kind, name, function, base, **kwargs):
    key = (kind, name, function)
    if key not in _signature_sections:
        _signature_sections[key] = signature_section(name, function, base, **kwargs)
    return _signature_sections[key]


def catch_all(name, base, names, tag_field, description):
    """``base`` with ``tag_field`` limited to ``names`` (the registered classes without a schema of their own)."""
    from typing import Literal
    if not names:
        return None
    return create_model(name, __base__=base, __module__=base.__module__,
                        **{tag_field: (Literal[tuple(names)], Field(description=description))})


class Schema:
    """Type adapters of a whole option file and of its sections, for the registries as they are now."""

    def __init__(self):
        import torch
        from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                            MODEL_REGISTRY)
        arch_arms = {name: networks.DECLARED.get(name) or from_signature(
            'arch', name, ARCH_REGISTRY.get(name), networks.NetworkSection) for name in sorted(ARCH_REGISTRY.keys())}
        loss_arms = {name: training.DECLARED_LOSSES.get(name) or from_signature(
            'loss', name, LOSS_REGISTRY.get(name), training.LossSection) for name in sorted(LOSS_REGISTRY.keys())}
        metric_arms = {name: training.DECLARED_METRICS.get(name) or from_signature(
            'metric', name, METRIC_REGISTRY.get(name), training.MetricSection, skip=('img', 'img2', 'img1', 'kwargs'),
            extra_fields=training.metric_fields()) for name in sorted(METRIC_REGISTRY.keys())}
        optimizer_arms = {name: from_signature('optimizer', name, getattr(torch.optim, name),
                                               training.OptimizerSection, skip=('self', 'params'), loose_numbers=True)
                          for name in training.OPTIMIZERS}
        scheduler_arms = {name: from_signature('scheduler', name, cls, training.SchedulerSection,
                                               skip=('self', 'optimizer'), loose_numbers=True)
                          for name, cls in training.scheduler_classes().items()}
        dataset_names = sorted(DATASET_REGISTRY.keys())
        undeclared = [name for name in dataset_names if name not in datasets.DECLARED]
        other = catch_all('RegisteredDatasetOptions', datasets.OtherDatasetOptions, undeclared, 'type',
                          'A registered dataset class.')
        dataset_arms = {name: datasets.DECLARED.get(name) or other for name in dataset_names}
        model_names = sorted(MODEL_REGISTRY.keys())
        undeclared = [name for name in model_names if name not in models.DECLARED]
        other_file = catch_all('RegisteredModelOptions', models.OptionFile, undeclared, 'model_type',
                               "A registered model class (BasicSR's SRModel, ...).")
        model_arms = {name: models.DECLARED.get(name) or other_file for name in model_names}
        unions = {
            'Network': tagged_union(arch_arms, 'arch'),
            'Loss': tagged_union(loss_arms, 'loss'),
            'Metric': tagged_union(metric_arms, 'metric'),
            'Optimizer': tagged_union(optimizer_arms, 'optimizer'),
            'Scheduler': tagged_union(scheduler_arms, 'scheduler'),
            'Dataset': tagged_union(dataset_arms, 'dataset'),
            'Gate': tagged_union(gates.GATES, 'gate'),
        }
        self.names = {'arch': arch_arms, 'loss': loss_arms, 'metric': metric_arms, 'optimizer': optimizer_arms,
                      'scheduler': scheduler_arms, 'dataset': dataset_arms, 'gate': gates.GATES, 'model': model_arms}
        # Sections naming other sections by union, leaves first (each is rebuilt against these unions).
        for cls in (networks.MoESRNetOptions, networks.BicubicResidualOptions, networks.MoEISROptions,
                    training.TrainSection, training.PluginTrainSection, training.MoESRTrainSection,
                    training.ValSection, training.MoEISRValSection, training.MoESRValSection,
                    models.OptionFile, models.SingleNetworkSROptions, models.MoEISRModelOptions, models.MoESRModelOptions,
                    *([other_file] if other_file else [])):
            cls.model_rebuild(force=True, _types_namespace=unions)
        self.option_file = TypeAdapter(tagged_union(model_arms, 'model', tag_field='model_type'))
        self.network = TypeAdapter(unions['Network'])
        self.dataset = TypeAdapter(unions['Dataset'])
        self.gate = TypeAdapter(unions['Gate'])


TAG_FIELDS = ('type', 'model_type')


def tags_of(section):
    """``(tag field, the values it may take)`` of a section's JSON schema; None without a tag field."""
    for field in TAG_FIELDS:
        tag = (section.get('properties') or {}).get(field) or {}
        if 'const' in tag or 'enum' in tag:
            return field, [tag['const']] if 'const' in tag else list(tag['enum'])
    return None


def if_then_unions(node, defs):
    """The tagged unions of a JSON schema (pydantic writes them as ``oneOf``) chosen by their tag with
    ``if``/``then``, in place.

    Against a ``oneOf`` whose arms all fail, a validator (and a YAML editor) reports the whole section, for
    the top-level union the whole document; chosen by ``type`` / ``model_type`` first, the error names the
    key that is wrong (a misspelt one, a wrong value) inside the chosen arm.
    """
    if isinstance(node, list):
        for item in node:
            if_then_unions(item, defs)
        return node
    if not isinstance(node, dict):
        return node
    for value in node.values():
        if_then_unions(value, defs)
    arms = node.get('oneOf') or []
    refs = [arm.get('$ref', '') for arm in arms]
    tagged = [tags_of(defs.get(ref.rsplit('/', 1)[-1], {})) for ref in refs]
    fields = {tag[0] for tag in tagged if tag}
    if not arms or None in tagged or len(fields) != 1 or set(node) & {'type', 'required', 'properties', 'allOf'}:
        return node
    field, = fields
    del node['oneOf']
    node.update({
        'type': 'object', 'required': [field],
        'properties': {field: {'enum': [value for _, values in tagged for value in values]}},
        'allOf': [{'if': {'properties': {field: {'enum': values}}, 'required': [field]}, 'then': {'$ref': ref}}
                  for ref, (_, values) in zip(refs, tagged)],
    })
    return node


_current = {}


def registries_now():
    from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                        MODEL_REGISTRY)
    return tuple(tuple(registry.keys()) for registry in (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY,
                                                          METRIC_REGISTRY, MODEL_REGISTRY))


def schema():
    """The :class:`Schema` of the registries as they are now (built again only after a registration)."""
    import moesr_arch  # noqa: F401  (the plugin's classes are registered before the schema lists them)
    key = registries_now()
    if _current.get('key') != key:
        _current['schema'], _current['key'] = Schema(), key
    return _current['schema']


def validate(adapter, value, where, source, check_paths=True, is_train=True):
    """Validate ``value`` (found at the key path ``where`` of ``source``) with ``adapter``; OptionError on problems."""
    try:
        return adapter.validate_python(value, context={CHECK_PATHS: check_paths, IS_TRAIN: is_train})
    except ValidationError as error:
        raise OptionError(report(error.errors(include_url=False), value, where, source)) from None


# ------------------------------------------------------------------------------------------------
# Reports

EXPECTED = {
    'int_type': 'an integer', 'int_parsing': 'an integer', 'int_from_float': 'an integer',
    'float_type': 'a number', 'float_parsing': 'a number', 'bool_type': 'true or false', 'bool_parsing':
    'true or false', 'string_type': 'a string', 'list_type': 'a list', 'dict_type': 'a mapping', 'model_type':
    'a mapping', 'model_attributes_type': 'a mapping', 'none_required': '~ (null)',
}


def expected(error):
    """What the value at an error should have been, in words."""
    ctx = error.get('ctx') or {}
    kind = error['type']
    if kind in EXPECTED:
        return EXPECTED[kind]
    if kind == 'literal_error':
        return f'one of {ctx["expected"]}'
    bounds = {'greater_than_equal': 'at least {ge}', 'greater_than': 'greater than {gt}',
              'less_than_equal': 'at most {le}', 'less_than': 'less than {lt}',
              'too_short': 'at least {min_length} item(s) long', 'too_long': 'at most {max_length} item(s) long'}
    if kind in bounds:  # 0, not 0.0, for a bound of a float key
        return bounds[kind].format(**{k: f'{v:g}' if isinstance(v, float) else v for k, v in ctx.items()})
    return error['msg'][0].lower() + error['msg'][1:]


def join(where, key):
    if not key:
        return where
    if key.startswith('['):
        return f'{where}{key}'
    return f'{where}.{key}' if where else key


def locate(data, loc, missing=False):
    """The key path (``a.b[0].c``) of pydantic's ``loc`` in ``data``: tags and union arms left out."""
    path, node = '', data
    for index, part in enumerate(loc):
        if isinstance(node, dict):
            if part in node:
                path, node = join(path, str(part)), node[part]
            elif missing and index == len(loc) - 1:
                path = join(path, str(part))
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            path, node = f'{path}[{part}]', node[part]
    return path


def yaml_hint(value):
    """PyYAML reads ``2e-4`` (no dot) as a string: say so where a number was meant."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ''
        return f' (YAML reads {value} as text: write it with a dot, e.g. 1.0e-4, or as !!float {value})'
    return ''


def shown(value, limit=200):
    """``repr`` of a value read from YAML (OrderedDicts as plain mappings), shortened."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    text = repr(plain(value))
    return text if len(text) <= limit else text[:limit - 3] + '...'


def message(error, data, where, source):
    kind, ctx = error['type'], error.get('ctx') or {}
    path = join(where, locate(data, error['loc'], missing=kind == 'missing'))
    if kind == 'unknown_key':
        owner = f' for {ctx["owner"]}' if ctx.get('owner') else ''
        return None, f'unknown key {join(path, ctx["key"])!r}{owner} ({ctx["hint"]})'
    if kind == 'option_problem':
        text = re.sub(r'@([\w.\[\]]*)', lambda m: join(path, m.group(1)), ctx['message'])
        return None, text.lstrip(': ')
    if kind == 'no_such_path':
        return None, f'{path}: no such {ctx["kind"]}: {ctx["path"]}{missing_file_hint(ctx["path"], source)}'
    if kind == 'no_such_model':
        return None, f'{path}: no shipped model {ctx["name"]}; shipped: {ctx["known"]}'
    if kind == 'missing':
        return None, f'{path} is required'
    if kind.startswith('unknown_'):
        what = kind[len('unknown_'):]
        value = error['input']
        tag_field = 'model_type' if what == 'model' else 'type'
        if not isinstance(value, dict):
            return None, f'{path or "the file"} must be a mapping with a {tag_field}, got {shown(value)}'
        if tag_field not in value:
            return None, f'{join(path, tag_field)} is required'
        names = ', '.join(sorted(schema().names[what]))
        return None, UNKNOWN[what].format(where=path, name=value[tag_field], names=names).lstrip('.')
    return path, expected(error)  # a value of the wrong type or range: grouped per key (union arms)


def report(errors, data, where, source):
    """One line per problem, each ``<source>: <key path> ...``; the arms of a union share one line."""
    entries, wrong = [], {}  # entries: ('text', line) or ('wrong', key path) in first-seen order
    for error in errors:
        path, text = message(error, data, where, source)
        if path is None:
            entries.append(('text', text))
            continue
        if path not in wrong:
            wrong[path] = ([], error['input'])
            entries.append(('wrong', path))
        if text not in wrong[path][0]:
            wrong[path][0].append(text)
    lines = []
    for kind, value in entries:
        if kind == 'wrong':
            texts, given = wrong[value]
            value = f'{value or "the file"} must be {" or ".join(texts)}, got {shown(given)}{yaml_hint(given)}'
        if value not in lines:
            lines.append(value)
    more = len(lines) - MAX_PROBLEMS
    lines = lines[:MAX_PROBLEMS] + ([f'... and {more} more'] if more > 0 else [])
    return '\n'.join(f'{source}: {line}' for line in lines)
