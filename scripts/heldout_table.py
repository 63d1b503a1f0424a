"""Held-out photos: trained demo models beside bicubic, as a markdown table.

For each model and scale, every photo of the held-out set (``datasets/demo/heldout``: real photos that no
recipe trains or is tuned on) is super-resolved from its LR file (``LR_bicubic/X<s>``, MATLAB-style
bicubic) by whole-image inference (what ``basicsr infer --tile 0`` does: the network in-process, output
rounded to 8 bits) and compared with its HR photo; bicubic is MATLAB-style ``imresize`` of the same LR file
(``basicsr.utils.matlab_functions.imresize``). PSNR-Y and SSIM-Y (border = scale) are means over the photos;
colour bias (:func:`moesr_arch.metrics.color_bias_metric.calculate_color_bias`, grey levels: the largest
per-channel mean difference, output vs HR) is given as mean and max over the photos.

Usage::

    python scripts/heldout_table.py                                  # the four demo recipes, trained
    python scripts/heldout_table.py edsr_demo moeisr_demo            # recipe names
    python scripts/heldout_table.py experiments/demo_EDSR_x2_f32b4   # an experiment folder (its option copy)
    python scripts/heldout_table.py options/test_edsr_demo.yml       # an option file (path.pretrain_network_g)
    python scripts/heldout_table.py options/train_edsr_demo.yml:experiments/x/models/net_g_1000.pth

A recipe name ``R`` is ``options/train_R.yml`` with the weights of its run,
``experiments/<name>/models/net_g_latest.pth``; a train option file without ``pretrain_network_g`` also
takes those. Weights are ``params_ema`` when the checkpoint has them (training with EMA), else ``params``.
Scales: the option file's ``scale``; arbitrary-scale networks (MoEISR) the scales of their held-out
validation sets, else 2, 3 and 4 (``--scales`` overrides both).
"""
import argparse
import copy
import glob
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (BasicSR compatibility shim, registers the archs and metrics)

DEMO_RECIPES = ('edsr_demo', 'vdsr_demo', 'seemore_demo', 'moeisr_demo')


class TableError(RuntimeError):
    pass


def resolve(spec):
    """``(label, option file, weights or None)`` of one command-line model."""
    weights = None
    if ':' in spec and not os.path.exists(spec):
        spec, weights = spec.rsplit(':', 1)
    if os.path.isdir(spec):  # an experiment folder: BasicSR copies the option file into it
        options = sorted(glob.glob(os.path.join(spec, '*.yml')))
        if not options:
            raise TableError(f'{spec}: no option file (*.yml) in this folder')
        weights = weights or os.path.join(spec, 'models', 'net_g_latest.pth')
        return os.path.basename(os.path.normpath(spec)), options[0], weights
    if not spec.endswith(('.yml', '.yaml')):
        option_file = ROOT / 'options' / f'train_{spec}.yml'
        if not option_file.is_file():
            raise TableError(f'{spec}: not a recipe name (no {option_file.relative_to(ROOT)}), option file or folder')
        return spec, str(option_file), weights
    return Path(spec).stem.removeprefix('train_').removeprefix('test_'), spec, weights


