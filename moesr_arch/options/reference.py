"""The option reference, ``docs/options.md``: every key of an option file with its type, default and meaning.

``basicsr schema --markdown`` writes it from the pydantic models that validate option files
(:mod:`moesr_arch.options.schema`), so it says what the checks accept. It is organised for a reader: the
top level of each ``model_type`` the package declares, then the sections (``path``, ``train``, ``val``,
...) with the model types that accept each key, then the networks, datasets, losses, metrics, optimizers,
schedulers and gates by ``type``. The package's declared classes get a table each (key path, type,
default or "required", the first sentence of the key's description); classes whose options are read from
their signatures (BasicSR's own archs, losses, metrics and schedulers) get one line each with their
arguments and defaults, and torch's optimizers are named only (their arguments depend on the installed
torch).

The text depends on nothing but the code of this package and of BasicSR: names are sorted where their order
means nothing, classes registered by other plugins are left out, and there are no dates or paths, so
``tests/test_options_reference.py`` can compare the committed file with a fresh one.
"""
import re
import typing
from typing import Any, ForwardRef, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel, Discriminator
from pydantic.fields import FieldInfo
from typing_extensions import Annotated

from moesr_arch.options import core, datasets, gates, models, networks, training

COMMAND = 'basicsr schema --markdown -o docs/options.md'
OWN_MODULES = ('basicsr.', 'moesr_arch.')  # classes of other plugins would make the text depend on the installation

# The unions chosen by ``type``: kind (as in schema().names) -> (chapter heading, link text, key path of its keys)
KINDS = {
    'arch': ('Networks', 'network', 'network_g'),
    'dataset': ('Datasets', 'dataset', 'datasets.<phase>'),
    'loss': ('Losses', 'loss', 'train.<name>_opt'),
    'metric': ('Metrics', 'metric', 'val.metrics.<name>'),
    'optimizer': ('Optimizers', 'optimizer', 'train.optim_g'),
    'scheduler': ('Schedulers', 'scheduler', 'train.scheduler'),
    'gate': ('Gates', 'gate', 'gate'),
}
# The names the sections give those unions before the schema is assembled (forward references).
REFERENCES = {'Network': 'arch', 'Dataset': 'dataset', 'Loss': 'loss', 'Metric': 'metric', 'Optimizer': 'optimizer',
              'Scheduler': 'scheduler', 'Gate': 'gate'}
# Undeclared keys a section takes, by the kind of their values: (key, description)
EXTRA_KEYS = {'loss': ('<name>_opt', 'A loss: every key ending in _opt (pixel_opt, fft_opt, ...).')}
LOADER_KEYS = 'Loader keys'  # the heading of the keys every dataset has
SECTION_ORDER = ('path', 'train', 'val', 'logger', 'dist_params')  # reading order; other sections follow
PATH_TYPES = {core.ExistingFile: 'file', core.WeightsFile: 'file or `shipped:<name>`',
              core.ExistingPath: 'file or folder'}
SCALARS = {str: 'string', int: 'int', float: 'number', bool: 'bool', Any: 'any', type(None): 'null'}
DECLARED = {'arch': networks.DECLARED, 'dataset': datasets.DECLARED, 'loss': training.DECLARED_LOSSES,
            'metric': training.DECLARED_METRICS, 'gate': gates.GATES}


# ------------------------------------------------------------------------------------------------
# Text

def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[^\w\- ]', '', heading.replace('`', '').strip().lower())
    return text.replace(' ', '-')


def prose(text, table=False):
    """Docstring or description text as Markdown: ``code`` to `code`, ``<`` escaped outside code, ``|`` in tables."""
    text = ' '.join(str(text).split()).replace('``', '`')
    parts = text.split('`')
    parts = [part if index % 2 else part.replace('<', '\\<') for index, part in enumerate(parts)]
    text = '`'.join(parts)
    return text.replace('|', '\\|') if table else text


def first_sentence(text):
    """The first sentence of ``text`` (a full stop outside brackets followed by a capital), on one line."""
    text = ' '.join(str(text or '').split())
    depth = 0
    for index, char in enumerate(text):
        if char in '([{':
            depth += 1
        elif char in ')]}':
            depth = max(depth - 1, 0)
        elif (char == '.' and depth == 0 and text[index + 1:index + 2] == ' ' and text[index + 2:index + 3].isupper()
              and not text[:index + 1].endswith(('e.g.', 'i.e.'))):
            return text[:index + 1]
    return text


