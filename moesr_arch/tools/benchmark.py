"""Test a model on the standard SR test sets and print the paper-style table (bicubic and published figures beside it).

The model is a weights file (``--model FILE``: the arch is recognised from the weights) or an option file
(``-opt FILE``: ``network_g``, ``scale``, ``path.pretrain_network_g``, and the gate of MoE-SR). Every set of
Set5, Set14, B100, BSD68, Urban100 and Manga109 found under ``--root`` (or those named by ``--sets``) is
run, image by image, through the pipeline of ``basicsr infer``: ``<root>/<Set>/HR/<name>.png`` against
``LR_bicubic/X<s>/<name>x<s>.png`` (``<name>_LRBI_x<s>.png`` and ``<name>.png`` are read too), the layout
``basicsr prepare benchmark`` writes.

Scores are BasicSR's ``calculate_psnr`` / ``calculate_ssim`` on Y (BT.601), border = scale, on the output
rounded to 8 bits as a written PNG would be (grey images as three equal channels, as ``basicsr test`` reads
them). Bicubic is computed the same way on the same LR (MATLAB's bicubic upscaling); published figures of
the arch come from :mod:`moesr_arch.tools.published`. Scales: the network's own; ``--scale`` may ask for
others from networks whose weights serve any scale (VDSR) and arbitrary-scale networks (MoEISR).

The table is printed and written as ``table.md`` and ``table.json`` in ``--output`` (default:
``results/benchmark/<name>_<time>``); files already there are never replaced.
"""
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moesr_arch.errors import UserError
from moesr_arch.tools.common import add_speed_arguments, get_tool_logger, standalone
from moesr_arch.utils.atomic import atomic_write_text, check_writable
from moesr_arch.utils.image_io import list_images, peak_value, read_raw, split_channels

# The sets of the SR literature, in the order papers print them. BSD68 holds 68 of B100's 100 images.
STANDARD_SETS = ('Set5', 'Set14', 'B100', 'BSD68', 'Urban100', 'Manga109')
# LR names, first found wins: BasicSR's benchmark packages, their Manga109, and `prepare generate_lr`'s.
LR_NAMES = ('{stem}x{scale}.png', '{stem}_LRBI_x{scale}.png', '{stem}.png')
# Published figures are on B100; shown beside BSD68 only with this mark and its note.
OTHER_SET_MARK = '†'
OTHER_SET_NOTE = (f'{OTHER_SET_MARK} published on B100 (100 images); BSD68 holds 68 of them, so the two figures '
                  'are not of the same set and do not compare as equal.')


class BenchmarkError(UserError):
    """A benchmark that cannot run as asked (no sets, a scale the model cannot serve, an output already there)."""


def make_hint(root, name):
    return (f'make it with: basicsr prepare benchmark --input <its HR images> --output {Path(root) / name} '
            '(datasets/README.md says where to get each set)')


def find_sets(root, requested=None, logger=None):
    """The set folders to run, in the papers' order: those of ``requested`` (default: the standard sets)
    that hold an ``HR`` folder under ``root``; one warning names the requested ones that are missing."""
    root = Path(root)
    names = list(requested or STANDARD_SETS)
    names = [n for n in STANDARD_SETS if n in names] + [n for n in names if n not in STANDARD_SETS]
    present = [name for name in names if (root / name / 'HR').is_dir()]
    missing = [name for name in names if name not in present]
    if not present:
        raise BenchmarkError(f'no {" or ".join(names)} under {root} (each needs <Set>/HR and <Set>/LR_bicubic/X<s>); '
                             f'{make_hint(root, "<Set>")}')
    if missing and requested and logger:
        logger.warning(f'not under {root}: {", ".join(missing)}; '
                       f'{make_hint(root, missing[0] if len(missing) == 1 else "<Set>")}')
    return [(name, root / name) for name in present]


