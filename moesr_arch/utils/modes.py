"""Modules switched to eval mode for a while: :func:`eval_mode`."""
import contextlib


@contextlib.contextmanager
def eval_mode(*modules):
    """Context in which ``modules`` (``nn.Module`` or None, ignored) and all their submodules are in eval mode.

    Afterwards, even when the body raises, every one of those modules has its own training flag back as it was
    on entry: a submodule kept in eval mode inside a training network (a frozen part) stays so, which
    ``module.train(was_training)`` would undo.
    """
    previous = {}
    for module in modules:
        if module is not None:
            for part in module.modules():
                previous.setdefault(part, part.training)
    try:
        for module in modules:
            if module is not None:
                module.eval()
        yield
    finally:
        for part, training in previous.items():
            # The attribute, not train(): train() would set the flag of every submodule to this one's.
            part.training = training
