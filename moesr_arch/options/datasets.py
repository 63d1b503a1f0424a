"""Datasets (``datasets.train``, ``datasets.val``, ``datasets.val_2``, ...) by ``type``.

Every dataset has BasicSR's loader keys (:class:`DatasetSection`); the package's datasets and BasicSR's
paired and single-image datasets are declared; any other registered dataset (another plugin's) is checked
for the loader keys and its data paths only. The keys, types and defaults: docs/options.md#datasets.
"""
from typing import Any, List, Literal, Optional, Union

from pydantic import Field, ValidationInfo, model_validator
from typing_extensions import Annotated

from moesr_arch.options.core import CHECK_PATHS, ExistingFile, ExistingPath, Number, Section, context_flag, problem

# Keys naming data of a dataset without a schema: they must exist too.
PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file', 'dataroot', 'dataroot_labels', 'categories_file')
# Keys the training set needs (BasicSR reads them without a default).
TRAIN_SET_KEYS = ('batch_size_per_gpu', 'num_worker_per_gpu')


class IOBackend(Section):
    """Where the images are read from (BasicSR's FileClient)."""

    type: Literal['disk', 'lmdb', 'memcached'] = Field(description='disk (image files), lmdb or memcached.')
    db_paths: Any = Field(default=None, description='LMDB folders (set by the dataset from its dataroots).')
    client_keys: Any = Field(default=None, description='LMDB client names (set by the dataset).')
    server_list_cfg: Optional[str] = Field(default=None, description='memcached server list file.')
    client_cfg: Optional[str] = Field(default=None, description='memcached client configuration file.')
    sys_path: Optional[str] = Field(default=None, description='Folder of the memcached Python client.')


# Keys several datasets share.
HRImages = Annotated[ExistingPath, Field(description='HR images: a folder or an .lmdb.')]
LRImages = Annotated[ExistingPath, Field(description='LR images: a folder or an .lmdb.')]
MetaInfoFile = Annotated[Optional[ExistingPath], Field(description='File listing the image names.')]
Backend = Annotated[IOBackend, Field(description='Where the images are read from.')]


class DatasetSection(Section):
    """BasicSR's loader keys, common to every dataset."""

    show_owner = False  # messages name the key (datasets.train...), as BasicSR's docs do

    name: str = Field(description='Name of the set in logs, result folders and metrics.')
    type: str = Field(description='Registered dataset class.')
    phase: Optional[str] = Field(default=None, description='Set by BasicSR from the key (train, val, test).')
    scale: Optional[Number] = Field(default=None, description='Upscale factor (BasicSR copies the top-level scale).')
    num_worker_per_gpu: Optional[int] = Field(default=None, ge=0, description='Loader worker processes per GPU '
                                              '(required for the training set).')
    batch_size_per_gpu: Optional[int] = Field(default=None, ge=1, description='Batch size per GPU (required for '
                                              'the training set).')
    dataset_enlarge_ratio: Number = Field(default=1, description='Repeat the training set this many times per epoch.')
    prefetch_mode: Optional[Literal['cpu', 'cuda']] = Field(default=None, description="BasicSR's prefetcher.")
    pin_memory: bool = Field(default=False, description='Pinned memory for the cuda prefetcher.')
    persistent_workers: bool = Field(default=False, description='Keep loader workers between epochs.')
    use_shuffle: bool = Field(default=True, description='Shuffle the training set.')


class ImageSetOptions(DatasetSection):
    """Images read by BasicSR's image datasets, optionally normalised."""

    meta_info_file: MetaInfoFile = None
    io_backend: Backend
    mean: Optional[List[Number]] = Field(default=None, description='Per-channel mean subtracted from the images.')
    std: Optional[List[Number]] = Field(default=None, description='Per-channel std the images are divided by.')
    color: Optional[Literal['y']] = Field(default=None, description='y: the Y channel only.')


