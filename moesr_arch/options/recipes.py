"""Which recipe makes a missing file: the hint added to "not found" errors for weights named in option files.

A run writes ``experiments/<name>/models/...`` where ``<name>`` is its option file's top-level ``name``; an
option file that reads weights from there (``options/test_edsr_demo.yml``) is usually run before its
training (``options/train_edsr_demo.yml``). The training recipes are looked up beside the option file that
named the path, so the hint names a file the user has. A gate's weights (``<folder>/gate.pt``) are what
``basicsr train-gate --output <folder>`` writes.
"""
import os
import re

EXPERIMENT = re.compile(r'(?:^|/)experiments/([^/]+)/')
NAME = re.compile(r'^name:\s*([^\s#]+)', re.M)
TRAIN_SECTION = re.compile(r'^train:', re.M)
GATE_FILE = 'gate.pt'  # what basicsr train-gate writes into its --output folder


def training_recipe(path, option_file):
    """The train option file beside ``option_file`` whose run writes ``path`` (None: no such recipe)."""
    match = EXPERIMENT.search(str(path).replace(os.sep, '/'))
    folder = os.path.dirname(str(option_file))
    if not match or not os.path.isdir(folder or '.'):
        return None
    for entry in sorted(os.listdir(folder or '.')):
        candidate = os.path.join(folder, entry)
        if not entry.endswith(('.yml', '.yaml')) or not os.path.isfile(candidate):
            continue
        try:
            with open(candidate, encoding='utf-8') as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError):
            continue
        name = NAME.search(text)
        if name and name.group(1).strip('\'"') == match.group(1) and TRAIN_SECTION.search(text):
            return candidate
    return None


def missing_file_hint(path, option_file):
    """``' (train it first: basicsr train -opt <recipe>)'`` when ``path`` is missing and a recipe beside
    ``option_file`` makes it, else ``''``."""
    if os.path.exists(str(path)):
        return ''
    if os.path.basename(str(path)) == GATE_FILE:
        return (f' (train it first: basicsr train-gate ... --output {os.path.dirname(str(path)) or "."}; '
                'basicsr train-gate --help)')
    recipe = training_recipe(path, option_file)
    return f' (train it first: basicsr train -opt {recipe})' if recipe else ''
