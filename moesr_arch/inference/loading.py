"""Networks and gates for inference, built from an option file."""
import copy

from moesr_arch.inference.capabilities import describe
from moesr_arch.inference.device import InferenceError
from moesr_arch.utils.checkpoint import CheckpointError, load_weights


def build_from_options(opt_path, model_path=None, require_weights=True):
    """``(network, scale, options)`` from an option file: ``network_g`` built, weights loaded on the CPU.

    Weights come from ``model_path`` or ``path.pretrain_network_g`` (entry ``path.param_key_g``, strictness
    ``path.strict_load_g``). The gate of a gated network is :func:`load_gate`. A network from a weights file
    alone is :func:`moesr_arch.inference.detect.build_from_model_file`.
    """
    from basicsr.archs import build_network

    from moesr_arch.options import OptionError, check_network, load_options, resolve_derived_options
    from moesr_arch.options.training import PathSection
    opt = load_options(opt_path)
    if not isinstance(opt, dict) or 'network_g' not in opt:
        raise InferenceError(f'{opt_path}: needs a network_g section naming the network')
    try:
        check_network(opt['network_g'], 'network_g', opt_path)
        resolve_derived_options(opt, opt_path)
    except OptionError as error:
        raise InferenceError(str(error)) from None
    path_opt = opt.get('path') or {}
    network = build_network(copy.deepcopy(opt['network_g']))
    weights = model_path or path_opt.get('pretrain_network_g')
    if weights:
        try:
            load_weights(network, weights, path_opt.get('param_key_g', PathSection.model_fields['param_key_g'].default),
                         path_opt.get('strict_load_g', PathSection.model_fields['strict_load_g'].default),
                         what=f'network_g of {opt_path}')
        except CheckpointError as error:
            raise InferenceError(str(error)) from None
    elif require_weights:
        raise InferenceError(f'{opt_path}: no weights; set path.pretrain_network_g or pass --model_path')
    network.eval()
    scale = opt.get('scale', opt['network_g'].get('upscale'))
    if scale is None:
        raise InferenceError(f'{opt_path}: no scale (top-level "scale" key)')
    # A wrong scale would not fail: tiles coming back a pixel or two off are resized, so the output
    # would silently have the wrong size. Check it against what the network produces.
    actual = describe(network).scale
    if actual is not None and float(actual) != float(scale):
        raise InferenceError(f'{opt_path}: scale is {scale} but network_g ({opt["network_g"].get("type")}) '
                             f'upscales x{actual}; set scale: {actual}')
    return network, scale, opt


def load_gate(opt, opt_path):
    """The option file's top-level ``gate`` built (None without one: the background expert answers)."""
    if opt.get('gate') is None:
        return None
    from moesr_arch.gating import build_gate
    from moesr_arch.options import OptionError
    try:
        return build_gate(opt['gate'], opt_path)
    except OptionError as error:
        raise InferenceError(str(error)) from None
