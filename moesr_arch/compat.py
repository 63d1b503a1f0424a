"""Compatibility shims that must run before the first ``import basicsr``.

PyPI's basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module that torchvision
removed in 0.17. Importing :mod:`moesr_arch` (which every entry point does first) installs an alias
so that BasicSR imports with current torchvision. Nothing else in BasicSR uses that module beyond
``rgb_to_grayscale``.
"""
import sys
import types


def install_functional_tensor_alias():
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision still has it)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional
    alias = types.ModuleType(name)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[name] = alias


install_functional_tensor_alias()
