"""Ship a trained model: its weights as ``moesr_arch/weights/<NAME>.safetensors`` and its model card ``<NAME>.md``.

    python scripts/ship_weights.py NAME --run experiments/<run> --cpu-minutes M [--table TABLE.md] [--half]

NAME is an entry of ``moesr_arch.weights.SHIPPED``. The weights are the run's latest ``net_g`` (its EMA copy,
``params_ema``, where the run kept one: the weights its validation scored), stored as float32, or float16 with
``--half`` (for a model over the 4 MB a shipped file may take; inference computes in float32 either way). The
card says what the network is, the data (the run's training set), the recipe, iterations, seed, the CPU time
given (``--cpu-minutes``: user + system time of the training process, as ``/usr/bin/time -v`` prints it), the
wall-clock span of the run's log, its last Set5 validation, and the standard table of ``--table`` (the
``table.md`` that ``basicsr benchmark --model moesr_arch/weights/<NAME>.safetensors`` wrote). Both files are
written atomically; an existing file with other content is replaced only with ``--replace``.
"""
import argparse
import hashlib
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesr_arch.errors import UserError  # noqa: E402
from moesr_arch.utils.atomic import atomic_write  # noqa: E402
from moesr_arch.weights import FOLDER, SHIPPED  # noqa: E402

LOG_TIME = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ')
MAX_BYTES = 4 * 1024 * 1024


def latest_weights(run):
    """``(state dict, entry, iteration)`` of the run's newest ``net_g_<iter>.pth``."""
    numbered = {int(p.stem[len('net_g_'):]): p for p in Path(run, 'models').glob('net_g_*.pth')
                if p.stem[len('net_g_'):].isdigit()}
    if not numbered:
        raise UserError(f'{run}/models: no net_g_<iter>.pth; is {run} a finished training run?')
    iteration = max(numbered)
    checkpoint = torch.load(numbered[iteration], map_location='cpu', weights_only=True)
    entry = 'params_ema' if 'params_ema' in checkpoint else 'params'
    return checkpoint[entry], entry, iteration


def run_options(run):
    """The option file BasicSR copied into the run folder."""
    copies = sorted(Path(run).glob('*.yml'))
    if len(copies) != 1:
        raise UserError(f'{run}: expected the one option file BasicSR copies there, found {len(copies)}')
    return copies[0].name, yaml.safe_load(copies[0].read_text())


