"""Measured activation sizes: forward hooks on the layers of a network."""

import torch

from moesr_arch.utils.modes import eval_mode


def activation_bytes(model, *inputs):
    """Bytes of the outputs of every leaf module in one eval forward pass of ``model(*inputs)``.

    An upper bound of the activation memory of that pass (not all of them are alive at once), for memory
    estimates that must not fall short.
    """
    total = 0

    def hook(module, args, output):
        nonlocal total
        total += sum(tensor.numel() * tensor.element_size() for tensor in tensors(output))

    run_with_hooks(model, [m for m in model.modules() if not list(m.children())], hook, inputs)
    return total


def tensors(output):
    """The tensors of a module's output: itself, or those of a tuple (a conv giving its output in parts)."""
    if torch.is_tensor(output):
        return [output]
    return [item for item in output if torch.is_tensor(item)] if isinstance(output, (tuple, list)) else []


def run_with_hooks(model, modules, hook, inputs):
    """One eval, no-grad forward pass of ``model(*inputs)`` with ``hook`` on ``modules``; the model's mode
    and hooks are restored afterwards."""
    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        with eval_mode(model), torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
