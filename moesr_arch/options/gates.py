"""MoE-SR gates (the top-level ``gate``, ``basicsr infer``'s gate) by ``type``: docs/options.md#gates."""
from typing import Dict, List, Literal, Optional, Union

from pydantic import Field, model_validator
from typing_extensions import Annotated

from moesr_arch.options.core import ExistingFile, Number, Section, problem

Fraction = Annotated[Number, Field(ge=0, le=1)]


class GateSection(Section):
    """A gate: per-pixel weights of the category experts and the background expert."""

    categories_file: Optional[ExistingFile] = Field(default=None, description='YAML id: name file of the '
                                                    'categories (or give categories).')
    categories: Optional[List[str]] = Field(default=None, description='Category names in id order (or give '
                                            'categories_file).')

    @model_validator(mode='before')
    @classmethod
    def _one_source_of_categories(cls, data):
        if isinstance(data, dict) and ('categories_file' in data) == ('categories' in data):
            raise problem('@: give exactly one of categories_file and categories')
        return data


class LabelGateOptions(GateSection):
    """The dataset's own category map as one-hot weights (teacher forcing, test-time upper bound)."""

    type: Literal['LabelGate'] = Field(description='The labels of a CategoryPairedImageDataset batch.')


class YOLOGateOptions(GateSection):
    """Category weights from YOLO detections (boxes) or instance segmentation (masks)."""

    type: Literal['YOLOGate'] = Field(description='An ultralytics YOLO detector or segmenter.')
    weights: Optional[ExistingFile] = Field(default=None, description='A trained .pt file (e.g. from basicsr '
                                            'train-gate); exactly one of weights and model.')
    model: Optional[str] = Field(default=None, description='A model yaml such as yolov8n-seg.yaml (untrained; '
                                 'for tests).')
    class_map: Union[str, Dict[str, str]] = Field(default='auto', description='auto (detector classes named like '
                                                  'categories), coco, oiv7, or {detector class id: category}.')
    conf: Fraction = Field(default=0.25, description='Confidence threshold.')
    iou: Fraction = Field(default=0.7, description='NMS IoU threshold.')
    min_area: Fraction = Field(default=0.0, description='Drop detections covering less than this fraction of the '
                               'image.')
    imgsz: Union[int, List[int]] = Field(default=640, description='Detector input size.')
    mode: Literal['auto', 'masks', 'boxes'] = Field(default='auto', description='auto (masks when the model '
                                                    'segments), masks or boxes.')
    max_det: int = Field(default=300, ge=1, description='At most this many detections per image.')
    device: Optional[str] = Field(default=None, description="The detector's device (default: the LR batch's).")


GATES = {cls.owner: cls for cls in (LabelGateOptions, YOLOGateOptions)}
