"""Whole option files, by ``model_type``: the top level and the sections each model reads.

Cross-field rules live here as model validators: what training needs, the datasets' scales of MoEISR,
MoE-SR's stages, gate and network categories, and DDP's ``find_unused_parameters``. The top-level keys of
each model type: docs/options.md#option-files.
"""
from typing import Dict, Literal, Optional, Union

from pydantic import Field, ValidationInfo, model_validator

from moesr_arch.options.core import IS_TRAIN, Number, Section, context_flag, problem
from moesr_arch.options.datasets import check_training_set
from moesr_arch.options.networks import MoESRNetOptions, expert_categories
from moesr_arch.options.training import (DistSection, PluginTrainSection, PluginValSection, LoggerSection,
                                         MoEISRValSection, MoESRPathSection, MoESRTrainSection, MoESRValSection,
                                         PathSection, TrainSection, ValSection)

DATASET_PHASES = ('train', 'val', 'test')
# Keys BasicSR's training loop reads without a default, by section.
TRAINING_KEYS = {'train': ('optim_g', 'total_iter'), 'logger': ('print_freq', 'save_checkpoint_freq', 'use_tb_logger'),
                 'val': ('val_freq', 'save_img')}


def phase_of(key):
    """BasicSR's phase of a ``datasets`` key: the part before the first underscore."""
    return str(key).split('_')[0]


class OptionFile(Section):
    """A BasicSR option file (``basicsr train -opt FILE`` / ``basicsr test -opt FILE``)."""

    name: str = Field(description='Name of the experiment: experiments/<name>/, results/<name>/.')
    model_type: str = Field(description='Registered model class (SingleNetworkSRModel, MoESRModel, MoEISRModel, '
                            'SRModel, ...).')
    scale: Optional[Number] = Field(default=None, description='Upscale factor, copied into every dataset.')
    num_gpu: Union[int, Literal['auto']] = Field(description="GPUs to use: 0 runs on the CPU, 'auto' uses every "
                                                 'visible GPU.')
    manual_seed: Optional[int] = Field(default=None, description='Random seed (rank added per process).')
    is_train: Optional[bool] = Field(default=None, description='Set by BasicSR.')
    dist: Optional[bool] = Field(default=None, description='Set by BasicSR from --launcher.')
    dist_params: Optional[DistSection] = Field(default=None, description='Distributed training.')
    find_unused_parameters: Optional[bool] = Field(default=None, description="DDP's find_unused_parameters "
                                                   '(default: set when the model needs it).')
    network_g: 'Network' = Field(description='The network trained or tested.')
    path: Optional[PathSection] = Field(default=None, description='Weights to start from, state to resume.')
    train: Optional[TrainSection] = Field(default=None, description='Training (required by basicsr train).')
    val: Optional[ValSection] = Field(default=None, description='Validation and test metrics.')
    logger: Optional[LoggerSection] = Field(default=None, description='Logging (required by basicsr train).')
    datasets: Dict[str, 'Dataset'] = Field(description='Datasets by phase: train, val, val_2, ..., test_1, ...',
                                           json_schema_extra={'propertyNames': {'pattern': '^(train|val|test)(_|$)'}})

    @model_validator(mode='before')
    @classmethod
    def _dataset_keys(cls, data):
        datasets = data.get('datasets') if isinstance(data, dict) else None
        if isinstance(datasets, dict):
            if not datasets:
                raise problem('@datasets must name at least one dataset')
            for key in datasets:
                if phase_of(key) not in DATASET_PHASES:
                    raise problem(f'@datasets.{key}: dataset keys start with train, val or test')
        return data

    @model_validator(mode='after')
    def _training_needs(self, info: ValidationInfo):
        if not context_flag(info, IS_TRAIN):
            return self
        for name, keys in TRAINING_KEYS.items():
            section = getattr(self, name)
            if section is None and name != 'val':
                raise problem(f'@{name} is required')
            for key in keys if section is not None else ():
                if getattr(section, key) is None:
                    raise problem(f'@{name}.{key} is required')
        for key, dataset in self.datasets.items():
            if phase_of(key) == 'train':
                check_training_set(key, dataset)
        self.check_unused_parameters()
        return self

    def check_unused_parameters(self):
        """``find_unused_parameters: false`` where the model's training leaves parameters without gradients
        would stop distributed training at the first such iteration: refuse it at start."""
        from basicsr.utils.registry import MODEL_REGISTRY
        if self.find_unused_parameters is not False:
            return
        reason_of = getattr(MODEL_REGISTRY.get(self.model_type), 'unused_parameters', None)
        reason = reason_of(self.model_dump(include={'train'})) if reason_of is not None else None
        if reason:
            raise problem(f'@find_unused_parameters is false, but {reason}: distributed training would stop at '
                          'the first such iteration; set it to true or leave it out')


