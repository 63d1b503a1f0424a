"""MoEISR vs the same network with only its deepest decoder (LIIF), after the same demo training.

Both are trained with ``options/train_moeisr_demo.yml`` (the baseline with ``expert_depths: [4]``), then
decode the demo validation photos at x2, x4 and x8 (LR made by anti-aliased bicubic, as in training).
Measured: PSNR (Y channel, border = scale), decoder FLOPs (2 x linear-layer multiply-accumulates, the
mapper included for MoEISR) and CPU time of ``upscale``; MoEISR at several test-time routing biases.

Run alone: ``python scripts/bench/moeisr.py [--quick]``.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench import Table  # noqa: E402

SCALES = (2, 4, 8)
CROP = 144  # HR pixels square, a multiple of every scale
BIASES = (0.0, 0.5, 1.0, 2.0)
GOAL_SAVING, GOAL_PSNR = 0.30, 0.05


def demo_data(workdir):
    """``workdir/datasets/demo``: the repository's demo set, built if missing or out of date."""
    demo = ROOT / 'datasets' / 'demo'
    sys.path.insert(0, str(ROOT / 'scripts' / 'data_preparation'))
    from make_demo_dataset import build
    build(demo)  # returns at once when the set is complete and current
    (workdir / 'datasets').mkdir(exist_ok=True)
    link = workdir / 'datasets' / 'demo'
    if not link.exists():
        link.symlink_to(demo, target_is_directory=True)
    return link


