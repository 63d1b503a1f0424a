"""Options are read once: what was checked is what runs, with every declared default filled in, and the package
never states a schema default a second time (`.get(key, default)` on a declared key)."""
import ast
import inspect
from pathlib import Path

import pytest



from moesr_arch.options.core import Section
from moesr_arch.options.schema import schema

ROOT = Path(__file__).resolve().parents[1]


def declared_sections():
    """Every section class of the schema that fills its defaults (the ones the package declares)."""
    seen, stack = set(), [Section]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    schema()  # every section built
    return [cls for cls in seen if cls.fills_defaults and cls.__module__.startswith('moesr_arch.options')]


def declared_defaults():
    """key -> the set of (section, default) pairs the schema declares for it (defaults other than None)."""
    found = {}
    for cls in declared_sections():
        for key, field in cls.model_fields.items():
            if not field.is_required() and field.default is not None:
                found.setdefault(key, set()).add(cls.__name__)
    return found


def get_calls_with_default(path):
    """``(line, key)`` of every ``<x>.get('key', <not None>)`` in a Python file."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'get'
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and not (isinstance(node.args[1], ast.Constant) and node.args[1].value is None)):
            yield node.lineno, node.args[0].value


def test_the_package_never_restates_a_declared_default():
    declared = declared_defaults()
    offenders = []
    for path in sorted((ROOT / 'moesr_arch').rglob('*.py')):
        if 'options' in path.relative_to(ROOT).parts[:2]:
            continue  # the schema itself
        for line, key in get_calls_with_default(path):
            if key in declared:
                offenders.append(f'{path.relative_to(ROOT)}:{line}: .get({key!r}, ...) ({", ".join(sorted(declared[key]))})')
    assert not offenders, 'read the filled options instead of restating their defaults:\n' + '\n'.join(offenders)


def test_declared_defaults_are_the_callees_own():
    """The schema shows the defaults of the package's archs, gates, losses and metric; the arch and signature
    sections leave them to the callee and the others fill them in: either way the two must be the same values."""
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY

    from moesr_arch.gating.base import gate_class
    from moesr_arch.options import gates, networks, training
    pairs = [(cls, ARCH_REGISTRY.get(name)) for name, cls in networks.DECLARED.items()]
    pairs += [(cls, gate_class(name)) for name, cls in gates.GATES.items()]
    pairs += [(cls, LOSS_REGISTRY.get(name)) for name, cls in training.DECLARED_LOSSES.items()]
    pairs += [(cls, METRIC_REGISTRY.get(name)) for name, cls in training.DECLARED_METRICS.items()]
    differ, compared = [], 0
    for section, callee in pairs:
        parameters = inspect.signature(callee).parameters
        for key, field in section.model_fields.items():
            # A key the callee requires (a gate's categories: the schema takes them or their file) has no default.
            if key == 'type' or field.is_required() or key not in parameters or \
                    parameters[key].default is inspect.Parameter.empty:
                continue
            default = parameters[key].default
            default = list(default) if isinstance(default, tuple) else default
            compared += 1
            if field.default != default:
                differ.append(f'{section.__name__}.{key}: schema {field.default!r}, {callee.__name__} {default!r}')
    assert not differ, differ
    assert compared > 40  # every declared class took part


def test_what_runs_is_the_checked_file_filled_with_its_defaults(workdir):
    """basicsr train reads the file once: --force_yml applied before the check and the seed, every declared
    default filled in, the file's own values as written, BasicSR's run keys added."""
    from moesr_arch.pipeline import parse_options
    source = ROOT / 'options' / 'train_moesr.yml'
    before = source.read_text()
    opt, _ = parse_options(str(workdir), ['-opt', str(source), '--force_yml', 'train:init_experts=false',
                                          'manual_seed=7'])
    assert source.read_text() == before
    assert opt['train']['init_experts'] is False and opt['manual_seed'] == 7  # forced
    assert opt['train']['amp'] == 'none' and opt['val']['specialisation'] is True  # declared defaults, filled
    assert opt['path']['param_key_ref'] == 'params_ema'
    assert opt['train']['total_iter'] == 480 and isinstance(opt['train']['total_iter'], int)  # as YAML read it
    assert opt['network_g']['categories'] == ['people', 'vehicle'] and 'categories_file' not in opt['network_g']
    assert 'dilation' not in opt['network_g']['experts']['people']  # an arch's own defaults stay with the arch
    assert opt['datasets']['train']['phase'] == 'train' and opt['datasets']['train']['scale'] == 2
    assert opt['path']['models'] == str(workdir / 'experiments' / opt['name'] / 'models')
    import random
    first = random.random()
    parse_options(str(workdir), ['-opt', str(source), '--force_yml', 'manual_seed=7'])
    assert random.random() == first  # the forced seed is the one used


def test_a_force_yml_mistake_is_reported_like_one_in_the_file(workdir):
    from moesr_arch.pipeline import parse_options
    with pytest.raises(SystemExit, match=r"train.init_experts must be true or false, got 'maybe'"):
        parse_options(str(workdir), ['-opt', str(ROOT / 'options' / 'train_moesr.yml'), '--force_yml',
                                      'train:init_experts=maybe'])


def test_rules_across_keys_are_checked_before_anything_runs(workdir):
    """Each rule once, in the schema: a gate given both categories sources, a control without weights at test, and
    (for basicsr infer, which reads network_g and gate only) a gate whose categories are not the network's."""
    import yaml

    from moesr_arch.options import OptionError, read_network_options, read_options
    opt = yaml.safe_load((ROOT / 'options' / 'test_moesr.yml').read_text())
    both = dict(opt, gate=dict(opt['gate'], categories=['people', 'vehicle']))
    (workdir / 'both.yml').write_text(yaml.safe_dump(both))
    with pytest.raises(OptionError, match='gate: give exactly one of categories_file and categories'):
        read_options('both.yml', is_train=False, check_paths=False)
    control = dict(opt, network_ref=dict(opt['network_g']['experts']['background']),
                   path={k: v for k, v in opt['path'].items() if k != 'pretrain_network_ref'})
    (workdir / 'control.yml').write_text(yaml.safe_dump(control))
    with pytest.raises(OptionError, match=r'network_ref is given but path.pretrain_network_ref is not'):
        read_options('control.yml', is_train=False, check_paths=False)
    (workdir / 'experiments' / 'gate_demo').mkdir(parents=True)
    (workdir / 'experiments' / 'gate_demo' / 'gate.pt').touch()  # named by the gate; only its existence is checked
    swapped = dict(opt, gate={k: v for k, v in opt['gate'].items() if k != 'categories_file'})
    swapped['gate']['categories'] = ['vehicle', 'people']
    (workdir / 'swapped.yml').write_text(yaml.safe_dump(swapped))
    for read in (read_network_options, lambda path: read_options(path, is_train=False, check_paths=False)):
        with pytest.raises(OptionError, match=r"gate categories \['vehicle', 'people'\] differ from the network "
                                              r"experts \['people', 'vehicle'\]"):
            read('swapped.yml')
