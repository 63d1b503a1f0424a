"""Train a YOLO segmentation gate for MoE-SR on category labels, offline.

Converts the labels to an ultralytics segmentation dataset, ``<output>/data`` (images, YOLO segmentation labels, data.yaml), trains there with ultralytics
(``<output>/train``: its logs and checkpoints) and copies the best weights to ``<output>/gate.pt``, the file
a ``YOLOGate`` reads (``weights: <output>/gate.pt``; its class names are the categories, so the default
``class_map: auto`` maps them). Nothing is downloaded: the model comes from a yaml (from scratch) or a
weights file you give, plots are off, AMP is off (its check would fetch weights), fonts are local.
"""
import os
import shutil
from pathlib import Path

import yaml

from moesr_arch.data.categories import load_categories
from moesr_arch.data.category_labels import read_labels
from moesr_arch.options.recipes import GATE_FILE
from moesr_arch.utils.image_io import list_images


def _place(src, dest):
    """Hard-link ``src`` at ``dest`` (no copy of large sets), or copy across file systems."""
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write_split(images_dir, labels_dir, categories, data_dir, split, labels_required=False, repeat=1):
    """Write ``data_dir/{images,labels}/<split>`` from an image folder and its category labels; count images.

    ``repeat`` > 1 links every image that many times (``<stem>_rep<i>``): a tiny set then makes epochs of
    several batches, so training spends its time on gradient steps rather than on per-epoch overhead.
    """
    images_dir, data_dir = Path(images_dir), Path(data_dir)
    names = [path.name for path in list_images(images_dir)]
    (data_dir / 'images' / split).mkdir(parents=True, exist_ok=True)
    (data_dir / 'labels' / split).mkdir(parents=True, exist_ok=True)
    for name in names:
        stem = os.path.splitext(name)[0]
        regions = read_labels(Path(labels_dir) / f'{stem}.txt', len(categories), labels_required)
        # ultralytics segmentation labels: class and polygon; our boxes are already 4-point polygons.
        lines = [f'{r.category} ' + ' '.join(f'{v:.6f}' for v in r.points.reshape(-1)) for r in regions]
        for copy in range(repeat):
            out_stem = stem if repeat == 1 else f'{stem}_rep{copy}'
            _place(images_dir / name, data_dir / 'images' / split / (out_stem + os.path.splitext(name)[1]))
            (data_dir / 'labels' / split / f'{out_stem}.txt').write_text('\n'.join(lines) + ('\n' if lines else ''))
    return len(names) * repeat


def write_dataset(output, categories, train_images, train_labels, val_images=None, val_labels=None,
                  labels_required=False, repeat=1):
    """Convert category labels to an ultralytics segmentation dataset; return the data.yaml path."""
    data_dir = Path(output).resolve() / 'data'
    shutil.rmtree(data_dir, ignore_errors=True)
    write_split(train_images, train_labels, categories, data_dir, 'train', labels_required, repeat)
    if val_images is None:
        val_images, val_labels = train_images, train_labels
    write_split(val_images, val_labels, categories, data_dir, 'val', labels_required)
    data_yaml = data_dir / 'data.yaml'
    data_yaml.write_text(yaml.safe_dump({'path': str(data_dir), 'train': 'images/train', 'val': 'images/val',
                                         'names': dict(enumerate(categories))}, sort_keys=False))
    return data_yaml


def train(data_yaml, output, model='yolov8n-seg.yaml', weights=None, epochs=5, imgsz=320, batch=4, device='cpu',
          workers=0, seed=0, patience=100, extra=None):
    """Train with ultralytics in ``output/train``; copy the best weights to ``output/gate.pt`` and return its path.

    ``extra`` holds further ultralytics training arguments (e.g. ``{'mosaic': 0.0}``).
    """
    from moesr_arch.gating.yolo_gate import load_yolo, prepare_ultralytics
    output = Path(output).resolve()
    prepare_ultralytics(output / 'ultralytics', verbose=True)  # its progress bars
    from ultralytics import settings
    # Experiment trackers and analytics would reach for the network; TensorBoard logs stay local.
    # Its default folders follow the current git checkout; keep everything under the output folder.
    wanted = {'sync': False, 'hub': False, 'wandb': False, 'mlflow': False, 'comet': False, 'clearml': False,
              'dvc': False, 'neptune': False, 'raytune': False, 'datasets_dir': str(output / 'data'),
              'weights_dir': str(output / 'ultralytics' / 'weights'), 'runs_dir': str(output / 'ultralytics' / 'runs')}
    settings.update({key: value for key, value in wanted.items() if key in settings})
    yolo = load_yolo(weights=weights, model=None if weights else model)
    if yolo.task != 'segment':
        raise ValueError(f'{weights or model}: a {yolo.task} model; the gate trainer needs a segmentation model '
                         '(e.g. yolov8n-seg.yaml or a *-seg.pt file)')
    yolo.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers,
               project=str(output), name='train', exist_ok=True, plots=False, amp=False, seed=seed,
               deterministic=True, patience=patience, pretrained=bool(weights), **(extra or {}))
    run_dir = output / 'train' / 'weights'
    best = run_dir / 'best.pt' if (run_dir / 'best.pt').is_file() else run_dir / 'last.pt'
    if not best.is_file():
        raise RuntimeError(f'ultralytics wrote no weights in {run_dir}')
    target = output / GATE_FILE
    shutil.copyfile(best, target)
    return target


