"""Weights that ship with the package: reference models trained on the photo corpus (docs/photos.md).

Each ``<name>.safetensors`` has a model card ``<name>.md`` beside it (data, recipe, iterations, CPU time,
its standard table). ``basicsr infer`` without ``-opt`` or ``--model`` uses :func:`default_model`; the main
job starts its experts from the MoE-SR generalist. ``scripts/ship_weights.py`` writes the files and cards.
Option files name a shipped file as ``shipped:<name>`` (e.g. ``path.pretrain_network_experts:
shipped:moesr_generalist_photos_x2``), which works from any folder and from an installed package.
"""
from dataclasses import dataclass
from pathlib import Path

from moesr_arch.errors import UserError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model: its file stem, a label for messages, its scale and the recipe that trained it."""

    name: str
    label: str
    scale: int
    recipe: str

    @property
    def path(self):
        return FOLDER / f'{self.name}.safetensors'

    @property
    def card(self):
        return FOLDER / f'{self.name}.md'


SHIPPED = {model.name: model for model in (
    ShippedModel('seemore_t_photos_x2', 'SeemoRe-T x2', 2, 'options/train_seemore_photos_x2.yml'),
    ShippedModel('seemore_t_photos_x4', 'SeemoRe-T x4', 4, 'options/train_seemore_photos_x4.yml'),
    ShippedModel('edsr_baseline_photos_x2', 'EDSR-baseline x2', 2, 'options/train_edsr_photos_x2.yml'),
    ShippedModel('vdsr_photos_x2', 'VDSR x2 (Y channel)', 2, 'options/train_vdsr_photos_x2.yml'),
    ShippedModel('moesr_generalist_photos_x2', 'MoE-SR generalist x2 (BicubicResidual, EDSR f32b4)', 2,
                 'options/train_moesr_generalist_photos_x2.yml'),
)}
# What `basicsr infer` uses when it is given no model, by scale.
DEFAULT_MODELS = {2: 'seemore_t_photos_x2', 4: 'seemore_t_photos_x4'}


def shipped(name):
    """The :class:`ShippedModel` ``name``, its file checked to be present."""
    model = SHIPPED[name]
    if not model.path.is_file():
        raise UserError(f'{model.path}: the shipped {model.label} weights are missing from this installation; '
                        'reinstall the package, or give -opt FILE or --model FILE')
    return model


def default_model(scale=None):
    """The shipped model ``basicsr infer`` uses at ``scale`` (None: x2); a one-line error for other scales."""
    scale = 2 if scale is None else scale
    if float(scale) not in DEFAULT_MODELS:
        shown = ' and '.join(f'x{s}' for s in DEFAULT_MODELS)
        raise UserError(f'--scale {scale:g}: the shipped models upscale {shown}; for another scale give --model FILE '
                        'or -opt FILE (MoEISR upscales by any factor, docs/moeisr.md)')
    return shipped(DEFAULT_MODELS[int(scale)])


SCHEME = 'shipped:'


def resolve_shipped(value):
    """``value`` with ``shipped:<name>`` replaced by that model's file path (a str); other values unchanged.
    An unknown name raises :class:`UserError` listing the shipped ones."""
    if not (isinstance(value, str) and value.startswith(SCHEME)):
        return value
    name = value[len(SCHEME):]
    if name not in SHIPPED:
        raise UserError(f'{value}: no shipped model {name!r}; shipped: {", ".join(SHIPPED)}')
    return str(SHIPPED[name].path)
