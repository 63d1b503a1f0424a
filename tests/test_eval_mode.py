"""eval_mode: modules in eval mode for a block, every training flag given back exactly afterwards."""
import pytest
from torch import nn

from moesr_arch.utils.modes import eval_mode


def mixed_network():
    """A training network with a part kept in eval mode (frozen) that holds a training part of its own."""
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.BatchNorm2d(3), nn.Sequential(nn.Dropout())))
    net.train()
    net[1].eval()
    net[1][1].train()
    return net


def flags(*modules):
    return [part.training for module in modules for part in module.modules()]


def test_every_module_is_in_eval_mode_inside_and_has_its_own_flag_back_after():
    net, other = mixed_network(), nn.Linear(2, 2).eval()
    before = flags(net, other)
    assert before == [True, True, False, False, True, True, False]
    with eval_mode(net, None, other):
        assert not any(flags(net, other))
    assert flags(net, other) == before


def test_flags_are_given_back_when_the_body_raises():
    net = mixed_network()
    before = flags(net)
    with pytest.raises(RuntimeError, match='inside'):
        with eval_mode(net):
            assert not any(flags(net))
            raise RuntimeError('inside')
    assert flags(net) == before


def test_a_module_and_its_own_part_together_and_nested_blocks():
    net = mixed_network()
    before = flags(net)
    with eval_mode(net[1], net):  # the part first: its flags are read before anything changes
        with eval_mode(net[1][1]):
            assert not any(flags(net))
        assert not any(flags(net))
    assert flags(net) == before


def test_nothing_or_only_none_is_allowed():
    with eval_mode():
        pass
    with eval_mode(None, None):
        pass
