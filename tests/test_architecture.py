"""The layout's one-way arrows, checked on the source: archs are pure modules (tensors in, tensors out)."""
import ast

from conftest import ROOT

ARCHS = ROOT / 'moesr_arch' / 'archs'
# Layers an arch must not reach into: they sit above the archs (or beside them, with file and option logic).
FORBIDDEN = ('moesr_arch.gating', 'moesr_arch.data', 'moesr_arch.tools', 'moesr_arch.cli', 'moesr_arch.models',
             'moesr_arch.options', 'moesr_arch.inference', 'moesr_arch.train', 'moesr_arch.test',
             'moesr_arch.pipeline')



def imported_modules(tree):
    """``(line, module)`` of every import in ``tree``, at module level or inside functions and classes;
    ``from moesr_arch import x`` counts as ``moesr_arch.x``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == 'moesr_arch':
                for alias in node.names:
                    yield node.lineno, f'moesr_arch.{alias.name}'
            else:
                yield node.lineno, node.module


def forbidden_imports(path):
    return [(line, module) for line, module in imported_modules(ast.parse(path.read_text(), str(path)))
            if any(module == layer or module.startswith(layer + '.') for layer in FORBIDDEN)]


def test_archs_import_nothing_from_the_layers_above():
    found = {(path.name, module): line
             for path in sorted(ARCHS.glob('*.py')) for line, module in forbidden_imports(path)}
    assert not found, '\n'.join(f'moesr_arch/archs/{name}:{line} imports {module}'
                                 for (name, module), line in sorted(found.items()))


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / 'fake_arch.py'
    source.write_text('import torch\nfrom moesr_arch.utils.activations import activation_bytes\n\n\ndef f():\n'
                      '    from moesr_arch.gating.base import Gate\n    import moesr_arch.tools.common\n'
                      '    from moesr_arch import inference\n')
    assert forbidden_imports(source) == [(6, 'moesr_arch.gating.base'), (7, 'moesr_arch.tools.common'),
                                         (8, 'moesr_arch.inference')]


def test_utils_that_archs_may_use_are_pure_too():
    utils = ROOT / 'moesr_arch' / 'utils'
    found = [f'moesr_arch/utils/{path.name}:{line} imports {module}' for path in sorted(utils.glob('*.py'))
             for line, module in forbidden_imports(path)]
    assert not found, '\n'.join(found)
