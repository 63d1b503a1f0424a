"""The gate interface, the option-dict factory and the order-free fusion of overlapping detections."""
import importlib

import torch

from moesr_arch.options import OptionError, validate_gate

# type -> module defining a Gate subclass of that name (imported only when used)
GATE_TYPES = {
    'LabelGate': 'moesr_arch.gating.label_gate',
    'YOLOGate': 'moesr_arch.gating.yolo_gate',
}


class GateError(ValueError):
    """A gate that cannot run on its input (wrong sizes, missing data, bad model file)."""


class Gate:
    """Per-pixel expert weights for an LR image.

    Subclasses define :meth:`weights` (their options are declared in :mod:`moesr_arch.options.gates`).
    ``categories`` lists the category names in id order; background is implicit and last. A gate that reads
    the dataset's batch instead of the image sets ``needs_labels`` (it cannot run on a photo).
    """

    needs_labels = False

    def __init__(self, categories):
        self.categories = list(categories)

    @property
    def num_categories(self):
        return len(self.categories)

    def __call__(self, lq, data=None):
        """Weights ``[B, K + 1, h, w]`` (float32, on ``lq``'s device) for ``lq`` ``[B, 3, h, w]`` RGB in [0, 1].

        ``data`` is the batch dict of the dataset (LabelGate reads ``category_map`` from it).
        """
        if lq.dim() != 4 or lq.shape[1] != 3:
            raise GateError(f'{type(self).__name__}: expected lq of shape [B, 3, h, w], got {list(lq.shape)}')
        weights = self.weights(lq, data)
        expected = (lq.shape[0], self.num_categories + 1, lq.shape[2], lq.shape[3])
        if tuple(weights.shape) != expected:  # a bug in a gate, not a user error
            raise AssertionError(f'{type(self).__name__} returned {list(weights.shape)}, expected {list(expected)}')
        return weights

    def weights(self, lq, data):
        raise NotImplementedError

    def __repr__(self):
        return f'{type(self).__name__}(categories={self.categories})'


def gate_class(name, where='type', source='gate options'):
    if name not in GATE_TYPES:
        raise OptionError(f'{source}: {where}: no gate named {name!r}; gates: {", ".join(GATE_TYPES)}')
    return getattr(importlib.import_module(GATE_TYPES[name]), name)


def validate_gate_options(opt, where='gate', source='gate options'):
    """Check a gate option dict (unknown keys, types, files) without building the gate; returns its class."""
    validate_gate(opt, where, source)
    return gate_class(opt['type'], f'{where}.type' if where else 'type', source)


def build_gate(opt, source='gate options'):
    """Build a gate from ``{type: LabelGate|YOLOGate, categories_file|categories: ..., <gate options>}``.

    Unknown or mistyped keys raise :class:`moesr_arch.options.OptionError` naming them.
    """
    from moesr_arch.data.categories import parse_categories
    from moesr_arch.options import resolve_categories_files
    cls = validate_gate_options(opt, '', source)
    # Options read by the package have their categories already; a gate built from Python may name the file.
    kwargs = {k: v for k, v in resolve_categories_files({'gate': dict(opt)}, source)['gate'].items() if k != 'type'}
    categories = parse_categories(dict(enumerate(kwargs.pop('categories'))), f'{source}: categories')
    return cls(categories, **kwargs)


def combine_detections(masks, classes, confidences, num_categories):
    """Fuse detections into per-pixel weights ``[K + 1, h, w]`` without any dependence on their order.

    Args:
        masks (Tensor): ``[N, h, w]`` coverage of each detection in [0, 1] (binary masks or boxes, or
            fractional at edges after resizing).
        classes (Tensor): ``[N]`` category index of each detection (0..K-1).
        confidences (Tensor): ``[N]`` detection confidences; detections with confidence <= 0 are ignored.
        num_categories (int): K.

    With ``S_c(p) = sum of conf_d * m_d(p)`` over detections d of category c, ``coverage(p) = max_d m_d(p)``:
    ``w_c = coverage * S_c / sum_c' S_c'`` and ``w_background = 1 - coverage``. So inside detections the
    categories share the pixel in proportion to their confidence, background takes what no detection
    covers, and no detection at all gives background weight 1. Sums and maxima do not depend on the order.
    """
    h, w = masks.shape[-2:]
    device = masks.device
    out = torch.zeros(num_categories + 1, h, w, device=device, dtype=torch.float32)
    keep = confidences > 0
    masks, classes, confidences = masks[keep].float().clamp(0, 1), classes[keep].long(), confidences[keep].float()
    if len(masks) == 0:
        out[num_categories] = 1
        return out
    if classes.min() < 0 or classes.max() >= num_categories:
        raise GateError(f'detection class outside 0..{num_categories - 1}: {classes.tolist()}')
    scores = torch.zeros(num_categories, h, w, device=device)
    scores.index_add_(0, classes, masks * confidences.view(-1, 1, 1))
    total = scores.sum(dim=0)
    coverage = torch.where(total > 0, masks.amax(dim=0), torch.zeros_like(total))
    out[:num_categories] = scores * (coverage / total.clamp_min(1e-12))
    out[num_categories] = 1 - coverage  # exactly non-negative, unlike 1 - sum of the category weights
    return out
