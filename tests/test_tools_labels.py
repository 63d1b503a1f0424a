"""`basicsr prepare label_categories`: a YOLO model (offline, local weights) writes category label files."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from moesr_arch.gating.yolo_gate import load_yolo
from moesr_arch.tools.prepare import check_dataset, label_categories


@pytest.fixture(scope='module')
def person_detector(tmp_path_factory):
    """A YOLOv8n-seg built offline from its yaml whose class head always fires for 'person' (no download)."""
    torch.manual_seed(0)  # random head weights: fixed so the boxes are the same every run
    model = load_yolo(model='yolov8n-seg.yaml')
    head = model.model.model[-1]
    for branch in head.cv3:
        branch[-1].bias.data.fill_(-5.)
    head.cv3[0][-1].bias.data[0] = 5.  # class 0 confident everywhere on the finest level
    model.model.names = {0: 'person', 1: 'bicycle', 2: 'car', **{i: f'class{i}' for i in range(3, 80)}}
    path = tmp_path_factory.mktemp('yolo') / 'person-seg.pt'
    model.save(str(path))
    return path


def test_labels_are_written_mapped_and_valid(tmp_path, person_detector):
    (tmp_path / 'HR').mkdir()
    for index in range(2):
        cv2.imwrite(str(tmp_path / 'HR' / f'img{index}.png'),
                    np.random.RandomState(index).randint(0, 255, (64, 80, 3), np.uint8))
    (tmp_path / 'cats.yml').write_text('0: vehicle\n1: people\n')
    errors = label_categories.label_categories(tmp_path / 'HR', tmp_path / 'labels', person_detector,
                                               tmp_path / 'cats.yml', ['person:people', 'car:vehicle'], imgsz=64)
    assert errors == []
    texts = [(tmp_path / 'labels' / f'img{i}.txt').read_text() for i in range(2)]
    lines = [line.split() for text in texts for line in text.splitlines()]
    assert lines and {line[0] for line in lines} == {'1'}  # YOLO 'person' -> category 'people' (id 1)
    assert all(len(line) >= 7 and len(line) % 2 == 1 for line in lines)  # polygons from the seg masks
    assert check_dataset.check_dataset(tmp_path / 'HR', labels=tmp_path / 'labels',
                                       categories=tmp_path / 'cats.yml') == []


def test_class_map_by_name_id_preset_or_default_and_errors():
    names = {0: 'person', 1: 'cat', 2: 'car', 15: 'kitten'}
    categories = ['people', 'cat', 'vehicle']
    assert label_categories.build_class_map([], names, categories) == {1: 1}  # same names only
    assert label_categories.build_class_map(['person:people', '2:vehicle'], names, categories) == {0: 0, 2: 2}
    assert label_categories.build_class_map(['coco'], names, categories)[15] == 1  # COCO 15 is cat
    with pytest.raises(ValueError, match="the model has no class 'dog'"):
        label_categories.build_class_map(['dog:people'], names, categories)
    with pytest.raises(ValueError, match="no category 'plane'"):
        label_categories.build_class_map(['car:plane'], names, categories)
    with pytest.raises(ValueError, match="expected auto, coco, oiv7"):
        label_categories.build_class_map(['imagenet'], names, categories)
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
        label_categories.label_categories('HR', 'labels', 'yolov8n-seg.pt', 'cats.yml')


def test_detection_models_give_boxes_and_unmapped_classes_are_dropped():
    boxes = SimpleNamespace(cls=torch.tensor([0., 5.]), xywhn=torch.tensor([[0.5, 0.4, 0.2, 0.1], [0.1] * 4]))
    lines = label_categories.label_lines(SimpleNamespace(boxes=boxes, masks=None), {0: 2})
    assert lines == ['2 0.500000 0.400000 0.200000 0.100000']
