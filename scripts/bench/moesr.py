"""MoE-SR inference cost: sparse experts + blending against the background expert alone and against dense.

The image is random (the cost of these convolutional experts does not depend on content); the gate's
weights are K = 2 one-hot square regions, one per demo category, covering about 10%, 30% and 60% of the image.
Experts are the main job's (EDSR, 32 channels, 4 blocks, x2) with its fusion settings (dilation 4,
feather 8 HR px), and the crop margin at the experts' measured receptive-field radius, so the sparse
output equals the dense one (the table shows the largest difference). Gate times are the YOLO gate
(a yolov8n-seg network; untrained unless ``experiments/gate_demo/gate.pt`` exists: the time is the same) at
the input sizes the option files use (256 in test_moesr.yml, 640 in test_moesr_x4.yml).

Run alone: ``python scripts/bench/moesr.py [--quick]``.
"""
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench import Table  # noqa: E402

CATEGORIES = ['people', 'vehicle']  # the demo's (datasets/demo/categories.yml)
EXPERT = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_block': 4, 'upscale': 2}
COVERAGES = (0.1, 0.3, 0.6)


def interleaved(functions, repeats):
    """Median wall time (s) of each function, timed round-robin (so load changes hit all alike); last results."""
    results = [function() for function in functions]  # warm-up
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            results[index] = function()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], results


def timed(function, repeats):
    """Median wall time (s) of ``function()`` over ``repeats`` runs after one warm-up; and its last result."""
    result = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def square_regions(size, coverage, count):
    """``count`` equal squares in the image corners covering ``coverage`` of a ``size`` x ``size`` image."""
    side = int(round(size * (coverage / count)**0.5))
    corners = [(0, 0), (0, size - side), (size - side, 0), (size - side, size - side)]
    return [(y, y + side, x, x + side) for y, x in corners[:count]]


def gate_weights(size, coverage):
    weights = torch.zeros(1, len(CATEGORIES) + 1, size, size)
    weights[:, -1] = 1
    for index, (y0, y1, x0, x1) in enumerate(square_regions(size, coverage, len(CATEGORIES))):
        weights[:, :, y0:y1, x0:x1] = 0
        weights[:, index, y0:y1, x0:x1] = 1
    return weights


def build_net():
    from basicsr.archs import build_network

    from moesr_arch.archs.fusion import receptive_radius
    torch.manual_seed(0)
    margin = receptive_radius(build_network(dict(EXPERT)), EXPERT['upscale'])
    experts = {name: dict(EXPERT) for name in CATEGORIES + ['background']}
    net = build_network({'type': 'MoESRNet', 'experts': experts, 'categories': CATEGORIES, 'dilation': 4,
                         'feather': 8, 'crop_margin': margin})
    return net.eval(), margin


def expert_table(quick):
    from moesr_arch.archs.fusion import (blend_weights, covered_fraction, support_cores, support_mask)
    size, repeats = (64, 1) if quick else (512, 5)
    net, margin = build_net()
    lq = torch.rand(1, 3, size, size)
    rows = []
    with torch.no_grad():
        for coverage in COVERAGES:
            weights = gate_weights(size, coverage)
            real = float(weights[0, :-1].sum() / size**2)
            hr = blend_weights(weights, net.scale, net.dilation, net.feather)
            crops = sum(covered_fraction(support_cores(support_mask(hr[0, k], net.scale), margin), margin, size, size)
                        for k in range(len(CATEGORIES)))
            (single, blend, sparse, dense), (_, _, out_sparse, out_dense) = interleaved([
                lambda: net.experts['background'](lq),
                lambda: blend_weights(weights, net.scale, net.dilation, net.feather),
                lambda: net.run(lq, weights, sparse=True)['output'],
                lambda: net.run(lq, weights, sparse=False)['output']], repeats)
            rows.append([f'{100 * real:.0f}%', f'{100 * crops:.0f}%', single * 1e3, sparse * 1e3,
                         f'{sparse / single:.2f}x', dense * 1e3, f'{dense / single:.2f}x', blend * 1e3,
                         f'{float((out_sparse - out_dense).abs().max()):.1e}'])
    notes = [f'{machine()}; LR {size}x{size} -> HR {2 * size}x{2 * size}, median of {repeats} runs after a warm-up, '
             'the four measurements of a row taken in turn.',
             f'Experts: EDSR f32b4 x2 (the main job\'s), K = {len(CATEGORIES)} categories + background; '
             f'dilation 4 and feather 8 HR px; crop margin {margin} LR px (= the measured receptive-field radius, '
             'so sparse equals dense).',
             '"crops" is the share of the image the category experts run on (regions grown by the feathered edge '
             'and the margin), summed over the experts; sparse = background on the whole image + category experts '
             'on their crops + blending; dense = every expert on the whole image (K+1 times the single expert).',
             'Goal (issue 4): sparse <= 1.5x the single expert at 30% coverage. Margins cost relatively more on '
             'small images: the same regions on a smaller image give a larger ratio.']
    headers = ['coverage', 'crops', 'single expert ms', 'MoE-SR sparse ms', 'sparse / single', 'dense ms',
               'dense / single', 'blending ms', 'max |sparse - dense|']
    return Table('MoE-SR inference: sparse experts vs the background expert alone vs dense', headers, rows, notes)


def gate_table(quick):
    from moesr_arch.gating.yolo_gate import YOLOGate
    size, repeats = (64, 1) if quick else (512, 3)
    trained = ROOT / 'experiments' / 'gate_demo' / 'gate.pt'
    source = {'weights': str(trained), 'class_map': 'auto'} if trained.is_file() else \
        {'model': 'yolov8n-seg.yaml', 'class_map': 'coco'}
    lq = torch.rand(1, 3, size, size)
    rows = []
    for imgsz in ((160, ) if quick else (256, 640)):
        gate = YOLOGate(CATEGORIES, imgsz=imgsz, **source)
        seconds, _ = timed(lambda: gate(lq), repeats)
        rows.append(['YOLOGate (yolov8n-seg)', f'{size}x{size}', imgsz, seconds * 1e3])
    rows.append(['LabelGate', f'{size}x{size}', '-', timed(lambda: label_gate(lq), repeats)[0] * 1e3])
    notes = [f'{machine()}; the LR image is letterboxed to the detector input size; median of {repeats} runs.',
             f'Detector: {"experiments/gate_demo/gate.pt" if trained.is_file() else "yolov8n-seg.yaml, untrained"} '
             '(same cost as trained weights).']
    return Table('MoE-SR gate time per image', ['gate', 'LR image', 'detector input', 'ms'], rows, notes)


def label_gate(lq):
    from moesr_arch.gating import build_gate
    gate = build_gate({'type': 'LabelGate', 'categories': CATEGORIES})
    return gate(lq, {'category_map': torch.zeros(1, *lq.shape[-2:], dtype=torch.long)})


def machine():
    return f'CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), torch ' \
           f'{torch.__version__}, {torch.get_num_threads()} threads'


def run(quick=False):
    import moesr_arch  # noqa: F401  (registers the archs)
    return [expert_table(quick), gate_table(quick)]


if __name__ == '__main__':
    for table in run('--quick' in sys.argv):
        print(table.markdown())
