"""Cut HR (and paired LR) images into overlapping sub-images, BasicSR's DIV2K recipe by default.

HR crops of ``crop_size`` every ``step`` pixels; a last crop is added flush with the right/bottom border
when the remainder exceeds ``thresh_size`` (BasicSR's rule). With ``--lq`` the LR partners are cut at the
same places scaled down by ``--scale`` (crop and step must be divisible by it), so ``<name>_s001.png`` in
the HR and LR outputs always show the same content. Images smaller than the crop are kept whole.
"""
from functools import partial
from pathlib import Path

from moesr_arch.tools.common import (error_text, get_tool_logger, list_images, read_raw, run_parallel, standalone,
                                      write_png)


def crop_starts(length, crop, step, thresh):
    """Start offsets of crops along one side (BasicSR ``extract_subimages`` rule)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def cut(image, crop, step, thresh):
    """``[(y, x, tile)]`` of ``image`` in raster order."""
    h, w = image.shape[:2]
    return [(y, x, image[y:y + crop, x:x + crop])
            for y in crop_starts(h, crop, step, thresh) for x in crop_starts(w, crop, step, thresh)]


def process_one(gt_path, opt):
    """Cut one image (and its LR partner); return ``(number of sub-images, error message or None)``."""
    try:
        stem = Path(gt_path).stem
        gt = read_raw(gt_path)
        scale = opt['scale']
        if opt['lq'] is None:
            pieces = cut(gt, opt['crop_size'], opt['step'], opt['thresh_size'])
            for index, (_, _, piece) in enumerate(pieces, 1):
                write_png(Path(opt['output']) / f'{stem}_s{index:03d}.png', piece, opt['compression_level'])
            return len(pieces), None
        lq_path = opt['lq_names'].get(opt['filename_tmpl'].format(stem))
        if lq_path is None:
            return 0, f'{gt_path}: no LR partner {opt["filename_tmpl"].format(stem)}.* in {opt["lq"]}'
        lq = read_raw(lq_path)
        h, w = lq.shape[:2]
        if gt.shape[0] // scale != h or gt.shape[1] // scale != w:
            return 0, (f'size mismatch at x{scale}: LR {lq_path} is {w}x{h} but HR {gt_path} is '
                       f'{gt.shape[1]}x{gt.shape[0]}')
        gt = gt[:h * scale, :w * scale]
        # Positions are chosen on the LR grid so that HR = LR * scale exactly.
        pieces = cut(lq, opt['crop_size'] // scale, opt['step'] // scale, opt['thresh_size'] // scale)
        crop = opt['crop_size']
        for index, (y, x, lq_piece) in enumerate(pieces, 1):
            name = f'{stem}_s{index:03d}.png'
            gt_piece = gt[y * scale:y * scale + crop, x * scale:x * scale + crop]
            write_png(Path(opt['output']) / name, gt_piece, opt['compression_level'])
            write_png(Path(opt['lq_output']) / name, lq_piece, opt['compression_level'])
        return len(pieces), None
    except Exception as error:  # reported at the end; the other images are still cut
        return 0, error_text(gt_path, error)


def extract_subimages(input_folder, output, crop_size=480, step=240, thresh_size=0, lq=None, lq_output=None,
                      scale=1, filename_tmpl='{}', n_thread=1, compression_level=3):
    """Cut every image of ``input_folder``; return ``(number of sub-images, error messages)``."""
    if crop_size < 1 or step < 1 or thresh_size < 0:
        raise ValueError(f'crop_size and step must be positive and thresh_size >= 0, got '
                         f'{crop_size}, {step}, {thresh_size}')
    if lq is not None:
        if lq_output is None:
            raise ValueError('--lq needs --lq_output')
        if crop_size % scale or step % scale:
            raise ValueError(f'crop_size {crop_size} and step {step} must be divisible by the scale {scale} '
                             'so that HR and LR sub-images align')
    for folder in (output, lq_output):
        if folder is not None and Path(folder).exists() and any(Path(folder).iterdir()):
            raise FileExistsError(f'{folder} exists and is not empty; choose a new output folder')
    gt_paths = list_images(input_folder)
    opt = dict(output=output, lq=lq, lq_output=lq_output, scale=scale, crop_size=crop_size, step=step,
               thresh_size=thresh_size, filename_tmpl=filename_tmpl, compression_level=compression_level,
               lq_names={p.stem: p for p in list_images(lq)} if lq else {})
    results = run_parallel(partial(process_one, opt=opt), gt_paths, n_thread, 'extract_subimages')
    return sum(count for count, _ in results), [error for _, error in results if error]


def add_arguments(parser):
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='output folder for HR sub-images')
    parser.add_argument('--lq', help='folder of the LR partners (same stem, see --filename_tmpl)')
    parser.add_argument('--lq_output', help='output folder for LR sub-images (with --lq)')
    parser.add_argument('-s', '--scale', type=int, default=1, help='HR/LR scale for paired extraction')
    parser.add_argument('--crop_size', type=int, default=480, help='HR crop size (default: 480, DIV2K recipe)')
    parser.add_argument('--step', type=int, default=240, help='HR step between crops (default: 240)')
    parser.add_argument('--thresh_size', type=int, default=0,
                        help='add a border-flush crop when the remainder exceeds this (default: 0)')
    parser.add_argument('--filename_tmpl', default='{}', help="LR stem from HR stem, e.g. '{}x4' (default: '{}')")
    parser.add_argument('--n_thread', type=int, default=4, help='worker processes (default: 4)')
    parser.add_argument('--compression_level', type=int, default=3, help='PNG compression 0-9 (default: 3)')


def main(args):
    count, failures = extract_subimages(args.input, args.output, args.crop_size, args.step, args.thresh_size,
                                        args.lq, args.lq_output, args.scale, args.filename_tmpl, args.n_thread,
                                        args.compression_level)
    logger = get_tool_logger()
    for error in failures:
        logger.error(error)
    logger.info(f'{count} sub-images written to {args.output}' + (f' and {args.lq_output}' if args.lq else ''))
    return 1 if failures else 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
