"""Networks (``network_g``, ``network_ref``, MoE-SR experts, wrapped and encoder networks) by ``type``.

The plugin's archs are declared here; every other registered arch (BasicSR's EDSR, RRDBNet, ...) gets a
schema read from its constructor signature (:func:`moesr_arch.options.core.signature_section`).
``'Network'`` (any of them, by ``type``) is resolved when the schema is assembled
(:mod:`moesr_arch.options.schema`). The keys, types and defaults: docs/options.md#networks.
"""
from typing import ClassVar, Dict, List, Literal, Optional

from pydantic import Field, model_validator
from typing_extensions import Annotated

from moesr_arch.options.core import ExistingFile, ParamKey, PositiveInt, Section, problem
from moesr_arch.utils.bicubic import KERNELS

BACKGROUND = 'background'
Upsampler = Literal[KERNELS]
UPSAMPLER_HELP = ("Bicubic kernel of {what}: matlab (a = -0.5, symmetric borders: MATLAB's imresize, as the LR "
                  "images are made) or torch (PyTorch's a = -0.75; for checkpoints trained with it).")


class NetworkSection(Section):
    """Options of one network: its registered arch (``type``) and that arch's arguments.

    The defaults shown here are the arch's own (a test holds them equal): the arch applies them, so the options
    that run keep only the keys the file gives (archs are built from Python with the same defaults)."""

    fills_defaults: ClassVar[bool] = False


class ChannelsSection(NetworkSection):
    """A network with BasicSR's channel arguments."""

    num_in_ch: PositiveInt = Field(default=3, description='Input channels.')
    num_out_ch: PositiveInt = Field(default=3, description='Output channels.')
    num_feat: PositiveInt = Field(default=64, description='Feature channels (of the hidden layers, or the encoder).')


class MoESRNetOptions(NetworkSection):
    """MoE-SR: one SR expert per image category plus a background expert, alpha-blended per pixel."""

    type: Literal['MoESRNet'] = Field(description='MoE-SR mixture (moesr_arch.archs.moesr_arch.MoESRNet).')
    experts: Dict[str, 'Network'] = Field(
        description='Expert name -> network options: one per category plus background (required).')
    categories: List[str] = Field(default=[], description='Category names in gate channel order (default: '
                                  'read categories_file, else the expert names in option order).')
    categories_file: Optional[ExistingFile] = Field(
        default=None, description='YAML categories file (id: name); read when the options are loaded and '
        'passed to the network as categories (given both, they must agree).')
    expert_weights: Optional[Dict[str, ExistingFile]] = Field(
        default=None, description='Expert name -> checkpoint (BasicSR format) loaded at build.')
    param_key: ParamKey = Field(default='params', description="Entry of the weights in those checkpoints ('params' "
                                "or 'params_ema'); a list, e.g. [params_ema, params], tries each in order.")
    scale: int = Field(default=0, ge=0, description="Expected upscale factor; 0 accepts the experts' common one.")
    dilation: int = Field(default=4, ge=0, description='Context dilation of each category region, HR pixels.')
    feather: int = Field(default=8, ge=0, description='Width of the feathered edge of each region, HR pixels.')
    sparse: bool = Field(default=True, description='Sparse execution at inference (experts only where needed).')
    crop_margin: int = Field(default=16, ge=0, description='Context around each sparse crop, LR pixels (exact '
                             "when at least the experts' receptive-field radius).")
    tile_size: int = Field(default=0, ge=0, description='Largest LR side an expert sees at once in sparse '
                           'inference (0: whole image and whole crops).')
    max_batch: PositiveInt = Field(default=8, description='Crops per expert call at inference.')
    probe_size: PositiveInt = Field(default=16, description="Side of the LR probe measuring each expert's scale.")

    @model_validator(mode='after')
    def _categories_match_experts(self):
        from moesr_arch.archs.moesr_arch import check_expert_weights
        if self.categories_file:  # not read: validated away from its data (check_paths false)
            return self
        try:
            check_expert_weights(self.experts, self.expert_weights)
            expert_categories(self.experts, self.categories)
        except ValueError as error:
            raise problem(f'@: {error}') from None
        return self


def expert_categories(experts, categories):
    """The MoE-SR categories (gate order) given explicitly or by the expert names; ValueError on a mismatch."""
    from moesr_arch.archs.moesr_arch import resolve_categories
    return resolve_categories(experts, list(categories))


class BicubicResidualOptions(NetworkSection):
    """Any registered SR arch made to learn the residual over a bicubic upsampling of its input."""

    type: Literal['BicubicResidual'] = Field(description='Residual over bicubic (moesr_arch.archs.'
                                             'bicubic_residual_arch.BicubicResidual).')
    network: 'Network' = Field(description='Options of the wrapped arch; it must upscale by upscale.')
    upscale: PositiveInt = Field(description='Upsampling factor of the wrapped arch.')
    initial_gain: float = Field(default=0.0, description='Starting value of the learned gain of the residual.')
    upsampler: Upsampler = Field(default='matlab', description=UPSAMPLER_HELP.format(what='the base'))


