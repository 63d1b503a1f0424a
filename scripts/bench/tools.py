"""Benchmarks of the tools: tiled inference of a 4K photo on the CPU, small vs large tiles, LMDB creation rate
vs BasicSR.

Inference runs the real ``basicsr infer`` command in a subprocess; its peak memory is the child's
``ru_maxrss`` (``os.wait4``, the getrusage of that one child). The network is SeemoRe-T x4 with random weights
(speed and memory do not depend on the values).
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from scripts.bench import Table

ROOT = Path(__file__).resolve().parents[2]
MACHINE = '2-core shared CPU, no GPU'
NETWORK = {'type': 'SeemoRe', 'variant': 'T', 'scale': 4}
NETWORK_NAME = 'SeemoRe-T x4'
QUICK_NETWORK = dict(NETWORK, num_layers=1, embedding_dim=8)


def photo_like(h, w, seed=0):
    """A smooth random picture with some texture, uint8 BGR."""
    rng = np.random.RandomState(seed)
    image = cv2.resize(rng.rand(max(h // 16, 2), max(w // 16, 2), 3), (w, h), interpolation=cv2.INTER_CUBIC)
    image = image + 0.05 * rng.randn(h, w, 3)
    return (image.clip(0, 1) * 255).round().astype(np.uint8)


def _env(folder):
    path = os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=path, YOLO_OFFLINE='1',
                YOLO_CONFIG_DIR=str(Path(folder) / 'ultralytics'))


def bench_inference(quick):
    import torch
    import yaml

    import moesr_arch  # noqa: F401
    from basicsr.archs import build_network
    size = (180, 320) if quick else (2160, 3840)
    network = QUICK_NETWORK if quick else NETWORK
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cv2.imwrite(str(folder / 'photo.png'), photo_like(*size))
        net = build_network(dict(network))
        torch.save({'params': net.state_dict()}, folder / 'net.pth')
        (folder / 'infer.yml').write_text(yaml.safe_dump({'name': 'bench', 'scale': 4, 'network_g': network,
                                                          'path': {'pretrain_network_g': str(folder / 'net.pth')}}))
        for tile in (256, 512):
            command = [sys.executable, '-m', 'moesr_arch', 'infer', '-opt', str(folder / 'infer.yml'), '-i',
                       str(folder / 'photo.png'), '-o', str(folder / 'out'), '--tile', str(tile), '--tile_overlap',
                       '32', '--device', 'cpu']
            start = time.time()
            child = subprocess.Popen(command, cwd=folder, env=_env(folder), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
            stderr = child.stderr.read()
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
            seconds = time.time() - start
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f'basicsr infer failed: {stderr.decode()[-2000:]}')
            gib = usage.ru_maxrss / (1 << 20)
            out_h, out_w = cv2.imread(str(folder / 'out' / 'photo.png'), cv2.IMREAD_REDUCED_COLOR_8).shape[:2]
            rows.append([NETWORK_NAME if not quick else 'tiny SeemoRe x4 (quick)', f'{size[1]}x{size[0]}',
                         f'{out_w * 8}x{out_h * 8}', f'{tile} / 32' + (' (CPU default)' if tile == 256 else ''),
                         seconds, gib, 8, gib / 8])
    return Table(
        title='Tiled inference on the CPU (basicsr infer)',
        headers=['network', 'input', 'output', 'tile / overlap', 'time (s)', 'peak RSS (GiB)', 'limit (GiB)',
                 'RSS / limit'],
        rows=rows,
        notes=[f'Machine: {MACHINE}; fp32, torch threads = cores.',
               'Peak RSS is the whole `basicsr infer` process (Python, torch, the input, the finished uint8 output '
               'and one strip of float accumulators), the child\'s ru_maxrss from os.wait4 (getrusage).',
               'Time includes start-up (about 10 s of imports on this machine) and writing the PNG.',
               'Smaller tiles are faster on a CPU although they recompute more overlap: the activations of a '
               '256-pixel tile stay in cache.'])


DEMO_EXPERT = {'type': 'BicubicResidual', 'upscale': 2,
               'network': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_block': 4,
                           'upscale': 2, 'res_scale': 1, 'img_range': 1., 'rgb_mean': [0., 0., 0.]}}


def half_gate(lq, data=None):
    """A gate stand-in for MoE-SR: the left half of the image to the first category, the rest background."""
    import torch
    weights = torch.zeros(lq.shape[0], 3, *lq.shape[-2:], device=lq.device)
    weights[:, 0, :, :lq.shape[-1] // 2] = 1
    weights[:, 2] = 1 - weights[:, 0]
    return weights


def bench_tile_sizes(quick):
    """``basicsr infer``'s engine at small and large tiles: time follows the pixels the tiles compute."""
    import torch

    import moesr_arch  # noqa: F401
    from basicsr.archs import build_network
    from moesr_arch.inference import Upscaler, default_overlap
    from moesr_arch.utils.tiling import tile_spans
    torch.manual_seed(0)
    plain = build_network(dict(DEMO_EXPERT)).eval()
    moesr = build_network({'type': 'MoESRNet', 'categories': ['people', 'vehicle'], 'crop_margin': 16,
                           'experts': {name: DEMO_EXPERT for name in ('people', 'vehicle', 'background')}}).eval()
    small, large = ((64, 80), (160, 200)) if quick else ((160, 200), (872, 1000))
    # (tile, overlap) per image and network, the first the reference; overlap None: the default. MoE-SR's
    # experts run on disjoint cores (no overlap), and the whole large image at once would need ~20 GiB.
    cases = {(small, 'plain'): [(0, 0), (48, None), (48, 32), (96, None)],
             (large, 'plain'): [(0, 0), (128, None), (256, None), (512, None)],
             (small, 'moesr'): [(0, None), (48, None), (96, None)],
             (large, 'moesr'): [(512, None), (256, None), (128, None)]}
    networks = {'plain': ('EDSR f32b4 (demo expert)', plain, None), 'moesr': ('MoE-SR, 3 such experts', moesr,
                                                                             half_gate)}
    rows = []
    for ((h, w), kind), tiles in cases.items():
        name, network, gate = networks[kind]
        image = photo_like(h, w)
        runs = 3 if (h, w) == small else 1
        reference = reference_time = None
        for tile, overlap in tiles:
            upscaler = Upscaler(network, 2, 'cpu', tile=tile, tile_overlap=overlap, progress=False, gate=gate)
            overlap = upscaler.tiler.overlap
            upscaler.upscale_array(image[:32, :32], 255.)  # warm-up
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                output, _ = upscaler.upscale_array(image, 255.)
                times.append(time.perf_counter() - start)
            seconds = min(times)
            if reference is None:
                reference, reference_time = output, seconds
            ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
            share = sum(b - a for a, b in ys) * sum(b - a for a, b in xs) / (h * w)
            if tile == 0:
                label = 'whole image'
            elif gate is not None:
                label = f'{tile} (cores + margin 16)'
            else:
                label = f'{tile} / {overlap}' + (' (default)' if overlap == default_overlap(tile) else '')
            rows.append([name, f'{w}x{h}', label, '-' if gate else len(ys) * len(xs),
                         '-' if gate else f'{share:.2f}x', seconds, seconds / reference_time,
                         int(np.abs(output.astype(int) - reference).max())])
    return Table(
        title='basicsr infer at small and large tiles (CPU)',
        headers=['network (random weights)', 'input', 'tile / overlap', 'tiles', 'pixels computed', 'time (s)',
                 'time / first row', 'max diff vs first row (levels)'],
        rows=rows,
        notes=[f'Machine: {MACHINE}; fp32, {torch.get_num_threads()} torch thread(s); the engine in-process (no '
               'start-up), best of 3 runs for the small image, 1 for the large one.',
               'Tiles step by tile - overlap and the overlaps are computed again: an overlap of 32 on tiles of 48 '
               'computes the image about 6 times over, and small tiles take about that many times longer. The '
               'default overlap is 32 but at most a quarter of the tile (`default_overlap`); `basicsr infer` warns '
               'when an overlap asked for makes the tiles compute more than twice the pixels. On a large image, '
               'tiles of 128-256 can beat the whole image although they compute more: their activations stay in '
               'cache.',
               "MoE-SR's --tile sets the size of its experts' disjoint cores, each run with a 16-pixel margin on "
               'every side (a core of 48 reads (48 + 32)^2 pixels); exact: the same output at every tile size.'])


