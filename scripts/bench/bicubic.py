"""Benchmark section: MATLAB-exact bicubic upsampling (the base of VDSR and BicubicResidual) against PyTorch's
``F.interpolate(mode='bicubic')`` on the CPU, and its distance from ``basicsr``'s ``imresize``.

Run alone: ``python scripts/bench/bicubic.py [--quick]``.
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (the torchvision shim basicsr needs)
from moesr_arch.utils.bicubic import matlab_upsample  # noqa: E402
from scripts.bench import Table  # noqa: E402
from scripts.bench.moesr import interleaved  # noqa: E402


def run(quick):
    from basicsr.utils.matlab_functions import imresize
    side = 64 if quick else 512
    repeats = 1 if quick else 15
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    rows = []
    with torch.inference_mode():
        for scale in (2, 4):
            (torch_time, matlab_time), (_, ours) = interleaved(
                [lambda: F.interpolate(image, scale_factor=scale, mode='bicubic', align_corners=False),
                 lambda: matlab_upsample(image, scale)], repeats)
            difference = (ours[0] - imresize(image[0], scale)).abs().max().item()
            rows.append([f'{side}x{side}', f'x{scale}', f'{torch_time * 1e3:.1f}', f'{matlab_time * 1e3:.1f}',
                         f'{matlab_time / torch_time:.2f}x', f'{difference:.1e}'])
    return [Table('MATLAB bicubic upsampling vs F.interpolate, CPU fp32, batch 1, RGB',
                  ['input', 'scale', 'F.interpolate bicubic (ms)', 'matlab_upsample (ms)', 'ratio',
                   'max abs difference from basicsr imresize'], rows,
                  [f'median of {repeats} runs each, timed round-robin; {torch.get_num_threads()} torch threads.',
                   'Goal: at most 1.5x F.interpolate (moesr_arch/utils/bicubic.py says how it is done).'])]


if __name__ == '__main__':
    for table in run('--quick' in sys.argv):
        print(table.markdown())
