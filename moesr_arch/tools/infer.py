"""Super-resolve image files with a trained network: tiled, any size, grey/RGBA/16-bit/EXIF handled.

The option file names the network (``network_g``), its scale and weights (``path.pretrain_network_g``,
``path.param_key_g``); ``--model_path`` overrides the weights. Or, without an option file, ``--model FILE``
builds the network from the weights alone (SeemoRe, EDSR, VDSR, BicubicResidual, MoEISR, and the published
pytorch-vdsr and EDSR-PyTorch files; the table is moesr_arch/inference/detect.py) and says what it found;
``--scale`` gives the scale the weights do not fix (VDSR, MoEISR). With neither, the SeemoRe-T shipped with the
package for ``--scale`` 2 (the default) or 4 runs (trained on the photo corpus; its model card is
moesr_arch/weights/seemore_t_photos_x<s>.md). INPUT is an image file or a folder (non-image
files are ignored). Outputs are PNG: ``OUTDIR/<stem>[_<suffix>].png`` (16-bit inputs give 16-bit PNGs, grey
stays grey, alpha is upscaled separately with bicubic). Unreadable files are reported and skipped; the
exit code is 1 if any image failed. How each network runs (MoE-SR's gate on the whole image, MoEISR's
``--scale FLOAT``, plain networks tiled) is declared in moesr_arch/inference/capabilities.py.
"""
import time
from pathlib import Path

from tqdm import tqdm

from moesr_arch.tools.common import OutputPlan, add_speed_arguments, error_text, get_tool_logger, standalone
from moesr_arch.utils.atomic import check_writable
from moesr_arch.utils.image_io import list_images
from moesr_arch.utils.progress import progress_bar


def input_files(path):
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return list_images(path)
    raise FileNotFoundError(f'no such file or folder: {path}')


def plan_outputs(files, outdir, suffix, map_names=()):
    """``[(source, target)]`` for every input, all worked out before any work.

    Stops before anything is written when ``outdir`` is a file, when two inputs would give the same
    output (``upper.JPG`` and ``upper.PNG`` both give ``upper.png``) or when an output (image or map)
    would replace any input.
    """
    from moesr_arch.inference import map_path
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f'-o {outdir}: is a file, not a folder')
    plan = OutputPlan(files)
    hint = '; give another -o or a --suffix'
    clash_hint = '; rename one of them, or run them separately (-o and --suffix change both names alike)'
    pairs = []
    for source in files:
        target = outdir / (source.stem + (f'_{suffix}' if suffix else '') + '.png')
        plan.claim(target, source, hint, clash_hint)
        for name in map_names:
            plan.claim(map_path(target, name), source, hint, clash_hint)
        pairs.append((source, target))
    return pairs


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument('-opt', help='option file naming network_g, scale and the weights')
    source.add_argument('--model', help='weights file alone (.pth, .pt, .safetensors): the network is recognised '
                        'from its keys and shapes (default, with neither: the shipped SeemoRe-T of --scale 2 or 4)')
    parser.add_argument('-i', '--input', required=True, help='image file or folder')
    parser.add_argument('-o', '--output', default='results/infer', help='output folder (default: results/infer)')
    parser.add_argument('--model_path', help='with -opt: weights (.pth or .safetensors) instead of '
                        'path.pretrain_network_g')
    parser.add_argument('--tile', type=int, help='tile size in LR pixels, 0 = whole image (default: 256 on CPU, '
                        'where smaller tiles run faster, 512 on CUDA)')
    parser.add_argument('--tile_overlap', type=int, help='tile overlap in LR pixels (default: 32, at most a quarter '
                        'of the tile)')
    parser.add_argument('--precision', choices=('auto', 'fp32', 'bf16', 'fp16'), default='auto',
                        help='auto = fp32 on CPU, bf16 (or fp16) on CUDA (default: auto)')
    add_speed_arguments(parser)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu' or 'cuda[:i]' (default: auto)")
    parser.add_argument('--ensemble', action='store_true', help='x8 geometric self-ensemble (8x slower)')
    parser.add_argument('--scale', type=float, help='output scale for arbitrary-scale networks (e.g. MoEISR: 3.5); '
                        'with --model, also the scale of weights that do not fix it (VDSR); with no model, 2 or 4 '
                        'picks the shipped SeemoRe-T (default: 2)')
    parser.add_argument('--save_maps', action='store_true',
                        help='also write the network\'s maps (gate overlay, expert map) as <stem>_<map>.png')
    parser.add_argument('--suffix', default='', help='add _<suffix> to output names (default: none)')


def load_network(args, logger):
    """``(network, scale, options or None)`` from ``-opt`` (and ``--model_path``) or from ``--model`` alone."""
    from moesr_arch.inference import InferenceError, build_from_model_file, build_from_options
    if args.opt:
        return build_from_options(args.opt, args.model_path)
    if args.model_path:
        raise InferenceError('--model_path goes with -opt; give the weights as --model FILE alone')
    model_file = args.model
    if model_file is None:
        from moesr_arch.weights import default_model
        shipped = default_model(args.scale)
        logger.info(f'model: the shipped {shipped.label}, trained on the photo corpus ({shipped.path}; model card '
                    f'{shipped.card}); -opt FILE or --model FILE runs another')
        model_file = shipped.path
    network, scale, found = build_from_model_file(model_file, args.scale)
    for line in found.splitlines():
        logger.info(line)
    return network, scale, None


def main(args):
    import moesr_arch  # noqa: F401  (registers the package's archs)
    from moesr_arch.inference import Upscaler, describe, load_gate, recomputed_share
    logger = get_tool_logger()
    files = input_files(args.input)
    network, scale, opt = load_network(args, logger)
    upscaler = Upscaler(network, scale, args.device, args.precision, args.tile, args.tile_overlap, args.ensemble,
                        args.scale, args.save_maps,
                        gate=load_gate(opt, args.opt) if describe(network).kind == 'gated' else None,
                        channels_last=args.channels_last, compile=args.compile)
    tile, overlap = upscaler.tiler.tile, upscaler.tiler.overlap
    share = recomputed_share(tile, overlap)
    if describe(network).kind != 'gated' and share > 2:  # time follows the pixels computed (docs/tools.md)
        logger.warning(f'--tile {tile} with --tile_overlap {overlap}: tiles step by {tile - overlap} pixels, so the '
                       f'network computes about {share:.0f} times the pixels of a large image, and takes about as '
                       'many times longer; a larger --tile or a smaller --tile_overlap is faster')
    if args.save_maps and not upscaler.map_names():
        logger.warning(f'--save_maps: {type(network).__name__} makes no maps '
                       '(see moesr_arch/inference/capabilities.py)')
    pairs = plan_outputs(files, args.output, args.suffix, upscaler.map_names())
    check_writable(args.output)  # a read-only or missing place fails here, before any SR work
    failures = []
    for path, target in progress_bar(pairs, show=len(files) > 1, desc='images', unit='img'):
        start = time.time()
        try:
            image, maps = upscaler.upscale_file(path)
            upscaler.save(target, image, maps)
            tqdm.write(f'{path.name} -> {target} ({image.shape[1]}x{image.shape[0]}, {time.time() - start:.1f}s)')
        except Exception as error:  # whatever went wrong with this image, the rest of the folder still runs
            failures.append(error_text(path, error))
    for failure in failures:
        logger.error(failure)
    if failures:
        logger.error(f'{len(failures)} of {len(files)} image(s) failed')
        return 1
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
