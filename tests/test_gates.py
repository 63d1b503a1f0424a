"""MoE-SR gates: fusion of detections, LabelGate, YOLOGate, overlays and gate training (issue 4 points 3-4)."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from moesr_arch.gating import GateError, build_gate, combine_detections
from moesr_arch.inference.maps import category_colour, draw_overlay
from moesr_arch.gating.yolo_gate import CLASS_MAP_PRESETS, YOLOGate, _box_masks, resolve_class_map
from moesr_arch.options import OptionError

CATEGORIES = ['people', 'cat', 'vehicle']


def assert_valid_weights(weights, k=3):
    assert weights.dtype == torch.float32 and weights.shape[-3] == k + 1
    assert weights.min() >= 0
    torch.testing.assert_close(weights.sum(dim=-3), torch.ones_like(weights[..., 0, :, :]))


# ------------------------------------------------------------------------------------------------
# fusion of detections


def square(h, w, y0, y1, x0, x1):
    mask = torch.zeros(h, w)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_no_detection_means_background_only():
    weights = combine_detections(torch.zeros(0, 5, 7), torch.zeros(0, dtype=torch.long), torch.zeros(0), 3)
    assert_valid_weights(weights)
    assert (weights[3] == 1).all()


def test_overlapping_detections_share_by_confidence_in_any_order():
    masks = torch.stack([square(8, 8, 0, 6, 0, 6), square(8, 8, 2, 8, 2, 8), square(8, 8, 3, 5, 3, 5)])
    classes = torch.tensor([0, 2, 0])
    conf = torch.tensor([0.6, 0.3, 0.3])
    reference = combine_detections(masks, classes, conf, 3)
    assert_valid_weights(reference)
    # outside every detection: background only; inside one: that category only
    assert reference[:, 7, 0].tolist() == [0, 0, 0, 1]
    assert reference[:, 0, 0].tolist() == [1, 0, 0, 0]
    assert reference[:, 7, 7].tolist() == [0, 0, 1, 0]
    # people (0.6) over vehicle (0.3): 2:1; where the second person box adds 0.3: 3:1
    torch.testing.assert_close(reference[:, 2, 5], torch.tensor([2 / 3, 0, 1 / 3, 0]))
    torch.testing.assert_close(reference[:, 4, 4], torch.tensor([0.75, 0, 0.25, 0]))
    for order in itertools.permutations(range(3)):
        order = list(order)
        torch.testing.assert_close(combine_detections(masks[order], classes[order], conf[order], 3), reference)


def test_soft_mask_edges_leave_the_rest_to_background():
    masks = torch.tensor([[[0.5, 1.0]]])
    weights = combine_detections(masks, torch.tensor([1]), torch.tensor([0.9]), 3)
    torch.testing.assert_close(weights[:, 0, 0], torch.tensor([0, 0.5, 0, 0.5]))
    torch.testing.assert_close(weights[:, 0, 1], torch.tensor([0, 1.0, 0, 0]))


def test_box_masks_cover_pixels_whose_centre_is_inside():
    masks = _box_masks(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), 4, 5, 'cpu')
    expected = torch.zeros(1, 4, 5)
    expected[0, 0:2, 1:3] = 1
    torch.testing.assert_close(masks, expected)


# ------------------------------------------------------------------------------------------------
# LabelGate and the factory


def test_label_gate_one_hot_from_category_map(tmp_path):
    (tmp_path / 'c.yml').write_text('0: people\n1: cat\n2: vehicle\n')
    gate = build_gate({'type': 'LabelGate', 'categories_file': str(tmp_path / 'c.yml')})
    assert gate.categories == CATEGORIES
    category_map = torch.tensor([[[0, 1, 2, 3], [3, 3, 1, 0]]])
    weights = gate(torch.rand(1, 3, 2, 4), {'category_map': category_map})
    assert_valid_weights(weights)
    assert torch.equal(weights.argmax(dim=1), category_map)
    with pytest.raises(GateError, match='does not match'):
        gate(torch.rand(1, 3, 4, 4), {'category_map': category_map})
    with pytest.raises(GateError, match='needs the category_map'):
        gate(torch.rand(1, 3, 2, 4))
    with pytest.raises(GateError, match=r'values must be 0..3'):
        gate(torch.rand(1, 3, 2, 4), {'category_map': category_map + 1})


@pytest.mark.parametrize('opt, message', [
    ({'type': 'LabelGate', 'categories': CATEGORIES, 'conf': 0.5}, "unknown key 'conf'"),
    ({'type': 'OracleGate', 'categories': CATEGORIES}, "no gate named 'OracleGate'"),
    ({'type': 'LabelGate'}, 'exactly one of categories_file and categories'),
    ({'type': 'YOLOGate', 'categories': CATEGORIES, 'model': 'yolov8n-seg.yaml', 'confidence': 0.5},
     "unknown key 'confidence'"),
    ({'type': 'YOLOGate', 'categories': CATEGORIES, 'model': 'yolov8n-seg.yaml', 'conf': 'high'}, 'conf must be'),
    ({'type': 'YOLOGate', 'categories': CATEGORIES, 'model': 'yolov8n-seg.yaml', 'mode': 'polygons'}, 'mode must be'),
])
def test_bad_gate_options_name_the_key(opt, message):
    with pytest.raises(OptionError, match=message):
        build_gate(opt, source='test.yml')


def test_missing_weights_file_fails_without_download(tmp_path):
    with pytest.raises(OptionError, match=r'weights: no such file: .*none.pt'):
        build_gate({'type': 'YOLOGate', 'categories': CATEGORIES, 'weights': str(tmp_path / 'none.pt')})
    with pytest.raises(FileNotFoundError, match='none.pt'):
        YOLOGate(CATEGORIES, weights=str(tmp_path / 'none.pt'))


# ------------------------------------------------------------------------------------------------
# class maps


def test_presets_map_onto_the_categories_present():
    coco = resolve_class_map('coco', {}, CATEGORIES)
    assert coco[0] == 0 and coco[15] == 1 and coco[2] == coco[3] == coco[5] == 2
    assert 16 not in coco  # dog: not a category here, ignored
    oiv7 = resolve_class_map('oiv7', {}, ['people', 'car', 'plane', 'dog', 'cat'])
    assert {i: oiv7[i] for i in (381, 322, 594, 90, 3, 160, 96)} == {381: 0, 322: 0, 594: 0, 90: 1, 3: 2, 160: 3, 96: 4}
    assert set(CLASS_MAP_PRESETS) == {'coco', 'oiv7'}


def test_auto_and_explicit_class_maps():
    assert resolve_class_map('auto', {0: 'people', 1: 'cat', 2: 'vehicle'}, CATEGORIES) == {0: 0, 1: 1, 2: 2}
    assert resolve_class_map({'7': 'vehicle'}, {}, CATEGORIES) == {7: 2}
    with pytest.raises(OptionError, match="'dog' is not a category"):
        resolve_class_map({16: 'dog'}, {}, CATEGORIES)
    with pytest.raises(OptionError, match='no detector class is named like a category'):
        resolve_class_map('auto', {0: 'person'}, CATEGORIES)


# ------------------------------------------------------------------------------------------------
# YOLOGate (untrained network from a model yaml: runs offline, detections are arbitrary)


@pytest.fixture(scope='module')
def yolo_gate():
    return build_gate({'type': 'YOLOGate', 'categories': CATEGORIES, 'model': 'yolov8n-seg.yaml', 'class_map': 'coco',
                       'imgsz': 64, 'conf': 0.0})


def test_yolo_gate_returns_valid_weights(yolo_gate):
    lq = torch.rand(2, 3, 40, 52)
    weights = yolo_gate(lq)
    assert weights.shape == (2, 4, 40, 52)
    assert_valid_weights(weights)
    masks, classes, conf = yolo_gate.detect(lq)[0]
    assert masks.shape[1:] == (40, 52) and len(masks) == len(classes) == len(conf)


def test_yolo_gate_without_detections_gives_background_only(yolo_gate, monkeypatch):
    monkeypatch.setattr(yolo_gate, 'conf', 1.0)  # nothing is that sure
    weights = yolo_gate(torch.rand(1, 3, 32, 32))
    assert (weights[:, 3] == 1).all() and (weights[:, :3] == 0).all()


def test_yolo_gate_min_area_drops_small_detections(yolo_gate, monkeypatch):
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 32, 32)
    masks, classes, _ = yolo_gate.detect(lq)[0]  # min_area 0: every mapped detection with some area
    areas = masks.clamp(0, 1).mean(dim=(1, 2))
    assert len(masks) >= 2 and areas.min() < areas.max(), areas  # detections of different sizes to filter
    threshold = float((areas.min() + areas.max()) / 2)
    monkeypatch.setattr(yolo_gate, 'min_area', threshold)
    kept, kept_classes, _ = yolo_gate.detect(lq)[0]
    big = areas >= threshold
    assert 0 < int(big.sum()) < len(masks)  # some dropped, some kept
    assert torch.equal(kept, masks[big]) and torch.equal(kept_classes, classes[big])


# ------------------------------------------------------------------------------------------------
# overlays


def test_overlay_tints_category_regions_and_leaves_background():
    image = np.full((32, 48, 3), 128, np.uint8)
    weights = torch.zeros(4, 32, 48)
    weights[3] = 1
    weights[0, 20:30, 4:20], weights[3, 20:30, 4:20] = 1, 0
    out = draw_overlay(image, weights, CATEGORIES, min_size=256)
    assert out.dtype == np.uint8 and out.shape == (256, 384, 3)  # enlarged x8 so the legend is readable
    inside = out[25 * 8 + 4, 10 * 8 + 4].astype(int)  # LR (25, 10): people, drawn in red
    assert category_colour(0)[0] > 200 and inside[0] > 128 + 30 and inside[0] - inside[2] > 30
    assert (out[250, 380] == 128).all()  # background untouched
    assert out[:40, :40].mean() < 100  # the legend panel darkens the top-left corner
    with pytest.raises(ValueError, match='do not match'):
        draw_overlay(image, weights[:, :16], CATEGORIES)


# ------------------------------------------------------------------------------------------------
# gate training


def test_train_gate_converts_labels_and_trains_offline(workdir):
    proc = run_cli(['train-gate', '--dataset', 'datasets/demo', '--lr-scale', '4', '--epochs', '1', '--imgsz', '64',
                    '--batch', '2', '--output', 'gate'], cwd=workdir, timeout=300)
    weights = workdir / 'gate' / 'gate.pt'
    assert f'gate weights: {weights.resolve()}' in proc.stdout or str(weights.resolve()) in proc.stdout
    data = workdir / 'gate' / 'data'
    assert sorted(p.name for p in (data / 'labels' / 'train').glob('*.txt'))[:2] == ['astronaut.txt', 'bus.txt']
    bus = (data / 'labels' / 'train' / 'bus.txt').read_text().splitlines()
    assert [line.split()[0] for line in bus] == ['1', '0', '0', '0', '0']
    assert (data / 'labels' / 'train' / 'coffee.txt').read_text() == ''
    assert 'names' in (data / 'data.yaml').read_text()
    # the trained file is a gate whose class names are the categories (class_map auto)
    gate = YOLOGate(['people', 'vehicle'], weights=str(weights), imgsz=64)  # the demo's categories
    assert gate.class_map == {0: 0, 1: 1}
    assert_valid_weights(gate(torch.rand(1, 3, 30, 40)), k=2)
    assert not (Path(workdir) / 'runs').exists()
