"""Training cost of the photo-corpus recipes: seconds per iteration, and the iterations a CPU budget buys.

Run alone: ``python scripts/bench/recipes.py [--quick] [--threads 1 2] [--iters 10]`` from anywhere (it needs
``datasets/photos`` and ``datasets/benchmark/Set5`` in the repository). Each recipe is built as ``basicsr train``
builds it (its option file, validated; its own training set, batch and patch size; on the CPU, without the
pretrained weights the x4 recipe starts from), trained for 2 warm-up and N timed iterations (data loading
included), and validated once on Set5. CPU seconds are the process's user + system time (all its threads).
"""
import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (registration, torchvision shim)
from scripts.bench import Table  # noqa: E402

RECIPES = ('train_seemore_photos_x2.yml', 'train_seemore_photos_x4.yml', 'train_edsr_photos_x2.yml',
           'train_vdsr_photos_x2.yml', 'train_moesr_generalist_photos_x2.yml')
BUDGET_CPU_MINUTES = 40
WARMUP = 2
# Validations in a run: every val_freq = total_iter / 4, and BasicSR's one after the last iteration.
VALIDATIONS = 5


def build(recipe, quick):
    """The model, training loader and validation loader of ``recipe``, as ``basicsr train`` makes them."""
    from basicsr.models import build_model
    from moesr_arch.pipeline import create_train_val_dataloader, parse_options
    forced = ['num_gpu=0', 'path:pretrain_network_g=~']
    if quick:
        forced += ['datasets:train:batch_size_per_gpu=2']
    opt, _ = parse_options(str(ROOT), ['-opt', str(ROOT / 'options' / recipe), '--force_yml', *forced])
    train_loader, _, val_loaders, _, _ = create_train_val_dataloader(opt, logging.getLogger('bench.recipes'))
    return opt, build_model(opt), train_loader, val_loaders[0]


def train_iterations(model, batches, first, count):
    """Wall-clock and CPU seconds per iteration of ``count`` training iterations."""
    wall, cpu = time.perf_counter(), time.process_time()
    for current in range(first, first + count):
        model.update_learning_rate(current, warmup_iter=-1)
        model.feed_data(next(batches))
        model.optimize_parameters(current)
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def measure(recipe, threads, iters, quick):
    torch.set_num_threads(threads)
    opt, model, train_loader, val_loader = build(recipe, quick)
    batches = iter(train_loader)
    train_iterations(model, batches, 1, WARMUP)
    wall, cpu = train_iterations(model, batches, 1 + WARMUP, iters)
    started = time.process_time()
    model.validation(val_loader, 1 + WARMUP + iters, None, False)
    val_cpu = time.process_time() - started
    train = opt['datasets']['train']
    lr_patch = train['gt_size'] // opt['scale']
    budget = BUDGET_CPU_MINUTES * 60 - VALIDATIONS * val_cpu
    return [recipe, f"{train['batch_size_per_gpu']} x {lr_patch}x{lr_patch}", threads, round(wall, 2), round(cpu, 2),
            round(val_cpu, 1), math.floor(budget / cpu)]


def load():
    return '/'.join(f'{value:.1f}' for value in os.getloadavg())


def run(quick=False, threads=(1, 2), iters=10):
    headers = ['recipe', 'batch x LR patch', 'threads', 'wall s/iter', 'CPU s/iter', 'Set5 validation CPU s',
               f'iterations in {BUDGET_CPU_MINUTES} CPU-min']
    missing = [p for p in ('datasets/photos/lmdb', 'datasets/benchmark/Set5') if not (ROOT / p).exists()]
    if missing:
        return [Table('Photo recipes: training cost', headers, [],
                      [f'not measured: {", ".join(missing)} missing (basicsr prepare photos, prepare benchmark)'])]
    threads, iters = ((1, ), 1) if quick else (threads, iters)
    before, rows = load(), []
    saved = os.getcwd()
    os.chdir(ROOT)  # the option files name their data relative to the repository
    try:
        for recipe in RECIPES:
            for count in threads:
                rows.append(measure(recipe, count, iters, quick))
                print(rows[-1], flush=True)
    finally:
        os.chdir(saved)
    notes = [f'{iters} timed iterations after {WARMUP} warm-up ones; load average (1/5/15 min) {before} before, '
             f'{load()} after, on {os.cpu_count()} cores.',
             f'iterations = ({BUDGET_CPU_MINUTES} CPU-minutes - {VALIDATIONS} Set5 validations) / CPU s per iteration.']
    return [Table('Photo recipes: training cost', headers, rows, notes)]


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='one iteration of a tiny batch: checks the script')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch threads to measure')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations per measurement')
    args = parser.parse_args()
    for table in run(args.quick, args.threads, args.iters):
        print(table.markdown())
