"""Export a network to ONNX (dynamic height and width, checked with onnxruntime) and/or safetensors.

The option file names the network (``network_g``) and its weights (``path.pretrain_network_g``,
``path.param_key_g``; ``--model_path`` overrides). The ONNX graph takes ``input`` (N, 3, H, W) float32 RGB
in [0, 1] with any N, H, W and gives ``output`` (N, 3, H*scale, W*scale); after writing it is run with
onnxruntime on an input of another size than the one traced and compared with PyTorch (max abs
difference must stay under ``--tolerance``). ``--safetensors`` writes the weights as a safetensors file
(readable by ``basicsr infer --model_path`` and spandrel).
"""
from pathlib import Path

import numpy as np
import torch

from moesr_arch.tools.common import get_tool_logger, standalone


class ExportError(RuntimeError):
    """The export failed or its output does not match PyTorch."""


def export_onnx(network, path, trace_size=64, opset=17):
    """Write ``network`` to ``path`` as ONNX with dynamic batch, height and width."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 3, trace_size, trace_size)
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not a dependency here.
    with torch.no_grad():
        torch.onnx.export(network, (example, ), str(path), dynamo=False, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes},
                          opset_version=opset, do_constant_folding=True)
    return path


def verify_onnx(network, path, size=(48, 80), tolerance=1e-4):
    """Max abs difference between onnxruntime and PyTorch on a random (1, 3, *size) input; raises above tolerance."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(x).numpy()
    got = session.run(None, {'input': x.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f'{path}: ONNX output shape {got.shape} differs from PyTorch {expected.shape}')
    diff = float(np.abs(got - expected).max())
    if diff >= tolerance:
        raise ExportError(f'{path}: ONNX and PyTorch differ by {diff:.3g} (tolerance {tolerance:g})')
    return diff


def export_safetensors(network, path, metadata=None):
    from safetensors.torch import save_file
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def add_arguments(parser):
    parser.add_argument('-opt', required=True, help='option file naming network_g and its weights')
    parser.add_argument('--model_path', help='weights (.pth or .safetensors) instead of path.pretrain_network_g')
    parser.add_argument('--onnx', help='output ONNX file')
    parser.add_argument('--safetensors', help='output safetensors file of the weights')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default: 17)')
    parser.add_argument('--trace_size', type=int, default=64, help='input size used to trace (default: 64)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest allowed |ONNX - PyTorch| on the check input (default: 1e-4)')


def main(args):
    import moesr_arch  # noqa: F401  (registers the package's archs)
    from moesr_arch.inference import InferenceError, build_from_options
    logger = get_tool_logger()
    if not args.onnx and not args.safetensors:
        logger.error('nothing to do: give --onnx and/or --safetensors')
        return 2
    try:
        network, scale, opt = build_from_options(args.opt, args.model_path)
        if args.safetensors:
            export_safetensors(network, args.safetensors, {'network_g': dict(opt['network_g']), 'scale': scale})
            logger.info(f'weights written to {args.safetensors}')
        if args.onnx:
            export_onnx(network, args.onnx, args.trace_size, args.opset)
            diff = verify_onnx(network, args.onnx, tolerance=args.tolerance)
            logger.info(f'ONNX written to {args.onnx}; onnxruntime vs PyTorch on a 48x80 input: max |diff| {diff:.2e}')
    except (InferenceError, ExportError, FileNotFoundError) as error:
        logger.error(str(error))
        return 1
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