def pairs_of(set_dir, scale):
    """``[(HR path, LR path)]`` of one set at ``scale``; None when the set has no ``LR_bicubic/X<scale>``."""
    lr_dir = Path(set_dir) / 'LR_bicubic' / f'X{scale}'
    if not lr_dir.is_dir():
        return None
    pairs = []
    for hr in list_images(Path(set_dir) / 'HR'):
        candidates = [lr_dir / pattern.format(stem=hr.stem, scale=scale) for pattern in LR_NAMES]
        lr = next((c for c in candidates if c.is_file()), None)
        if lr is None:
            raise BenchmarkError(f'{hr}: no LR {candidates[0].name} in {lr_dir}')
        pairs.append((hr, lr))
    return pairs


def y_scores(hr, sr, scale):
    """``(PSNR, SSIM)`` on Y of two images as stored (uint8/uint16, grey or colour), border = ``scale``."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    a, b = (split_channels(image)[0].astype(np.float64) * (255. / peak_value(image)) for image in (hr, sr))
    options = dict(crop_border=scale, input_order='HWC', test_y_channel=True)
    return float(calculate_psnr(a, b, **options)), float(calculate_ssim(a, b, **options))


def bicubic_upscale(lr, scale):
    """MATLAB's bicubic upscaling of an LR image as stored, rounded to its bit depth (grey as 3 channels)."""
    from moesr_arch.tools.prepare.generate_lr import matlab_resize
    return matlab_resize(split_channels(lr)[0], scale)


def score_image(upscaler, hr_path, lr_path, scale):
    """``{name, psnr, ssim, bicubic_psnr, bicubic_ssim}`` of one HR/LR pair."""
    lr, hr = read_raw(lr_path), read_raw(hr_path)
    if (hr.shape[0] // scale, hr.shape[1] // scale) != lr.shape[:2]:
        raise BenchmarkError(f'LR {lr_path} is {lr.shape[1]}x{lr.shape[0]} but HR {hr_path} is '
                             f'{hr.shape[1]}x{hr.shape[0]}: not its x{scale} LR')
    hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]  # as BasicSR's datasets crop an HR not a multiple of s
    sr, _ = upscaler.upscale_file(lr_path)
    psnr, ssim = y_scores(hr, sr, scale)
    bicubic_psnr, bicubic_ssim = y_scores(hr, bicubic_upscale(lr, scale), scale)
    return dict(name=hr_path.name, psnr=psnr, ssim=ssim, bicubic_psnr=bicubic_psnr, bicubic_ssim=bicubic_ssim)


class Model:
    """The model under test: its networks per scale (built before any image runs), name and published rows.

    Args:
        args: The command line (``model`` or ``opt``, ``scale``, ``device``, ``precision``, ``tile``,
            ``channels_last``, ``compile``).
    """

    def __init__(self, args):
        from moesr_arch.inference import describe, load_gate
        from moesr_arch.tools.published import published_model
        self.args = args
        self.source = args.opt or args.model
        network, scale, info = self.load(args.scale[0] if args.scale and not args.opt else None)
        capabilities = describe(network)
        self.arch = type(network).__name__
        self.published = published_model(network)
        self.gate = load_gate(info, args.opt) if args.opt and capabilities.kind == 'gated' else None
        if args.opt:
            self.name = info.get('name') or Path(args.opt).stem
            self.description = f'{self.arch} of {args.opt}'
        else:
            self.name, self.description = Path(args.model).stem, str(info)
        self.scales = list(args.scale or ([scale] if not capabilities.arbitrary_scale else [2, 3, 4]))
        self.upscalers = {s: self.upscaler(network, scale, capabilities, s) for s in self.scales}

    def load(self, scale):
        """``(network, its scale, options or description)`` for ``scale`` (None: the file's own)."""
        if self.args.opt:
            from moesr_arch.inference import build_from_options
            return build_from_options(self.args.opt, scale=scale)
        from moesr_arch.inference.detect import build_from_model_file
        return build_from_model_file(self.args.model, scale=scale)

    def upscaler(self, network, scale, capabilities, wanted):
        from moesr_arch.inference import Upscaler
        if not capabilities.arbitrary_scale and float(wanted) != float(scale):
            try:  # the same weights built for another scale: they fit only if no layer depends on the scale
                network, scale, _ = self.load(wanted)
            except UserError:  # the weights do not fit (the file itself loaded a moment ago)
                raise BenchmarkError(
                    f'{self.source}: --scale {wanted}: {self.arch} upscales x{scale} and its weights do not fit a '
                    f'x{wanted} network; only networks whose weights serve every scale (VDSR) and arbitrary-scale '
                    'networks (MoEISR) run at other scales') from None
        return Upscaler(network, scale, self.args.device, self.args.precision, self.args.tile,
                        out_scale=wanted if capabilities.arbitrary_scale else None, progress=False, gate=self.gate,
                        channels_last=self.args.channels_last, compile=self.args.compile)


