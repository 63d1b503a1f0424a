"""Benchmark section: training iterations per second with ``train.amp``, ``train.channels_last`` and
``train.compile`` against fp32, for SeemoRe-T, EDSR-baseline and the MoE-SR main job.

``make bench`` runs it on this machine's CPU; ``make gpu-check`` prints the same table on CUDA
(``scripts/gpu_check_units.py``, check ``training_speed``), with whether the GPU computes bf16 natively.
Run alone: ``python scripts/bench/training.py [--quick] [--device cuda] [--budget SECONDS]``.

Each row builds the model from its recipe (``options/``: network, optimizer, losses, EMA) with the setting
added to ``train``, runs warm-up iterations (torch.compile compiles there), then times iterations of the
package's own training step (``optimize_parameters``) on batches drawn before the clock starts, so data
loading is left out. SeemoRe-T and EDSR-baseline train on random batches (the speed does not depend on the
values); the MoE-SR main job on its demo photos (``datasets/demo``, with their category maps), every stage
timed and weighted by the recipe's stage lengths.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (registration, torchvision alias)
from scripts.bench import Table  # noqa: E402

SETTINGS = [  # label, train options; fp32 first (the ratios' base)
    ('fp32', {}),
    ('bf16', {'amp': 'bf16'}),
    ('fp16', {'amp': 'fp16'}),
    ('channels_last', {'channels_last': True}),
    ('compile', {'compile': 'default'}),
    ('bf16 + channels_last + compile', {'amp': 'bf16', 'channels_last': True, 'compile': 'default'}),
]
# name -> recipe, and (batch, HR patch) on the CPU; on CUDA the recipe's own batch and patch.
JOBS = {
    'SeemoRe-T x4': ('options/train_SeemoRe_T_x4.yml', (4, 128)),
    'EDSR-baseline x2': ('options/train_edsr_baseline_x2.yml', (4, 96)),
    'MoE-SR main job x2': ('options/train_moesr.yml', None),  # the recipe's own (a CPU recipe): 6 x 64
}
QUICK_NETWORKS = {  # --quick: tiny networks, to check the script
    'SeemoRe-T x4': {'type': 'SeemoRe', 'variant': 'T', 'scale': 4, 'num_layers': 1, 'embedding_dim': 8},
    'EDSR-baseline x2': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                         'upscale': 2},
}


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def recipe_options(name, device, quick, folder, data_root):
    """The recipe's options for a training model on ``device`` as ``basicsr train`` hands them over (checked and
    filled), without logging or weights to load; its data may be missing (the table says so in its row)."""
    from moesr_arch.options import load_options, validate_options
    source, cpu_size = JOBS[name]
    opt = load_options(str(ROOT / source))
    opt['num_gpu'] = 1 if device.type == 'cuda' else 0
    opt['path'] = {}
    train_set = opt['datasets']['train']
    batch, gt_size = (cpu_size if cpu_size and device.type == 'cpu'
                      else (train_set['batch_size_per_gpu'], train_set['gt_size']))
    if quick:
        batch, gt_size = 2, min(gt_size, 64)
        if name in QUICK_NETWORKS:
            opt['network_g'] = dict(QUICK_NETWORKS[name])
        else:  # MoE-SR: the tiny EDSR inside every expert and the control
            for expert in list(opt['network_g']['experts'].values()) + [opt['network_ref']]:
                expert['network'].update(num_feat=8, num_block=1)
    train_set.update(batch_size_per_gpu=batch, gt_size=gt_size, phase='train', scale=opt['scale'])
    for key in ('dataroot_gt', 'dataroot_lq', 'dataroot_labels', 'categories_file'):
        if key in train_set:
            train_set[key] = str(Path(data_root) / train_set[key])
    for network in ('network_g', 'network_ref', 'gate'):
        if isinstance(opt.get(network), dict) and 'categories_file' in opt[network]:
            opt[network]['categories_file'] = str(Path(data_root) / opt[network]['categories_file'])
    opt = validate_options(opt, source, is_train=True, check_paths=False)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(folder), training_states=str(folder), log=str(folder), visualization=str(folder))
    return opt


def batches(opt, count, seed=0):
    """``count`` training batches: the recipe's dataset when it has category maps (MoE-SR), else random tensors."""
    train_set, scale = opt['datasets']['train'], int(opt['scale'])
    batch, gt_size = train_set['batch_size_per_gpu'], train_set['gt_size']
    generator = torch.Generator().manual_seed(seed)
    if opt['model_type'] != 'MoESRModel':
        return [{'lq': torch.rand(batch, 3, gt_size // scale, gt_size // scale, generator=generator),
                 'gt': torch.rand(batch, 3, gt_size, gt_size, generator=generator)} for _ in range(count)]
    from basicsr.data import build_dataset
    dataset = build_dataset(train_set)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=generator)
    drawn = []
    while len(drawn) < count:
        drawn += [data for data, _ in zip(loader, range(count - len(drawn)))]
    return drawn


def stage_lengths(opt):
    """``[(stage, weight), ...]``: MoE-SR's stages and their share of the recipe; one unnamed stage otherwise."""
    stages = opt['train'].get('stages')
    if not stages:
        return [(None, 1.0)]
    total = sum(entry['iters'] for entry in stages)
    return [(entry['stage'], entry['iters'] / total) for entry in stages]


