"""Export a network to ONNX (dynamic height and width, checked with onnxruntime) and/or safetensors.

The option file names the network (``network_g``) and its weights (``path.pretrain_network_g``,
``path.param_key_g``; ``--model_path`` overrides). The ONNX graph takes ``input`` (N, 3, H, W) float32 RGB
in [0, 1] with any N, H, W and gives ``output`` (N, 3, H*scale, W*scale); after writing it is run with
onnxruntime on an input of another size than the one traced and compared with PyTorch (max abs
difference must stay under ``--tolerance``). ``--safetensors`` writes the weights as a safetensors file
(readable by ``basicsr infer --model_path`` and spandrel).
"""
import io
import warnings

import numpy as np
import torch

from moesr_arch.errors import UserError
from moesr_arch.tools.common import get_tool_logger, standalone
from moesr_arch.utils.atomic import atomic_write_bytes


class ExportError(UserError, RuntimeError):
    """The export failed or its output does not match PyTorch."""


def onnx_bytes(network, trace_size=64, opset=17):
    """``network`` as an ONNX model (bytes) with dynamic batch, height and width."""
    parameter = next(network.parameters(), None)  # trace where the network is (CPU or CUDA)
    example = torch.rand(1, 3, trace_size, trace_size, device=parameter.device if parameter is not None else 'cpu')
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    buffer = io.BytesIO()
    # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not a dependency here.
    # Its TracerWarnings ("the trace might not generalize to other inputs") are silenced: a user cannot act on
    # them, and basicsr export runs the graph at another size than the traced one (verify_onnx), which is
    # the check they ask for. Other warnings still show.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        torch.onnx.export(network, (example, ), buffer, dynamo=False, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes},
                          opset_version=opset, do_constant_folding=True)
    return buffer.getvalue()


def export_onnx(network, path, trace_size=64, opset=17):
    """Write ``network`` to ``path`` as ONNX with dynamic batch, height and width (all-or-nothing)."""
    atomic_write_bytes(path, onnx_bytes(network, trace_size, opset))
    return path


def verify_onnx(network, model, size=(48, 80), tolerance=1e-4, name=None):
    """Max abs difference between onnxruntime and PyTorch on a random (1, 3, *size) input; raises above tolerance.

    ``model`` is an ONNX file or the model's bytes (checked before they are written anywhere).
    """
    import onnxruntime
    name = name or model
    session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                           providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(x.to(next(network.parameters()).device)).cpu().numpy()
    got = session.run(None, {'input': x.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f'{name}: ONNX output shape {got.shape} differs from PyTorch {expected.shape}')
    diff = float(np.abs(got - expected).max())
    if diff >= tolerance:
        raise ExportError(f'{name}: ONNX and PyTorch differ by {diff:.3g} (tolerance {tolerance:g})')
    return diff


def export_safetensors(network, path, metadata=None):
    from safetensors.torch import save
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={k: str(v) for k, v in (metadata or {}).items()}))
    return path


def select_network(network, opt, opt_path, expert, onnx):
    """``(network to export, its network_g options)``: the network itself, or one expert of MoE-SR.

    A network that runs whole images itself (MoE-SR: a gate, then experts only around the gate's regions)
    is Python control flow that a trace cannot capture: its ONNX graph would be the background expert
    alone and differ from ``basicsr infer``. Such networks are exported one expert at a time, by name.
    """
    from moesr_arch.inference import describe
    capabilities = describe(network)
    experts = network.experts if capabilities.kind == 'gated' else {}  # MoESRNet's experts by name
    if expert is not None:
        if not experts:
            raise ExportError(f'--expert {expert}: {type(network).__name__} has no experts to choose from')
        if expert not in experts:
            raise ExportError(f'--expert {expert}: no such expert; experts: {", ".join(experts)}')
        return experts[expert], opt['network_g']['experts'][expert]
    if onnx and capabilities.whole_image:
        names = f'; experts: {", ".join(experts)}' if experts else ''
        raise ExportError(f'{opt_path}: {type(network).__name__} cannot be exported as one ONNX graph: its gate and '
                          'its per-region experts run as Python code that a trace would freeze, and the graph would '
                          f'differ from basicsr infer; export one expert with --expert NAME{names}')
    return network, opt['network_g']


def add_arguments(parser):
    parser.add_argument('-opt', required=True, help='option file naming network_g and its weights')
    parser.add_argument('--model_path', help='weights (.pth or .safetensors) instead of path.pretrain_network_g')
    parser.add_argument('--onnx', help='output ONNX file')
    parser.add_argument('--safetensors', help='output safetensors file of the weights')
    parser.add_argument('--expert', help='export this expert of a mixture network (MoE-SR) alone, e.g. background')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default: 17)')
    parser.add_argument('--trace_size', type=int, default=64, help='input size used to trace (default: 64)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest allowed |ONNX - PyTorch| on the check input (default: 1e-4)')


def main(args):
    import moesr_arch  # noqa: F401  (registers the package's archs)
    from moesr_arch.inference import build_from_options
    logger = get_tool_logger()
    if not args.onnx and not args.safetensors:
        raise ValueError('nothing to do: give --onnx and/or --safetensors')
    network, scale, opt = build_from_options(args.opt, args.model_path)
    network, network_opt = select_network(network, opt, args.opt, args.expert, args.onnx)
    if args.onnx:  # traced and checked before anything is written, so a failed check leaves no file
        model = onnx_bytes(network, args.trace_size, args.opset)
        diff = verify_onnx(network, model, tolerance=args.tolerance, name=args.onnx)
    if args.safetensors:
        export_safetensors(network, args.safetensors, {'network_g': dict(network_opt), 'scale': scale})
        logger.info(f'weights written to {args.safetensors}')
    if args.onnx:
        atomic_write_bytes(args.onnx, model)
        logger.info(f'ONNX written to {args.onnx}; onnxruntime vs PyTorch on a 48x80 input: max |diff| {diff:.2e}')
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
