"""Networks and gates for inference, built from an option file."""
import copy

from moesr_arch.inference.capabilities import describe
from moesr_arch.inference.device import InferenceError
from moesr_arch.utils.checkpoint import CheckpointError, load_weights


def build_from_options(opt_path, model_path=None, require_weights=True, scale=None):
    """``(network, scale, options)`` from an option file: ``network_g`` built, weights loaded on the CPU.

    Weights come from ``model_path`` or ``path.pretrain_network_g`` (entry ``path.param_key_g``, strictness
    ``path.strict_load_g``). The gate of a gated network is :func:`load_gate`. A network from a weights file
    alone is :func:`moesr_arch.inference.detect.build_from_model_file`. ``scale`` builds the network for
    another scale than the file's (:func:`with_scale`); its weights must then fit strictly (VDSR's do: one set
    of weights serves every scale).
    """
    from basicsr.archs import build_network

    from moesr_arch.options import OptionError, read_network_options
    from moesr_arch.options.recipes import missing_file_hint
    try:
        opt = read_network_options(opt_path)
    except OptionError as error:
        raise InferenceError(str(error)) from None
    path_opt = opt['path']
    strict = path_opt['strict_load_g']
    if scale is not None:
        opt['scale'], opt['network_g'], strict = scale, with_scale(opt['network_g'], scale), True
    network = build_network(copy.deepcopy(opt['network_g']))
    weights = model_path or path_opt.get('pretrain_network_g')
    if weights:
        try:
            load_weights(network, weights, path_opt['param_key_g'], strict,
                         what=f'network_g of {opt_path}')
        except CheckpointError as error:
            raise InferenceError(f'{error}{missing_file_hint(weights, opt_path)}') from None
    elif require_weights:
        raise InferenceError(f'{opt_path}: no weights; set path.pretrain_network_g or pass --model_path')
    network.eval()
    scale = opt.get('scale', opt['network_g'].get('upscale'))
    if scale is None:
        raise InferenceError(f'{opt_path}: no scale (top-level "scale" key)')
    check_scale(network, scale, opt_path)
    return network, scale, opt


def with_scale(network_opt, scale):
    """A copy of the network options ``network_opt`` built for ``scale``: the scale argument of every arch in
    it (``upscale`` or ``scale``, whichever its constructor takes; wrapped networks and experts too) set."""
    import inspect

    from basicsr.utils.registry import ARCH_REGISTRY

    def rescale(node):
        if isinstance(node, dict):
            if isinstance(node.get('type'), str) and node['type'] in ARCH_REGISTRY:
                arguments = inspect.signature(ARCH_REGISTRY.get(node['type'])).parameters
                node.update({key: scale for key in ('upscale', 'scale') if key in arguments})
            for value in node.values():
                rescale(value)
        return node

    return rescale(copy.deepcopy(network_opt))


def check_scale(network, scale, source):
    """Raise :class:`InferenceError` when the option file ``source`` says ``scale`` but ``network`` (network_g)
    upscales by another factor; arbitrary-scale networks pass. ``basicsr infer``, ``test``, ``benchmark`` and
    training's validation all check here, before any image runs.

    A wrong scale would not always fail: tiles coming back a pixel or two off are resized (the output would
    silently have the wrong size), and BasicSR's test dies deep in its metrics."""
    actual = describe(network).scale
    if actual is not None and float(actual) != float(scale):
        raise InferenceError(f'{source}: scale is {scale} but network_g ({type(network).__name__}) '
                             f'upscales x{actual}; set scale: {actual}')


def load_gate(opt, opt_path):
    """The option file's top-level ``gate`` built (None without one: the background expert answers).

    A gate that needs a dataset's labels (the LabelGate of training files) is refused here, once, before any
    image: a photo has no labels, and every image would fail alike."""
    if opt.get('gate') is None:
        return None
    from moesr_arch.gating import build_gate
    from moesr_arch.options import OptionError
    try:
        gate = build_gate(opt['gate'], opt_path)
    except OptionError as error:
        raise InferenceError(str(error)) from None
    if gate.needs_labels:
        raise InferenceError(f'{opt_path}: gate.type {type(gate).__name__} reads the category labels of a dataset, '
                             'which photos do not have (training and validation files use it); give an option file '
                             'whose gate finds the categories in the image, a YOLOGate as in options/test_moesr.yml')
    return gate
