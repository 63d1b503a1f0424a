import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class FFTLoss(nn.Module):
    """L1 distance between the 2-D Fourier spectra of prediction and target (SeemoRe's frequency loss).

    Real and imaginary parts of ``torch.fft.rfft2`` over the last two axes are compared element-wise, so
    the loss penalises missing high-frequency detail that a pixel loss barely sees.

    Its option-file keys (``train.<name>_opt``): docs/options.md#fftloss.

    Args:
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'``, over batch, channels, frequencies and
            the real/imaginary pair. Default: ``'mean'``.
    """

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"FFTLoss reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f'FFTLoss needs prediction and target of the same shape, got {tuple(pred.shape)} '
                             f'and {tuple(target.shape)}')
        # The FFT runs in float32 at least: half-precision FFTs need power-of-two sizes on CUDA.
        dtype = torch.promote_types(pred.dtype, torch.float32)
        pred_fft = torch.view_as_real(torch.fft.rfft2(pred.to(dtype)))
        target_fft = torch.view_as_real(torch.fft.rfft2(target.to(dtype)))
        return self.loss_weight * nn.functional.l1_loss(pred_fft, target_fft, reduction=self.reduction)
