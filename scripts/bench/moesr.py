"""MoE-SR inference cost: top-1 sparse experts + blending against the background expert alone, against the
sparse path that runs the background expert on the whole image, and against dense.

The image is random (the cost of these convolutional experts does not depend on content); the gate's
weights are K = 2 one-hot rectangles in opposite corners, one per demo category, covering about 10%, 30% and 60% of the image.
Experts are the main job's (EDSR, 32 channels, 4 blocks, x2) with its fusion settings (dilation 4,
feather 8 HR px), and the crop margin at the experts' measured receptive-field radius, so the sparse
output equals the dense one (the table shows the largest difference). Gate times are the YOLO gate
(a yolov8n-seg network; untrained unless ``experiments/gate_demo/gate.pt`` exists: the time is the same) at
the input sizes the option files use (256 in test_moesr.yml, 640 in test_moesr_x4.yml; 640 is also the
YOLOGate default, which the expert table's total column adds).

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


def object_regions(size, coverage, count):
    """``count`` disjoint equal rectangles in opposite corners covering ``coverage`` of a ``size`` x ``size``
    image: each ``size * sqrt(coverage)`` high and ``1 / count`` of that wide (side by side they would
    make one square of the coverage), so 60% is reached without overlap."""
    height = int(round(size * coverage**0.5))
    width = int(round(size * coverage / count / (height / size)))
    corners = [(0, 0), (size - height, size - width), (0, size - width), (size - height, 0)]
    return [(y, y + height, x, x + width) for y, x in corners[:count]]


def gate_weights(size, coverage):
    weights = torch.zeros(1, len(CATEGORIES) + 1, size, size)
    weights[:, -1] = 1
    for index, (y0, y1, x0, x1) in enumerate(object_regions(size, coverage, len(CATEGORIES))):
        weights[:, :, y0:y1, x0:x1] = 0
        weights[:, index, y0:y1, x0:x1] = 1
    return weights


def build_net():
    from basicsr.archs import build_network

    from moesr_arch.archs.sparse_crops import receptive_radius
    torch.manual_seed(0)
    margin = receptive_radius(build_network(dict(EXPERT)), EXPERT['upscale'])
    experts = {name: dict(EXPERT) for name in CATEGORIES + ['background']}
    net = build_network({'type': 'MoESRNet', 'experts': experts, 'categories': CATEGORIES, 'dilation': 4,
                         'feather': 8, 'crop_margin': margin})
    return net.eval(), margin


def background_whole(net, lq, weights):
    """The sparse path before issue 14, for comparison: the background expert on the whole image, each
    category expert on the boxes of its support (the same boxes as the top-1 path), blended in place."""
    from moesr_arch.archs.fusion import blend_weights
    from moesr_arch.archs.sparse_crops import run_on_boxes, support_boxes, support_mask
    s = net.scale
    hr = blend_weights(weights, s, net.dilation, net.feather)
    output = net.experts['background'](lq) * hr[:, -1:]
    for index, name in enumerate(net.categories):
        boxes = [(i, core) for i, weight in enumerate(hr)
                 for core in support_boxes(support_mask(weight[index], s), net.crop_margin)]
        for i, (y0, y1, x0, x1), patch in run_on_boxes(net.experts[name], lq, boxes, s, net.crop_margin, net.max_batch):
            output[i, :, y0 * s:y1 * s, x0 * s:x1 * s] += patch * hr[i, index, y0 * s:y1 * s, x0 * s:x1 * s]
    return output


def computed_pixels(net, weights, size, tile_size=0):
    """LR pixels the experts compute (windows with margins, as batched), in images: (bg whole, top-1)."""
    from moesr_arch.archs.fusion import blend_weights
    from moesr_arch.archs.sparse_crops import split_cores, support_boxes, support_mask
    from scripts.bench.measure import computed_share
    hr = blend_weights(weights, net.scale, net.dilation, net.feather)
    shares = [computed_share([(0, core) for core in split_cores(
        support_boxes(support_mask(hr[0, k], net.scale), net.crop_margin), tile_size)], net.crop_margin, size, size,
        net.max_batch) for k in range(len(net.names))]
    return 1 + sum(shares[:-1]), sum(shares)


def expert_table(quick, gate_ms, gate_imgsz):
    from moesr_arch.archs.fusion import blend_weights
    size, repeats, tile = (64, 1, 32) if quick else (512, 3, 256)
    net, margin = build_net()
    lq = torch.rand(1, 3, size, size)
    rows = []
    with torch.no_grad():
        for coverage in COVERAGES:
            weights = gate_weights(size, coverage)
            real = float(weights[0, :-1].sum() / size**2)
            whole_pixels, top1_pixels = computed_pixels(net, weights, size)
            times, outputs = interleaved([
                lambda: net.experts['background'](lq),
                lambda: blend_weights(weights, net.scale, net.dilation, net.feather),
                lambda: background_whole(net, lq, weights),
                lambda: net.run(lq, weights, sparse=True)['output'],
                lambda: net.run(lq, weights, sparse=False)['output'],
                lambda: net.run(lq, None, sparse=True, tile_size=tile)['output'],  # the single expert, tiled
                lambda: net.run(lq, weights, sparse=True, tile_size=tile)['output']], repeats)
            single, blend, whole, top1, dense, single_tiled, top1_tiled = times
            difference = max(float((outputs[i] - outputs[4]).abs().max()) for i in (2, 3, 6))
            rows.append([f'{100 * real:.0f}%', f'{whole_pixels:.2f} / {top1_pixels:.2f}', single * 1e3, whole * 1e3,
                         f'{whole / single:.2f}x', top1 * 1e3, f'{top1 / single:.2f}x', dense * 1e3,
                         f'{dense / single:.2f}x', blend * 1e3, f'{top1_tiled / single_tiled:.2f}x',
                         (gate_ms + top1 * 1e3), f'{(gate_ms + top1 * 1e3) / (single * 1e3):.2f}x',
                         f'{difference:.1e}'])
    notes = [f'{machine()}; LR {size}x{size} -> HR {2 * size}x{2 * size}, median of {repeats} runs after a warm-up, '
             'the measurements of a row taken in turn.',
             f'Experts: EDSR f32b4 x2 (the main job\'s), K = {len(CATEGORIES)} categories + background; '
             f'dilation 4 and feather 8 HR px; crop margin {margin} LR px (= the measured receptive-field radius, '
             'so every sparse path equals dense; the last column is the largest difference of any of them).',
             '"pixels computed": LR pixels the experts run on (crops with their margins, as batched), in images, '
             'for the sparse path with the background on the whole image / for top-1 (every expert, the '
             'background included, only on boxes covering its weight\'s support: each pixel about once, plus the '
             'feathered seams and the margins).',
             '"bg whole" = the sparse path before issue 14 (background expert on the whole image, category experts '
             'on their crops; `background_whole` in scripts/bench/moesr.py); top-1 = `MoESRNet.run(sparse=True)`; '
             'dense = every expert on the whole image (K+1 times the single expert).',
             f'"both tiled {tile}": top-1 with tile_size {tile} against the single expert cut into the same '
             f'{tile}-px tiles with the same margins (`run(lq, None, sparse=True, tile_size={tile})`): on this CPU '
             'smaller crops run faster per pixel (their activations stay in cache), so the whole-image single '
             'expert is the slower yardstick; this column compares like with like.',
             f'Total = YOLOGate (yolov8n-seg) at its default detector input {gate_imgsz} ({gate_ms:.0f} ms in this '
             'run) + top-1 experts and blend.',
             'Goal (issue 14): top-1 <= 1.15x the single expert at 10%, 30% and 60% coverage (experts and blend).']
    headers = ['coverage', 'pixels computed (bg whole / top-1)', 'single expert ms', 'bg whole ms', 'bg whole / single',
               'top-1 ms', 'top-1 / single', 'dense ms', 'dense / single', 'blending ms',
               f'top-1 / single, both tiled {tile}', 'total ms (gate + top-1)', 'total / single',
               'max |sparse - dense|']
    return Table('MoE-SR inference: top-1 sparse vs the background expert on the whole image vs dense, against the '
                 'single expert', headers, rows, notes)


def yolo_gate(**kwargs):
    from moesr_arch.gating.yolo_gate import YOLOGate
    trained = ROOT / 'experiments' / 'gate_demo' / 'gate.pt'
    source = {'weights': str(trained), 'class_map': 'auto'} if trained.is_file() else \
        {'model': 'yolov8n-seg.yaml', 'class_map': 'coco'}
    return YOLOGate(CATEGORIES, **source, **kwargs), trained.is_file()


def gate_table(quick):
    """The gate table, and the YOLO gate's time (ms) at its default detector input size."""
    import inspect

    from moesr_arch.gating.yolo_gate import YOLOGate
    size, repeats = (64, 1) if quick else (512, 3)
    default = inspect.signature(YOLOGate).parameters['imgsz'].default
    lq = torch.rand(1, 3, size, size)
    rows, at_default = [], None
    for imgsz in ((160, ) if quick else (256, 640)):
        gate, trained = yolo_gate(imgsz=imgsz)
        seconds, _ = timed(lambda: gate(lq), repeats)
        rows.append(['YOLOGate (yolov8n-seg)', f'{size}x{size}', imgsz, seconds * 1e3])
        if imgsz == default or quick:
            at_default = (seconds * 1e3, imgsz)
    rows.append(['LabelGate', f'{size}x{size}', '-', timed(lambda: label_gate(lq), repeats)[0] * 1e3])
    notes = [f'{machine()}; the LR image is letterboxed to the detector input size; median of {repeats} runs.',
             f'Detector: {"experiments/gate_demo/gate.pt" if trained else "yolov8n-seg.yaml, untrained"} '
             f'(same cost as trained weights); the YOLOGate default input size is {default}.']
    return Table('MoE-SR gate time per image', ['gate', 'LR image', 'detector input', 'ms'], rows, notes), at_default


def label_gate(lq):
    from moesr_arch.gating import build_gate
    gate = build_gate({'type': 'LabelGate', 'categories': CATEGORIES})
    return gate(lq, {'category_map': torch.zeros(1, *lq.shape[-2:], dtype=torch.long)})


def machine():
    return f'CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), torch ' \
           f'{torch.__version__}, {torch.get_num_threads()} threads'


def run(quick=False):
    import moesr_arch  # noqa: F401  (registers the archs)
    gates, (gate_ms, gate_imgsz) = gate_table(quick)
    return [expert_table(quick, gate_ms, gate_imgsz), gates]


if __name__ == '__main__':
    for table in run('--quick' in sys.argv):
        print(table.markdown())
