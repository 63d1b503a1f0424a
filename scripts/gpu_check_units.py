"""The in-process checks of ``scripts/gpu_check.py``, one part per process.

Usage (gpu_check.py starts it): ``python scripts/gpu_check_units.py --part functional|bench|training|compile
--work DIR --data DIR [--dry-run] [--budget SECONDS]``

``functional``: CUDA results against reference computations, autocast dtypes, the YOLO gate,
``basicsr infer``, ONNX export. ``bench``: timings that need an idle GPU and the eager SeemoRe-T
throughput table. ``training``: training iterations per second with ``train.amp``, ``train.channels_last`` and
``train.compile`` against fp32 (``scripts/bench/training.py``, the table ``make bench`` measures on the CPU), rows
stopped at ``--budget``. ``compile``: the SeemoRe-T table under ``torch.compile``. Each check prints one
``PASS|FAIL|SKIP name :: detail [seconds]`` line; the tables print ``BENCH`` lines.
"""
import argparse
import contextlib
import copy
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import moesr_arch  # noqa: E402,F401  (registration, and the torchvision alias basicsr needs)
from basicsr.archs import build_network  # noqa: E402

warnings.filterwarnings('ignore')
CHECKS = []  # (part, name, function)
DTYPE_NAMES = {torch.bfloat16: 'bf16', torch.float16: 'fp16'}
CATS = ['people', 'cat', 'vehicle']
EDSR16 = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 2, 'upscale': 2}
MOESR = {'type': 'MoESRNet', 'categories': CATS, 'experts': {n: dict(EDSR16) for n in CATS + ['background']},
         'crop_margin': 16}
MOEISR = {'type': 'MoEISR', 'num_feat': 16, 'num_block': 2, 'expert_depths': [1, 2, 3], 'hidden_dim': 32,
          'mapper_dim': 16, 'chunk_size': 4096}
YOLO_GATE = {'type': 'YOLOGate', 'categories': CATS, 'model': 'yolov8n-seg.yaml', 'class_map': 'coco',
             'imgsz': 160, 'conf': 0.0}  # untrained (built offline from its yaml): conf 0 keeps what it finds


class Skip(Exception):
    pass


class Env:
    """Set by ``main``: the device and folders every check uses, and the seconds a part may take."""
    dev, cuda, dry_run, work, data, budget = torch.device('cpu'), False, True, Path('.'), Path('.'), None


def check(name, part='functional'):
    def register(fn):
        CHECKS.append((part, name, fn))
        return fn
    return register


def run_part(part):
    for _, name, fn in (c for c in CHECKS if c[0] == part):
        start = time.perf_counter()
        try:
            line = f'PASS {name} :: {fn()} [{time.perf_counter() - start:.1f}s]'
        except Skip as why:
            line = f'SKIP {name} :: {why}'
        except Exception as error:  # noqa: B902  (every failure is one FAIL line; the next check still runs)
            text = (str(error).strip().splitlines() or [''])[0][:300]
            line = f'FAIL {name} :: {type(error).__name__}: {text} [{time.perf_counter() - start:.1f}s]'
        print(line, flush=True)


def cuda_only():
    if not Env.cuda:
        raise Skip('CUDA only' + (' (dry run)' if Env.dry_run else ''))


def require(*modules):
    missing = [m for m in modules if not importlib.util.find_spec(m)]
    if missing:
        raise Skip(f'{", ".join(missing)} not installed')


