"""moesr: mixture-of-experts super-resolution as a BasicSR plugin.

``import moesr_arch`` registers every arch, model, dataset, loss and metric of the package into BasicSR's
registries, and changes nothing else in BasicSR. The one exception: it first makes BasicSR importable
with current torchvision (:mod:`moesr_arch.compat` adds the removed ``functional_tensor`` module as an
alias). The fixes the ``basicsr train|test`` command needs are applied by its own pipelines
(:mod:`moesr_arch.pipeline`), not to BasicSR.
"""
from moesr_arch import compat  # noqa: F401  (first: basicsr cannot be imported without it)
from moesr_arch import archs, data, losses, metrics, models  # noqa: F401  (registration side effects)

__version__ = '0.1.0'