class PairedImageOptions(ImageSetOptions):
    """HR/LR image pairs (folders, a meta_info file or LMDB)."""

    type: Literal['PairedImageDataset', 'CheckedPairedImageDataset'] = Field(
        description='CheckedPairedImageDataset (strict, tolerant of real files) or BasicSR\'s PairedImageDataset.')
    dataroot_gt: HRImages
    dataroot_lq: LRImages
    filename_tmpl: str = Field(default='{}', description='LR file name from the HR stem, e.g. {}x2.')
    gt_size: Optional[int] = Field(default=None, ge=1, description='Training crop side, HR pixels.')
    use_hflip: bool = Field(default=False, description='Random horizontal flips in training.')
    use_rot: bool = Field(default=False, description='Random rotations (90 degrees, vertical flips) in training.')


class CategoryPairedImageOptions(PairedImageOptions):
    """HR/LR pairs with per-pixel category maps from YOLO-format region labels (MoE-SR training data)."""

    type: Literal['CategoryPairedImageDataset'] = Field(description='Pairs with category maps (MoE-SR).')
    categories_file: ExistingFile = Field(description='YAML id: name file of the categories.')
    dataroot_labels: Optional[ExistingPath] = Field(default=None, description='Folder of <stem>.txt label files, '
                                                    'or a JSON file {key: label text}; LMDB default: '
                                                    '<dataroot_gt>/labels.json.')
    labels_required: bool = Field(default=False, description='A missing label file is an error (else: background).')
    category_filter: Optional[Union[str, List[str]]] = Field(default=None, description='Keep only the images '
                                                             'containing one of these categories.')
    balanced_sampling: bool = Field(default=False, description='Draw every category (and the images without one) '
                                    'equally often per epoch.')
    focus_crops: bool = Field(default=False, description='Training crops contain a pixel of a target category.')


class SingleImageOptions(ImageSetOptions):
    """LR images alone (BasicSR's SingleImageDataset)."""

    type: Literal['SingleImageDataset'] = Field(description="BasicSR's SingleImageDataset.")
    dataroot_lq: LRImages


class RandomScaleOptions(DatasetSection):
    """HR images cut into arbitrary-scale SR samples (LIIF's protocol; MoEISR)."""

    type: Literal['RandomScaleSRDataset'] = Field(description='Arbitrary-scale samples (MoEISR).')
    dataroot_gt: HRImages
    meta_info_file: MetaInfoFile = None
    io_backend: Backend
    lq_size: int = Field(default=48, ge=1, description='Side of the LR training patch.')
    scale_min: Number = Field(default=1, ge=1, description='Smallest training scale.')
    scale_max: Number = Field(default=4, ge=1, description='Largest training scale.')
    sample_q: int = Field(default=2304, ge=1, description='HR query pixels per training sample.')
    use_hflip: bool = Field(default=True, description='Random horizontal flips in training.')
    use_rot: bool = Field(default=True, description='Random rotations in training.')


class OtherDatasetOptions(DatasetSection):
    """A registered dataset without a schema here: its loader keys and data paths are checked."""

    model_config = {'extra': 'allow'}

    @model_validator(mode='after')
    def _paths_exist(self, info: ValidationInfo):
        if context_flag(info, CHECK_PATHS):
            import os
            for key in PATH_KEYS:
                value = (self.model_extra or {}).get(key)
                if isinstance(value, str) and not os.path.exists(os.path.expanduser(value)):
                    raise problem(f'@{key}: no such file or folder: {value}')
        return self


DECLARED = {name: cls for cls in (PairedImageOptions, CategoryPairedImageOptions, SingleImageOptions,
                                  RandomScaleOptions)
            for name in cls.model_fields['type'].annotation.__args__}


def check_training_set(key, dataset):
    """The training set's own required keys (BasicSR reads them without a default)."""
    for name in TRAIN_SET_KEYS:
        if getattr(dataset, name) is None:
            raise problem(f'@datasets.{key}.{name} is required for the training set')
