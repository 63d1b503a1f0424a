"""Where MoE-SR's experts start: from a generalist's file (``path.pretrain_network_experts``), and the category
experts from the background expert at the first ``experts`` stage (``train.init_experts``)."""
from basicsr.utils import get_root_logger

from moesr_arch.utils.checkpoint import mismatch, read_weights

BACKGROUND = 'background'


def load_experts(net, path, param_key):
    """Start every expert of ``net`` (a bare MoESRNet) that ``path``'s weights fit (same keys and shapes) from them.
    MoESRModel calls it before BasicSR copies net_g into its EMA, so the EMA starts there too."""
    state = read_weights(path, param_key, what='path.pretrain_network_experts').state
    loaded, skipped = [], []
    for name, expert in net.experts.items():
        if mismatch(expert.state_dict(), state):
            skipped.append(f'{name} ({type(expert).__name__})')
        else:
            expert.load_state_dict(state)
            loaded.append(name)
    if not loaded:
        raise ValueError(f'path.pretrain_network_experts {path}: its weights fit none of the experts '
                         f'({", ".join(skipped)}); give the weights of one expert of network_g')
    logger = get_root_logger()
    logger.info(f'Experts {", ".join(loaded)} start from {path}')
    if skipped:
        logger.warning(f'path.pretrain_network_experts {path}: does not fit {", ".join(skipped)}, which start fresh')


def copy_background_into_experts(nets):
    """Copy each net's background expert into its category experts of the same architecture; ``nets``: the
    trained MoESRNet first, then its EMA copy. Returns the names copied (in the first)."""
    copied = []
    for net in nets:
        source = net.experts[BACKGROUND].state_dict()
        for name in net.categories:
            target = net.experts[name]
            shapes = {k: v.shape for k, v in target.state_dict().items()}
            if type(target) is type(net.experts[BACKGROUND]) and shapes == {k: v.shape for k, v in source.items()}:
                target.load_state_dict(source)
                if net is nets[0]:
                    copied.append(name)
            elif net is nets[0]:
                get_root_logger().warning(f'Expert {name} ({type(target).__name__}) differs from the background '
                                          f'expert ({type(net.experts[BACKGROUND]).__name__}): not initialised')
    return copied
