"""Networks built from a weights file alone (``basicsr infer --model FILE``, ``basicsr benchmark --model``).

:data:`DETECTORS` is the one table of what a file can be, in the style of spandrel's architectures: each
entry recognises a state dict by its keys and reads the arch options from the keys and the tensor shapes.
Published layouts (pytorch-vdsr, EDSR-PyTorch) are converted to this package's names by the checkpoint
loader before detection (:mod:`moesr_arch.utils.published`); official SeemoRe files and BasicSR's EDSR
already use them. What the weights cannot tell (VDSR's scale, EDSR's ``res_scale``, MoEISR's output scale)
comes from ``scale`` or a stated assumption, reported with the description. Where an unread option changes
the output (EDSR's input normalisation, MoEISR's ``image_residual``), a detector offers the known choices
and the one whose network gives flat grey images back unchanged is taken (:func:`settle`): a trained SR
network reproduces a flat image, a wrongly configured one does not. spandrel (a test dependency)
is not used here: it builds its own copies of the archs, not this package's registered ones (which the
inference layer's capabilities, tiling and Y-channel path know), and knows none of EDSR, VDSR, MoEISR or
BicubicResidual.
"""
import copy
import math
import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from moesr_arch.archs.seemore_arch import EXPERT_RANKS, SEEMORE_PRESETS
from moesr_arch.inference.device import InferenceError
from moesr_arch.utils.checkpoint import CheckpointError, mismatch, read_weights
from moesr_arch.utils.published import LAYOUTS, indices as key_indices


@dataclass
class Found:
    """What a detector read: the network options, its scale, channels in and out, a label, and notes on what
    the weights did not say. ``question`` names options the weights do not hold but the output depends on,
    ``choices`` the known answers as ``(text, options)``, the first one being ``options`` (the default)."""

    options: dict
    scale: float
    channels: Tuple[int, int]
    label: str
    notes: List[str] = field(default_factory=list)
    question: Optional[str] = None
    choices: List[Tuple[str, dict]] = field(default_factory=list)


@dataclass(frozen=True)
class Detector:
    """One entry of :data:`DETECTORS`: ``matches(state)`` says whether a state dict is this arch's,
    ``read(state, scale, layout_options)`` returns its :class:`Found`; ``knows`` says what it recognises."""

    arch: str
    knows: str
    matches: Callable = field(repr=False)
    read: Callable = field(repr=False)


def has_all(*keys):
    return lambda state: all(key in state for key in keys)


def indices(state, prefix, suffix=r'\..*'):
    """Sorted indices ``N`` of the keys ``<prefix>.N<suffix>``."""
    return key_indices(state, re.escape(prefix) + r'\.(\d+)' + suffix)


def count(state, prefix):
    """Length of the ``nn.Sequential``/``ModuleList`` under ``prefix`` (one past its largest index)."""
    found = indices(state, prefix)
    return found[-1] + 1 if found else 0


def schema_default(options_class, name):
    return options_class.model_fields[name].default


def fixed_scale(arch, found_scale, scale):
    """``found_scale`` (read from the weights) when ``scale`` (asked) is None or equal; an error otherwise."""
    if scale is not None and float(scale) != float(found_scale):
        raise InferenceError(f'these {arch} weights upscale x{found_scale}; --scale {scale:g} needs other weights')
    return found_scale


def integer_scale(arch, scale, options_class, option):
    """The scale of an arch whose weights do not fix it: ``scale``, or the schema's default (with a note)."""
    notes = []
    if scale is None:
        scale = schema_default(options_class, option)
        notes.append(f'the scale is not in {arch} weights: x{scale} (the default); give --scale for another')
    if float(scale) != int(scale) or scale < 1:
        raise InferenceError(f'{arch} upscales by a whole factor; got --scale {scale:g}')
    return int(scale), notes


# ------------------------------------------------------------------------------------------------
# The detectors


def read_moesr(state, scale, layout_options):
    raise InferenceError('a MoE-SR checkpoint: MoE-SR needs its gate and categories from an option file; run '
                         'basicsr infer -opt <its option file> --model_path <this file>')