def plan_runs(model, sets, logger):
    """``[(set name, scale, [(HR, LR)])]``, every pair found before any image runs; a set without the LR of a
    scale is left out with a warning saying how to make it."""
    runs = []
    for name, folder in sets:
        for scale in model.scales:
            pairs = pairs_of(folder, scale)
            if pairs is None:
                logger.warning(f'{folder} has no LR_bicubic/X{scale}: {name} x{scale} left out; make it with: basicsr '
                               f'prepare benchmark --input {folder / "HR"} --output {folder} --scales {scale}')
            else:
                runs.append((name, scale, pairs))
    if not runs:
        raise BenchmarkError(f'no set has the LR of x{", x".join(map(str, model.scales))}')
    return runs


def run(model, runs):
    """``[{set, scale, images, psnr, ssim, bicubic_psnr, bicubic_ssim, seconds, per_image}]`` of ``plan_runs``."""
    results = []
    for name, scale, pairs in runs:
        start, rows = time.time(), []
        # Quiet when not a terminal (disable=None): logs of batch jobs get the table, not progress bars.
        for hr, lr in tqdm(pairs, desc=f'{name} x{scale}', unit='img', disable=None, leave=False):
            rows.append(score_image(model.upscalers[scale], hr, lr, scale))
        mean = {key: float(np.mean([row[key] for row in rows])) for key in ('psnr', 'ssim', 'bicubic_psnr',
                                                                           'bicubic_ssim')}
        results.append(dict(set=name, scale=scale, images=len(rows), **mean, seconds=round(time.time() - start, 2),
                            per_image=rows))
    return results


def cell(psnr, ssim):
    return f'{psnr:.2f} / {ssim:.4f}' if ssim is not None else f'{psnr:.2f} / -'


def table_markdown(model, results):
    """The paper-style table: one column per set, per scale the rows bicubic (measured), bicubic (published),
    the model, and the arch's published figures; the sources below it."""
    from moesr_arch.tools.published import published_rows
    sets = list(dict.fromkeys(r['set'] for r in results))
    measured = {(r['set'], r['scale']): r for r in results}
    sources, marked = [], False

    def published_line(row):
        nonlocal marked
        if row.source not in sources:
            sources.append(row.source)
        cells = []
        for name in sets:
            figure = row.figures.get('B100' if name == 'BSD68' else name)
            if figure is not None and name == 'BSD68':
                marked = True
            cells.append('-' if figure is None else cell(*figure) + (OTHER_SET_MARK if name == 'BSD68' else ''))
        return f'| | {row.label}, published [{sources.index(row.source) + 1}] | ' + ' | '.join(cells) + ' |'

    def count(name):
        sizes = {r['images'] for r in results if r['set'] == name}
        return f'{name} ({"/".join(map(str, sorted(sizes)))} images{", not B100" if name == "BSD68" else ""})'

    lines = [f'# {model.name} on the standard SR test sets', '',
             f'{model.description}. PSNR (dB) / SSIM on Y (BT.601), border = scale; outputs rounded to 8 bits as '
             'written; bicubic is MATLAB\'s bicubic upscaling of the same LR files, measured here.', '',
             '| scale | method | ' + ' | '.join(count(name) for name in sets) + ' |',
             '|---|---|' + '---|' * len(sets)]
    for scale in model.scales:
        def measured_line(label, key):
            cells = [cell(measured[(n, scale)][f'{key}psnr'], measured[(n, scale)][f'{key}ssim'])
                     if (n, scale) in measured else '-' for n in sets]
            return f'| {label} | ' + ' | '.join(cells) + ' |'
        if not any((n, scale) in measured for n in sets):
            continue
        lines.append(measured_line(f'x{scale:g} | bicubic', 'bicubic_'))
        lines += [published_line(row) for row in published_rows('bicubic', scale)]
        lines.append(measured_line(f' | **{model.name}** ({model.arch})', ''))
        lines += [published_line(row) for row in published_rows(model.published, scale)] if model.published else []
    lines.append('')
    if model.published is None:
        lines.append(f'No published figures of this {model.arch} configuration are known '
                     '(moesr_arch/tools/published.py).')
    elif not any(published_rows(model.published, s) for s in model.scales):
        lines.append(f'No published figures of {model.published} at these scales are known '
                     '(moesr_arch/tools/published.py).')
    lines += [f'[{i + 1}] {source}' for i, source in enumerate(sources)]
    if marked:
        lines.append(OTHER_SET_NOTE)
    return '\n'.join(lines) + '\n'