@contextlib.contextmanager
def exact():
    """No TF32, so CUDA results can be compared with reference computations at 1e-4."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def low_precisions():
    # fp16 autocast on the CPU is slow enough to dominate the dry run; bf16 exercises the same code.
    return [torch.bfloat16, torch.float16] if Env.cuda else [torch.bfloat16]


def sync():
    if Env.cuda:
        torch.cuda.synchronize()


def seemore(**kw):
    from moesr_arch.archs.seemore_arch import SeemoRe
    torch.manual_seed(0)
    return SeemoRe(variant='T', **{'scale': 4, **kw}).eval().to(Env.dev)


def disagreeing_routers(net):
    """Sharpen the routers so that images of different brightness pick different experts (the gather path)."""
    for layer in net._moe_layers():
        layer.gate.body[2].weight.data.mul_(50)
    return net


def net_from(opt):
    torch.manual_seed(0)
    return build_network(copy.deepcopy(opt)).eval().to(Env.dev)


def category_weights(b, h, w, boxes):
    """One-hot gate weights [b, K+1, h, w]: background except the (image, category, y0, y1, x0, x1) boxes."""
    cmap = torch.full((b, h, w), len(CATS), dtype=torch.long)
    for i, c, y0, y1, x0, x1 in boxes:
        cmap[i, y0:y1, x0:x1] = c
    return torch.nn.functional.one_hot(cmap, len(CATS) + 1).permute(0, 3, 1, 2).float().to(Env.dev)


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


# ------------------------------------------------------------------------------------------------
# functional


@check('infer_precision_auto')
def _():
    from moesr_arch.inference import precision_dtype
    dtype = precision_dtype('auto', Env.dev)
    if Env.cuda and dtype is not torch.bfloat16:
        raise AssertionError(f'auto gave {dtype} on a GPU with bf16')
    return f'--precision auto -> {dtype or "fp32"} on {Env.dev.type}'


@check('resume_map_location')
def _():
    cuda_only()
    from moesr_arch.pipeline import load_resume_state
    net = torch.nn.Linear(3, 1).to(Env.dev)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3, device=Env.dev)).sum().backward()
    optimizer.step()
    path = Env.work / 'resume' / '1.state'
    path.parent.mkdir(exist_ok=True)
    torch.save({'epoch': 0, 'iter': 1, 'optimizers': [optimizer.state_dict()]}, path)
    state = load_resume_state({'auto_resume': False, 'rank': 0, 'path': {'resume_state': str(path)}})
    read = state['optimizers'][0]['state'][0]['exp_avg'].device
    optimizer.load_state_dict(state['optimizers'][0])
    device = optimizer.state[net.weight]['exp_avg'].device
    if read.type != 'cpu' or device.type != 'cuda':
        raise AssertionError(f'optimizer state read onto {read}, restored onto {device}')
    return f'a training state with CUDA tensors is read onto the CPU and restored onto {device}'


@check('seemore_batch_routing')
def _():
    net = disagreeing_routers(seemore())
    torch.manual_seed(1)
    x = (torch.rand(8, 3, 48, 64) * torch.linspace(0.1, 1, 8).view(8, 1, 1, 1)).to(Env.dev)
    with torch.no_grad(), exact():
        batched, stats = net(x, return_stats=True)
        pixels = stats['expert_pixels']
        mixed = sum(int(sum(pixels[key] > 0 for key in pixels if key.startswith(f'layer{i}/')) > 1)
                    for i in range(len(net.body)))
        single = torch.cat([net(x[i:i + 1]) for i in range(8)])
    diff = max_diff(batched, single)
    if diff > 1e-4:
        raise AssertionError(f'max |batch - image by image| {diff:.2e}')
    return f'batch of 8 == image by image (max diff {diff:.1e}, fp32 without TF32); ' \
           f'layers where the batch used >1 expert: {mixed}/{len(net._moe_layers())}'


@check('seemore_autocast_channels_last')
def _():
    net = seemore()
    x = torch.rand(8, 3, 48, 64, device=Env.dev)
    parts = []
    with torch.no_grad():
        ref = net(x)
        for dtype in low_precisions():
            with torch.autocast(Env.dev.type, dtype=dtype):
                out = net(x)
            if not torch.isfinite(out).all():
                raise AssertionError(f'non-finite output under {dtype} autocast')
            parts.append(f'{DTYPE_NAMES[dtype]}: max diff {max_diff(out, ref):.3f}')
        net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
        parts.append(f'channels_last fp32: max diff {max_diff(out, ref):.1e}')
    return '; '.join(parts)


@check('moesr_sparse_vs_dense')
def _():
    net = net_from(MOESR)
    lq = torch.rand(2, 3, 96, 128, device=Env.dev)
    w = category_weights(2, 96, 128, [(0, 0, 10, 40, 10, 50), (0, 2, 60, 90, 70, 120), (1, 1, 20, 60, 30, 90)])
    with torch.no_grad(), exact():
        dense = net.run(lq, w, sparse=False)['output']
        sparse = net.run(lq, w, sparse=True)['output']
        tiled = net.run(lq, w, sparse=True, tile_size=48)['output']
    d1, d2 = max_diff(dense, sparse), max_diff(dense, tiled)
    if max(d1, d2) > 1e-4:
        raise AssertionError(f'max diff sparse {d1:.2e}, tiled {d2:.2e}')
    return f'sparse crops == dense (max diff {d1:.1e}), tiled too ({d2:.1e})'


@check('moeisr_sparse_decoding')
def _():
    from moesr_arch.archs.moeisr_arch import make_coord
    net = net_from(MOEISR)
    lq = torch.rand(1, 3, 24, 32, device=Env.dev)
    with torch.no_grad(), exact():
        feat, mapper_feat = net.encode(lq)
        coord = make_coord((84, 112), Env.dev)[None]
        cell = torch.tensor([2 / 84, 2 / 112], device=Env.dev).expand_as(coord)
        choice = net.route_logits(mapper_feat, coord, cell).argmax(-1)
        sparse = net._decode_sparse(feat, coord, cell, choice)
        inputs, weights = net._decoder_inputs(feat, coord, cell)
        every = torch.stack([(e(inputs) * weights.unsqueeze(-1)).sum(0) for e in net.experts], -1)
        picked = every.gather(-1, choice[..., None, None].expand(*choice.shape, every.shape[2], 1))[..., 0]
    diff = max_diff(sparse, picked)
    if diff > 1e-4:
        raise AssertionError(f'max diff {diff:.2e}')
    return f'== every expert on every pixel, then picked (max diff {diff:.1e}); ' \
           f'pixels per expert {torch.bincount(choice.flatten(), minlength=3).tolist()}'


@check('yolo_gate')
def _():
    require('ultralytics')
    from moesr_arch.gating import build_gate
    gate = build_gate(dict(YOLO_GATE))
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')  # ultralytics' select_device may set it
    lq = torch.rand(2, 3, 60, 80, device=Env.dev)
    kept = [len(masks) for masks, _, _ in gate.detect(lq)]
    weights = gate(lq)
    if weights.device != lq.device or not torch.allclose(weights.sum(1), torch.ones_like(weights[:, 0]), atol=1e-4):
        raise AssertionError(f'weights on {weights.device} or not summing to 1')
    with torch.inference_mode(), torch.autocast(Env.dev.type, dtype=torch.bfloat16, enabled=Env.cuda):
        gate(lq)
    gate.mode = 'boxes'
    gate(lq)
    if Env.cuda and torch.cuda.current_device() != 0:
        raise AssertionError(f'the gate changed the current CUDA device to {torch.cuda.current_device()}')
    return f'masks and boxes, bf16 autocast + inference_mode; detections kept per image {kept}, weights on ' \
           f'{weights.device}; CUDA_VISIBLE_DEVICES {visible!r} -> {os.environ.get("CUDA_VISIBLE_DEVICES")!r}'


def write_options(name, opt, net):
    weights = Env.work / f'{name}.pth'
    torch.save({'params': net.state_dict()}, weights)
    path = Env.work / f'{name}.yml'
    path.write_text(yaml.safe_dump({**opt, 'path': {'pretrain_network_g': str(weights)}}, sort_keys=False))
    return path


def infer(*args):
    from moesr_arch.cli import main
    code = main(['infer', *map(str, args)])
    if code:
        raise AssertionError(f'basicsr infer {" ".join(map(str, args))}: exit status {code}')


def lr_image(scale):
    return Env.data / f'datasets/demo/val/LR_bicubic/X{scale}/zidane.png'


@check('infer_seemore_precisions')
def _():
    opt = write_options('seemore', {'name': 't', 'scale': 4, 'network_g': {'type': 'SeemoRe', 'scale': 4}}, seemore())
    runs = {'fp32': ('fp32', 0), 'auto': ('auto', 0), 'auto_tiled': ('auto', 64), 'bf16': ('bf16', 0)}
    if Env.cuda:
        runs['fp16'] = ('fp16', 0)
    images = {}
    for name, (precision, tile) in runs.items():
        infer('-opt', opt, '-i', lr_image(4), '-o', Env.work / f'infer_{name}', '--precision', precision,
              '--tile', tile, '--tile_overlap', 8)
        images[name] = cv2.imread(str(Env.work / f'infer_{name}/zidane.png')).astype(int)
    # Tiles see less context than the whole image (SeemoRe routes per tile): reported, not compared with fp32.
    tiled = np.abs(images.pop('auto_tiled') - images['auto']).mean()
    diffs = {name: np.abs(image - images['fp32']).mean() for name, image in images.items() if name != 'fp32'}
    if max(diffs.values()) > 2:
        raise AssertionError(f'mean |x - fp32| in grey levels {diffs}')
    return f'output {images["fp32"].shape}; mean |x - fp32| in grey levels: ' + \
           ', '.join(f'{name} {diff:.2f}' for name, diff in diffs.items()) + f'; auto --tile 64 vs whole {tiled:.2f}'


@check('infer_moesr_yolo_gate')
def _():
    require('ultralytics')
    opt = write_options('moesr', {'name': 't', 'scale': 2, 'network_g': MOESR, 'gate': YOLO_GATE}, net_from(MOESR))
    infer('-opt', opt, '-i', lr_image(2), '-o', Env.work / 'infer_moesr', '--save_maps')
    if not (Env.work / 'infer_moesr/zidane_gate.png').is_file():
        raise AssertionError('no gate map written')
    return '--precision auto --save_maps: output and gate map written'


@check('infer_moeisr_any_scale')
def _():
    opt = write_options('moeisr', {'name': 't', 'scale': 4, 'network_g': MOEISR}, net_from(MOEISR))
    if Env.cuda:
        torch.cuda.reset_peak_memory_stats()
    infer('-opt', opt, '-i', lr_image(4), '-o', Env.work / 'infer_moeisr', '--scale', 3.5, '--save_maps',
          '--tile', 48, '--tile_overlap', 8)
    if not (Env.work / 'infer_moeisr/zidane_experts.png').is_file():
        raise AssertionError('no expert map written')
    memory = f', CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB' if Env.cuda else ''
    return '--scale 3.5 --tile 48 --save_maps: output and expert map written' + memory


@check('onnx_export_cuda_network')
def _():
    require('onnx')
    from moesr_arch.tools.export import export_onnx
    export_onnx(seemore(scale=2), Env.work / 'net.onnx', trace_size=32)
    return f'tools.export.export_onnx of a network on {Env.dev.type}'


@check('matlab_bicubic')
def _():
    from basicsr.utils.matlab_functions import imresize

    from moesr_arch.inference.luma import on_luma
    from moesr_arch.utils.bicubic import matlab_upsample
    x = torch.rand(2, 3, 17, 23)
    parts = []
    for scale in (2, 3, 4):
        diff = max_diff(matlab_upsample(x.to(Env.dev), scale).cpu(), torch.stack([imresize(i, scale) for i in x]))
        if diff > 1e-5:
            raise AssertionError(f'x{scale}: max diff from basicsr imresize {diff:.2e}')
        parts.append(f'x{scale} {diff:.1e}')
    grads = []
    for device in ('cpu', Env.dev):
        leaf = x.to(device).requires_grad_()
        (matlab_upsample(leaf, 3) ** 2).sum().backward()
        grads.append(leaf.grad.cpu())
    parts.append(f'gradient vs the CPU {max_diff(*grads):.1e}')
    for dtype in low_precisions():
        out = matlab_upsample(x.to(Env.dev, dtype), 2)
        if out.dtype != dtype:
            raise AssertionError(f'{dtype} input gave {out.dtype}')
        parts.append(f'{DTYPE_NAMES[dtype]} {max_diff(out, matlab_upsample(x, 2).to(Env.dev)):.1e}')
    vdsr = net_from({'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'num_feat': 16, 'num_layer': 6, 'bias': False,
                     'upscale': 2})
    with torch.no_grad():
        reference = on_luma(vdsr)(x.to(Env.dev))
        with torch.autocast(Env.dev.type, dtype=torch.bfloat16):
            low = on_luma(vdsr)(x.to(Env.dev))
    if low.dtype != torch.float32 or max_diff(low, reference) > 0.05:
        raise AssertionError(f'Y-channel VDSR under bf16 autocast: {low.dtype}, max diff '
                             f'{max_diff(low, reference):.3f}')
    return 'matlab_upsample == imresize: ' + ', '.join(parts) + f'; Y-channel VDSR bf16 autocast max diff ' \
        f'{max_diff(low, reference):.1e}'


@check('export_onnx_cli')
def _():
    require('onnx', 'onnxruntime')
    from moesr_arch.cli import main
    opt = write_options('seemore_x2', {'name': 't', 'scale': 2, 'network_g': {'type': 'SeemoRe', 'scale': 2}},
                        seemore(scale=2))
    code = main(['export', '-opt', str(opt), '--onnx', str(Env.work / 'cli.onnx'), '--trace_size', '32'])
    if code:
        raise AssertionError(f'exit status {code}')
    return 'basicsr export --onnx: written and verified with onnxruntime'


# ------------------------------------------------------------------------------------------------
# bench: on the idle GPU, after the training runs


@check('moesr_cudnn_benchmark_timing', part='bench')
def _():
    cuda_only()  # BasicSR's train/test set cudnn.benchmark; sparse crops change shape at every image
    net = net_from(MOESR)
    lq = torch.rand(1, 3, 128, 160, device=Env.dev)
    rng = np.random.default_rng(0)
    layouts = []
    for _ in range(6):
        y, x = rng.integers(0, 60, 2)
        h, w = rng.integers(8, 60, 2)
        layouts.append(category_weights(1, 128, 160, [(0, int(rng.integers(0, 3)), y, y + h, x, x + w)]))
    cells = []
    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for attempt in (1, 2):
            sync()
            start = time.perf_counter()
            with torch.no_grad():
                for w in layouts:
                    net.run(lq, w, sparse=True)
            sync()
            cells.append(f'benchmark={benchmark} pass {attempt}: {1000 * (time.perf_counter() - start) / 6:.1f} ms/img')
    torch.backends.cudnn.benchmark = False
    return 'sparse MoE-SR, changing crop shapes: ' + '; '.join(cells)


@check('matlab_bicubic_timing', part='bench')
def _():
    import torch.nn.functional as F

    from moesr_arch.utils.bicubic import matlab_upsample
    side, repeats = (64, 1) if Env.dry_run else (512, 50)
    x = torch.rand(1, 3, side, side, device=Env.dev)
    cells = []
    for scale in (2, 4):
        times = []
        for fn in (lambda: F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False),
                   lambda: matlab_upsample(x, scale)):
            fn()
            sync()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            sync()
            times.append((time.perf_counter() - start) / repeats)
        cells.append(f'x{scale}: F.interpolate {1000 * times[0]:.3f} ms, matlab {1000 * times[1]:.3f} ms '
                     f'({times[1] / times[0]:.2f}x)')
    return f'{side}x{side} RGB fp32: ' + '; '.join(cells)


def throughput(label, net, batch, dtype=None, channels_last=False, varied=False):
    """Print one BENCH line: SeemoRe-T x4 to 1280x720 (tiny inputs in a dry run)."""
    size, repeats = ((16, 24), 1) if Env.dry_run else ((180, 320), 20 if batch == 1 else 6)
    x = torch.rand(batch, 3, *size, device=Env.dev)
    if varied:
        x = x * torch.linspace(0.1, 1, batch, device=Env.dev).view(batch, 1, 1, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    context = torch.autocast(Env.dev.type, dtype=dtype) if dtype else contextlib.nullcontext()
    if Env.cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), context:
        start = time.perf_counter()
        net(x)
        sync()
        first = time.perf_counter() - start
        net(x)  # warm-up beyond the first call (cuDNN heuristics, compile guards)
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        sync()
        seconds = (time.perf_counter() - start) / repeats
    peak = f', peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB' if Env.cuda else ''
    where = '(dry run: figures mean nothing) ' if Env.dry_run else ''
    print(f'BENCH {where}SeemoRe-T x4 -> {size[1] * 4}x{size[0] * 4} {label:<27} batch {batch}: '
          f'{batch / seconds:7.1f} images/s ({1000 * seconds:6.1f} ms/batch, first call {first:5.1f} s{peak})',
          flush=True)


@check('throughput_eager', part='bench')
def _():
    base = seemore()
    channels_last = copy.deepcopy(base).to(memory_format=torch.channels_last)
    rows = [('fp32', base, None, False), ('fp32 channels_last', channels_last, None, True)]
    rows += [(f'{DTYPE_NAMES[dtype]} autocast{cl}', net, dtype, bool(cl)) for dtype in low_precisions()
             for cl, net in (('', base), (' channels_last', channels_last))]
    batches = (1, ) if Env.dry_run else (1, 8)  # CPU autocast is slow: the dry run only runs every row
    for batch in batches:
        for label, net, dtype, cl in rows:
            throughput(label, net, batch, dtype, cl)
    torch.backends.cudnn.benchmark = True
    throughput('fp32 cudnn.benchmark', base, batches[-1])
    throughput('bf16 cudnn.benchmark', base, batches[-1], torch.bfloat16)
    throughput('bf16 routers disagree', disagreeing_routers(copy.deepcopy(base)), batches[-1], torch.bfloat16,
               varied=True)
    return f'{len(batches) * len(rows) + 3} rows; TF32 matmul/cuDNN {torch.backends.cuda.matmul.allow_tf32}/' \
           f'{torch.backends.cudnn.allow_tf32}'


@check('training_speed', part='training')
def _():
    # The dry run checks the script on tiny networks, without compiling (minutes on a CPU).
    from scripts.bench.training import bf16_native, training_table
    native = bf16_native(Env.dev)
    print(f'INFO training speed on {"CUDA" if Env.cuda else "the CPU (dry run: figures mean nothing)"}'
          + (f'; bf16 native: {"yes" if native else "no (emulated: train.amp bf16 is refused)"}' if Env.cuda else ''),
          flush=True)
    table = training_table(Env.dev, quick=Env.dry_run, budget=Env.budget, data_root=Env.data, compile_rows=Env.cuda,
                           on_row=lambda cells: print('BENCH training ' + ' | '.join(map(str, cells)), flush=True))
    failed = [row for row in table.rows if str(row[-1]).startswith('failed')]
    if failed:
        raise AssertionError(f'{len(failed)} rows failed, e.g. {failed[0][0]} {failed[0][1]}: {failed[0][-1]}')
    measured = sum(row[3] != '-' for row in table.rows)
    return f'{measured} of {len(table.rows)} rows measured (see the BENCH training lines)'


@check('compile_seemore', part='compile')
def _():
    cuda_only()
    from torch._dynamo.utils import counters
    compiled = torch.compile(seemore())
    for batch, dtype in ((1, None), (8, None), (1, torch.bfloat16), (8, torch.bfloat16)):
        throughput(f'torch.compile {DTYPE_NAMES.get(dtype, "fp32")}', compiled, batch, dtype)
    breaks = sum(counters['graph_break'].values())
    reasons = [k.splitlines()[0][:90] for k in counters['graph_break']][:3]
    return f'eval, default mode: {counters["stats"].get("unique_graphs")} graphs, {breaks} graph breaks {reasons}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--part', required=True, choices=sorted({part for part, _, _ in CHECKS}))
    parser.add_argument('--work', required=True, help='scratch folder')
    parser.add_argument('--data', required=True, help='folder holding datasets/demo')
    parser.add_argument('--dry-run', action='store_true', help='CPU only')
    parser.add_argument('--budget', type=float, help='seconds after which the training table starts no row')
    args = parser.parse_args(argv)
    Env.cuda = torch.cuda.is_available() and not args.dry_run
    Env.dev, Env.dry_run = torch.device('cuda' if Env.cuda else 'cpu'), args.dry_run
    Env.work, Env.data, Env.budget = Path(args.work), Path(args.data), args.budget
    Env.work.mkdir(parents=True, exist_ok=True)
    if args.part == 'functional':
        props = torch.cuda.get_device_properties(0) if Env.cuda else None
        gpu = f'{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, cuDNN ' \
              f'{torch.backends.cudnn.version()}, bf16 {torch.cuda.is_bf16_supported()}' if Env.cuda else 'none used'
        print(f'INFO torch {torch.__version__}; GPU {gpu}', flush=True)
    run_part(args.part)


if __name__ == '__main__':
    main()