def summary(cls):
    """The first sentence of a class's own docstring."""
    return first_sentence((cls.__dict__.get('__doc__') or '').strip().split('\n\n')[0])


def yaml_value(value):
    """``value`` as it is written in an option file (YAML flow style)."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, allow_unicode=True, sort_keys=True)
    return text[:-len('\n...\n')] if text.endswith('\n...\n') else text.strip()


def default_text(field):
    """``required``, or the default of a field as a code span."""
    if field.is_required():
        return 'required'
    return f'`{yaml_value(field.get_default(call_default_factory=True))}`'


# ------------------------------------------------------------------------------------------------
# Types in words

def union_kind(metadata):
    """The kind of a union chosen by ``type`` (``arch``, ``loss``, ...) from its ``Annotated`` metadata."""
    for item in metadata:
        if isinstance(item, Discriminator) and str(item.custom_error_type or '').startswith('unknown_'):
            return item.custom_error_type[len('unknown_'):]
    return None


def reference_kind(tp):
    """The kind named by a forward reference (``'Network'``), None for anything else."""
    name = tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp if isinstance(tp, str) else None
    return REFERENCES.get(name)


def flat_metadata(items):
    out = []
    for item in items:
        if isinstance(item, FieldInfo):
            out.extend(flat_metadata(item.metadata))
        else:
            out.append(item)
    return out


def bounded(text, metadata):
    """``text`` with its numeric bounds: ``int >= 1``, ``number > 0``, ``0 <= number <= 1``."""
    bounds = {}
    for item in metadata:
        for name in ('ge', 'gt', 'le', 'lt'):
            if isinstance(item, getattr(annotated_types, name.capitalize())):
                value = getattr(item, name)
                bounds[name] = f'{value:g}' if isinstance(value, float) else str(value)
    low = ('<=', bounds['ge']) if 'ge' in bounds else ('<', bounds['gt']) if 'gt' in bounds else None
    high = ('<=', bounds['le']) if 'le' in bounds else ('<', bounds['lt']) if 'lt' in bounds else None
    if low and high:
        return f'{low[1]} {low[0]} {text} {high[0]} {high[1]}'
    if low:
        return f'{text} {low[0].replace("<", ">")} {low[1]}'
    if high:
        return f'{text} {high[0]} {high[1]}'
    return text


def length(metadata):
    sizes = [f'at least {item.min_length}' for item in metadata if isinstance(item, annotated_types.MinLen)]
    sizes += [f'at most {item.max_length}' for item in metadata if isinstance(item, annotated_types.MaxLen)]
    return f' ({", ".join(sizes)})' if sizes else ''


class Types:
    """Annotations in words, with links to the sections and chapters of the reference."""

    def __init__(self, sections, chapters):
        self.sections = sections  # section class -> (link text, anchor)
        self.chapters = chapters  # kind -> anchor

    def kind_link(self, kind):
        return f'[{KINDS[kind][1]}](#{self.chapters[kind]})'

    def text(self, tp, metadata=(), optional_shown=False):
        metadata = flat_metadata(metadata)
        kind = reference_kind(tp) or union_kind(metadata)  # pydantic moves a field's Annotated into its metadata
        if kind:
            return self.kind_link(kind)
        origin = typing.get_origin(tp)
        if origin is Annotated:
            inner, *extra = typing.get_args(tp)
            kind = union_kind(extra)
            if kind:
                return self.kind_link(kind)
            for path_type, words in PATH_TYPES.items():
                if tp == path_type:
                    return words
            return self.text(inner, list(extra) + metadata, optional_shown)
        for item in metadata:  # a path field whose Annotated pydantic unpacked into its metadata
            for path_type, words in PATH_TYPES.items():
                if getattr(item, 'func', None) is typing.get_args(path_type)[1].func:
                    return words
        if origin is Union:
            members = typing.get_args(tp)
            shown = [self.text(member, metadata) for member in members if member is not type(None)]
            nullable = len(shown) < len(members) and optional_shown
            return ' or '.join(shown + (['null'] if nullable else []))
        if origin is Literal:
            values = [yaml_value(value) for value in typing.get_args(tp)]
            return f'`{values[0]}`' if len(values) == 1 else 'one of ' + '\\|'.join(values)
        if origin in (list, tuple, set):
            args = typing.get_args(tp)
            return f'list of {self.text(args[0]) if args else "any"}{length(metadata)}'
        if origin is dict:
            args = typing.get_args(tp)
            return f'mapping name -> {self.text(args[1]) if args else "any"}{length(metadata)}'
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in self.sections:
                return 'mapping'
            text, anchor = self.sections[tp]
            return f'[{text}](#{anchor})'
        if tp in SCALARS:
            return bounded(SCALARS[tp], metadata)
        return str(tp)

    def field(self, field):
        optional_shown = not field.is_required() and field.get_default(call_default_factory=True) is not None
        return self.text(field.annotation, field.metadata, optional_shown)


def sections_in(tp, suffix='', metadata=()):
    """``(section class, key suffix)`` of every section an annotation holds (not the unions chosen by type)."""
    if reference_kind(tp) or union_kind(metadata):
        return []
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *extra = typing.get_args(tp)
        return [] if union_kind(extra) else sections_in(inner, suffix)
    if origin is Union:
        return [found for member in typing.get_args(tp) for found in sections_in(member, suffix)]
    if origin in (list, tuple, set):
        return [found for member in typing.get_args(tp) for found in sections_in(member, suffix + '[]')]
    if origin is dict:
        args = typing.get_args(tp)
        return sections_in(args[1], suffix + '.<name>') if args else []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [(tp, suffix)]
    return []


def join(prefix, key):
    return f'{prefix}.{key}' if prefix else key


# ------------------------------------------------------------------------------------------------
# The document

class Reference:
    """Builds the Markdown text; :func:`option_reference` is the entry point."""

    def __init__(self, schema):
        from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                            MODEL_REGISTRY)
        registries = {'arch': ARCH_REGISTRY, 'dataset': DATASET_REGISTRY, 'loss': LOSS_REGISTRY,
                      'metric': METRIC_REGISTRY, 'model': MODEL_REGISTRY}

        def own(kind, name):
            registry = registries.get(kind)
            return registry is None or getattr(registry.get(name), '__module__', '').startswith(OWN_MODULES)

        self.arms = {kind: {name: cls for name, cls in arms.items() if own(kind, name)}
                     for kind, arms in schema.names.items()}
        self.lines = []
        self.headings = {}  # heading -> anchor (unique)
        self.arm_anchors = {cls: (name, slug(self.arm_heading(kind, name))) for kind in DECLARED
                            for name, cls in sorted(self.declared_arms(kind).items())}
        # The option files: the package's models (one group per section class; aliases share one), then the rest.
        declared, others = {}, []
        for name, cls in sorted(self.arms['model'].items()):
            if cls in models.DECLARED.values():
                declared.setdefault(cls, []).append(name)
            else:
                others.append((name, cls))
        # A class serving several names is shown under the first its model_type lists; the others are aliases.
        self.aliases = {}
        self.model_groups = []
        for cls, names in sorted(declared.items(), key=lambda item: (len(item[0].__mro__), item[1][0])):
            listed = list(getattr(cls.model_fields['model_type'].annotation, '__args__', ()))
            names = sorted(names, key=lambda name: listed.index(name) if name in listed else len(listed))
            self.aliases[names[0]] = names[1:]
            self.model_groups.append((names[0], cls))
        self.other_models = [name for name, _ in others]
        if others:
            self.model_groups.append(('Other models', others[0][1]))
        self.labels = [label for label, _ in self.model_groups]
        # The sections of the option files by key path, each with the model types using each of its classes.
        self.groups = {}  # path -> {section class: [model labels]}
        for label, cls in self.model_groups:
            self.walk(cls, '', label, self.groups)
        order = {key: index for index, key in enumerate(SECTION_ORDER)}
        top = {}
        for path in self.groups:
            top.setdefault(path.split('.')[0].split('[')[0], len(top))
        self.group_order = sorted(self.groups, key=lambda path: (
            order.get(path.split('.')[0], len(order)), top[path.split('.')[0].split('[')[0]], path.count('.')))
        # Nested sections of the datasets (io_backend), by key path relative to the dataset.
        self.dataset_groups = {}
        for name, cls in sorted(self.declared_arms('dataset').items()):
            self.walk(cls, KINDS['dataset'][2], name, self.dataset_groups)
        sections = dict(self.arm_anchors)
        for groups, prefix in ((self.groups, ''), (self.dataset_groups, KINDS['dataset'][2])):
            for path, variants in groups.items():
                heading = self.group_heading(path, prefix)
                for cls in variants:
                    sections.setdefault(cls, (heading, slug(heading)))
        self.types = Types(sections, {kind: slug(chapter) for kind, (chapter, _, _) in KINDS.items()})

    def declared_arms(self, kind):
        return {name: cls for name, cls in self.arms[kind].items() if cls in DECLARED[kind].values()}

    def walk(self, cls, prefix, label, groups):
        for key, field in cls.model_fields.items():
            for section, suffix in sections_in(field.annotation, metadata=field.metadata):
                if section in self.arm_anchors:  # documented in its chapter (MoESRModel's network_g: MoESRNet)
                    continue
                path = join(prefix, key) + suffix
                users = groups.setdefault(path, {}).setdefault(section, [])
                if label not in users:
                    users.append(label)
                self.walk(section, path, label, groups)

    @staticmethod
    def group_heading(path, prefix=''):
        relative = path[len(prefix) + 1:] if prefix and path.startswith(prefix + '.') else path
        return re.sub(r'\.<\w+>|\[\]', '', relative)

    # -- output helpers
    def add(self, *lines):
        self.lines.extend(lines)

    def heading(self, level, text):
        anchor = slug(text)
        if anchor in self.headings.values():
            raise ValueError(f'two headings of the option reference have the anchor #{anchor}')
        self.headings[text] = anchor
        self.add(f'{"#" * level} {text}', '')

    def table(self, rows, labels_header=None):
        """Rows ``(key path, type, default, description[, labels])`` as a Markdown table."""
        header = ['key', 'type', 'default'] + ([labels_header] if labels_header else []) + ['description']
        self.add('| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header))
        for path, tp, default, description, *labels in rows:
            cells = [f'`{path}`', tp, default] + [prose(label, table=True) for label in labels] + \
                [prose(first_sentence(description), table=True)]
            self.add('| ' + ' | '.join(cells) + ' |')
        self.add('')

    def row(self, prefix, key, field):
        return (join(prefix, key).replace('|', '\\|'), self.types.field(field), default_text(field),
                field.description or '')

    def rows(self, cls, prefix):
        """The rows of a section's keys, ``type`` (the key choosing the section) first, then its typed extra
        keys (``train.<name>_opt``)."""
        keys = sorted(cls.model_fields, key=lambda key: key != 'type')
        rows = [self.row(prefix, key, cls.model_fields[key]) for key in keys]
        extra = next((klass.__dict__['__annotations__']['__pydantic_extra__'] for klass in cls.__mro__
                      if '__pydantic_extra__' in klass.__dict__.get('__annotations__', {})), None)
        value = typing.get_args(extra)[1] if typing.get_origin(extra) is dict else None
        kind = next((reference_kind(tp) for tp in (value, *typing.get_args(value)) if reference_kind(tp)), None)
        if kind in EXTRA_KEYS:
            key, description = EXTRA_KEYS[kind]
            rows.append((join(prefix, key), self.types.kind_link(kind), '`null`', description))
        return rows

    def section_table(self, cls, prefix, base=None):
        """The keys of ``cls``, less those it has as ``base`` has them."""
        skip = set(self.rows(base, prefix)) if base is not None else set()
        self.table([row for row in self.rows(cls, prefix) if row not in skip])

    def compact(self, name, cls):
        """One line for a class whose options are read from its signature: ``key: default`` of each argument."""
        entries = []
        for key, field in cls.model_fields.items():
            if key == 'type':
                continue
            entries.append(f'`{key}` (required)' if field.is_required() else
                           f'`{key}: {yaml_value(field.get_default(call_default_factory=True))}`')
        if cls.model_config.get('extra') == 'allow':
            entries.append('other keys accepted')
        self.add(f'- `{name}`: ' + (', '.join(entries) or 'no arguments'))

    # -- chapters
    def build(self):
        self.add('# Option reference', '',
                 f'> Generated by `{COMMAND}` from the option schema (`moesr_arch/options/`); do not edit it '
                 'by hand. `tests/test_options_reference.py` fails when it is stale.', '',
                 'Every key of an option file as `basicsr train` and `basicsr test` check it before anything '
                 'runs: its key path, type, default and the first sentence of its description. Types: `int`, '
                 '`number` (an integer or a float; write floats with a dot, `1.0e-4`), `string`, `bool`, '
                 '`one of a|b` (one of these values), `list of ...`, `mapping name -> ...`, `file` and `folder` '
                 '(must exist when the file is checked with its data), `null` (YAML\'s `~`). A key with a default '
                 'may be left out; "required by basicsr train" in a description means required to train only. '
                 'Rules across keys (MoE-SR\'s stages adding up to `total_iter`, experts matching the categories, '
                 '...) are checked too and explained in their error messages. `basicsr schema` writes the same '
                 'schema as JSON for YAML editors ([tools.md](tools.md#option-schema-basicsr-schema)).', '')
        self.contents()
        self.option_files()
        self.sections()
        self.networks()
        self.datasets()
        self.losses()
        self.metrics()
        self.optimizers()
        self.schedulers()
        self.gates()
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return '\n'.join(self.lines) + '\n'

    def contents(self):
        self.add('Contents:', '')
        self.add('- [Option files](#option-files): ' + ', '.join(
            f'[{label}](#{slug(label)})' for label in self.labels))
        self.add('- [Sections](#sections): ' + ', '.join(
            f'[{self.group_heading(path)}](#{slug(self.group_heading(path))})' for path in self.group_order))
        for kind, (chapter, _, _) in KINDS.items():
            headings = sorted({self.arm_heading(kind, name) for name in self.declared_arms(kind)}) \
                if kind in DECLARED else []
            self.add(f'- [{chapter}](#{slug(chapter)})' + (': ' + ', '.join(
                f'[{heading}](#{slug(heading)})' for heading in headings) if headings else ''))
        self.add('')

    def option_files(self):
        self.heading(2, 'Option files')
        self.add('The top-level keys of an option file, by `model_type`. Sections link to their keys.', '')
        for label, cls in self.model_groups:
            self.heading(3, label)
            if cls in models.DECLARED.values():
                aliases = self.aliases.get(label)
                also = f" Also accepted as {', '.join(f'`model_type: {name}`' for name in aliases)}." if aliases else ''
                self.add(prose(summary(cls) + also), '')
                self.section_table(cls, '')
            else:
                self.add(prose(f"BasicSR's models: {', '.join(f'`{name}`' for name in self.other_models)}. "
                               'Their option files have the keys of every model.'), '')
                rows = self.rows(cls, '')
                rows = [(path, 'one of the models above' if path == 'model_type' else tp, default, description)
                        for path, tp, default, description in rows]
                self.table(rows)

    def group_tables(self, groups, order, prefix, labels, labels_header):
        for path in order:
            variants = groups[path]
            self.heading(3, self.group_heading(path, prefix))
            ordered = sorted(variants, key=lambda cls: (len(cls.__mro__), cls.__name__))
            self.add(prose(summary(ordered[0])), '')
            rows, users = {}, {}
            for cls in ordered:
                for row in self.rows(cls, path):
                    rows.setdefault(row, None)
                    users.setdefault(row, []).extend(variants[cls])
            if len(ordered) == 1:
                self.table(list(rows))
                continue
            every = set(labels)
            self.table([row + ('all' if set(users[row]) >= every else ', '.join(
                label for label in labels if label in users[row]), ) for row in rows], labels_header)

    def sections(self):
        self.heading(2, 'Sections')
        self.add('The sections of the top level, by key. Where the model types differ, the `model_type` column '
                 'says which accept a key.', '')
        self.group_tables(self.groups, self.group_order, '', self.labels, 'model_type')

    def arm_heading(self, kind, name):
        cls = self.arms[kind][name]
        tags = [tag for tag, arm in sorted(self.arms[kind].items()) if arm is cls]
        return ', '.join(tags) if kind == 'dataset' else name

    def chapter(self, kind, text):
        chapter, _, prefix = KINDS[kind]
        self.heading(2, chapter)
        self.add(prose(text), '')
        return prefix

    def declared_tables(self, kind, prefix, base=None):
        done = set()
        for name, cls in sorted(self.declared_arms(kind).items()):
            if cls in done:
                continue
            done.add(cls)
            self.heading(3, self.arm_heading(kind, name))
            besides = f' Its keys besides the [loader keys](#{slug(LOADER_KEYS)}):' if base is not None else ''
            self.add(prose(summary(cls)) + besides, '')
            self.section_table(cls, prefix, base)

    def others(self, kind, heading, text):
        names = {name: cls for name, cls in sorted(self.arms[kind].items()) if name not in self.declared_arms(kind)}
        if not names:
            return
        self.heading(3, heading)
        self.add(prose(text), '')
        for name, cls in names.items():
            self.compact(name, cls)
        self.add('')

    def networks(self):
        prefix = self.chapter('arch', '`network_g` (and `network_ref`, the experts of a `MoESRNet`, the network of a '
                              '`BicubicResidual`, the encoder of a `MoEISR`): a registered arch, chosen by `type`, '
                              "and its constructor's arguments. The keys are shown under `network_g`.")
        self.declared_tables('arch', prefix)
        self.others('arch', 'Other archs', "The other registered archs (BasicSR's): their options are their "
                    "constructors' arguments, read from their signatures (a key without a default is required).")

    def datasets(self):
        prefix = self.chapter('dataset', '`datasets.<phase>` (`train`, `val`, `val_2`, ..., `test_1`, ...): a '
                              'registered dataset, chosen by `type`, with the loader keys of every dataset.')
        self.heading(3, LOADER_KEYS)
        self.add(prose(summary(datasets.DatasetSection)), '')
        self.section_table(datasets.DatasetSection, prefix)
        self.declared_tables('dataset', prefix, base=datasets.DatasetSection)
        order = sorted(self.dataset_groups, key=lambda path: (path.count('.'), path))
        self.group_tables(self.dataset_groups, order, prefix, sorted(self.declared_arms('dataset')), 'type')
        others = [name for name in sorted(self.arms['dataset']) if name not in self.declared_arms('dataset')]
        if others:
            self.heading(3, 'Other datasets')
            self.add(prose(f"BasicSR's other datasets: {', '.join(f'`{name}`' for name in others)}. Their loader "
                           'keys are checked as above and their other keys accepted; the data paths among them '
                           f"({', '.join(f'`{key}`' for key in datasets.PATH_KEYS)}) must exist."), '')

    def losses(self):
        prefix = self.chapter('loss', 'The keys of `train` ending in `_opt` (`pixel_opt`, `fft_opt`, ...): a '
                              'registered loss, chosen by `type`, and its arguments.')
        self.declared_tables('loss', prefix)
        self.others('loss', 'Other losses', "The other registered losses (BasicSR's), their arguments read from their "
                    'signatures.')

    def metrics(self):
        prefix = self.chapter('metric', '`val.metrics.<name>`: a registered metric function, chosen by `type`, its '
                              'arguments and `better`.')
        self.declared_tables('metric', prefix)
        self.others('metric', 'Other metrics', "The other registered metrics (BasicSR's), their arguments read "
                    'from their signatures (the images excluded).')

    def optimizers(self):
        self.chapter('optimizer', '`train.optim_g`: `type` is one of ' + ', '.join(
            f'`{name}`' for name in self.arms['optimizer']) + '; the other keys are the arguments of '
            '`torch.optim.<type>` besides `params` (`lr`, `weight_decay`, `betas`, ...; see PyTorch\'s '
            'documentation), read from the installed torch. Integer arguments accept any number.')

    def schedulers(self):
        prefix = self.chapter('scheduler', '`train.scheduler`: one of BasicSR\'s learning-rate schedules, chosen by '
                              '`type`, and its arguments (`MultiStepLR` is BasicSR\'s name for `MultiStepRestartLR`).')
        del prefix
        for name, cls in sorted(self.arms['scheduler'].items()):
            self.compact(name, cls)
        self.add('')

    def gates(self):
        prefix = self.chapter('gate', 'The top-level `gate` of a `MoESRModel` (validation and test) and the gate '
                              'options of `basicsr infer`, chosen by `type`.')
        self.declared_tables('gate', prefix)


def option_reference():
    """The option reference (Markdown) of the schema as this installation has it; see the module docstring."""
    from moesr_arch.options.schema import schema
    return Reference(schema()).build()
