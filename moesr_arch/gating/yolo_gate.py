"""YOLOGate: an ultralytics YOLO detector or segmenter as the MoE-SR gate.

ultralytics (AGPL-3.0) is imported only here, and only when a YOLOGate is built or a gate is trained,
after :func:`prepare_ultralytics` has made it offline: ``YOLO_OFFLINE=1`` (no network checks),
``YOLO_AUTOINSTALL=0`` (no pip), a config folder of our own (``YOLO_CONFIG_DIR``) holding a local
font under the names ultralytics would otherwise download (matplotlib's DejaVu Sans).
"""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moesr_arch.gating.base import Gate, combine_detections
from moesr_arch.options import OptionError
from moesr_arch.utils.image_io import to_uint8

# Detector class id -> candidate category names, first one present in the categories file wins.
# The ids follow the datasets' own yaml files shipped with ultralytics (coco.yaml, open-images-v7.yaml).
CLASS_MAP_PRESETS = {
    'coco': {
        0: ['people', 'person'],
        1: ['bicycle', 'vehicle'],
        2: ['car', 'vehicle'],
        3: ['motorcycle', 'vehicle'],
        4: ['plane', 'airplane', 'vehicle'],
        5: ['bus', 'vehicle'],
        7: ['truck', 'vehicle'],
        15: ['cat'],
        16: ['dog'],
    },
    'oiv7': {  # the reference MoE-SR's map (yolov8x-oiv7), plus vehicle kinds for a "vehicle" category
        381: ['people', 'person'],  # Person
        322: ['people', 'person'],  # Man
        594: ['people', 'person'],  # Woman
        90: ['car', 'vehicle'],  # Car
        3: ['plane', 'airplane', 'vehicle'],  # Airplane
        160: ['dog'],  # Dog
        96: ['cat'],  # Cat
        42: ['bicycle', 'vehicle'],  # Bicycle
        73: ['bus', 'vehicle'],  # Bus
        342: ['motorcycle', 'vehicle'],  # Motorcycle
        425: ['rocket', 'vehicle'],  # Rocket
        522: ['car', 'vehicle'],  # Taxi
        558: ['truck', 'vehicle'],  # Truck
        564: ['car', 'vehicle'],  # Van
        302: ['vehicle'],  # Land vehicle
        567: ['vehicle'],  # Vehicle
    },
}


def prepare_ultralytics(config_dir=None, verbose=False):
    """Make ultralytics offline (and quiet unless ``verbose``); call before importing it. Returns its config folder.

    Existing ``YOLO_*`` environment variables are kept (a user may point the config elsewhere).
    """
    os.environ.setdefault('YOLO_OFFLINE', '1')
    os.environ.setdefault('YOLO_AUTOINSTALL', '0')
    os.environ.setdefault('YOLO_VERBOSE', str(bool(verbose)))
    if config_dir is None:
        config_dir = os.environ.get('YOLO_CONFIG_DIR') or os.path.join(tempfile.gettempdir(),
                                                                        f'moesr-ultralytics-{os.getuid()}')
    os.environ.setdefault('YOLO_CONFIG_DIR', str(config_dir))
    settings_dir = Path(os.environ['YOLO_CONFIG_DIR']) / 'Ultralytics'
    settings_dir.mkdir(parents=True, exist_ok=True)
    # Dataset checks and plots look for Arial in the config folder and download it when missing.
    import matplotlib
    font = Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'DejaVuSans.ttf'
    for name in ('Arial.ttf', 'Arial.Unicode.ttf'):
        if not (settings_dir / name).exists() and font.is_file():
            shutil.copyfile(font, settings_dir / name)
    return settings_dir


def load_yolo(weights=None, model=None):
    """An ultralytics YOLO from a local weights file or a model yaml (untrained), never downloading."""
    if (weights is None) == (model is None):
        raise OptionError('YOLOGate: give exactly one of weights (a .pt file) and model (a model yaml)')
    if weights is not None and not os.path.isfile(weights):
        # ultralytics would try to download a missing file by name
        raise FileNotFoundError(f'YOLO weights not found: {weights} (nothing is downloaded; train one with '
                                '`basicsr train-gate` or copy a .pt file here)')
    if model is not None and not str(model).endswith(('.yaml', '.yml')):
        raise OptionError(f'YOLOGate: model must be a model yaml such as yolov8n-seg.yaml, got {model!r}')
    prepare_ultralytics()
    from ultralytics import YOLO
    return YOLO(weights if weights is not None else model)


def resolve_class_map(class_map, detector_names, categories):
    """Detector class id -> category index, from a preset name, ``auto`` (same names) or an explicit dict."""
    if class_map == 'auto':
        resolved = {int(i): categories.index(n) for i, n in detector_names.items() if n in categories}
        if not resolved:
            raise OptionError(f'YOLOGate: class_map auto: no detector class is named like a category '
                              f'{categories}; use class_map coco, oiv7 or a mapping {{detector id: category}}')
        return resolved
    if isinstance(class_map, str):
        if class_map not in CLASS_MAP_PRESETS:
            raise OptionError(f'YOLOGate: unknown class_map preset {class_map!r}; presets: auto, '
                              f'{", ".join(CLASS_MAP_PRESETS)}')
        resolved = {}
        for det_id, names in CLASS_MAP_PRESETS[class_map].items():
            match = next((n for n in names if n in categories), None)
            if match is not None:
                resolved[det_id] = categories.index(match)
        if not resolved:
            raise OptionError(f'YOLOGate: class_map {class_map}: no preset class maps onto the categories '
                              f'{categories}')
        return resolved
    resolved = {}
    for det_id, name in class_map.items():
        if name not in categories:
            raise OptionError(f'YOLOGate: class_map {det_id}: {name!r} is not a category ({categories})')
        resolved[int(det_id)] = categories.index(name)
    return resolved