def load_model(option_file, weights):
    """``(network, scale or None, options, weights)``: the trained ``network_g`` in eval mode on the CPU."""
    import torch
    from basicsr.archs import build_network

    from moesr_arch.options import load_options, resolve_derived_options
    from moesr_arch.utils.checkpoint import load_weights
    opt = resolve_derived_options(load_options(option_file), option_file)
    path_opt = opt.get('path') or {}
    weights = weights or path_opt.get('pretrain_network_g')
    if not weights and opt.get('name'):
        weights = os.path.join(ROOT, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
    if not weights or not os.path.isfile(weights):
        raise TableError(f'{option_file}: no trained weights ({weights}); train it first: '
                         f'basicsr train -opt {option_file}')
    network = build_network(copy.deepcopy(opt['network_g']))
    state = torch.load(weights, map_location='cpu', weights_only=True)
    key = 'params_ema' if isinstance(state, dict) and 'params_ema' in state else (path_opt.get('param_key_g') or 'params')
    load_weights(network, weights, key)
    return network.eval(), opt.get('scale', opt['network_g'].get('upscale')), opt, weights


def model_scales(network, scale, opt, heldout):
    from moesr_arch.inference import describe
    if not describe(network).arbitrary_scale:
        return [int(scale)]
    own = []
    for key, dataset in (opt.get('datasets') or {}).items():
        if not str(key).startswith('train') and 'heldout' in str(dataset.get('name', '')) and dataset.get('scale'):
            own.append(dataset['scale'])
    return sorted(set(own)) or [2, 3, 4]


def photos(heldout, scale):
    """``[(name, HR uint8 BGR, LR uint8 BGR)]`` of the held-out set at ``scale``."""
    import cv2

    from moesr_arch.utils.image_io import list_images
    hr_dir, lr_dir = Path(heldout) / 'HR', Path(heldout) / 'LR_bicubic' / f'X{scale:g}'
    names = [p.name for p in list_images(hr_dir, allow_empty=True)] if hr_dir.is_dir() else []
    if not names:
        raise TableError(f'{hr_dir}: no photos; build them: python scripts/data_preparation/make_demo_dataset.py')
    if not lr_dir.is_dir():
        raise TableError(f'{lr_dir}: no LR files at x{scale:g}')
    return [(name, cv2.imread(str(hr_dir / name)), cv2.imread(str(lr_dir / name))) for name in names]


def metrics(output, hr, scale):
    from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim

    from moesr_arch.metrics.color_bias_metric import calculate_color_bias
    if output.shape != hr.shape:
        raise TableError(f'output {output.shape} does not match the HR photo {hr.shape}')
    crop = int(round(scale))
    return (calculate_psnr(output, hr, crop, test_y_channel=True), calculate_ssim(output, hr, crop, test_y_channel=True),
            calculate_color_bias(output, hr, crop))


def bicubic(lr, scale):
    import numpy as np
    from basicsr.utils.matlab_functions import imresize
    out = imresize(lr.astype(np.float32) / 255., scale)
    return np.clip(np.round(out * 255.), 0, 255).astype(np.uint8)


def evaluate(network, scale, model_scale, images):
    """Per-photo ``(psnr, ssim, bias)`` of the model and of bicubic, and the seconds the model took."""
    from moesr_arch.inference import Upscaler, describe
    upscaler = Upscaler(network, model_scale or scale, device='cpu', precision='fp32', tile=0, progress=False,
                        out_scale=scale if describe(network).arbitrary_scale else None)
    model_rows, bicubic_rows, seconds = [], [], 0.
    for _, hr, lr in images:
        start = time.perf_counter()
        output, _ = upscaler.upscale_array(lr, 255.)
        seconds += time.perf_counter() - start
        model_rows.append(metrics(output, hr, scale))
        bicubic_rows.append(metrics(bicubic(lr, scale), hr, scale))
    return model_rows, bicubic_rows, seconds


def summary(rows):
    psnr = float(sum(r[0] for r in rows) / len(rows))
    ssim = float(sum(r[1] for r in rows) / len(rows))
    biases = [r[2] for r in rows]
    return psnr, ssim, sum(biases) / len(biases), max(biases)


HEADER = ('| model | scale | PSNR-Y (dB) model / bicubic | gain (dB) | SSIM-Y model / bicubic | '
          'colour bias model: mean / max | colour bias bicubic: max | photos beating bicubic |\n'
          '|---|---|---|---|---|---|---|---|')


def table(specs, heldout, scales=None, out=print):
    """Print (``out``) the markdown table of ``specs``; returns its rows as dicts."""
    out(HEADER)
    results = []
    for spec in specs:
        label, option_file, weights = resolve(spec)
        network, model_scale, opt, weights = load_model(option_file, weights)
        for scale in scales or model_scales(network, model_scale, opt, heldout):
            images = photos(heldout, scale)
            model_rows, bicubic_rows, seconds = evaluate(network, scale, model_scale, images)
            m, b = summary(model_rows), summary(bicubic_rows)
            wins = int(sum(mr[0] > br[0] for mr, br in zip(model_rows, bicubic_rows)))
            row = {'model': label, 'option_file': option_file, 'weights': weights, 'scale': scale,
                   'psnr': m[0], 'ssim': m[1], 'bias_mean': m[2], 'bias_max': m[3],
                   'bicubic_psnr': b[0], 'bicubic_ssim': b[1], 'bicubic_bias_max': b[3],
                   'wins': wins, 'photos': len(images), 'seconds': seconds}
            results.append(row)
            out(f'| {label} | x{scale:g} | {m[0]:.2f} / {b[0]:.2f} | {m[0] - b[0]:+.2f} | {m[1]:.4f} / {b[1]:.4f} | '
                f'{m[2]:.2f} / {m[3]:.2f} | {b[3]:.2f} | {wins} of {len(images)} |')
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('models', nargs='*', help=f'recipe names, option files, experiment folders or '
                        f'OPTIONS.yml:WEIGHTS.pth (default: {" ".join(DEMO_RECIPES)})')
    parser.add_argument('--heldout', default=str(ROOT / 'datasets' / 'demo' / 'heldout'),
                        help='folder with HR/ and LR_bicubic/X<s>/ (default: datasets/demo/heldout)')
    parser.add_argument('--scales', type=float, nargs='+', help='scales to test (default: the model\'s own)')
    args = parser.parse_args(argv)
    import torch
    torch.set_grad_enabled(False)
    try:
        table(args.models or list(DEMO_RECIPES), args.heldout, args.scales)
    except TableError as error:
        sys.exit(f'heldout_table.py: {error}')


if __name__ == '__main__':
    main()
