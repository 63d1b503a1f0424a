"""Cut HR (and paired LR) images into overlapping sub-images, BasicSR's DIV2K recipe by default.

HR crops of ``crop_size`` every ``step`` pixels; a last crop is added flush with the right/bottom border
when the remainder exceeds ``thresh_size`` (BasicSR's rule). With ``--lq`` the LR partners are cut at the
same places scaled down by ``--scale`` (crop and step must be divisible by it), so ``<name>_s001.png`` in
the HR and LR outputs always show the same content. Images smaller than the crop are kept whole.

With ``--labels`` (YOLO category labels normalised to the HR images, see
:mod:`moesr_arch.data.category_labels`) every sub-image gets its label file in ``--labels_output``: each
region clipped to the crop and normalised to it, written as a polygon (boxes too); regions that leave less
than ``--min_label_area`` HR pixels² inside a crop are dropped, and a crop without regions gets an empty file
(background only), so ``labels_required: true`` holds for the sub-image dataset.
"""
from functools import partial
from pathlib import Path

from moesr_arch.data.categories import load_categories
from moesr_arch.data.category_labels import clip_polygon, format_label_line, polygon_area, read_labels
from moesr_arch.tools.common import OutputPlan, error_text, get_tool_logger, run_parallel, standalone
from moesr_arch.utils.image_io import list_images, read_raw, write_png
from moesr_arch.utils.atomic import atomic_write_text


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


def crop_label_lines(regions, image_size, box, min_area):
    """Label lines of the regions inside ``box`` = ``(x0, y0, x1, y1)`` HR pixels of an image ``(w, h)``."""
    x0, y0, x1, y1 = box
    lines = []
    for region in regions:
        inside = clip_polygon(region.points * image_size, x0, y0, x1, y1)
        if len(inside) < 3 or polygon_area(inside) < min_area:
            continue
        lines.append(format_label_line(region.category, (inside - (x0, y0)) / (x1 - x0, y1 - y0)))
    return lines


def image_regions(opt, stem):
    """The label regions of the HR image ``stem``, or None without ``--labels`` (read before any output is
    written, so a bad label file leaves no sub-images without labels)."""
    if opt['labels'] is None:
        return None
    return read_labels(Path(opt['labels']) / f'{stem}.txt', opt['num_categories'], required=opt['labels_required'])


def write_crop_labels(opt, regions, gt_shape, crops):
    """Write the label file of every sub-image ``name -> (x0, y0, x1, y1)`` (HR pixels of a ``gt_shape`` image)."""
    if regions is None:
        return
    image_size = (gt_shape[1], gt_shape[0])
    for name, box in crops.items():
        lines = crop_label_lines(regions, image_size, box, opt['min_label_area'])
        atomic_write_text(Path(opt['labels_output']) / f'{Path(name).stem}.txt', ''.join(f'{line}\n' for line in lines))


