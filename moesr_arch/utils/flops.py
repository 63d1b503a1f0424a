"""Multiply-accumulate counting by forward hooks on convolutions, linear layers and matmuls-in-modules.

``count_macs(net, x)`` runs one forward pass and sums, for every ``Conv2d`` and ``Linear`` call, the
MACs it performed: ``output elements x input channels per group x kernel area`` (conv) and
``output elements x input features`` (linear). This is the convention behind the GMACs columns of SR
papers (activations, norms and element-wise ops are not counted).
"""
import torch
from torch import nn


def _conv_macs(module, inputs, output):
    kernel = module.kernel_size[0] * module.kernel_size[1]
    return output.numel() * (module.in_channels // module.groups) * kernel


def _linear_macs(module, inputs, output):
    return output.numel() * module.in_features


COUNTERS = {nn.Conv2d: _conv_macs, nn.Linear: _linear_macs}


@torch.no_grad()
def count_macs(net, *inputs):
    """MACs of one forward pass of ``net`` on ``inputs`` (convolutions and linear layers)."""
    total = [0]
    handles = []
    for module in net.modules():
        counter = COUNTERS.get(type(module))
        if counter is not None:
            handles.append(module.register_forward_hook(
                lambda m, i, o, counter=counter: total.__setitem__(0, total[0] + counter(m, i, o))))
    try:
        net(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def count_params(net):
    return sum(p.numel() for p in net.parameters())
