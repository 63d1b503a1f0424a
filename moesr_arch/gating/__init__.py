"""Gates for MoE-SR: per-pixel weights of K category experts plus the background expert.

A gate maps an LR image to ``[B, K + 1, h, w]`` weights (categories in id order, background last,
non-negative, summing to 1 per pixel). :func:`build_gate` makes one from an option dict::

    {type: LabelGate, categories_file: datasets/demo/categories.yml}
    {type: YOLOGate, categories_file: ..., weights: gate.pt, conf: 0.25}

This package is imported on demand (it is not scanned for registrations); ultralytics is imported
only inside :mod:`moesr_arch.gating.yolo_gate`, when a YOLOGate is built.
"""
from moesr_arch.gating.base import GATE_TYPES, Gate, GateError, build_gate, combine_detections, validate_gate_options

__all__ = ['GATE_TYPES', 'Gate', 'GateError', 'build_gate', 'combine_detections', 'validate_gate_options']
