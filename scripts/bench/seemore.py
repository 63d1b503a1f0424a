"""Benchmark section: this SeemoRe against spandrel's (the official code) on the same weights, and model cost.

Run alone: ``python scripts/bench/seemore.py [--quick]`` (prints the Markdown tables).
"""
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (registration, torchvision shim)
from moesr_arch.archs.seemore_arch import SEEMORE_PRESETS, SeemoRe  # noqa: E402
from scripts.bench import Table  # noqa: E402

# Paper Table 1, SeemoRe-T (params, GMACs for a 1280x720 output); B and L are not in the notes we have.
PAPER_T = {2: ('220K', 45), 3: ('225K', 20), 4: ('232K', 12)}
LR_FOR_720P = {2: (360, 640), 3: (240, 427), 4: (180, 320)}


def machine():
    return f'{os.cpu_count()}-core CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}'


def _time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_table(quick):
    from spandrel.architectures.SeemoRe import SeemoRe as ReferenceSeemoRe
    torch.manual_seed(0)
    scale, variant = 4, 'T'
    ours = SeemoRe(scale=scale, variant=variant).eval()
    reference = ReferenceSeemoRe(scale=scale, **SEEMORE_PRESETS[variant]).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    lr_size = (24, 40) if quick else (180, 320)
    repeats = 1 if quick else 3
    rows = []
    with torch.inference_mode():
        for batch in (1, 8):
            images = torch.rand(batch, 3, *lr_size)

            def run_ours():
                return ours(images)

            def run_reference():
                # The official eval routing is valid for one image at a time: a batch is a loop.
                return torch.cat([reference(image[None]) for image in images])

            difference = (run_ours() - run_reference()).abs().max().item()  # also the warm-up
            ours_s = _time(run_ours, repeats)
            reference_s = _time(run_reference, repeats)
            rows.append([batch, f'{lr_size[1]}x{lr_size[0]}', round(reference_s, 3), round(ours_s, 3),
                         f'{reference_s / ours_s:.2f}x', round(batch / ours_s, 3), f'{difference:.1e}'])
    return Table(
        title=f'SeemoRe-{variant} x{scale} inference, CPU fp32: this plugin vs spandrel (official code)',
        headers=['batch', 'LR size', 'spandrel s/batch', 'moesr s/batch', 'speed-up', 'moesr images/s',
                 'max abs diff'],
        rows=rows,
        notes=[f'Machine: {machine()}; shared with other jobs, so absolute times are noisy; both networks are '
               f'timed in the same run on the same weights (median of {repeats}).',
               'spandrel batch 8 = 8 single-image calls: its (official) eval routing is only valid for batch 1.',
               'moesr: per-sample routing (images grouped by expert), weight-permuted channel shuffle, '
               'channels-last features with native layer norm.'])


def cost_table():
    rows = []
    for variant in SEEMORE_PRESETS:
        for scale in (2, 3, 4):
            model = SeemoRe(scale=scale, variant=variant)
            params = sum(p.numel() for p in model.parameters())
            lr_size = LR_FOR_720P[scale]
            gmacs = [model.count_macs(lr_size, pick) / 1e9 for pick in ('mean', 'min', 'max')]
            paper = PAPER_T.get(scale) if variant == 'T' else None
            rows.append([f'SeemoRe-{variant}', f'x{scale}', f'{params / 1e3:.1f}K', paper[0] if paper else '-',
                         round(gmacs[0], 2), f'{gmacs[1]:.2f}-{gmacs[2]:.2f}', paper[1] if paper else '-'])
    return Table(
        title='SeemoRe presets: parameters and GMACs for a 1280x720 output',
        headers=['model', 'scale', 'params', 'paper params', 'GMACs', 'GMACs range (expert choice)', 'paper GMACs'],
        rows=rows,
        notes=['GMACs: analytic count of convolution and linear multiply-accumulates (SeemoRe.count_macs), '
               'equal to a forward-hook count (moesr_arch.utils.macs.count_macs) for the experts actually taken. '
               'LR input 640x360 (x2), 427x240 (x3), 320x180 (x4).',
               'The cost depends on the routing: "GMACs" assumes every rank expert equally likely, the range '
               'spans always-smallest to always-largest rank. Paper figures: SeemoRe-T only (Table 1).'])


def run(quick):
    return [speed_table(quick), cost_table()]


if __name__ == '__main__':
    for table in run('--quick' in sys.argv):
        print(table.markdown())