class SingleNetworkSROptions(OptionFile):
    """An option file of SingleNetworkSRModel (single networks: EDSR, VDSR, SeemoRe, ...)."""

    # ExpertSRModel: the model's old name, which option files written before the rename still give.
    model_type: Literal['SingleNetworkSRModel', 'ExpertSRModel'] = Field(
        description='BasicSR SRModel plus extra losses, NaN guard, gradient clipping, self-ensemble.')
    train: Optional[PluginTrainSection] = Field(default=None, description='Training (required by basicsr train).')
    val: Optional[PluginValSection] = Field(default=None, description='Validation and test metrics.')


class MoEISRModelOptions(SingleNetworkSROptions):
    """An option file of MoEISRModel (arbitrary-scale SR, validated at each set's own scale)."""

    model_type: Literal['MoEISRModel'] = Field(description='Arbitrary-scale SR with MoEISR.')
    val: Optional[MoEISRValSection] = Field(default=None, description='Validation and test metrics.')

    @model_validator(mode='after')
    def _scales(self):
        for key, dataset in self.datasets.items():
            if phase_of(key) == 'train':
                continue
            if dataset.scale is None and self.scale is None:
                raise problem(f'@datasets.{key}.scale is required (the scale this set is decoded at)')
            if dataset.scale is not None and self.scale is not None and dataset.scale != self.scale:
                raise problem(f'@datasets.{key}.scale is {dataset.scale:g} but the top-level scale {self.scale:g} '
                              'overrides it (BasicSR copies it into every dataset); remove the top-level scale '
                              'to validate at several scales')
        return self


class MoESRModelOptions(SingleNetworkSROptions):
    """An option file of MoESRModel (a gate, per-category experts and a background expert)."""

    model_type: Literal['MoESRModel'] = Field(description='MoE-SR training and testing.')
    network_g: MoESRNetOptions = Field(description='The MoE-SR mixture.')
    network_ref: Optional['Network'] = Field(default=None, description='The equal-budget control: one network '
                                             'trained beside the mixture on the same batches.')
    gate: Optional['Gate'] = Field(default=None, description="Gate of validation and test (default: a LabelGate "
                                   "on the network's categories).")
    path: Optional[MoESRPathSection] = Field(default=None, description='Weights to start from, state to resume.')
    train: Optional[MoESRTrainSection] = Field(default=None, description='Training (required by basicsr train).')
    val: Optional[MoESRValSection] = Field(default=None, description='Validation and test metrics.')

    @model_validator(mode='before')
    @classmethod
    def _moesr_network(cls, data):
        network = data.get('network_g') if isinstance(data, dict) else None
        if isinstance(network, dict) and network.get('type') != 'MoESRNet':
            raise problem(f'@network_g.type must be MoESRNet for MoESRModel, got {network.get("type")!r}')
        return data

    @model_validator(mode='after')
    def _moesr_rules(self, info: ValidationInfo):
        if self.val is not None and self.val.self_ensemble:
            raise problem('@val.self_ensemble is not supported by MoESRModel (the gate would see flipped images); '
                          'set it to false')
        message = gate_category_problem(self.network_g, self.gate)
        if message:
            raise problem(message)
        if not context_flag(info, IS_TRAIN) and self.network_ref is not None and (
                self.path is None or self.path.pretrain_network_ref is None):
            raise problem('@network_ref is given but @path.pretrain_network_ref is not: the control has no weights '
                          'to test (net_ref_<iter>.pth of its training run)')
        return self


def gate_category_problem(network_g, gate):
    """What is wrong with a validated gate's categories for a validated MoESRNet (None: nothing): the same names
    in the same id order are needed. Categories files still named were not read (they are missing: the run stops
    on them)."""
    if gate is None or gate.categories_file or network_g.categories_file:
        return None
    expected, found = expert_categories(network_g.experts, network_g.categories), list(gate.categories)
    if found != expected:
        return (f'gate categories {found} differ from the network experts {expected} (same names in the same id '
                'order are needed)')
    return None


# model_type -> schema of the package's models (every other registered model: OptionFile)
DECLARED = {'SingleNetworkSRModel': SingleNetworkSROptions, 'ExpertSRModel': SingleNetworkSROptions,
            'MoEISRModel': MoEISRModelOptions, 'MoESRModel': MoESRModelOptions}