def start_training(workdir, name, quick, **network):
    """Start training with the demo options (validation left to this benchmark); return (options, process)."""
    opt = yaml.safe_load((ROOT / 'options' / 'train_moeisr_demo.yml').read_text())
    opt['name'] = name
    opt['network_g'].update(network)
    opt['datasets'] = {'train': opt['datasets']['train']}
    opt.pop('val')
    opt['logger']['use_tb_logger'] = False
    if quick:
        opt['train']['total_iter'] = 2
        opt['datasets']['train']['batch_size_per_gpu'] = 2
        opt['logger']['save_checkpoint_freq'] = 2
    path = workdir / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
               CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    process = subprocess.Popen([sys.executable, '-m', 'moesr_arch', 'train', '-opt', str(path)], cwd=workdir,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return opt, process


def finish_training(workdir, opt, process):
    """Wait for a training started by :func:`start_training`; return the path of its EMA weights."""
    _, errors = process.communicate()
    if process.returncode:
        raise RuntimeError(f"training {opt['name']} failed:\n{errors[-3000:]}")
    return workdir / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth'


def load_network(opt, weights):
    from basicsr.utils.registry import ARCH_REGISTRY

    from moesr_arch.utils.checkpoint import load_weights
    network = dict(opt['network_g'])
    net = ARCH_REGISTRY.get(network.pop('type'))(**network)
    return load_weights(net, weights, 'params_ema').eval()


def validation_images(demo, scale, quick):
    """(LR, HR) tensor pairs of the demo validation photos at ``scale``."""
    from moesr_arch.data.random_scale_dataset import RandomScaleSRDataset
    from moesr_arch.options import check_dataset
    val_set = {'name': f'demo_val_x{scale}', 'type': 'RandomScaleSRDataset', 'phase': 'val', 'scale': scale,
               'dataroot_gt': str(demo / 'val' / 'HR'), 'io_backend': {'type': 'disk'}}
    dataset = RandomScaleSRDataset(check_dataset(val_set, 'datasets.val', 'bench moeisr', is_train=False))
    pairs = []
    for index in range(len(dataset)):
        sample = dataset[index]
        lq, gt = sample['lq'][None], sample['gt'][None]
        # The centre of each photo (LR made from the whole photo): full 1/4-megapixel outputs take minutes each
        # on this shared 2-core CPU.
        size = (24 if quick else CROP) // scale
        top, left = (lq.shape[-2] - size) // 2, (lq.shape[-1] - size) // 2
        lq = lq[..., top:top + size, left:left + size]
        gt = gt[..., top * scale:(top + size) * scale, left * scale:(left + size) * scale]
        pairs.append((lq, gt))
    return pairs


def evaluate(net, pairs, scale):
    """Mean PSNR, decoder FLOPs, FLOPs of the deepest decoder alone, seconds, pixel shares per expert."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    psnr = flops = deepest = seconds = 0.0
    counts = torch.zeros(len(net.expert_depths))
    with torch.no_grad():  # warm-up: the first call of a network pays one-off allocation costs
        net.upscale(pairs[0][0], scale)
    for lq, gt in pairs:
        start = time.perf_counter()
        with torch.no_grad():
            sr, stats = net.upscale(lq, scale, return_stats=True)
        seconds += time.perf_counter() - start
        psnr += calculate_psnr(tensor2img(sr), tensor2img(gt), crop_border=scale, test_y_channel=True)
        flops += stats['flops']
        deepest += stats['flops_deepest']
        counts += torch.tensor(list(stats['expert_pixels'].values()), dtype=torch.float32)
    return {'psnr': psnr / len(pairs), 'flops': flops, 'deepest': deepest, 'seconds': seconds,
            'shares': (counts / counts.sum()).tolist()}


def run(quick):
    import moesr_arch  # noqa: F401  (registration)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix='bench_moeisr_') as folder:
        workdir = Path(folder)
        demo = demo_data(workdir)
        # Both trainings at once, one thread each: same options, seed and data; only the decoders differ.
        moe_opt, moe_process = start_training(workdir, 'bench_moeisr', quick)
        liif_opt, liif_process = start_training(workdir, 'bench_liif', quick, expert_depths=[4])
        moe_weights = finish_training(workdir, moe_opt, moe_process)
        liif_weights = finish_training(workdir, liif_opt, liif_process)
        moe, liif = load_network(moe_opt, moe_weights), load_network(liif_opt, liif_weights)
        results = {}
        for scale in SCALES:
            pairs = validation_images(demo, scale, quick)
            results[scale, 'liif'] = evaluate(liif, pairs, scale)
            for bias in BIASES:
                moe.routing_bias = bias
                results[scale, bias] = evaluate(moe, pairs, scale)
    iters = 2 if quick else moe_opt['train']['total_iter']
    return [main_table(results, iters, len(pairs)), bias_table(results, moe_opt)]


def main_table(results, iters, photos):
    rows = []
    for scale in SCALES:
        base, moe = results[scale, 'liif'], results[scale, 0.0]
        rows.append([f'x{scale}', round(base['psnr'], 3), round(moe['psnr'], 3), round(moe['psnr'] - base['psnr'], 3),
                     round(base['flops'] / 1e9, 2), round(moe['flops'] / 1e9, 2), f"{moe['flops'] / base['flops']:.3f}",
                     round(base['seconds'], 2), round(moe['seconds'], 2), f"{moe['seconds'] / base['seconds']:.3f}",
                     ' / '.join(f'{s:.0%}' for s in moe['shares'])])
    return Table(
        'MoEISR vs its deepest decoder alone (LIIF), demo val photos, routing bias 0',
        ['scale', 'PSNR LIIF', 'PSNR MoEISR', 'dPSNR', 'GFLOPs LIIF', 'GFLOPs MoEISR', 'FLOPs ratio', 'CPU s LIIF',
         'CPU s MoEISR', 'time ratio', 'pixels per expert (1/2/3/4 hidden)'], rows,
        [f'Both trained with options/train_moeisr_demo.yml for {iters} iterations (same seed, same data); the '
         'baseline is MoEISR with expert_depths [4] (no mapper).',
         'Decoder FLOPs = 2 x multiply-accumulates of the decoders\' linear layers (4 evaluations per pixel, local '
         f'ensemble) plus, for MoEISR, its mapper. CPU s = wall time of upscale() over the {photos} photos (encoder '
         'included), 2-core CPU shared with other jobs: times are noisy.',
         f'Inputs: the central {CROP}x{CROP} HR pixels of the {photos} demo validation photos (LR by anti-aliased '
         'bicubic of the whole photo, then cropped alike). PSNR: Y channel, border = scale.'])


def bias_table(results, moe_opt):
    rows, reached = [], []
    for bias in BIASES:
        row, ok = [bias], True
        for scale in SCALES:
            base, moe = results[scale, 'liif'], results[scale, bias]
            saving, delta = 1 - moe['flops'] / base['flops'], moe['psnr'] - base['psnr']
            ok &= saving >= GOAL_SAVING and delta >= -GOAL_PSNR
            row += [f'{saving:.1%}', round(delta, 3)]
        seconds = sum(results[s, bias]['seconds'] for s in SCALES)
        time_ratio = seconds / sum(results[s, 'liif']['seconds'] for s in SCALES)
        rows.append(row + [f'{time_ratio:.3f}', 'yes' if ok else 'no'])
        if ok:
            reached.append(bias)
    headers = (['routing bias'] + [h for s in SCALES for h in (f'x{s} FLOPs saved', f'x{s} dPSNR')] +
               ['CPU time vs LIIF (all scales)', 'goal met'])
    verdict = (f'The goal (>= {GOAL_SAVING:.0%} fewer decoder FLOPs at PSNR within {GOAL_PSNR} dB of LIIF at every '
               f'scale) is met at routing bias {", ".join(map(str, reached))}.' if reached else
               f'No routing bias tried meets the goal (>= {GOAL_SAVING:.0%} fewer decoder FLOPs at PSNR within '
               f'{GOAL_PSNR} dB of LIIF at every scale) after this short CPU training.')
    return Table('MoEISR controllable routing: decoder FLOPs saved and PSNR change vs LIIF, by routing bias',
                 headers, rows, [verdict, 'routing bias b subtracts b x cost_e / cost_max from expert e\'s logit '
                                 f"(experts: {moe_opt['network_g']['expert_depths']} hidden layers of width "
                                 f"{moe_opt['network_g']['hidden_dim']})."])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny training and crops (smoke test)')
    for table in run(parser.parse_args().quick):
        print(table.markdown())
