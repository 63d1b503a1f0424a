import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class VDSR(nn.Module):
    """VDSR (Kim et al., CVPR 2016): a deep plain CNN that learns the residual over a bicubic upsampling.

    Unlike the paper (which takes a pre-upsampled Y channel), the bicubic upsampling happens inside the
    network, so VDSR takes the LR image like every other arch and works on RGB.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Channels of the hidden layers. Default: 64.
        num_layer (int): Convolution layers in all, first and last included. Default: 20.
        upscale (int): Upsampling factor (any integer >= 1). Default: 4.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_layer=20, upscale=4):
        super().__init__()
        if num_layer < 2:
            raise ValueError(f'VDSR needs at least 2 layers, got num_layer={num_layer}')
        if int(upscale) != upscale or upscale < 1:
            raise ValueError(f'VDSR upscale must be a positive integer, got {upscale}')
        self.upscale = int(upscale)
        layers = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.ReLU(inplace=True)]
        for _ in range(num_layer - 2):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_feat, num_out_ch, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.skip_channels = num_in_ch == num_out_ch
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity='relu')
                nn.init.zeros_(module.bias)
        # The residual starts near zero so the untrained network already equals bicubic.
        nn.init.normal_(self.body[-1].weight, std=1e-3)

    def forward(self, x):
        if self.upscale > 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False)
        residual = self.body(x)
        return x + residual if self.skip_channels else residual
