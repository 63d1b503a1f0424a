"""Make bicubic LR images (MATLAB-style) from an HR folder for one or more scales.

For each scale ``s`` every HR image is first cropped (bottom/right) to a multiple of ``s``, written as
``<output>/HR_mod/X<s>/<name>.png`` (the "mod" HR that pairs exactly with the LR), and downscaled with
``basicsr.utils.matlab_functions.imresize`` (MATLAB ``imresize(img, 1/s, 'bicubic')``, antialiased) to
``<output>/LR_bicubic/X<s>/<name>.png``. Names are kept, so BasicSR's ``filename_tmpl: '{}'`` pairs them.
Grey, RGBA and 16-bit images keep their channels and bit depth. ``--no_hr_mod`` writes the LR images only,
for HR images that are multiples of every scale already (DIV2K-style sub-images): there ``HR_mod`` would be a
copy of the HR folder. Files that exist already are replaced only with ``--overwrite`` (the run stops before
any work, saying how many and which), and an output folder inside the input folder is refused.
"""
import os
from functools import partial
from pathlib import Path

import numpy as np

from moesr_arch.tools.common import OutputPlan, error_text, report_problems, run_parallel, standalone
from moesr_arch.utils.image_io import list_images, read_raw, write_png


def mod_crop(image, scale):
    """``image`` cropped at the bottom/right to a multiple of ``scale`` in both directions."""
    h, w = image.shape[:2]
    return image[:h - h % scale, :w - w % scale]


def matlab_resize(image, factor):
    """MATLAB's ``imresize(image, factor, 'bicubic')`` (antialiased when shrinking) of a uint8/uint16 image,
    rounded back to its dtype: ``basicsr.utils.matlab_functions.imresize``, as BasicSR's scripts use it."""
    from basicsr.utils.matlab_functions import imresize
    peak = 65535. if image.dtype == np.uint16 else 255.
    resized = imresize(image.astype(np.float64) / peak, factor)
    return np.clip(np.round(resized * peak), 0, peak).astype(image.dtype)


def bicubic_downscale(image, scale):
    """MATLAB-style bicubic downscale by integer ``scale`` of a uint8/uint16 image, same dtype back."""
    return matlab_resize(image, 1 / scale)


def process_one(path, output, scales, compression, hr_mod=True):
    """Write the mod-cropped HR (unless not ``hr_mod``) and the LR of ``path`` for every scale; return
    ``(name, error)``."""
    try:
        image = read_raw(path)
        name = Path(path).stem + '.png'
        outputs = []  # computed for every scale first: an image too small for one scale writes nothing
        for scale in scales:
            hr = mod_crop(image, scale)
            if hr.shape[0] == 0 or hr.shape[1] == 0:
                raise ValueError(f'{path}: {image.shape[1]}x{image.shape[0]} is smaller than the scale {scale}')
            if hr_mod:
                outputs.append((Path(output) / 'HR_mod' / f'X{scale}' / name, hr))
            elif hr.shape != image.shape:  # the LR would pair with no HR on disk
                raise ValueError(f'{path}: {image.shape[1]}x{image.shape[0]} is not a multiple of the scale {scale}; '
                                 'leave out --no_hr_mod to write the cropped HR')
            outputs.append((Path(output) / 'LR_bicubic' / f'X{scale}' / name, bicubic_downscale(hr, scale)))
        for target, picture in outputs:
            write_png(target, picture, compression)
    except Exception as error:  # one bad file must not stop the others; reported at the end
        return str(path), error_text(path, error)
    return str(path), None


def plan_outputs(paths, output, scales, hr_mod=True, overwrite=False):
    """Check every target before any work: two HR images of one stem (``a.png``, ``a.jpg``) would write the
    same ``<name>.png``, an output must not replace an input, and files of an earlier run are replaced only
    when ``overwrite``. Returns the targets."""
    plan = OutputPlan(paths)
    targets = []
    for path in paths:
        for scale in scales:
            for kind in ('HR_mod', 'LR_bicubic') if hr_mod else ('LR_bicubic', ):
                targets.append(plan.claim(Path(output) / kind / f'X{scale}' / f'{Path(path).stem}.png', path,
                                          '; rename one of them (names are kept, the extension becomes .png)'))
    existing = [target for target in targets if target.exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{output}: {len(existing)} of the {len(targets)} files to write exist already (e.g. '
                              f'{existing[0]}); pass --overwrite to replace them, or give another -o')
    return targets


def check_output_folder(input_folder, output):
    """Refuse an output folder inside the input folder (or the input folder itself): the outputs would mix with
    the images they are made from."""
    inside, parent = Path(os.path.realpath(output)), Path(os.path.realpath(input_folder))
    if inside == parent or parent in inside.parents:
        raise ValueError(f'-o {output} is inside the input folder {input_folder}; give an output folder outside it')


def generate_lr(input_folder, output, scales=(2, 3, 4), n_thread=1, compression=3, hr_mod=True, overwrite=False):
    """Generate ``HR_mod/X<s>`` (unless not ``hr_mod``) and ``LR_bicubic/X<s>`` under ``output``; return error
    messages of failed images."""
    scales = [int(s) for s in scales]
    if any(s < 1 for s in scales):
        raise ValueError(f'scales must be positive integers, got {scales}')
    paths = list_images(input_folder)
    check_output_folder(input_folder, output)
    plan_outputs(paths, output, scales, hr_mod, overwrite)
    work = partial(process_one, output=output, scales=scales, compression=compression, hr_mod=hr_mod)
    return [error for _, error in run_parallel(work, paths, n_thread, 'generate_lr') if error]


def add_lr_arguments(parser, input_help, output_help, scale_flag='--scale'):
    """The arguments of the tools that make LR from a folder of HR images (``generate_lr``, ``benchmark``)."""
    parser.add_argument('-i', '--input', required=True, help=input_help)
    parser.add_argument('-o', '--output', required=True, help=output_help)
    parser.add_argument('-s', scale_flag, type=int, nargs='+', default=[2, 3, 4], help='scales (default: 2 3 4)')
    parser.add_argument('--n_thread', type=int, default=1, help='worker processes (default: 1)')
    parser.add_argument('--compression_level', type=int, default=3, help='PNG compression 0-9 (default: 3)')


def add_arguments(parser):
    add_lr_arguments(parser, 'folder of HR images', 'output root: writes LR_bicubic/X<s>/ and HR_mod/X<s>/ under it')
    parser.add_argument('--no_hr_mod', action='store_true',
                        help='write no HR_mod/ (the HR images are multiples of every scale; others are refused)')
    parser.add_argument('--overwrite', action='store_true', help='replace files an earlier run wrote under -o')


def main(args):
    failures = generate_lr(args.input, args.output, args.scale, args.n_thread, args.compression_level,
                           hr_mod=not args.no_hr_mod, overwrite=args.overwrite)
    total = len(list_images(args.input))
    done = f'the other {total - len(failures)} were written to {args.output}' if len(failures) < total else \
        'nothing was written'
    written = f'LR images in {Path(args.output) / "LR_bicubic"}'
    if not args.no_hr_mod:
        written += f', mod-cropped HR in {Path(args.output) / "HR_mod"}'
    return report_problems(failures, f'{{count}} of {total} image(s) failed; {done}', written)


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