def add_arguments(parser):
    parser.add_argument('--dataset', help='a dataset root with {train,val}/HR, {train,val}/labels and '
                        'categories.yml (e.g. datasets/demo); the flags below override its parts')
    parser.add_argument('--lr-scale', type=int, help='with --dataset: train on {split}/LR_bicubic/X<N> (the '
                        'images the gate sees at test) instead of HR')
    parser.add_argument('--train-images', help='folder of training images')
    parser.add_argument('--train-labels', help='folder of their label files (<stem>.txt)')
    parser.add_argument('--val-images', help='folder of validation images (default: the training images)')
    parser.add_argument('--val-labels', help='folder of their label files')
    parser.add_argument('--categories', help='categories file (id: name)')
    parser.add_argument('--labels-required', action='store_true', help='fail on an image without a label file')
    parser.add_argument('--output', default='experiments/gate', help='output folder (default: %(default)s)')
    parser.add_argument('--model', default='yolov8n-seg.yaml', help='model yaml to train from scratch '
                        '(default: %(default)s)')
    parser.add_argument('--weights', help='a segmentation .pt file to fine-tune instead (no download)')
    parser.add_argument('--epochs', type=int, default=5, help='training epochs (default: %(default)s)')
    parser.add_argument('--repeat', type=int, default=1, help='use every training image this many times per '
                        'epoch (for tiny sets such as the demo; default: %(default)s)')
    parser.add_argument('--imgsz', type=int, default=320, help='training image size (default: %(default)s)')
    parser.add_argument('--batch', type=int, default=4, help='images per batch (default: %(default)s)')
    parser.add_argument('--device', default='cpu', help="'cpu' or a CUDA index such as 0 (default: %(default)s)")
    parser.add_argument('--workers', type=int, default=0, help='data loader workers (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the training (default: %(default)s)')
    parser.add_argument('--train-arg', action='append', default=[], metavar='KEY=VALUE',
                        help='a further ultralytics training argument, e.g. --train-arg mosaic=0.0 (repeatable)')


def parse_train_args(entries):
    """``['mosaic=0.0', 'lr0=0.02']`` -> ``{'mosaic': 0.0, 'lr0': 0.02}`` (values read as YAML)."""
    extra = {}
    for entry in entries:
        key, sep, value = entry.partition('=')
        if not sep or not key.strip():
            raise SystemExit(f'train-gate: --train-arg {entry!r}: expected KEY=VALUE')
        if key.strip() in PROTECTED:
            raise SystemExit(f'train-gate: --train-arg {key.strip()} is set by train-gate itself')
        extra[key.strip()] = yaml.safe_load(value)
    return extra


# Arguments train-gate sets itself: offline safety (plots, amp) and its own output layout.
PROTECTED = ('data', 'project', 'name', 'exist_ok', 'plots', 'amp', 'pretrained')


def main(args):
    paths = {}
    if args.dataset:
        root = Path(args.dataset)
        sub = f'LR_bicubic/X{args.lr_scale}' if args.lr_scale else 'HR'
        paths = {'train_images': root / 'train' / sub, 'train_labels': root / 'train' / 'labels',
                 'val_images': root / 'val' / sub, 'val_labels': root / 'val' / 'labels',
                 'categories': root / 'categories.yml'}
    for key in ('train_images', 'train_labels', 'val_images', 'val_labels', 'categories'):
        if getattr(args, key):
            paths[key] = Path(getattr(args, key))
    missing = [f'--{k.replace("_", "-")}' for k in ('train_images', 'train_labels', 'categories') if k not in paths]
    if missing:
        raise ValueError(f'give --dataset or {", ".join(missing)}')
    extra = parse_train_args(args.train_arg)
    categories = load_categories(paths['categories'])
    data_yaml = write_dataset(args.output, categories, paths['train_images'], paths['train_labels'],
                              paths.get('val_images'), paths.get('val_labels'), args.labels_required, args.repeat)
    weights = train(data_yaml, args.output, args.model, args.weights, args.epochs, args.imgsz, args.batch,
                    args.device, args.workers, args.seed, extra=extra)
    print(f'gate weights: {weights}')
    return 0