def log_summary(run):
    """``(wall-clock minutes from first to last log line, last Set5 validation text)`` over the run's logs."""
    times, validation = [], None
    for log in sorted(Path(run).glob('train_*.log')):
        lines = log.read_text(errors='replace').splitlines()
        stamps = [LOG_TIME.match(line) for line in lines]
        stamps = [datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S') for m in stamps if m]
        if stamps:
            times.append((stamps[0], stamps[-1]))
        for index, line in enumerate(lines):
            if line.endswith('INFO: Validation Set5'):
                metrics = []
                for follow in lines[index + 1:index + 5]:
                    match = re.match(r'\s+# (\w+): ([\d.]+)', follow)
                    if match:
                        metrics.append(f'{match.group(1)} {float(match.group(2)):.4g}')
                validation = ', '.join(metrics)
    minutes = sum((end - start).total_seconds() for start, end in times) / 60
    return minutes, validation


def training_data(options):
    """One line on the training set: its LMDB/folder and how many sub-images it holds."""
    train = options['datasets']['train']
    gt = train.get('dataroot_gt', '?')
    meta = Path(gt) / 'meta_info.txt'
    count = f', {sum(1 for _ in meta.open())} sub-images' if meta.is_file() else ''
    lr_patch = train['gt_size'] // options['scale']
    return (f'`{gt}`{count} (`basicsr prepare photos`: the photographs of moesr_arch/tools/prepare/photos.tsv); '
            f'batches of {train["batch_size_per_gpu"]} random {lr_patch}x{lr_patch} LR patches, flips and rotations')


def card_text(model, options, recipe_copy, entry, iteration, state, data_bytes, dtype, cpu_minutes, wall, validation,
              table, note=None):
    parameters = sum(t.numel() for t in state.values())
    sha = hashlib.sha256(data_bytes).hexdigest()
    train = options['train']
    lines = [
        f'# {model.label}, trained on the photo corpus', '',
        f'`moesr_arch/weights/{model.name}.safetensors`: a reference model of moesr, trained on the 2-core CPU '
        f'within the budget docs/photos.md states. Use it with', '',
        '```bash', f'basicsr infer -i photo.png --model moesr_arch/weights/{model.name}.safetensors',
        f'basicsr benchmark --model moesr_arch/weights/{model.name}.safetensors', '```', '',
        '| | |', '|---|---|',
        f'| network | `{options["network_g"]["type"]}` as in `{model.recipe}` (`network_g`), {parameters:,} '
        'parameters |',
        f'| recipe | `{model.recipe}` (the run\'s copy: `{recipe_copy}`) |',
        f'| data | {training_data(options)} |',
        f'| iterations | {iteration} of {train["total_iter"]}, seed {options.get("manual_seed")} |',
        f'| CPU time | {cpu_minutes:g} CPU-minutes (user + system of the training process, one torch thread) |',
        f'| wall-clock | {wall:.0f} min on a shared 2-core machine (other jobs ran beside it) |',
        f'| last Set5 validation (PSNR-Y, SSIM-Y) | {validation or "none logged"} |',
        f'| weights | `{entry}` (EMA decay {train.get("ema_decay", 0)}), stored as {dtype}, '
        f'{len(data_bytes) / 1e6:.2f} MB, sha256 `{sha[:16]}...` |',
        f'| torch | {torch.__version__} |',
    ] + ([f'| note | {note} |'] if note else []) + ['']
    if table:  # the benchmark's own title would be a second top-level heading
        body = table.strip().split('\n', 1)[1].strip() if table.startswith('# ') else table.strip()
        lines += ['## Standard table', '', body, '']
    lines += ['## Reproduce', '', '```bash', 'basicsr prepare photos --output datasets/photos',
              'basicsr prepare benchmark --input ../shared/benchmarks/Set5 --output datasets/benchmark/Set5',
              f'basicsr train -opt {model.recipe}',
              f'python scripts/ship_weights.py {model.name} --run experiments/{options["name"]} --cpu-minutes M',
              '```', '']
    return '\n'.join(lines)


def write_once(path, data, replace):
    """Write ``data`` to ``path`` atomically; an existing file with other bytes needs ``replace``."""
    if path.exists() and path.read_bytes() == data:
        return 'unchanged'
    if path.exists() and not replace:
        raise UserError(f'{path} exists with other content; pass --replace to replace it')
    with atomic_write(path) as handle:
        handle.write(data)
    return 'written'


def ship(name, run, cpu_minutes, table=None, half=False, replace=False, folder=FOLDER, note=None):
    """Write ``<folder>/<name>.safetensors`` and ``<name>.md``; ``{path: 'written' | 'unchanged'}``."""
    from safetensors.torch import save
    if name not in SHIPPED:
        raise UserError(f'{name}: not a shipped model; known: {", ".join(SHIPPED)} '
                        '(moesr_arch/weights/__init__.py)')
    model = SHIPPED[name]
    state, entry, iteration = latest_weights(run)
    recipe_copy, options = run_options(run)
    dtype = torch.float16 if half else torch.float32
    state = {key: (value.to(dtype) if value.is_floating_point() else value).contiguous()
             for key, value in state.items()}
    # One metadata key: safetensors writes a map of several in no fixed order, and a re-run must give equal bytes.
    data = save(state, metadata={'moesr': json.dumps({'recipe': model.recipe, 'iterations': iteration,
                                                      'entry': entry}, sort_keys=True)})
    if len(data) > MAX_BYTES:
        raise UserError(f'{name}: {len(data) / 1e6:.1f} MB as {dtype}, over the {MAX_BYTES / 2**20:.0f} MB a shipped '
                        'file may take; pass --half')
    wall, validation = log_summary(run)
    table_text = Path(table).read_text() if table else None
    card = card_text(model, options, f'{run}/{recipe_copy}', entry, iteration, state, data,
                     str(dtype).replace('torch.', ''), cpu_minutes, wall, validation, table_text, note)
    weights, card_path = Path(folder) / model.path.name, Path(folder) / model.card.name
    return {weights: write_once(weights, data, replace), card_path: write_once(card_path, card.encode(), replace)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('name', help='shipped model name (moesr_arch/weights/__init__.py)')
    parser.add_argument('--run', required=True, help='the training run folder, experiments/<name>')
    parser.add_argument('--cpu-minutes', type=float, required=True, help='CPU time of the training (user + system)')
    parser.add_argument('--table', help="table.md of `basicsr benchmark --model` on the shipped file")
    parser.add_argument('--half', action='store_true', help='store float16 (for models over 4 MB in float32)')
    parser.add_argument('--replace', action='store_true', help='replace a shipped file or card with other content')
    parser.add_argument('--note', help='a line for the card on how this run differed from its recipe')
    args = parser.parse_args(argv)
    try:
        for path, what in ship(args.name, args.run, args.cpu_minutes, args.table, args.half, args.replace,
                               note=args.note).items():
            print(f'{path}: {what}')
    except (UserError, OSError) as error:
        print(f'ship_weights: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
