"""The ``path``, ``train``, ``val`` and ``logger`` sections, with optimizers, schedulers, losses and metrics.

Losses are the ``train.<name>_opt`` keys (``'Loss'``, by ``type``), metrics the entries of
``val.metrics`` (``'Metric'``); both, and ``'Optimizer'`` and ``'Scheduler'``, are resolved when the
schema is assembled (:mod:`moesr_arch.options.schema`): the plugin's are declared here, the others read
from their signatures. The keys, types and defaults: docs/options.md#sections (``path``, ``train``, ``val``,
``logger``), docs/options.md#losses and docs/options.md#metrics.
"""
from typing import Dict, List, Literal, Optional

from pydantic import Field, ValidationInfo, model_validator

from moesr_arch.options.core import (IS_TRAIN, ExistingFile, Number, ParamKey, Section, WeightsFile, context_flag,
                                    problem)

DERIVED_PATHS = ('experiments_root', 'results_root', 'visualization', 'log', 'models', 'training_states')


class PathSection(Section):
    """Weights to start from and a state to resume; BasicSR derives the output folders from ``name``."""

    refused = {key: (f'@{key} is set by BasicSR from name (experiments/<name>/..., results/<name>/...) and a '
                     'value here would be ignored; remove it and choose the folder with name')
               for key in DERIVED_PATHS}
    pretrain_network_g: Optional[WeightsFile] = Field(default=None, description='Weights network_g starts from '
                                                       '(test: the weights tested).')
    param_key_g: ParamKey = Field(default='params', description="Entry of the weights in that file ('params' or "
                                  "'params_ema'); a list, e.g. [params_ema, params], tries each in order. A file "
                                  'without the entry is refused.')
    strict_load_g: bool = Field(default=True, description='The weights must fit network_g exactly.')
    resume_state: Optional[ExistingFile] = Field(default=None, description='Training state to resume from.')


class MoESRPathSection(PathSection):
    """Paths of MoE-SR, with the equal-budget control's weights."""

    pretrain_network_ref: Optional[str] = Field(default=None, description="Weights of network_ref (test: the "
                                                "control's trained weights, net_ref_<iter>.pth).")
    param_key_ref: ParamKey = Field(default='params_ema', description="Entry of network_ref's weights in that file "
                                    '(a list tries each in order).')
    strict_load_ref: bool = Field(default=True, description="network_ref's weights must fit it exactly.")
    # 'pretrain_network' in the name: BasicSR's make_exp_dirs makes a folder of every other path key.
    pretrain_network_experts: Optional[WeightsFile] = Field(
        default=None, description='Training: weights of one expert (a generalist trained on all data, e.g. '
        'shipped:moesr_generalist_photos_x2) that the background expert and every category '
        'expert it fits start from, when network_g starts fresh (no pretrain_network_g, not resuming).')
    param_key_experts: ParamKey = Field(default=['params_ema', 'params'], description='Entry of those weights in '
                                        'that file (a list tries each in order).')


class LossSection(Section):
    """A loss (``train.<name>_opt``): its registered class and arguments."""


class FFTLossOptions(LossSection):
    """L1 distance between the 2-D Fourier spectra of prediction and target (SeemoRe's frequency loss)."""

    type: Literal['FFTLoss'] = Field(description='moesr_arch.losses.fft_loss.FFTLoss.')
    loss_weight: Number = Field(default=1.0, description='Weight of this loss in the sum.')
    reduction: Literal['mean', 'sum', 'none'] = Field(default='mean', description='Reduction over the elements.')


class ExpertBalanceLossOptions(LossSection):
    """Balance loss of a per-pixel router (MoEISR): spreads the pixels over the experts."""

    type: Literal['ExpertBalanceLoss'] = Field(description='moesr_arch.losses.expert_balance_loss.ExpertBalanceLoss.')
    loss_weight: Number = Field(default=1.0, description='Weight of this loss in the sum.')
    target_shares: Optional[List[Number]] = Field(default=None, description="Target share of each expert's pixels "
                                                  '(default: equal shares).')


class OptimizerSection(Section):
    """``train.optim_g``: a torch optimizer and its arguments."""


class SchedulerSection(Section):
    """``train.scheduler``: a BasicSR learning-rate schedule and its arguments."""


class MetricSection(Section):
    """A metric of ``val.metrics``: its registered function and arguments."""


def metric_fields():
    """The key every metric has besides its function's arguments."""
    return {'better': (Literal['higher', 'lower'], Field(default='higher', description='Whether higher or lower '
                                                         'values are better (best-model tracking).'))}


class ColorBiasOptions(MetricSection):
    """Colour bias: the largest absolute mean difference of one colour channel, in grey levels (0-255)."""

    type: Literal['calculate_color_bias'] = Field(description='moesr_arch.metrics.color_bias_metric.')
    crop_border: int = Field(default=0, ge=0, description='Pixels cropped at each border before measuring.')
    input_order: Literal['HWC', 'CHW'] = Field(default='HWC', description='Layout of the images.')
    better: Literal['higher', 'lower'] = Field(default='higher', description='Whether higher or lower values are '
                                               'better (write lower for this metric).')


