"""docs/options.md, the option reference, is generated from the option schema and kept up to date."""
import re

import pytest
from pydantic import BaseModel

from conftest import ROOT
from moesr_arch.options import datasets, gates, models, networks, training
from moesr_arch.options.reference import COMMAND, default_text, option_reference, slug

REFERENCE = ROOT / 'docs' / 'options.md'
ROW = re.compile(r'^\| `([^`]+)` \| (.*?) \| (required|`[^`]*`) \|')
LINK = re.compile(r'\]\(((?:[\w./-]*/)?options\.md)?#([\w-]+)\)')


@pytest.fixture(scope='module')
def generated():
    return option_reference()


def declared_sections():
    """Every section class the options modules declare (by name in the module)."""
    for module in (datasets, gates, models, networks, training):
        for name, value in sorted(vars(module).items()):
            if (isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__
                    and value.__name__ == name):
                yield value


def anchors(text):
    return {slug(line.lstrip('#')) for line in text.splitlines() if re.match(r'^#{1,6} ', line)}


def test_the_committed_reference_is_the_generated_one(generated):
    committed = REFERENCE.read_text(encoding='utf-8') if REFERENCE.exists() else ''
    assert committed == generated, (f'docs/options.md is stale (the option schema changed): regenerate it with '
                                    f'`{COMMAND}` and commit it')


def test_the_reference_is_the_same_when_generated_again(generated):
    assert option_reference() == generated
    assert COMMAND in generated.splitlines()[2] and 'do not edit' in generated.splitlines()[2]


def test_every_declared_key_is_in_the_reference_with_its_default(generated):
    rows = {}
    for line in generated.splitlines():
        match = ROW.match(line)
        if match:
            rows.setdefault(re.split(r'\.|\[\]\.', match.group(1))[-1], set()).add(match.group(3))
    sections = list(declared_sections())
    assert {networks.MoESRNetOptions, training.MoESRTrainSection, datasets.IOBackend, gates.YOLOGateOptions,
            models.MoESRModelOptions} <= set(sections)
    for section in sections:
        for key, field in section.model_fields.items():
            assert default_text(field) in rows.get(key, ()), (section.__name__, key, default_text(field))
    # a few written out, as a reader sees them
    for line in ('| `network_g.feather` | int >= 0 | `8` |', '| `train.amp` | one of none\\|bf16\\|fp16 | `none` |',
                 "| `datasets.<phase>.filename_tmpl` | string | `'{}'` |",
                 '| `gate.conf` | 0 <= number <= 1 | `0.25` |',
                 '| `path.param_key_experts` | string or list of string (at least 1) | `[params_ema, params]` |',
                 '| `name` | string | required |', '| `datasets` | mapping name -> [dataset](#datasets) | required |'):
        assert line in generated, line


def test_the_reference_has_every_model_type_arch_and_section_of_the_package(generated):
    from moesr_arch.options.schema import schema
    names = schema().names
    headings = anchors(generated)
    for name, cls in names['model'].items():
        if cls in models.DECLARED.values():  # the package's models, whatever the registry calls them
            # a heading of its own, or named as an alias of the heading's model
            assert re.search(rf'^### {name}$', generated, re.M) or f'Also accepted as `model_type: {name}`' in \
                generated, name
    for name in networks.DECLARED:
        assert slug(name) in headings, name
    for anchor in ('path', 'train', 'val', 'logger', 'loader-keys', 'fftloss', 'calculate_color_bias', 'yologate'):
        assert anchor in headings, anchor
    assert '- `EDSR`: ' in generated and '- `CosineAnnealingRestartLR`: `periods` (required)' in generated
    assert str(ROOT) not in generated  # nothing of this machine


def test_links_to_the_reference_name_its_headings(generated):
    """Links inside docs/options.md, and to it from the docs, the README and the docstrings, reach a heading."""
    known = anchors(generated)
    files = [REFERENCE, ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md')),
             *sorted((ROOT / 'moesr_arch').rglob('*.py'))]
    checked = 0
    for path in files:
        text = path.read_text(encoding='utf-8')
        for match in LINK.finditer(text) if path != REFERENCE else re.finditer(r'\]\(()#([\w-]+)\)', text):
            if path == REFERENCE or match.group(1):
                assert match.group(2) in known, f'{path.relative_to(ROOT)}: no heading #{match.group(2)} in options.md'
                checked += 1
    for path in files[1:]:  # plain-text mentions in docstrings: docs/options.md#anchor
        for anchor in re.findall(r'docs/options\.md#([\w-]+)', path.read_text(encoding='utf-8')):
            assert anchor in known, f'{path.relative_to(ROOT)}: no heading #{anchor} in docs/options.md'
    assert checked > 20


def test_schema_command_writes_the_reference(tmp_path, generated):
    from moesr_arch.cli import main
    assert main(['schema', '--markdown', '-o', str(tmp_path / 'options.md')]) == 0
    assert (tmp_path / 'options.md').read_text(encoding='utf-8') == generated
    assert not [p for p in tmp_path.iterdir() if p.name != 'options.md']  # written atomically: no temporary left
