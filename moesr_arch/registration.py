"""Imports every ``*_<kind>.py`` module of a subpackage so its classes register into BasicSR.

BasicSR scans only its own folders, so a plugin scans its own (the Real-ESRGAN pattern).
"""
import importlib
from pathlib import Path


def import_modules(package_name, package_file, suffix):
    """Import ``package_name.<stem>`` for every ``<stem>{suffix}.py`` beside ``package_file``."""
    folder = Path(package_file).parent
    return [
        importlib.import_module(f'{package_name}.{path.stem}') for path in sorted(folder.glob(f'*{suffix}.py'))
    ]
