"""Y-channel networks (1 channel in and out, e.g. the published VDSR) on colour images.

As in the VDSR paper's colour results: the RGB image is converted to YCbCr (ITU-R BT.601, MATLAB's
``rgb2ycbcr``: Y in [16, 235] / 255, the same coefficients as ``basicsr.utils.color_util``), the network
super-resolves Y, Cb and Cr are upsampled with MATLAB's bicubic, and the result goes back to RGB. A grey
image (one channel) goes through the network as it is. ``basicsr infer`` (:class:`~moesr_arch.inference.Upscaler`)
and ``basicsr test`` / validation (``SingleNetworkSRModel.test``) both call :func:`on_luma`, so they cannot drift
apart.
"""
import torch

from moesr_arch.utils.bicubic import matlab_upsample

# BT.601 on [0, 1] values (MATLAB's rgb2ycbcr / ycbcr2rgb, as basicsr.utils.color_util writes them).
TO_YCBCR = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)
TO_RGB = ((0.00456621, 0.0, 0.00625893), (0.00456621, -0.00153632, -0.00318811), (0.00456621, 0.00791071, 0.0))
RGB_OFFSET = (-222.921, 135.576, -276.836)


def on_luma(forward):
    """``forward`` (a 1-channel network or its call) made to take and give images of 1 or 3 channels:
    ``image`` (N, 3, H, W) RGB in [0, 1] -> Y through ``forward``, Cb and Cr by MATLAB bicubic at the scale
    ``forward`` upscales by, back to RGB (not clamped); (N, 1, H, W) -> ``forward(image)``."""
    def run(image):
        if image.shape[1] == 1:
            return forward(image)
        if image.shape[1] != 3:
            raise ValueError(f'a Y-channel network takes 1 (grey) or 3 (RGB) channels, got {image.shape[1]}')
        ycbcr = rgb_to_ycbcr(image)
        luma = forward(ycbcr[:, :1])
        if luma.shape[1] != 1:
            raise ValueError(f'a Y-channel network must give 1 channel, got {luma.shape[1]}')
        scale = luma.shape[-1] // image.shape[-1]
        if tuple(luma.shape[-2:]) != (image.shape[-2] * scale, image.shape[-1] * scale):
            raise ValueError(f'a Y-channel network must upscale by an integer; it gave {tuple(luma.shape[-2:])} '
                             f'for {tuple(image.shape[-2:])}')
        chroma = matlab_upsample(ycbcr[:, 1:], scale)
        return ycbcr_to_rgb(luma.to(chroma.dtype), chroma)
    return run


def rgb_to_ycbcr(rgb):
    """(N, 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (Y in [16, 235] / 255)."""
    return _mix(rgb.unbind(1), TO_YCBCR, YCBCR_OFFSET, inner=1., outer=1 / 255)


def ycbcr_to_rgb(luma, chroma):
    """Y (N, 1, H, W) and CbCr (N, 2, H, W) in [0, 1] -> RGB in [0, 1] (not clamped)."""
    return _mix((luma[:, 0], *chroma.unbind(1)), TO_RGB, RGB_OFFSET, inner=255. * 255., outer=1 / 255)


def _mix(channels, matrix, offset, inner, outer):
    """``(matrix @ channels * inner + offset) * outer`` per pixel, as sums of products, not a 1x1
    convolution: autocast would run that in bf16 on CUDA and lose colour precision."""
    rows = [(sum(weight * channel for weight, channel in zip(row, channels)) * inner + bias) * outer
            for row, bias in zip(matrix, offset)]
    return torch.stack(rows, 1)
