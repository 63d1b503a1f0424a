"""MoE-SR's evidence: the main job trained on 3 seeds, the blend against its equal-budget control.

Each seed runs ``basicsr train -opt options/train_moesr.yml --force_yml manual_seed=<seed>`` in a
scratch folder (the demo data linked in), exactly as a user would; the recipe trains the equal-budget
single network (``network_ref``) beside the mixture on the same batches. Figures are read from the run's
TensorBoard events (the last validation): PSNR-Y / SSIM-Y of the blend, the control, the background
expert alone and bicubic, overall and inside each category, and the specialisation matrix. The spread is
max - min over the seeds; a gain counts only where every seed's gain is positive and the mean gain is
larger than the spread of the control.

Run alone: ``python scripts/bench/evidence.py [--quick] [--seeds 0 1 2] [--opt options/train_moesr.yml]
[--force_yml key=value] [--work DIR] [--keep FILE.json]``
(the seed goes into a copy of the option file).
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench import Table  # noqa: E402

SEEDS = (0, 1, 2)
RECIPE = 'options/train_moesr.yml'


def shorten(opt, total=6):
    """Two iterations per stage: the run checks the script, not the method."""
    stages = opt['train'].get('stages') or [{'stage': opt['train']['stage'], 'iters': total}]
    for entry in stages:
        entry['iters'] = total // len(stages)
    stages[-1]['iters'] += total - sum(entry['iters'] for entry in stages)
    opt['train']['total_iter'] = total
    opt['logger']['save_checkpoint_freq'] = total


def train(recipe, seed, work, extra=(), quick=False):
    """Train ``recipe`` with ``seed`` in ``work``; return (its TensorBoard scalars, wall seconds)."""
    import yaml
    opt = yaml.safe_load((ROOT / recipe).read_text())
    name = f'{opt["name"]}_seed{seed}'
    options = Path(work) / f'{name}.yml'
    opt['name'], opt['manual_seed'] = name, seed
    for entry in extra:  # key:sub=value, as --force_yml
        keys, value = entry.split('=', 1)
        node = opt
        *parents, last = keys.split(':')
        for key in parents:
            node = node[key]
        node[last] = yaml.safe_load(value)
    if quick:
        shorten(opt)
    options.write_text(yaml.safe_dump(opt, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
               YOLO_OFFLINE='1', YOLO_AUTOINSTALL='0', YOLO_CONFIG_DIR=str(Path(work) / 'ultralytics'))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', 'moesr_arch', 'train', '-opt', str(options)], cwd=work, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f'{recipe} seed {seed} failed:\n{proc.stderr[-3000:]}')
    return last_scalars(Path(work) / 'tb_logger' / name), seconds


def last_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()['scalars']}


def spread(values):
    return max(values) - min(values) if len(values) > 1 else 0.0


def mean_spread(values):
    return f'{statistics.mean(values):.2f} ± {spread(values) / 2:.2f}'


def evidence_tables(runs, dataset, categories, seconds, recipe):
    """The comparison table and the specialisation matrix from ``runs`` (one scalar dict per seed)."""
    rows = []
    verdicts = {}
    for region, suffix in [('all', '')] + [(name, f'_{name}') for name in categories]:
        def values(kind, column):
            key = f'metrics/{dataset}/{kind}{suffix}{column}'
            return [run[key] for run in runs if key in run]
        psnr, single = values('psnr', ''), values('psnr', '_reference')
        if not psnr or not single:
            continue
        gains = [a - b for a, b in zip(psnr, single)]
        wins = all(g > 0 for g in gains) and statistics.mean(gains) > spread(single)
        verdicts[region] = wins
        rows.append([region, mean_spread(psnr), mean_spread(single), mean_spread(values('psnr', '_background')),
                     f'{statistics.mean(values("psnr", "_bicubic")):.2f}',
                     ' / '.join(f'{g:+.2f}' for g in gains), f'{spread(single):.2f}', 'yes' if wins else 'no',
                     f'{statistics.mean(values("ssim", "")):.4f}', f'{statistics.mean(values("ssim", "_reference")):.4f}',
                     f'{statistics.mean(values("ssim", "_bicubic")):.4f}',
                     ' / '.join(f'{v:.2f}' for v in values('color_bias', '')) or '-'])
    comparison = Table(
        f'MoE-SR against its equal-budget single network ({recipe}, {dataset}, seeds {len(runs)})',
        ['region', 'MoE-SR PSNR-Y', 'single network', 'background expert alone', 'bicubic',
         'gain per seed (dB)', 'spread of single', 'wins?', 'SSIM-Y MoE-SR', 'SSIM-Y single', 'SSIM-Y bicubic',
         'colour bias MoE-SR per seed'],
        rows,
        notes=['mean ± half the seed-to-seed range; "single network" = the background expert\'s architecture '
               'trained beside the mixture on the same batches for the same iterations (network_ref)',
               '"wins?" = every seed gains and the mean gain exceeds the single network\'s seed spread',
               'training time per seed (mixture and control together, 2-core CPU): ' +
               ', '.join(f'{s:.0f} s' for s in seconds)])
    prefix = f'specialisation/{dataset}/'
    cells = {}
    for run in runs:
        for key, value in run.items():
            if key.startswith(prefix):
                row, region = key[len(prefix):].rsplit('/', 1)
                cells.setdefault((row, region), []).append(value)
    regions = [r for r in categories + ['background'] if any(region == r for _, region in cells)]
    row_names = list(dict.fromkeys(row for row, _ in cells))
    matrix = Table(f'Specialisation: each expert alone inside each region (PSNR-Y, mean of {len(runs)} seeds)',
                   ['expert \\ region'] + regions,
                   [[row] + [f'{statistics.mean(cells[(row, r)]):.2f}' if (row, r) in cells else '-' for r in regions]
                    for row in row_names],
                   notes=['an expert that specialises scores best in its own column among the expert rows'])
    return [comparison, matrix], verdicts


def run(quick=False, seeds=SEEDS, recipe=RECIPE, extra=(), keep=None, work=None):
    """The tables of every validation set of ``recipe`` over ``seeds``; ``keep``: a JSON file for the raw
    scalars of every run; ``work``: a new folder that keeps the runs (experiments/<name>_seed<s>/, e.g. to
    benchmark their weights), instead of a temporary one."""
    import json
    import yaml
    opt = yaml.safe_load((ROOT / recipe).read_text())
    datasets = [value['name'] for key, value in opt['datasets'].items() if key.startswith('val')]
    categories = [name for name in opt['network_g']['experts'] if name != 'background']
    runs, seconds = [], []
    if work is not None:
        Path(work).mkdir(parents=True)  # a new folder: runs of an earlier call are never replaced
    with (contextlib.nullcontext(str(work)) if work else tempfile.TemporaryDirectory(prefix='moesr_evidence_')) \
            as work:
        os.symlink(ROOT / 'datasets', Path(work) / 'datasets')
        for seed in (seeds[:1] if quick else seeds):
            scalars, took = train(recipe, seed, work, extra, quick)
            runs.append(scalars)
            seconds.append(took)
            print(f'{recipe} seed {seed}: {took:.0f} s', flush=True)
    if keep:
        Path(keep).write_text(json.dumps({'recipe': recipe, 'extra': list(extra), 'seconds': seconds, 'runs': runs}))
    tables = []
    for dataset in datasets:
        tables += evidence_tables(runs, dataset, categories, seconds, recipe)[0]
    if not quick and 'network_ref' in opt:
        tables.append(inference_times(recipe, {'single network': opt['network_ref']}))
    return tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='one seed, 6 iterations: checks the script only')
    parser.add_argument('--seeds', type=int, nargs='+', default=list(SEEDS))
    parser.add_argument('--opt', default=RECIPE, help=f'MoE-SR recipe with a network_ref (default {RECIPE})')
    parser.add_argument('--force_yml', nargs='*', default=[], help='overrides key:sub=value, as in basicsr train')
    parser.add_argument('--work', help='a new folder keeping the runs (default: a temporary one, removed)')
    parser.add_argument('--keep', help='a JSON file for the raw scalars of every run')
    args = parser.parse_args(argv)
    for table in run(args.quick, tuple(args.seeds), args.opt, args.force_yml, args.keep, args.work):
        print(table.markdown())



def inference_times(recipe, references, repeats=3):
    """Median ms per validation image of the recipe's MoE-SR (label gate, sparse) and of single networks.

    Times do not depend on the weights (the experts' work is set by the labelled regions), so the networks
    are built untrained; ``references`` maps a label to network options."""
    import yaml
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    import torch
    from moesr_arch.gating import build_gate
    from moesr_arch.options import check_dataset, resolve_derived_options
    opt = yaml.safe_load((ROOT / recipe).read_text())
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        resolve_derived_options(opt, recipe)  # the categories file is named relative to the repository
        net = build_network(dict(opt['network_g'])).eval()
        gate = build_gate(dict(opt['gate']), source='gate')
        singles = {label: build_network(dict(options)).eval() for label, options in references.items()}
        rows = []
        for key, dataset_opt in opt['datasets'].items():
            if not key.startswith('val'):
                continue
            dataset = build_dataset(check_dataset(dict(dataset_opt, phase='val', scale=opt['scale']), f'datasets.{key}',
                                                  recipe, is_train=False))
            times = {'MoE-SR': [], **{label: [] for label in singles}}
            for index in range(len(dataset)):
                item = dataset[index]
                lq, data = item['lq'][None], {'category_map': item['category_map'][None]}
                with torch.no_grad():
                    for label, function in [('MoE-SR', lambda: net.run(lq, gate(lq, data)))] + [
                            (label, lambda single=single: single(lq)) for label, single in singles.items()]:
                        samples = []
                        for _ in range(repeats):
                            started = time.perf_counter()
                            function()
                            samples.append(time.perf_counter() - started)
                        times[label].append(statistics.median(samples) * 1000)
            total = {label: sum(values) / len(values) for label, values in times.items()}
            rows.append([dataset_opt['name'], len(dataset)] + [f'{total[label]:.0f}' for label in times] +
                        [f'{total["MoE-SR"] / total[label]:.2f}x' for label in singles])
    finally:
        os.chdir(cwd)
    return Table(f'Inference time per image ({recipe}, label gate, sparse experts; {torch.get_num_threads()} threads)',
                 ['photos', 'images', 'MoE-SR ms'] + [f'{label} ms' for label in references] +
                 [f'MoE-SR / {label}' for label in references], rows,
                 notes=['median of 3 runs per image, mean over the images; untrained weights (the cost does not '
                        'depend on them)'])


if __name__ == '__main__':
    main()