class SeemoReOptions(NetworkSection):
    """SeemoRe (Zamfir et al., ICML 2024); arguments left out come from the ``variant`` preset."""

    type: Literal['SeemoRe'] = Field(description='SeemoRe (moesr_arch.archs.seemore_arch.SeemoRe).')
    scale: PositiveInt = Field(default=4, description='Upsampling factor.')
    in_chans: PositiveInt = Field(default=3, description='Image channels in and out.')
    variant: Literal['T', 'B', 'L'] = Field(default='T', description='Official preset: T (tiny), B (base), L (large).')
    num_experts: Optional[PositiveInt] = Field(default=None, description='Low-rank experts per block (preset: 3).')
    num_layers: Optional[PositiveInt] = Field(default=None, description='Residual groups (preset T 6, B 8, L 16).')
    embedding_dim: Optional[PositiveInt] = Field(default=None, description='Feature channels (preset T 36, B/L 48).')
    img_range: float = Field(default=1.0, description='Pixel range the network works in.')
    use_shuffle: Optional[bool] = Field(default=None, description='Channel shuffle (preset T/B true, L false).')
    global_kernel_size: Optional[PositiveInt] = Field(default=None, description='Striped spatial expert kernel '
                                                      '(preset 11).')
    recursive: Optional[PositiveInt] = Field(default=None, description='Down-sampling steps of the calibration '
                                             'branch (preset T/B 2, L 1).')
    lr_space: Optional[Literal['linear', 'exp', 'double']] = Field(default=None, description='Expert ranks: linear '
                                                                  '(2, 3, 4, ...), exp (2, 4, 8, ...), double '
                                                                  '(2, 4, 6, ...) (preset exp).')
    topk: Optional[PositiveInt] = Field(default=None, description='Experts each image is routed to (preset 1).')

    @model_validator(mode='after')
    def _topk_within_experts(self):
        from moesr_arch.archs.seemore_arch import SEEMORE_PRESETS
        preset = SEEMORE_PRESETS[self.variant]
        experts = self.num_experts or preset['num_experts']
        topk = self.topk or preset['topk']
        if topk > experts:
            raise problem(f'@topk ({topk}) must not exceed num_experts ({experts})')
        return self


class MoEISROptions(ChannelsSection):
    """MoEISR: arbitrary-scale SR with a mixture of implicit (LIIF-style) decoders and a per-pixel mapper."""

    type: Literal['MoEISR'] = Field(description='MoEISR (moesr_arch.archs.moeisr_arch.MoEISR).')
    num_block: int = Field(default=16, ge=0, description='Residual blocks of the built-in encoder.')
    res_scale: float = Field(default=1.0, description='Residual scaling of the built-in encoder.')
    encoder: Optional['Network'] = Field(default=None, description='A registered arch giving the features '
                                         '(its upsampler removed) instead of the built-in encoder.')
    expert_depths: List[Annotated[int, Field(ge=0)]] = Field(
        default=[1, 2, 3, 4], min_length=1, description='Hidden layers of each decoder expert, cheapest first.')
    hidden_dim: PositiveInt = Field(default=256, description="Width of the experts' hidden layers.")
    mapper_dim: PositiveInt = Field(default=64, description='Width of the mapper.')
    feat_unfold: bool = Field(default=True, description="Concatenate each code's 3x3 neighbourhood (LIIF).")
    local_ensemble: bool = Field(default=True, description='Blend the predictions of the 4 nearest codes (LIIF).')
    cell_decode: bool = Field(default=True, description="Give the decoders the query pixel's size (LIIF).")
    image_residual: bool = Field(default=False, description='Add a bicubic sample of the LR image to the output.')
    temperature: float = Field(default=1.0, gt=0, description='Gumbel-softmax temperature during training.')
    routing_bias: float = Field(default=0.0, description='Test-time routing bias towards cheaper experts.')
    chunk_size: PositiveInt = Field(default=16384, description='Query pixels per image decoded at once.')
    scale: float = Field(default=4.0, gt=0, description='Output scale of forward(lq) (basicsr infer and '
                         'export); validation decodes each set at its own scale.')


class VDSROptions(ChannelsSection):
    """VDSR (Kim et al., CVPR 2016): a deep plain CNN learning the residual over bicubic (inside the network)."""

    type: Literal['VDSR'] = Field(description='VDSR (moesr_arch.archs.vdsr_arch.VDSR).')
    num_layer: int = Field(default=20, ge=2, description='Convolution layers in all, first and last included.')
    upscale: PositiveInt = Field(default=4, description='Upsampling factor (1: the input is already upsampled '
                                 'to the output size). The weights serve every scale.')
    bias: bool = Field(default=True, description='Convolutions with biases (false for the published weights).')
    upsampler: Upsampler = Field(default='matlab', description=UPSAMPLER_HELP.format(what='the upsampling'))


# type -> schema of the plugin's archs (others come from their constructor signatures)
DECLARED = {cls.owner: cls for cls in (MoESRNetOptions, BicubicResidualOptions, SeemoReOptions, MoEISROptions,
                                       VDSROptions)}
# Keys that the options layer reads and replaces before the network is built (not constructor arguments).
OPTION_LAYER_KEYS = {'MoESRNet': ('categories_file', )}