# type -> schema of the plugin's losses and metrics (others come from their signatures)
DECLARED_LOSSES = {cls.owner: cls for cls in (FFTLossOptions, ExpertBalanceLossOptions)}
DECLARED_METRICS = {cls.owner: cls for cls in (ColorBiasOptions, )}
OPTIMIZERS = ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop', 'Rprop')


def scheduler_classes():
    """type -> BasicSR's scheduler class (MultiStepLR is BasicSR's name for MultiStepRestartLR)."""
    from basicsr.models import lr_scheduler
    return {'MultiStepLR': lr_scheduler.MultiStepRestartLR, 'MultiStepRestartLR': lr_scheduler.MultiStepRestartLR,
            'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR}


class TrainSection(Section):
    """Training: optimizer, schedule, length, EMA and the losses (``<name>_opt`` keys)."""

    model_config = {'extra': 'allow', 'json_schema_extra': lambda schema: losses_by_pattern(schema)}
    __pydantic_extra__: Dict[str, Optional['Loss']]

    ema_decay: Number = Field(default=0, ge=0, le=1, description='Decay of the weights EMA (0: no EMA).')
    optim_g: Optional['Optimizer'] = Field(default=None, description='Optimizer of network_g (required to train).')
    scheduler: Optional['Scheduler'] = Field(default=None, description='Learning-rate schedule.')
    total_iter: Optional[Number] = Field(default=None, description='Training iterations (required to train).')
    warmup_iter: Number = Field(default=-1, description='Linear warm-up iterations (-1: none).')

    @classmethod
    def accepts_extra(cls, key):
        return str(key).endswith('_opt')

    @classmethod
    def extra_hint(cls):
        return ('losses are named <something>_opt; known keys: ' +
                ', '.join(sorted(name for name in cls.model_fields)))

    @model_validator(mode='after')
    def _schedule_covers_the_run(self):
        # BasicSR's CosineAnnealingRestartLR raises a TypeError at the first iteration past its periods, hours
        # into a run lengthened with --force_yml train:total_iter=N alone.
        periods = getattr(self.scheduler, 'periods', None)
        if periods is not None and self.total_iter is not None and sum(periods) < self.total_iter:
            raise problem(f'@scheduler.periods add up to {sum(periods)} iterations but @total_iter is '
                          f'{self.total_iter:g}, and the schedule stops the run after its periods; give both '
                          '(--force_yml train:total_iter=N train:scheduler:periods=[N])')
        return self


def losses_by_pattern(schema):
    """JSON schema: the losses are the ``*_opt`` keys, nothing else is undeclared."""
    losses = schema.pop('additionalProperties', None)
    if losses is not None:
        schema['patternProperties'] = {'^.+_opt$': losses}
        schema['additionalProperties'] = False


AMP_MODES = ('none', 'bf16', 'fp16')
# torch.compile's modes (torch._inductor.list_mode_options() of torch 2.1 onwards); false: no compilation.
COMPILE_MODES = (False, 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


class PluginTrainSection(TrainSection):
    """Training of the package's models (SingleNetworkSRModel and its subclasses)."""

    grad_clip_norm: Optional[Number] = Field(default=None, gt=0, description='Clip the norm of all gradients '
                                             'together to this value; none: no clipping.')
    grad_clip_value_over_lr: Optional[Number] = Field(default=None, gt=0, description="VDSR's adjustable "
                                                      'clipping theta: each gradient element into +-theta/lr.')
    # Training speed-ups (moesr_arch/models/speedups.py); docs/training.md measures what each costs and saves.
    amp: Literal[AMP_MODES] = Field(default='none', description='Mixed precision of the training forward and '
                                    'losses: none (fp32), bf16 (autocast to bfloat16; refused on a GPU that only '
                                    'emulates it) or fp16 (autocast to float16 with a gradient scaler: a step whose '
                                    'scaled gradients overflow is skipped and counted as fp16_skipped_steps in the '
                                    'log). Weights, optimizer and checkpoints stay fp32.')
    channels_last: bool = Field(default=False, description='Train in the channels_last memory format (the trained '
                                'networks and their input batches): faster convolutions on most GPUs and CPUs. '
                                'Checkpoints are written contiguous, as without it.')
    compile: Literal[COMPILE_MODES] = Field(default=False, description='torch.compile the trained networks with '
                                            'this mode (false: eager). The first iterations (and the first of each '
                                            'MoE-SR stage) pay the compilation; checkpoints keep the same keys. '
                                            'Validation always runs the eager network.')


    @model_validator(mode='before')
    @classmethod
    def _compile_mode(cls, data):
        # YAML's false, spelt as YAML spells it; 0 (equal to False in Python) and true are refused.
        value = data.get('compile', False) if isinstance(data, dict) else False
        if value is not False and (not isinstance(value, str) or value not in COMPILE_MODES):
            modes = ', '.join(mode for mode in COMPILE_MODES if mode is not False)
            raise problem(f'@compile must be false (no compilation) or a torch.compile mode ({modes}), got {value!r}')
        return data

STAGES = ('generalist', 'experts', 'joint')


class StageEntry(Section):
    """One stage of a MoE-SR training and its length."""

    stage: Literal[STAGES] = Field(description='generalist (background expert alone), experts (each category '
                                   'expert on its pixels) or joint (the blend end to end).')
    iters: int = Field(ge=1, description='Iterations of this stage.')


class MoESRTrainSection(PluginTrainSection):
    """Training of MoE-SR: one stage, or stages switched by iteration."""

    stage: Optional[Literal[STAGES]] = Field(default=None, description='The stage of the whole run.')
    stages: Optional[List[StageEntry]] = Field(default=None, min_length=1, description='Stages switched by '
                                               'iteration, adding up to total_iter.')
    init_experts: bool = Field(default=True, description='Start the category experts from the background expert at '
                               'the first experts stage.')
    background_in_experts: bool = Field(default=False, description='The background expert learns in the experts '
                                        'stage too, on the unlabelled pixels.')
    other_pixels_weight: float = Field(default=0.0, ge=0, le=1, description="Weight of the pixels outside an "
                                       "expert's category in its loss (0: its own pixels only).")

    @model_validator(mode='after')
    def _stages(self, info: ValidationInfo):
        if not context_flag(info, IS_TRAIN):
            return self
        if (self.stage is None) == (self.stages is None):
            raise problem(f'give exactly one of @stage ({", ".join(STAGES)}) and @stages (a list of {{stage, iters}})')
        if self.stages is not None:
            total = sum(entry.iters for entry in self.stages)
            if total != self.total_iter:
                raise problem(f'@stages add up to {total} iterations but @total_iter is {self.total_iter:g}')
        return self


class ValSection(Section):
    """Validation during training, and the metrics of ``basicsr test``."""

    val_freq: Optional[Number] = Field(default=None, description='Validate every this many iterations (required '
                                       'by basicsr train).')
    save_img: Optional[bool] = Field(default=None, description='Save the output images (required by basicsr train).')
    pbar: Optional[bool] = Field(default=None, description='Show a progress bar over the images (default: when '
                                 'the output is a terminal).')
    suffix: Optional[str] = Field(default=None, description='Suffix of saved image names.')
    metrics: Optional[Dict[str, 'Metric']] = Field(default=None, description='Metric name -> metric function '
                                                   'and arguments.')
    self_ensemble: bool = Field(default=False, description='Test with the x8 geometric self-ensemble (EDSR+).')


class PluginValSection(ValSection):
    """Validation of the package's models (SingleNetworkSRModel and its subclasses)."""

    amp_and_channels_last: bool = Field(default=False, description='Validate during training under train.amp '
                                        'and train.channels_last as well (default: fp32, as basicsr test and basicsr '
                                        'infer run). Never compiled: every validation image has its own size.')


class MoEISRValSection(PluginValSection):
    """Validation of MoEISR."""

    expert_maps: bool = Field(default=True, description='With save_img, save an expert map beside each image.')


class MoESRValSection(PluginValSection):
    """Validation of MoE-SR."""

    region_metrics: bool = Field(default=True, description="PSNR/SSIM inside each category's labelled regions.")
    save_overlay: bool = Field(default=True, description='With save_img, save the gate overlay.')
    save_background: bool = Field(default=True, description='With save_img, save the background expert alone.')
    specialisation: bool = Field(default=True, description='Every expert scored on every category (the '
                                 'specialisation matrix and heat map).')


class WandbSection(Section):
    """Weights & Biases logging."""

    project: Optional[str] = Field(default=None, description='Project name (none: no wandb).')
    resume_id: Optional[str] = Field(default=None, description='Run id to resume.')
    entity: Optional[str] = Field(default=None, description='Team or user.')


class LoggerSection(Section):
    """Logging and checkpoints."""

    print_freq: Optional[Number] = Field(default=None, description='Log the losses every this many iterations '
                                         '(required by basicsr train).')
    save_checkpoint_freq: Optional[Number] = Field(default=None, description='Save a checkpoint every this many '
                                                   'iterations (required by basicsr train).')
    use_tb_logger: Optional[bool] = Field(default=None, description='Write TensorBoard events (required by basicsr '
                                          'train).')
    wandb: Optional[WandbSection] = Field(default=None, description='Weights & Biases logging.')


class DistSection(Section):
    """Distributed training."""

    backend: Optional[Literal['nccl', 'gloo']] = Field(default=None, description='Process-group backend (default: '
                                                       'NCCL on CUDA, gloo on the CPU).')
    port: Optional[int] = Field(default=None, description='Port of the process group under --launcher slurm '
                                '(default: MASTER_PORT, else 29500).')