def plan_output(args, name):
    """``(markdown path, JSON path)``; stops before any image runs when either is already there."""
    folder = Path(args.output or Path('results') / 'benchmark' / f'{name}_{time.strftime("%Y%m%d_%H%M%S")}')
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f'--output {folder}: is a file, not a folder')
    paths = folder / 'table.md', folder / 'table.json'
    for path in paths:
        if path.exists():
            raise BenchmarkError(f'{path} is already there (from an earlier run?); it is never replaced: give '
                                 'another --output or move it')
    check_writable(folder)
    return paths


def add_arguments(parser):
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--model', help='weights file (.pth / .safetensors); the arch is recognised from the weights')
    which.add_argument('-opt', help='option file naming network_g, scale and the weights (MoE-SR: and its gate)')
    parser.add_argument('--scale', type=int, nargs='+',
                        help='scales (default: the network\'s own; 2 3 4 for arbitrary-scale networks); others than '
                        'the network\'s own need weights that serve every scale (VDSR) or an arbitrary-scale network')
    parser.add_argument('--sets', nargs='+', help=f'sets to run (default: those of {", ".join(STANDARD_SETS)} '
                        'found under --root)')
    parser.add_argument('--root', default='datasets/benchmark', help='folder of the sets (default: datasets/benchmark)')
    parser.add_argument('--output', help='folder for table.md and table.json (default: '
                        'results/benchmark/<name>_<time>); files there are never replaced')
    parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels for large images (default: 0, '
                        'each image whole)')
    parser.add_argument('--device', default='auto', help="'auto', 'cpu' or 'cuda[:i]' (default: auto)")
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'fp16', 'auto'), default='fp32',
                        help='fp32 (default: the figures papers report) or a faster half precision')
    add_speed_arguments(parser)


def main(args):
    import moesr_arch  # noqa: F401  (registers the package's archs)
    logger = get_tool_logger()
    model = Model(args)  # weights, gate and every scale's network before any image runs
    runs = plan_runs(model, find_sets(args.root, args.sets, logger), logger)
    markdown_path, json_path = plan_output(args, model.name)
    results = run(model, runs)
    markdown = table_markdown(model, results)
    from moesr_arch.tools.published import published_rows
    report = dict(model=model.name, arch=model.arch, description=model.description, source=str(model.source),
                  published_model=model.published, scales=model.scales,
                  protocol='PSNR (dB) / SSIM on Y (BT.601), border = scale, 8-bit outputs; LR_bicubic of --root',
                  results=results,
                  published=[dict(label=row.label, scale=row.scale, source=row.source, figures=row.figures)
                             for name in ('bicubic', model.published) if name
                             for scale in model.scales for row in published_rows(name, scale)])
    atomic_write_text(json_path, json.dumps(report, indent=1) + '\n')
    atomic_write_text(markdown_path, markdown)
    print(markdown)
    logger.info(f'table written to {markdown_path} and {json_path}')
    return 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
