"""Crash-safe checkpoint writing: a file is either the complete new version or absent, never truncated.

The implementation is the package's one atomic-write helper (:mod:`moesr_arch.utils.atomic`); this module
keeps the name the models import.
"""
from moesr_arch.utils.atomic import atomic_torch_save

__all__ = ['atomic_torch_save']
