"""Params, GMACs for a 1280x720 output and CPU throughput of the single-network experts."""
import time

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from bench import Table
from bench.measure import count_macs, count_params

EXPERTS = {
    'EDSR-baseline': lambda s: ARCH_REGISTRY.get('EDSR')(3, 3, num_feat=64, num_block=16, upscale=s),
    'VDSR': lambda s: ARCH_REGISTRY.get('VDSR')(upscale=s),
}


def throughput(net, lr_size, repeats):
    x = torch.rand(1, 3, *lr_size)
    with torch.no_grad():
        net(x)
        started = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return repeats / (time.perf_counter() - started)


def run(quick):
    rows = []
    lr_side = 16 if quick else 128
    for name, build in EXPERTS.items():
        for scale in (2, 4):
            net = build(scale).eval()
            out_h, out_w = (72, 128) if quick else (720, 1280)
            macs = count_macs(net, torch.rand(1, 3, out_h // scale, out_w // scale))
            rows.append([name, f'x{scale}', f'{count_params(net) / 1e3:.1f}K', f'{macs / 1e9:.1f}',
                         f'{throughput(net, (lr_side, lr_side), 1 if quick else 3):.2f}'])
    return [Table('Single-network experts', ['arch', 'scale', 'params', 'GMACs (1280x720 out)',
                                             f'CPU images/s (LR {lr_side}x{lr_side}, fp32, batch 1)'], rows,
                  ['RGB in and out; MACs of convolutions and linear layers (scripts/bench/measure.py).',
                   'Expected params: EDSR-baseline 1.37M (x2) / 1.52M (x4), VDSR 668K (RGB, 20 layers).'])]