def _box_masks(boxes, height, width, device):
    """Binary masks [N, h, w] of boxes xyxy (pixel coordinates): pixels whose centre lies inside."""
    ys = torch.arange(height, device=device).view(1, -1, 1) + 0.5
    xs = torch.arange(width, device=device).view(1, 1, -1) + 0.5
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return ((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)).float()


class YOLOGate(Gate):
    """Category weights from YOLO detections (boxes) or instance segmentation (masks).

    Detector classes that ``class_map`` does not map are ignored; the LR image is letterboxed to ``imgsz``.
    In an option file (``gate: {type: YOLOGate, ...}``), its keys with their types and defaults are in
    docs/options.md#yologate.

    Args:
        categories (list[str]): category names in id order.
        weights (str): a trained ``.pt`` file (e.g. from ``basicsr train-gate``). Exactly one of weights/model.
        model (str): a model yaml such as ``yolov8n-seg.yaml`` (untrained; for tests).
        class_map (str | dict): ``auto`` (classes named like categories), ``coco``, ``oiv7`` or ``{class id: name}``.
        conf (float): confidence threshold.
        iou (float): NMS IoU threshold.
        min_area (float): drop detections covering less than this fraction of the image.
        imgsz (int | list[int]): detector input size.
        mode (str): ``auto`` (masks when the model segments, else boxes), ``masks`` or ``boxes``.
        max_det (int): at most this many detections per image.
        device (str | None): device for the detector; default: the device of the LR batch.
    """

    def __init__(self, categories, weights=None, model=None, class_map='auto', conf=0.25, iou=0.7, min_area=0.0,
                 imgsz=640, mode='auto', max_det=300, device=None):
        super().__init__(categories)
        for name, value in (('conf', conf), ('iou', iou), ('min_area', min_area)):
            if not 0 <= value <= 1:
                raise OptionError(f'YOLOGate: {name} must be in [0, 1], got {value}')
        self.yolo = load_yolo(weights, model)
        self.class_map = resolve_class_map(class_map, dict(self.yolo.names), self.categories)
        self.conf, self.iou, self.min_area = float(conf), float(iou), float(min_area)
        self.imgsz, self.mode, self.max_det, self.device = imgsz, mode, max_det, device
        if mode == 'masks' and self.yolo.task != 'segment':
            raise OptionError(f'YOLOGate: mode masks needs a segmentation model, {weights or model} is a '
                              f'{self.yolo.task} model')

    def detect(self, lq):
        """Run the detector on ``lq`` [B, 3, h, w]; per image ``(masks [N, h, w], classes [N], conf [N])``."""
        height, width = lq.shape[-2:]
        # ultralytics letterboxes numpy images itself; it wants uint8 BGR HWC.
        images = [np.ascontiguousarray(img[..., ::-1]) for img in to_uint8(lq)]
        device = self.device or ('cpu' if lq.device.type == 'cpu' else str(lq.device))
        threads = torch.get_num_threads()
        results = self.yolo.predict(images, imgsz=self.imgsz, conf=self.conf, iou=self.iou, max_det=self.max_det,
                                    retina_masks=True, device=device, verbose=False, save=False)
        # ultralytics lowers torch's CPU threads to (cores - 1) on every prediction; the experts want them all.
        torch.set_num_threads(threads)
        out = []
        for result in results:
            boxes = result.boxes
            classes = boxes.cls.long().cpu().tolist() if boxes is not None else []
            keep = [i for i, c in enumerate(classes) if c in self.class_map]
            if not keep:
                empty = torch.zeros(0, height, width, device=lq.device)
                out.append((empty, torch.zeros(0, dtype=torch.long, device=lq.device),
                            torch.zeros(0, device=lq.device)))
                continue
            keep_t = torch.tensor(keep)
            use_masks = self.mode == 'masks' or (self.mode == 'auto' and result.masks is not None)
            if use_masks:
                masks = result.masks.data[keep_t.to(result.masks.data.device)].float().to(lq.device)
                if masks.shape[-2:] != (height, width):  # retina masks are at image size; guard anyway
                    masks = F.interpolate(masks[None], size=(height, width), mode='bilinear', align_corners=False)[0]
            else:
                masks = _box_masks(boxes.xyxy[keep_t.to(boxes.xyxy.device)].float().to(lq.device), height, width,
                                   lq.device)
            classes_t = torch.tensor([self.class_map[classes[i]] for i in keep], device=lq.device)
            conf_t = boxes.conf[keep_t.to(boxes.conf.device)].float().to(lq.device)
            area = masks.clamp(0, 1).mean(dim=(1, 2))
            big = area >= max(self.min_area, 1e-12)
            out.append((masks[big], classes_t[big], conf_t[big]))
        return out

    def weights(self, lq, data):
        detections = self.detect(lq)
        return torch.stack([combine_detections(m, c, s, self.num_categories) for m, c, s in detections])