def process_one(gt_path, opt):
    """Cut one image (and its LR partner); return ``(number of sub-images, error message or None)``."""
    try:
        stem = Path(gt_path).stem
        regions = image_regions(opt, stem)
        gt = read_raw(gt_path)
        scale = opt['scale']
        if opt['lq'] is None:
            pieces = cut(gt, opt['crop_size'], opt['step'], opt['thresh_size'])
            crops = {}
            for index, (y, x, piece) in enumerate(pieces, 1):
                name = f'{stem}_s{index:03d}.png'
                write_png(Path(opt['output']) / name, piece, opt['compression_level'])
                crops[name] = (x, y, x + piece.shape[1], y + piece.shape[0])
            write_crop_labels(opt, regions, gt.shape, crops)
            return len(pieces), None
        lq_path = opt['lq_names'].get(opt['filename_tmpl'].format(stem))
        if lq_path is None:
            return 0, f'{gt_path}: no LR partner {opt["filename_tmpl"].format(stem)}.* in {opt["lq"]}'
        lq = read_raw(lq_path)
        h, w = lq.shape[:2]
        if gt.shape[0] // scale != h or gt.shape[1] // scale != w:
            return 0, (f'size mismatch at x{scale}: LR {lq_path} is {w}x{h} but HR {gt_path} is '
                       f'{gt.shape[1]}x{gt.shape[0]}')
        full_shape = gt.shape
        gt = gt[:h * scale, :w * scale]
        # Positions are chosen on the LR grid so that HR = LR * scale exactly.
        pieces = cut(lq, opt['crop_size'] // scale, opt['step'] // scale, opt['thresh_size'] // scale)
        crop = opt['crop_size']
        crops = {}
        for index, (y, x, lq_piece) in enumerate(pieces, 1):
            name = f'{stem}_s{index:03d}.png'
            gt_piece = gt[y * scale:y * scale + crop, x * scale:x * scale + crop]
            write_png(Path(opt['output']) / name, gt_piece, opt['compression_level'])
            write_png(Path(opt['lq_output']) / name, lq_piece, opt['compression_level'])
            crops[name] = (x * scale, y * scale, x * scale + gt_piece.shape[1], y * scale + gt_piece.shape[0])
        # Labels are normalised to the whole HR image, before the trim to a multiple of the scale.
        write_crop_labels(opt, regions, full_shape, crops)
        return len(pieces), None
    except Exception as error:  # reported at the end; the other images are still cut
        return 0, error_text(gt_path, error)


def plan_outputs(gt_paths, folders):
    """Sub-images are named ``<stem>_sNNN``: two HR images of one stem (``a.png``, ``a.jpg``) would write
    over each other's, so such a folder is refused before anything is written, naming both files."""
    plan = OutputPlan(gt_paths)
    for path in gt_paths:
        for folder in folders:
            if folder is not None:
                plan.claim(Path(folder) / f'{path.stem}_sNNN.png', path, '; rename one of them')


def images_by_stem(folder):
    """``{stem: path}`` of an LR folder; two files of one stem are an error (which one pairs is a guess)."""
    found = {}
    for path in list_images(folder):
        key = path.stem.casefold()
        if key in found:
            raise ValueError(f'{found[key][1]} and {path}: two LR images for one stem {path.stem!r}; remove one')
        found[key] = (path.stem, path)
    return dict(found.values())


def extract_subimages(input_folder, output, crop_size=480, step=240, thresh_size=0, lq=None, lq_output=None,
                      scale=1, filename_tmpl='{}', n_thread=1, compression_level=3, labels=None, labels_output=None,
                      categories=None, labels_required=False, min_label_area=4.0):
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
    if labels is not None:
        if labels_output is None or categories is None:
            raise ValueError('--labels needs --labels_output and --categories (the file the label ids come from)')
        if not Path(labels).is_dir():
            raise FileNotFoundError(f'--labels {labels}: no such folder')
    for folder in (output, lq_output, labels_output):
        if folder is not None and Path(folder).exists() and any(Path(folder).iterdir()):
            raise FileExistsError(f'{folder} exists and is not empty; choose a new output folder')
    if labels_output is not None:
        Path(labels_output).mkdir(parents=True, exist_ok=True)
    gt_paths = list_images(input_folder)
    plan_outputs(gt_paths, [output, lq_output if lq else None, labels_output if labels is not None else None])
    opt = dict(output=output, lq=lq, lq_output=lq_output, scale=scale, crop_size=crop_size, step=step,
               thresh_size=thresh_size, filename_tmpl=filename_tmpl, compression_level=compression_level,
               lq_names=images_by_stem(lq) if lq else {}, labels=labels,
               labels_output=labels_output, labels_required=labels_required, min_label_area=min_label_area,
               num_categories=len(load_categories(categories)) if labels is not None else 0)
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
    parser.add_argument('--labels', help='folder of YOLO category labels of the HR images, cut alongside')
    parser.add_argument('--labels_output', help='output folder for the sub-images\' labels (with --labels)')
    parser.add_argument('--categories', help='categories file (id: name) of the labels (with --labels)')
    parser.add_argument('--labels_required', action='store_true',
                        help='an HR image without a label file is an error (default: background only)')
    parser.add_argument('--min_label_area', type=float, default=4.0,
                        help='drop a region with less than this many HR pixels² inside a crop (default: 4)')
    parser.add_argument('--n_thread', type=int, default=4, help='worker processes (default: 4)')
    parser.add_argument('--compression_level', type=int, default=3, help='PNG compression 0-9 (default: 3)')


def main(args):
    count, failures = extract_subimages(args.input, args.output, args.crop_size, args.step, args.thresh_size,
                                        args.lq, args.lq_output, args.scale, args.filename_tmpl, args.n_thread,
                                        args.compression_level, args.labels, args.labels_output, args.categories,
                                        args.labels_required, args.min_label_area)
    logger = get_tool_logger()
    for error in failures:
        logger.error(error)
    written = [args.output] + ([args.lq_output] if args.lq else []) + ([args.labels_output] if args.labels else [])
    logger.info(f'{count} sub-images written to {" and ".join(map(str, written))}')
    return 1 if failures else 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
