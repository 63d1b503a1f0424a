"""Published PSNR / SSIM of the package's archs on the standard SR test sets, each row with its source.

``basicsr benchmark`` prints these beside what it measures. All are PSNR (dB) / SSIM on Y (BT.601), border
= scale, LR by MATLAB's bicubic, as the sources state. B100 is the 100-image set; ``BSD68`` (68 of its
images) is a different set, and no figure here is for it.

Add a row only with its source, and only after reading the figure there; a figure not found stays out
(``-`` in the table) rather than being recalled. :func:`published_model` says which row group a network
belongs to, from its type and configuration.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from torch import nn

SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')

SEEMORE_TABLE = ('SeemoRe (Zamfir et al., ICML 2024), Table 1, as in the official repository '
                 '(eduardzamfir/seemoredetails, figures/main_table.png)')
VDSR_PAPER = 'VDSR (Kim et al., CVPR 2016), its benchmark table as later papers reproduce it'
PYTORCH_VDSR = 'twtygqyy/pytorch-vdsr README ("VDSR PyTorch", PSNR on Set5 only), its model_epoch_50.pth'
EDSR_BASELINE = ('EDSR-baseline (Lim et al., CVPRW 2017) as later lightweight-SR papers tabulate it; not checked '
                 'against the EDSR paper itself here')


@dataclass(frozen=True)
class Published:
    """The published figures of one model at one scale.

    Args:
        model (str): The model as the table names it (``bicubic``, ``SeemoRe-T``, ``VDSR``, ...).
        label (str): Its row label (``VDSR (paper)``, ``VDSR (pytorch-vdsr weights)``).
        scale (int): The upscale factor.
        figures (dict): Set name -> ``(PSNR, SSIM or None)``; sets without a published figure are absent.
        source (str): Where the figures were read.
    """

    model: str
    label: str
    scale: int
    figures: Dict[str, Tuple[float, Optional[float]]]
    source: str


def _row(model, scale, source, *cells, label=None):
    figures = {name: cell for name, cell in zip(SETS, cells) if cell is not None}
    return Published(model, label or model, scale, figures, source)


PUBLISHED = (
    _row('bicubic', 2, SEEMORE_TABLE, (33.66, .9299), (30.24, .8688), (29.56, .8431), (26.88, .8403), (30.80, .9339)),
    _row('bicubic', 3, SEEMORE_TABLE, (30.39, .8682), (27.55, .7742), (27.21, .7385), (24.46, .7349), (26.95, .8556)),
    _row('bicubic', 4, SEEMORE_TABLE, (28.42, .8104), (26.00, .7027), (25.96, .6675), (23.14, .6577), (24.89, .7866)),
    _row('SeemoRe-T', 2, SEEMORE_TABLE, (38.06, .9608), (33.65, .9186), (32.23, .9004), (32.22, .9286),
         (39.01, .9777)),
    _row('SeemoRe-T', 3, SEEMORE_TABLE, (34.46, .9276), (30.44, .8445), (29.15, .8063), (28.27, .8538),
         (33.92, .9460)),
    _row('SeemoRe-T', 4, SEEMORE_TABLE, (32.31, .8965), (28.72, .7840), (27.65, .7384), (26.23, .7883),
         (30.82, .9107)),
    _row('VDSR', 2, VDSR_PAPER, (37.53, .9587), (33.03, .9124), (31.90, .8960), (30.76, .9140), label='VDSR (paper)'),
    _row('VDSR', 3, VDSR_PAPER, (33.66, .9213), (29.77, .8314), (28.82, .7976), (27.14, .8279), label='VDSR (paper)'),
    _row('VDSR', 4, VDSR_PAPER, (31.35, .8838), (28.01, .7674), (27.29, .7251), (25.18, .7524), label='VDSR (paper)'),
    _row('VDSR', 2, PYTORCH_VDSR, (37.65, None), label='VDSR (pytorch-vdsr weights)'),
    _row('VDSR', 3, PYTORCH_VDSR, (33.77, None), label='VDSR (pytorch-vdsr weights)'),
    _row('VDSR', 4, PYTORCH_VDSR, (31.45, None), label='VDSR (pytorch-vdsr weights)'),
    _row('EDSR-baseline', 2, EDSR_BASELINE, (37.99, .9604), (33.57, .9175), (32.16, .8994), (31.98, .9272)),
    _row('EDSR-baseline', 4, EDSR_BASELINE, (32.09, .8938), (28.58, .7813), (27.57, .7357), (26.04, .7849)),
)
# SeemoRe-B and -L: their figures (the paper's Table 2) were not available to check; none are listed.


def published_rows(model, scale):
    """The rows of ``model`` (``published_model``'s name, or ``'bicubic'``) at ``scale``, in table order."""
    return [row for row in PUBLISHED if row.model == model and row.scale == scale]


def _seemore(network):
    from moesr_arch.archs.seemore_arch import SEEMORE_PRESETS
    config = network.config
    for variant, preset in SEEMORE_PRESETS.items():
        if all(config.get(key) == value for key, value in preset.items()) and config.get('in_chans') == 3:
            return f'SeemoRe-{variant}'
    return None


def _edsr(network):
    # BasicSR's EDSR-M of its model zoo, the paper's baseline: 16 residual blocks of 64 features, RGB.
    first = network.conv_first
    return 'EDSR-baseline' if (first.in_channels, first.out_channels, len(network.body)) == (3, 64, 16) else None


def _vdsr(network):
    convs = [module for module in network.modules() if isinstance(module, nn.Conv2d)]
    return 'VDSR' if len(convs) == 20 and convs[0].out_channels == 64 else None


# network type name -> function(network) -> the published model it is, or None (another configuration)
_MATCHERS = {'SeemoRe': _seemore, 'EDSR': _edsr, 'VDSR': _vdsr}


def published_model(network):
    """Which published model ``network`` is (``SeemoRe-T``, ``EDSR-baseline``, ``VDSR``, ...), by its type and
    configuration; None when the package knows no published figures of that configuration."""
    matcher = _MATCHERS.get(type(network).__name__)
    return matcher(network) if matcher else None
