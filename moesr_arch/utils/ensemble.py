"""Geometric self-ensemble (EDSR+): average the network over the 8 flips and rotations of its input."""


def _transform(x, index):
    if index & 4:
        x = x.transpose(-2, -1)
    if index & 2:
        x = x.flip(-2)
    if index & 1:
        x = x.flip(-1)
    return x


def _inverse(x, index):
    if index & 1:
        x = x.flip(-1)
    if index & 2:
        x = x.flip(-2)
    if index & 4:
        x = x.transpose(-2, -1)
    return x


def self_ensemble(network, lq):
    """Mean of ``inverse_t(network(t(lq)))`` over the 8 dihedral transforms ``t``."""
    total = None
    for index in range(8):
        out = _inverse(network(_transform(lq, index)), index)
        total = out if total is None else total + out
    return total / 8
