"""Label the objects of an HR folder with a YOLO model: one YOLO label file per image, for the MoE-SR gate.

Runs an ultralytics model (local weights only; nothing is downloaded) through the gate package's offline
loader (:func:`moesr_arch.gating.yolo_gate.load_yolo`) on every image and writes ``<output>/<stem>.txt``
with one line per kept object: ``<category id> x1 y1 x2 y2 ...`` (normalised polygon) for segmentation
models, ``<category id> cx cy w h`` (normalised box) for detection models. YOLO classes are mapped to the
categories of ``--categories`` like the YOLOGate's ``class_map``: ``auto`` (a YOLO class named like a
category), a preset (``coco``, ``oiv7``), or ``SRC:CATEGORY`` entries (YOLO class id or name : category
name). Other classes are dropped; an image with no kept object gets an empty file (all background).
"""
from pathlib import Path

import numpy as np

from moesr_arch.data.categories import load_categories
from moesr_arch.gating.yolo_gate import CLASS_MAP_PRESETS, load_yolo, resolve_class_map
from moesr_arch.tools.common import error_text, get_tool_logger, standalone
from moesr_arch.utils.image_io import list_images, read_raw, split_channels
from moesr_arch.utils.atomic import atomic_write_text
from moesr_arch.utils.progress import progress_bar


def build_class_map(entries, yolo_names, categories):
    """``{yolo class id: category id}`` from ``--class_map`` (``auto``, a preset name or SRC:CATEGORY entries)."""
    entries = list(entries) or ['auto']
    if len(entries) == 1 and ':' not in entries[0]:
        if entries[0] != 'auto' and entries[0] not in CLASS_MAP_PRESETS:
            raise ValueError(f'--class_map {entries[0]!r}: expected auto, {", ".join(CLASS_MAP_PRESETS)} or '
                             'SRC:CATEGORY entries')
        return resolve_class_map(entries[0], yolo_names, categories)
    by_name = {name: i for i, name in yolo_names.items()}
    mapping = {}
    for entry in entries:
        source, sep, target = entry.rpartition(':')
        if not sep or not source or not target:
            raise ValueError(f'--class_map {entry!r}: expected SRC:CATEGORY, e.g. person:people')
        if source.isdigit() and int(source) in yolo_names:
            yolo_id = int(source)
        elif source in by_name:
            yolo_id = by_name[source]
        else:
            raise ValueError(f'--class_map {entry!r}: the model has no class {source!r}')
        if target not in categories:
            raise ValueError(f'--class_map {entry!r}: no category {target!r} (categories: {categories})')
        mapping[yolo_id] = target
    return resolve_class_map(mapping, yolo_names, categories)


def to_bgr8(image):
    """uint8 3-channel BGR for YOLO from any 8/16-bit grey/BGR/BGRA image."""
    colour, _, _ = split_channels(image)
    return colour if colour.dtype == np.uint8 else (colour / 257.).round().astype(np.uint8)


def label_lines(result, class_map):
    """YOLO label lines of one ultralytics result, classes mapped; polygons when the model has masks."""
    lines = []
    classes = result.boxes.cls.int().tolist() if result.boxes is not None else []
    polygons = result.masks.xyn if result.masks is not None else None
    for index, yolo_id in enumerate(classes):
        if yolo_id not in class_map:
            continue
        if polygons is not None:
            points = np.clip(polygons[index], 0, 1).reshape(-1)
            if points.size < 6:  # a mask too small to make a polygon
                continue
        else:
            points = result.boxes.xywhn[index].tolist()
        lines.append(f'{class_map[yolo_id]} ' + ' '.join(f'{v:.6f}' for v in points))
    return lines


def label_categories(input_folder, output, weights, categories, class_map=(), conf=0.25, imgsz=640,
                     device='cpu'):
    """Write ``<output>/<stem>.txt`` for every image of ``input_folder``; return error messages."""
    model = load_yolo(weights=str(weights))
    mapping = build_class_map(class_map, dict(model.names), load_categories(categories))
    paths = list_images(input_folder)
    Path(output).mkdir(parents=True, exist_ok=True)
    errors = []
    for path in progress_bar(paths, desc='label_categories', unit='img'):
        try:
            image = to_bgr8(read_raw(path))
            result = model.predict(image, conf=conf, imgsz=imgsz, device=device, verbose=False,
                                   retina_masks=True)[0]
            lines = label_lines(result, mapping)
            atomic_write_text(Path(output) / f'{path.stem}.txt', ''.join(line + '\n' for line in lines))
        except Exception as error:  # reported at the end; the other images are still labelled
            errors.append(error_text(path, error))
    return errors


def add_arguments(parser):
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='folder for the label files <name>.txt')
    parser.add_argument('--weights', required=True, help='local ultralytics weights (.pt; -seg models give polygons)')
    parser.add_argument('--categories', required=True, help='categories file, e.g. datasets/demo/categories.yml')
    parser.add_argument('--class_map', nargs='*', default=['auto'],
                        help='auto (same names), coco, oiv7, or SRC:CATEGORY entries such as person:people '
                        'car:vehicle (default: auto)')
    parser.add_argument('--conf', type=float, default=0.25, help='detection confidence threshold (default: 0.25)')
    parser.add_argument('--imgsz', type=int, default=640, help='YOLO input size (default: 640)')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or a CUDA index (default: cpu)")


def main(args):
    errors = label_categories(args.input, args.output, args.weights, args.categories, args.class_map, args.conf,
                              args.imgsz, args.device)
    logger = get_tool_logger()
    for error in errors:
        logger.error(error)
    logger.info(f'labels written to {args.output}')
    return 1 if errors else 0


def cli(argv=None):
    return standalone(__doc__, add_arguments, main, argv)
