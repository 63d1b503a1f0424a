"""Bicubic upsampling inside networks: MATLAB's kernel (the SR literature's) or PyTorch's.

MATLAB's ``imresize(img, s, 'bicubic')`` (= ``basicsr.utils.matlab_functions.imresize``) uses the cubic
kernel with a = -0.5 and pads the image symmetrically (``b a | a b c | c b``); PyTorch's
``F.interpolate(mode='bicubic')`` uses a = -0.75 and repeats edge pixels. The LR images of every benchmark
and VDSR's published weights are made with MATLAB's, and a network trained on one kernel loses up to 1.9 dB
on the other (VDSR on Set5), so :func:`matlab_upsample` reproduces it exactly as a torch operation:
differentiable, batched, on any device.

How: for upsampling, PyTorch's antialiased bicubic (``antialias=True``, PIL's filter) is the same a = -0.5
kernel over the same half-pixel grid; it only differs at the borders, where it drops and renormalises the
taps that fall outside. Padding 2 pixels symmetrically first (the kernel's reach) and cropping ``2 * s``
output pixels off each side gives MATLAB's result to float rounding. It is also the fastest exact way
measured here (``python scripts/benchmark.py --only bicubic``). ONNX has no such operator at the opset
the project exports, so an ONNX export traces :func:`phase_convolution` instead (the same values).
"""
import math

import torch
import torch.nn.functional as F

KERNELS = ('matlab', 'torch')
REACH = 2  # input pixels on each side of an output pixel's position that the cubic kernel weighs


def bicubic_upsample(x, scale, kernel='matlab'):
    """``x`` (N, C, H, W) upsampled by the integer ``scale`` with ``kernel``: ``'matlab'``
    (:func:`matlab_upsample`) or ``'torch'`` (``F.interpolate(mode='bicubic', align_corners=False)``, what
    the package's networks used before; checkpoints trained with it need it)."""
    if check_kernel(kernel) == 'torch':
        return F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)
    return matlab_upsample(x, scale)


def check_kernel(kernel, what='bicubic kernel'):
    """``kernel`` when it is one of :data:`KERNELS`, else ValueError naming ``what``."""
    if kernel not in KERNELS:
        raise ValueError(f'{what} must be one of {", ".join(KERNELS)}, got {kernel!r}')
    return kernel


def matlab_upsample(x, scale):
    """``x`` (N, C, H, W) float upsampled by the integer ``scale`` as ``imresize(x, scale)`` of MATLAB does
    (bicubic, a = -0.5, symmetric borders): (N, C, H * scale, W * scale), not clamped (a strided view).

    Differentiable; float32 and float64 are computed as they are, half precisions in float32."""
    scale = _integer_scale(scale)
    if scale == 1:
        return x
    if torch.onnx.is_in_onnx_export():
        return phase_convolution(x, scale)
    # The antialiased kernel has no half-precision version on the CPU: those run in float32.
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = F.interpolate(symmetric_pad(work, REACH), scale_factor=scale, mode='bicubic', align_corners=False,
                        antialias=True)
    margin = REACH * scale
    # A view: copying it out would cost a third of the time at x4, and convolutions take strided input.
    return out[..., margin:-margin, margin:-margin].to(x.dtype)


def phase_convolution(x, scale):
    """:func:`matlab_upsample` as plain convolutions (what ONNX exports): each of the ``scale ** 2`` output
    phases is a fixed 5 x 5 filter on the symmetrically padded input, then a pixel shuffle."""
    scale = _integer_scale(scale)
    taps = phase_taps(scale)
    # Built from Python numbers, so a trace holds the filters as constants (ONNX needs a known kernel shape).
    weight = torch.tensor([[[[a * b for b in column] for a in row]] for row in taps for column in taps],
                          dtype=x.dtype, device=x.device)
    planes = F.conv2d(symmetric_pad(x, REACH).flatten(0, 1)[:, None], weight)  # one image per channel
    return F.pixel_shuffle(planes, scale).reshape(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)


def phase_taps(scale):
    """``scale`` rows of 5 weights: those of input pixels ``k - 2 .. k + 2`` for output pixel ``scale * k + r``
    (row ``r``) along one axis, MATLAB's cubic kernel normalised as ``imresize`` does."""
    rows = []
    for phase in range(scale):
        # Output pixel centres sit at (r + 0.5) / s - 0.5 input pixels from input pixel k.
        offset = (phase + 0.5) / scale - 0.5
        row = [cubic(offset - tap) for tap in range(-REACH, REACH + 1)]
        rows.append([weight / math.fsum(row) for weight in row])
    return rows


def cubic(t):
    """MATLAB's bicubic kernel (Keys, a = -0.5) at distance ``t``."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def symmetric_pad(x, pad):
    """``x`` padded by ``pad`` pixels on each side of its last two axes as MATLAB's ``imresize`` does: mirrored
    with the edge pixel repeated (``b a | a b c | c b``), and mirrored again where a side is shorter than
    ``pad``."""
    for dim in (-2, -1):
        length = x.shape[dim]
        if length >= pad:
            # Slices counted from each end (not from the length), so an ONNX export keeps any size.
            ends = [slice(None)] * x.dim()
            ends[dim] = slice(None, pad)
            head = x[tuple(ends)].flip(dim)
            ends[dim] = slice(-pad, None)
            x = torch.cat([head, x, x[tuple(ends)].flip(dim)], dim)
        else:  # imresize's indices into [0 .. n-1, n-1 .. 0], repeated
            mirror = torch.cat([torch.arange(length), torch.arange(length - 1, -1, -1)])
            index = mirror[torch.arange(-pad, length + pad) % (2 * length)]
            x = x.index_select(dim, index.to(x.device))
    return x


def _integer_scale(scale):
    if int(scale) != scale or scale < 1:
        raise ValueError(f'MATLAB bicubic upsampling needs a positive integer scale, got {scale}')
    return int(scale)
