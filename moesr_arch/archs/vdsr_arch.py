from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from moesr_arch.utils.bicubic import bicubic_upsample, check_kernel


@ARCH_REGISTRY.register()
class VDSR(nn.Module):
    """VDSR (Kim et al., CVPR 2016): a deep plain CNN that learns the residual over a bicubic upsampling.

    The bicubic upsampling happens inside the network (``upscale`` > 1), so VDSR takes the LR image like every
    other arch; ``upscale: 1`` takes an input already upsampled to the output size instead, as the paper's own
    pipeline does. The weights do not depend on the scale: one set serves every ``upscale`` (the published
    weights were trained on x2, x3 and x4 together). The paper's network is the Y-channel one
    (``num_in_ch = num_out_ch = 1``, ``bias: false``, MATLAB's bicubic); the inference layer runs it on colour
    images (:mod:`moesr_arch.inference.luma`). With 3 channels it is the RGB variant. In an option file
    (``type: VDSR``), its keys with their types and defaults are in docs/options.md#vdsr.

    Args:
        num_in_ch (int): Input channels (1: the Y channel, as published).
        num_out_ch (int): Output channels.
        num_feat (int): Channels of the hidden layers.
        num_layer (int): Convolution layers in all, first and last included.
        upscale (int): Upsampling factor (any integer >= 1; 1: the input is already upsampled).
        bias (bool): Convolutions with biases (the published weights have none).
        upsampler (str): Bicubic kernel of the upsampling: ``'matlab'`` (as published) or ``'torch'``.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_layer=20, upscale=4, bias=True,
                 upsampler='matlab'):
        super().__init__()
        if num_layer < 2:
            raise ValueError(f'VDSR needs at least 2 layers, got num_layer={num_layer}')
        if int(upscale) != upscale or upscale < 1:
            raise ValueError(f'VDSR upscale must be a positive integer, got {upscale}')
        self.upscale, self.upsampler = int(upscale), check_kernel(upsampler, 'VDSR upsampler')
        layers = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1, bias=bias), nn.ReLU(inplace=True)]
        for _ in range(num_layer - 2):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=bias), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_feat, num_out_ch, 3, 1, 1, bias=bias))
        self.body = nn.Sequential(*layers)
        self.skip_channels = num_in_ch == num_out_ch
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity='relu')
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # The residual starts near zero so the untrained network already equals bicubic.
        nn.init.normal_(self.body[-1].weight, std=1e-3)

    def forward(self, x):
        if self.upscale > 1:
            x = bicubic_upsample(x, self.upscale, self.upsampler)
        residual = self.body(x)
        return x + residual if self.skip_channels else residual