def read_seemore(state, scale, layout_options):
    in_chans, dim = state['conv_1.weight'].shape[1], state['conv_1.weight'].shape[0]
    layers = count(state, 'body')
    experts = count(state, 'body.0.local_block.block.moe_layer.experts')
    ranks = [state[f'body.0.local_block.block.moe_layer.experts.{i}.conv_1.weight'].shape[0] for i in range(experts)]
    spaces = [name for name, rank in EXPERT_RANKS.items() if [rank(i) for i in range(experts)] == ranks]
    if not spaces:
        raise InferenceError(f'SeemoRe weights with expert ranks {ranks}: no lr_space gives them')
    found = dict(embedding_dim=dim, num_layers=layers, num_experts=experts,
                 global_kernel_size=state['body.0.global_block.block.attn.conv.0.weight'].shape[-1])
    variant = next((name for name, preset in SEEMORE_PRESETS.items()
                    if (preset['embedding_dim'], preset['num_layers']) == (dim, layers)), None)
    notes = []
    if variant is None:
        variant = schema_default(_options().SeemoReOptions, 'variant')
        notes.append(f'use_shuffle, recursive and topk are not in the weights: the SeemoRe-{variant} preset\'s are '
                     'used (no official preset has this width and depth)')
    preset = SEEMORE_PRESETS[variant]
    found['lr_space'] = preset['lr_space'] if preset['lr_space'] in spaces else spaces[0]
    own_scale = math.isqrt(state['upsampler.0.weight'].shape[0] // in_chans)
    options = {'type': 'SeemoRe', 'scale': fixed_scale('SeemoRe', own_scale, scale), 'in_chans': in_chans,
               'variant': variant}
    own = {key: value for key, value in found.items() if preset[key] != value}
    options.update(own)
    label = f'SeemoRe-{variant}' if not own else f'SeemoRe ({dim} features, {layers} groups)'
    return Found(options, own_scale, (in_chans, in_chans), label, notes)


# Input normalisations an EDSR may have been trained with (not in its weights): BasicSR's default, and the
# pure residual of this package's BicubicResidual recipes and MoE-SR experts (train_edsr_demo.yml).
EDSR_NORMALISATIONS = (
    ("BasicSR's img_range 255 and DIV2K rgb_mean", {}),
    ('img_range 1 and rgb_mean 0 (a pure residual, as in BicubicResidual recipes)',
     {'img_range': 1.0, 'rgb_mean': [0.0, 0.0, 0.0]}),
)


def edsr_options(state, layout_options, prefix=''):
    """BasicSR's EDSR options of its body (``conv_first``, ``body``), and a note on ``res_scale``."""
    first = state[f'{prefix}conv_first.weight']
    options = {'type': 'EDSR', 'num_in_ch': first.shape[1], 'num_feat': first.shape[0],
               'num_block': count(state, f'{prefix}body')}
    # res_scale multiplies each block's residual and leaves no trace in the weights. The EDSR paper uses 0.1
    # for its large model (256 features, 32 blocks) and 1 otherwise (BasicSR's default).
    large = (options['num_feat'], options['num_block']) == (256, 32)
    if large:
        options['res_scale'] = 0.1
    options.update(layout_options)
    assumed = "0.1 (the EDSR paper's large model)" if large else '1 (the default)'
    note = f'res_scale is not in the weights: {assumed} is assumed'
    return options, note


def read_edsr(state, scale, layout_options):
    options, note = edsr_options(state, layout_options)
    num_feat = options['num_feat']
    convs = indices(state, 'upsample', r'\.weight')
    widths = [state[f'upsample.{i}.weight'].shape[0] for i in convs]
    if widths == [9 * num_feat]:
        own_scale = 3
    elif widths and all(width == 4 * num_feat for width in widths):
        own_scale = 2**len(widths)
    else:
        raise InferenceError(f'EDSR weights with an upsampler of {widths} channels: not x2^n or x3')
    options['num_out_ch'] = state['conv_last.weight'].shape[0]
    options['upscale'] = fixed_scale('EDSR', own_scale, scale)
    found = Found(options, own_scale, (options['num_in_ch'], options['num_out_ch']), 'EDSR', [note])
    if not layout_options:  # a published layout fixes the normalisation; BasicSR's and this package's files do not
        found.question = 'img_range and rgb_mean'
        found.choices = [(text, dict(options, **change)) for text, change in EDSR_NORMALISATIONS]
    return found


def read_vdsr(state, scale, layout_options):
    convs = indices(state, 'body', r'\.weight')
    if convs != list(range(0, 2 * len(convs), 2)):
        raise InferenceError(f'VDSR weights with convolutions at body.{convs}: expected body.0, body.2, ...')
    first, last = state['body.0.weight'], state[f'body.{convs[-1]}.weight']
    upscale, notes = integer_scale('VDSR', scale, _options().VDSROptions, 'upscale')
    options = {'type': 'VDSR', 'num_in_ch': first.shape[1], 'num_out_ch': last.shape[0], 'num_feat': first.shape[0],
               'num_layer': len(convs), 'upscale': upscale}
    if 'body.0.bias' not in state:  # the published weights (pytorch-vdsr) have none
        options['bias'] = False
    notes.append("the bicubic kernel of VDSR's input is not in the weights: the default (MATLAB's) is used")
    return Found(options, upscale, (options['num_in_ch'], options['num_out_ch']), 'VDSR', notes)


def read_bicubic_residual(state, scale, layout_options):
    inner_state = {key[len('network.'):]: value for key, value in state.items() if key.startswith('network.')}
    inner = detect(inner_state, scale, layout_options)

    def wrap(options):
        return {'type': 'BicubicResidual', 'network': options, 'upscale': inner.scale}
    return Found(wrap(inner.options), inner.scale, inner.channels, f'BicubicResidual({inner.label})', inner.notes,
                 inner.question and f'{inner.question} of the inner {inner.options["type"]}',
                 [(text, wrap(options)) for text, options in inner.choices])


def read_moeisr(state, scale, layout_options):
    notes = []
    if 'conv_first.weight' in state:
        options = {'type': 'MoEISR', 'num_in_ch': state['conv_first.weight'].shape[1],
                   'num_feat': state['conv_first.weight'].shape[0], 'num_block': count(state, 'body')}
        feat_dim = options['num_feat']
    elif 'encoder.net.conv_first.weight' in state:
        encoder, note = edsr_options(state, {}, 'encoder.net.')
        encoder['num_out_ch'] = encoder['num_in_ch']  # its tail is removed: any value builds the same encoder
        options = {'type': 'MoEISR', 'num_in_ch': encoder['num_in_ch'], 'encoder': encoder}
        feat_dim, notes = encoder['num_feat'], [f'encoder: {note}']
    else:
        raise InferenceError('MoEISR weights with an encoder other than the built-in one or EDSR: use -opt')
    experts = count(state, 'experts')
    layers = [indices(state, f'experts.{k}', r'\.weight') for k in range(experts)]
    options['expert_depths'] = [len(found) - 1 for found in layers]
    deep = next((k for k, found in enumerate(layers) if len(found) > 1), None)
    if deep is not None:
        options['hidden_dim'] = state[f'experts.{deep}.0.weight'].shape[0]
    in_dim = state['experts.0.0.weight'].shape[1]
    shapes = [(unfold, cell) for unfold in (True, False) for cell in (True, False)
              if feat_dim * (9 if unfold else 1) + 2 + (2 if cell else 0) == in_dim]
    if not shapes:
        raise InferenceError(f'MoEISR weights whose decoders take {in_dim} values from {feat_dim} features')
    options['feat_unfold'], options['cell_decode'] = shapes[0]
    if 'mapper_conv.0.weight' in state:
        options['mapper_dim'] = state['mapper_conv.0.weight'].shape[0]
    out_ch = state[f'experts.0.{layers[0][-1]}.weight'].shape[0]
    options['num_out_ch'] = out_ch
    moeisr_options = _options().MoEISROptions
    if scale is None:
        scale = schema_default(moeisr_options, 'scale')
        notes.append(f'MoEISR upscales by any factor: x{scale:g} (the default); give --scale for another')
    options['scale'] = float(scale)
    notes.append(f'local_ensemble is not in the weights: {schema_default(moeisr_options, "local_ensemble")} '
                 '(the default) is used')
    default = schema_default(moeisr_options, 'image_residual')
    choices = [(f'image_residual {str(value).lower()}', dict(options, image_residual=value))
               for value in (default, not default)]
    return Found(options, float(scale), (options['num_in_ch'], out_ch), 'MoEISR', notes, 'image_residual', choices)


FLAT_LEVELS = (0.25, 0.5, 0.75)
FLAT_TOLERANCE = 0.05  # mean absolute error on [0, 1] under which a flat image counts as given back


def flat_error(options, state, channels):
    """Mean absolute difference between flat grey images and what the network built from ``options`` makes
    of them."""
    from basicsr.archs import build_network
    network = build_network(copy.deepcopy(options)).eval()
    network.load_state_dict(state)
    levels = torch.tensor(FLAT_LEVELS).view(-1, 1, 1, 1)
    flat = levels.expand(-1, channels, 16, 16).contiguous()
    with torch.no_grad():
        output = network.upscale(flat, 2) if options['type'] == 'MoEISR' else network(flat)
    return float((output - levels).abs().mean())


def settle(found, state):
    """``found`` with its :attr:`Found.question` answered: the default choice unless another one gives flat
    grey images back within :data:`FLAT_TOLERANCE` and at most half the default's error (random or untrained
    weights keep the default). Adds a note saying what was chosen and why."""
    if len(found.choices) < 2:
        return found
    errors = [flat_error(options, state, found.channels[0]) for _, options in found.choices]
    best = min(range(len(errors)), key=errors.__getitem__)
    chosen = best if best and errors[best] < FLAT_TOLERANCE and errors[best] <= errors[0] / 2 else 0
    found.options = found.choices[chosen][1]
    others = ', '.join(f'{error:.3f} with {text}' for i, ((text, _), error) in enumerate(zip(found.choices, errors))
                       if i != chosen)
    if chosen:
        reason = 'it gives flat grey images back'
    elif any(error < FLAT_TOLERANCE for i, error in enumerate(errors) if i):
        reason = 'the default: flat grey images do not tell the choices apart; give -opt if it is not'
    else:
        reason = 'the default'
    found.notes.append(f'{found.question} not in the weights: {found.choices[chosen][0]} ({reason}; mean error on '
                       f'flat grey images {errors[chosen]:.3f}, {others})')
    return found


def _options():
    """The option schema's network sections (imported late: the options layer imports the archs)."""
    from moesr_arch.options import networks
    return networks


DETECTORS = (
    Detector('MoESRNet', 'MoE-SR needs its option file (-opt)',
             lambda state: any(key.startswith('experts.background.') for key in state), read_moesr),
    Detector('BicubicResidual', 'BicubicResidual around any arch below (network.* and gain)',
             has_all('gain', ), read_bicubic_residual),
    Detector('MoEISR', 'MoEISR (built-in or EDSR encoder)', has_all('experts.0.0.weight'), read_moeisr),
    Detector('SeemoRe', 'SeemoRe-T/B/L and other widths, any scale (official and this package\'s keys)',
             has_all('conv_1.weight', 'body.0.local_block.block.moe_layer.experts.0.conv_1.weight',
                     'body.0.global_block.block.attn.conv.0.weight', 'upsampler.0.weight'), read_seemore),
    Detector('EDSR', "EDSR x2/x3/x4/x8 (BasicSR's keys)",
             has_all('conv_first.weight', 'body.0.conv1.weight', 'conv_after_body.weight', 'upsample.0.weight',
                     'conv_last.weight'), read_edsr),
    Detector('VDSR', 'VDSR, RGB or Y, with or without biases (this package\'s keys)',
             lambda state: 'body.0.weight' in state and all(re.fullmatch(r'body\.\d+\.(weight|bias)', key)
                                                            for key in state), read_vdsr),
)


def known_networks():
    """What :func:`detect` recognises, for messages."""
    layouts = ', '.join(f"{layout.name}'s" for layout in LAYOUTS)
    return '; '.join(detector.knows for detector in DETECTORS[1:]) + f'; converted from {layouts} layouts; ' + \
        DETECTORS[0].knows


def detect(state, scale=None, layout_options=None):
    """The :class:`Found` of a state dict with this package's keys; :class:`InferenceError` when no detector
    recognises it (listing what they know)."""
    for detector in DETECTORS:
        if detector.matches(state):
            return detector.read(state, scale, dict(layout_options or {}))
    shown = ', '.join(list(state)[:4])
    raise InferenceError(f'no network this package knows ({len(state)} tensors: {shown}, ...); --model knows: '
                         f'{known_networks()}')


def read_model_file(path, scale=None):
    """``(Found, Weights)`` of a weights file: what :data:`DETECTORS` read from it (its question settled) and
    the weights, checked to fit the network of those options. Raises :class:`InferenceError` with one line."""
    from basicsr.archs import build_network
    try:
        weights = read_weights(path, param_key=None)
    except CheckpointError as error:
        raise InferenceError(str(error)) from None
    try:
        found = detect(weights.state, scale, weights.options)
    except InferenceError as error:
        raise InferenceError(f'{path}: {error}') from None
    problem = mismatch(build_network(copy.deepcopy(found.options)).state_dict(), weights.state)
    if problem:  # a detector that reads the shapes wrongly: a bug, or an odd file
        raise InferenceError(f'{weights.source(path)}: detected {found.label} but the weights do not fit it: {problem}')
    return settle(found, weights.state), weights


def build_from_model_file(path, scale=None):
    """``(network, scale, description)`` from a weights file alone, the network in eval mode on the CPU.

    ``scale`` is needed only where the weights do not fix it (VDSR, MoEISR: the default otherwise, with a
    note); a fixed-scale network's file with another ``scale`` is refused. ``description``: a first line
    saying what was found (arch, scale, channels, parameters, the entry read), then one line per assumption
    (``note: ...``). Raises :class:`InferenceError` with one line (an unknown file lists what is known).
    """
    from basicsr.archs import build_network
    found, weights = read_model_file(path, scale)
    network = build_network(copy.deepcopy(found.options))
    network.load_state_dict(weights.state)
    network.eval()
    parameters = sum(p.numel() for p in network.parameters())
    scale_text = f'x{found.scale:g}' + (' (any scale)' if found.options['type'] == 'MoEISR' else '')
    lines = [f'{found.label} {scale_text}, {found.channels[0]} -> {found.channels[1]} channels, {parameters:,} '
             f'parameters ({weights.source(path)})'] + [f'note: {note}' for note in found.notes]
    return network, found.scale, '\n'.join(lines)
