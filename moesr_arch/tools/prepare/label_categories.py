"""Label the objects of an HR folder with a YOLO model: one YOLO label file per image, for the MoE-SR gate.

Runs an ultralytics model (local weights only; nothing is downloaded) on every image and writes
``<output>/<stem>.txt`` with one line per kept object: ``<category id> x1 y1 x2 y2 ...`` (normalised
polygon) for segmentation models, ``<category id> cx cy w h`` (normalised box) for detection models. YOLO
classes are mapped to the categories of ``--categories`` (``id: name`` YAML) by ``--class_map`` entries
``SRC:CATEGORY`` (YOLO class id or name : category name or id); by default a YOLO class whose name equals
a category name maps to it. Other classes are dropped; an image with no kept object gets an empty file
(all background).
"""
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from moesr_arch.tools.common import error_text, get_tool_logger, list_images, read_raw, standalone


def offline_ultralytics():
    """Import ultralytics with its network access (checks, downloads, fonts) switched off."""
    os.environ.setdefault('YOLO_OFFLINE', '1')
    os.environ.setdefault('YOLO_AUTOINSTALL', '0')
    os.environ.setdefault('YOLO_CONFIG_DIR', os.path.join(tempfile.gettempdir(), 'moesr-ultralytics'))
    import ultralytics
    return ultralytics


def load_categories(path):
    """``{id: name}`` from a categories YAML file (``0: people``)."""
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f'{path}: expected "id: name" lines, e.g. "0: people"')
    return data


def build_class_map(entries, yolo_names, categories):
    """``{yolo class id: category id}`` from ``SRC:CATEGORY`` entries (or same-name matching when none)."""
    by_name = {name: i for i, name in yolo_names.items()}
    category_ids = {name: i for i, name in categories.items()}
    if not entries:
        mapping = {by_name[name]: cid for name, cid in category_ids.items() if name in by_name}
        if not mapping:
            raise ValueError(f'no YOLO class is named like a category ({", ".join(category_ids)}); give --class_map')
        return mapping
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
        if target.isdigit() and int(target) in categories:
            mapping[yolo_id] = int(target)
        elif target in category_ids:
            mapping[yolo_id] = category_ids[target]
        else:
            raise ValueError(f'--class_map {entry!r}: no category {target!r} (categories: {categories})')
    return mapping


def to_bgr8(image):
    """uint8 3-channel BGR for YOLO from any 8/16-bit grey/BGR/BGRA image."""
    if image.dtype == np.uint16:
        image = (image / 257.).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


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
    if not Path(weights).is_file():
        raise FileNotFoundError(f'{weights}: no such YOLO weights file (downloads are off; give a local .pt)')
    offline_ultralytics()
    from ultralytics import YOLO
    model = YOLO(str(weights))
    mapping = build_class_map(class_map, dict(model.names), load_categories(categories))
    paths = list_images(input_folder)
    Path(output).mkdir(parents=True, exist_ok=True)
    errors = []
    for path in tqdm(paths, desc='label_categories', unit='img'):
        try:
            image = to_bgr8(read_raw(path))
            result = model.predict(image, conf=conf, imgsz=imgsz, device=device, verbose=False,
                                   retina_masks=True)[0]
            lines = label_lines(result, mapping)
            (Path(output) / f'{path.stem}.txt').write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
        except Exception as error:  # reported at the end; the other images are still labelled
            errors.append(error_text(path, error))
    return errors


def add_arguments(parser):
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='folder for the label files <name>.txt')
    parser.add_argument('--weights', required=True, help='local ultralytics weights (.pt; -seg models give polygons)')
    parser.add_argument('--categories', required=True, help='categories file, e.g. datasets/demo/categories.yml')
    parser.add_argument('--class_map', nargs='*', default=[],
                        help='SRC:CATEGORY entries, e.g. person:people car:vehicle (default: same names)')
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
