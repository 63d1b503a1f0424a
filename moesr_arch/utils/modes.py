"""Running modules in eval mode for a while."""
import contextlib


@contextlib.contextmanager
def eval_mode(*modules):
    """Put ``modules`` (None entries ignored) in eval mode, and give each its own training flag back afterwards,
    also when the body raises."""
    modules = [module for module in modules if module is not None]
    flags = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, flag in zip(modules, flags):
            module.train(flag)
