"""moesr: mixture-of-experts super-resolution as a BasicSR plugin.

``import moesr_arch`` makes BasicSR importable with current torchvision, fixes BasicSR's CPU resume and
option checking, and registers every arch, model, dataset and loss of the package into BasicSR's
registries. BasicSR's own train/test pipelines then run them.
"""
from moesr_arch import compat  # noqa: F401  (first: basicsr cannot be imported without it)
from moesr_arch import basicsr_patches
from moesr_arch import archs, data, losses, metrics, models  # noqa: F401  (registration side effects)
from moesr_arch.data import loader_check

__version__ = '0.1.0'

basicsr_patches.apply()
loader_check.apply()  # a training set that makes no batch stops the run at start