def bench_lmdb(quick):
    import moesr_arch  # noqa: F401
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    from moesr_arch.tools.prepare.create_lmdb import make_lmdb
    from moesr_arch.utils.image_io import list_images
    count, side = (12, 64) if quick else (200, 480)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / 'HR').mkdir()
        for index in range(count):
            cv2.imwrite(str(folder / 'HR' / f'{index:04d}.png'), photo_like(side, side, seed=index))
        names = [p.name for p in list_images(folder / 'HR')]
        start = time.time()
        errors, _ = make_lmdb(folder / 'HR', folder / 'ours.lmdb')
        ours = time.time() - start
        assert not errors
        start = time.time()
        make_lmdb_from_imgs(str(folder / 'HR'), str(folder / 'basicsr.lmdb'), names, [n[:-4] for n in names])
        theirs = time.time() - start
        size = {name: sum(f.stat().st_blocks * 512 for f in (folder / name).iterdir())  # on disk (data.mdb is sparse)
                for name in ('ours.lmdb', 'basicsr.lmdb')}
    rows.append(['basicsr prepare create_lmdb (1 process)', count, ours, count / ours, theirs / ours,
                 size['ours.lmdb'] / 2**20])
    rows.append(['BasicSR make_lmdb_from_imgs (1 process)', count, theirs, count / theirs, 1.0,
                 size['basicsr.lmdb'] / 2**20])
    return Table(
        title='LMDB creation rate',
        headers=['tool', 'images', 'time (s)', 'images/s', 'speed-up vs BasicSR', 'on disk (MiB)'],
        rows=rows,
        notes=[f'Machine: {MACHINE}. {count} PNG images of {side}x{side} (DIV2K sub-image size when not quick).',
               'Ours stores PNG files byte-for-byte after a decode check; BasicSR decodes and re-encodes every '
               'image (compress level 1).'])


def run(quick):
    return [bench_inference(quick), bench_tile_sizes(quick), bench_lmdb(quick)]


if __name__ == '__main__':  # python -m scripts.bench.tools [--quick]
    for table in run('--quick' in sys.argv):
        print(table.markdown())