def measure(opt, setting, device, warmup, timed, data):
    """(seconds per iteration in the recipe's mix of stages, seconds of the warm-up) of one setting."""
    import copy

    from basicsr.models import build_model
    opt = copy.deepcopy(opt)
    opt['train'].update(setting)
    stages = stage_lengths(opt)
    per_stage = warmup + timed
    if stages[0][0] is not None:  # every stage for warmup + timed iterations, in the recipe's order
        opt['train']['stages'] = [{'stage': stage, 'iters': per_stage} for stage, _ in stages]
    opt['train']['total_iter'] = per_stage * len(stages)
    if setting.get('compile'):
        torch._dynamo.reset()  # every compiled row pays its own compilation, not a cache an earlier row filled
    torch.manual_seed(0)
    model = build_model(opt)
    seconds, warming, current_iter = 0.0, 0.0, 0
    for (_, weight) in stages:
        for index in range(per_stage):
            current_iter += 1
            model.feed_data(data[(current_iter - 1) % len(data)])
            sync(device)
            start = time.perf_counter()
            model.optimize_parameters(current_iter)
            sync(device)
            elapsed = time.perf_counter() - start
            if index < warmup:
                warming += elapsed
            else:
                seconds += weight * elapsed / timed
    return seconds, warming


def bf16_native(device):
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return None


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    import os
    return f'CPU, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads'


def training_table(device=torch.device('cpu'), quick=False, budget=None, data_root=ROOT, on_row=None,
                   compile_rows=True, jobs=tuple(JOBS)):
    """The table; ``budget`` (seconds) skips the rows that would start after it, ``on_row(cells)`` sees each row,
    ``compile_rows=False`` leaves torch.compile out (the GPU check's dry run: minutes of compiling on a CPU),
    ``jobs`` names the networks measured (keys of ``JOBS``)."""
    import tempfile
    torch.backends.cudnn.benchmark = True  # as basicsr train sets it
    started = time.perf_counter()
    warmup, timed = (1, 1) if quick else (3, 5)
    rows = []
    native = bf16_native(device)
    with tempfile.TemporaryDirectory() as folder:
        for name in jobs:
            opt = recipe_options(name, device, quick, folder, data_root)
            train_set = opt['datasets']['train']
            size = f"{train_set['batch_size_per_gpu']} x {train_set['gt_size']}"
            missing = [key for key in ('dataroot_gt', 'dataroot_labels') if opt['model_type'] == 'MoESRModel' and
                       not Path(train_set[key]).is_dir()]
            data = None
            if missing:
                reason = f'no {train_set[missing[0]]} (python scripts/data_preparation/make_demo_dataset.py)'
            else:
                reason = None
                data = batches(opt, warmup + timed)
            base = None
            for label, setting in SETTINGS:
                why = reason
                if why is None and 'compile' in setting and not compile_rows:
                    why = 'skipped: no compilation asked'
                if why is None and setting.get('amp') == 'bf16' and native is False:
                    why = 'refused: this GPU only emulates bf16'
                if why is None and budget is not None and time.perf_counter() - started > budget:
                    why = f'skipped: the {budget:.0f} s budget is spent'
                if why is None:
                    try:
                        seconds, warming = measure(opt, setting, device, warmup, timed, data)
                    except Exception as error:  # noqa: B902  (one failed row; the table goes on)
                        why = f'failed: {type(error).__name__}: {(str(error).splitlines() or [""])[0][:120]}'
                if why is not None:
                    cells = [name, label, size, '-', '-', '-', why]
                else:
                    base = base or (seconds if label == 'fp32' else None)
                    ratio = f'{base / seconds:.2f}x' if base else '-'
                    cells = [name, label, size, round(1 / seconds, 3), ratio, round(warming, 1), '']
                rows.append(cells)
                if on_row:
                    on_row(cells)
    notes = [f'Device: {device_name(device)}' + (f'; bf16 native: {"yes" if native else "no (emulated)"}'
                                                   if native is not None else '') + f'; torch {torch.__version__}.',
             f'{warmup} warm-up iteration(s) per stage (torch.compile compiles there: "warm-up s"), then {timed} '
             'timed ones of the package\'s training step (forward, losses, backward, optimizer, EMA), data drawn '
             'beforehand; ratio: iterations per second against fp32 of the same network.',
             'Recipes: options/train_SeemoRe_T_x4.yml, options/train_edsr_baseline_x2.yml (random batches; on the '
             'CPU 4 crops of 128 and 96 HR pixels, on CUDA the recipes\' 32 x 256 and 16 x 96) and '
             'options/train_moesr.yml (the demo photos, its 6 crops of 64, with the equal-budget control; the '
             'stages weighted 240/160/80 as in the recipe, validation left out).']
    if quick:
        notes.append('--quick: tiny networks, 1 timed iteration; the figures mean nothing.')
    return Table(f'Training iterations per second on {"CUDA" if device.type == "cuda" else "the CPU"}: '
                 'train.amp, train.channels_last, train.compile against fp32',
                 ['network', 'setting', 'batch x HR patch', 'iterations/s', 'vs fp32', 'warm-up s', 'note'],
                 rows, notes)


def run(quick):
    return [training_table(quick=quick)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny networks: checks the script, not the speed')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    parser.add_argument('--budget', type=float, help='seconds after which no further row starts')
    parser.add_argument('--data', default=str(ROOT), help='folder holding datasets/demo (default: the repository)')
    parser.add_argument('--jobs', nargs='+', choices=list(JOBS), default=list(JOBS), metavar='NETWORK',
                        help=f'networks measured (default: all of {", ".join(JOBS)})')
    args = parser.parse_args(argv)
    table = training_table(torch.device(args.device), args.quick, args.budget, args.data, jobs=args.jobs,
                           on_row=lambda cells: print(' | '.join(map(str, cells)), file=sys.stderr, flush=True))
    print(table.markdown())


if __name__ == '__main__':
    main()
