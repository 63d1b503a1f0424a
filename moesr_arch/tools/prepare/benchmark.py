"""Lay out a standard SR test set (Set5, Set14, B100, Urban100, Manga109, ...) as BasicSR's benchmarks are.

From a folder of HR images, ``--output datasets/benchmark/<Set>`` gets

- ``HR/<name>.png``: each image cropped at the bottom/right to a multiple of 12 (the least common multiple
  of 12 and ``--scales``), so one HR image pairs with the LR of every scale;
- ``LR_bicubic/X<s>/<name>x<s>.png`` for every scale: MATLAB's ``imresize(HR, 1/s, 'bicubic')``
  (``basicsr.utils.matlab_functions.imresize``, antialiased), rounded to the image's bit depth, as the SR
  literature makes its LR.

Grey images stay grey, 16-bit images stay 16-bit. ``basicsr benchmark`` reads this layout.

Running it again is safe: an output already there with exactly the pixels this command makes from the input
is kept (reused, not rewritten). A file there with other pixels was not made by this command from this
input and is never replaced: its image fails, naming the file, and none of that image's files are written.
"""
import math
from functools import partial
from pathlib import Path

import numpy as np

from moesr_arch.tools.common import OutputPlan, error_text, report_problems, run_parallel, standalone
from moesr_arch.tools.prepare.generate_lr import add_lr_arguments, bicubic_downscale, mod_crop
from moesr_arch.utils.image_io import ImageReadError, list_images, read_raw, write_png

# x2, x3 and x4 all divide the HR; the published bicubic figures of the SR literature are made this way.
CROP_MULTIPLE = 12


def crop_multiple(scales):
    """The multiple every HR image is cropped to: divisible by 12 and by every scale."""
    return math.lcm(CROP_MULTIPLE, *scales)


def targets(output, stem, scales):
    """``[HR path, LR path of each scale]`` of the HR image named ``stem`` under ``output``."""
    output = Path(output)
    return [output / 'HR' / f'{stem}.png'] + [output / 'LR_bicubic' / f'X{s}' / f'{stem}x{s}.png' for s in scales]


def holds(path, image):
    """Whether the file ``path`` holds exactly ``image`` (same size, channels, bit depth and pixels)."""
    try:
        existing = read_raw(path)
    except ImageReadError:
        return False
    return existing.dtype == image.dtype and existing.shape == image.shape and np.array_equal(existing, image)


def process_one(path, output, scales, compression):
    """Write (or reuse) the HR crop and LR images of ``path``; ``(written, reused, error)``."""
    try:
        image = read_raw(path)
        multiple = crop_multiple(scales)
        hr = mod_crop(image, multiple)
        if hr.size == 0:
            raise ValueError(f'{path}: {image.shape[1]}x{image.shape[0]} is smaller than one {multiple}x{multiple} '
                             'block (the HR is cropped to a multiple of it)')
        pictures = [hr] + [bicubic_downscale(hr, s) for s in scales]
        outputs = list(zip(targets(output, Path(path).stem, scales), pictures))
        reused = set()
        for target, picture in outputs:  # all checked before any is written: an image is done or untouched
            if target.exists():
                if not holds(target, picture):
                    raise ValueError(f'{target} is already there with other pixels than this command makes from '
                                     f'{path}; it is not replaced: remove it or give another --output')
                reused.add(target)
        for target, picture in outputs:
            if target not in reused:
                write_png(target, picture, compression)
    except Exception as error:  # one bad file must not stop the others; reported at the end
        return 0, 0, error_text(path, error)
    return len(outputs) - len(reused), len(reused), None


def prepare_benchmark(input_folder, output, scales=(2, 3, 4), n_thread=1, compression=3):
    """Write the benchmark layout of ``input_folder`` under ``output``; ``(written, reused, errors)`` (file counts,
    the failed images' messages)."""
    scales = sorted({int(s) for s in scales})
    if any(s < 2 for s in scales):
        raise ValueError(f'--scales must be integers of at least 2, got {scales}')
    paths = list_images(input_folder)
    plan = OutputPlan(paths)  # names collide before any work (a.png and a.jpg), or an output is an input
    for path in paths:
        for target in targets(output, path.stem, scales):
            plan.claim(target, path, '; rename one of them (names are kept, the extension becomes .png)')
    work = partial(process_one, output=output, scales=scales, compression=compression)
    results = run_parallel(work, paths, n_thread, 'prepare benchmark')
    return (sum(r[0] for r in results), sum(r[1] for r in results), [r[2] for r in results if r[2]])


def add_arguments(parser):
    add_lr_arguments(parser, 'folder of the HR images of one set',
                     "the set's folder, e.g. datasets/benchmark/Set5: writes HR/ and LR_bicubic/X<s>/ in it",
                     scale_flag='--scales')


def main(args):
    written, reused, failures = prepare_benchmark(args.input, args.output, args.scales, args.n_thread,
                                                  args.compression_level)
    total = len(list_images(args.input))
    kept = f', {reused} already there with the same pixels (kept)' if reused else ''
    return report_problems(failures, f'{{count}} of {total} image(s) failed; {written} file(s) written{kept}',
                           f'{total} image(s): {written} file(s) written{kept}; HR in {Path(args.output) / "HR"}, '
                           f'LR in {Path(args.output) / "LR_bicubic"}')


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
