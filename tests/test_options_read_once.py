"""Options are read once: what was checked is what runs, with every declared default filled in, and the package
never states a schema default a second time (`.get(key, default)` on a declared key)."""
import ast
from pathlib import Path



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


# Keys that name something else than an option where they are read (a batch's 'lq_path', a torch state's 'iter').
NOT_OPTIONS = set()


def test_the_package_never_restates_a_declared_default():
    declared = declared_defaults()
    offenders = []
    for path in sorted((ROOT / 'moesr_arch').rglob('*.py')):
        if 'options' in path.relative_to(ROOT).parts[:2]:
            continue  # the schema itself
        for line, key in get_calls_with_default(path):
            if key in declared and (path.name, key) not in NOT_OPTIONS:
                offenders.append(f'{path.relative_to(ROOT)}:{line}: .get({key!r}, ...) ({", ".join(sorted(declared[key]))})')
    assert not offenders, 'read the filled options instead of restating their defaults:\n' + '\n'.join(offenders)
