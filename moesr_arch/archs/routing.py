"""Routing statistics as return values: what a routing network's ``forward(x, return_stats=True)`` returns.

A network that routes (SeemoRe, MoEISR, MoESRNet, BicubicResidual around one of them) keeps no state
after a call; ``forward(x, ..., return_stats=True)`` returns ``(output, stats)`` with
``stats['expert_pixels']``: ``{expert name: float}``, the pixels (or blend weight summed over output
pixels) routed to each expert in that call. Names ``<group>/<expert>`` (SeemoRe's ``layer<i>/rank<r>``)
are shares of their group; other names are shares of all.
"""
import inspect
from collections import OrderedDict


def returns_statistics(net):
    """Whether ``net.forward`` takes ``return_stats`` (the declared interface of a routing network)."""
    return 'return_stats' in inspect.signature(net.forward).parameters


def add_expert_pixels(totals, expert_pixels):
    """Add one call's ``expert_pixels`` into ``totals`` (an ordered dict, updated in place)."""
    for name, pixels in expert_pixels.items():
        totals[name] = totals.get(name, 0.0) + float(pixels)
    return totals


def routing_shares(totals):
    """Each expert's share of the routed pixels: within its ``<group>/`` when named so, else of all.

    Groups without any pixel are left out (an empty dict when nothing was routed).
    """
    groups = {}
    for name, pixels in totals.items():
        group = name.rpartition('/')[0]
        groups[group] = groups.get(group, 0.0) + pixels
    return OrderedDict((name, pixels / groups[name.rpartition('/')[0]]) for name, pixels in totals.items()
                       if groups[name.rpartition('/')[0]] > 0)
