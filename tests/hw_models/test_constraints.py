"""Constraints and resource_use: budgets hold or not, and the check is fast enough to
run thousands of times in the pruning search."""

from __future__ import annotations


import pytest

from hw_models.constraints import Constraints, resource_use
from hw_models.report import fit

from .conftest import dense_net, full_weights, small_conv_net


def test_constraints_from_chip_and_budget(loihi1):
    constraints = Constraints.from_chip("loihi1", max_cores=8, max_synops_per_step=100.0)
    assert constraints.max_cores == 8 and constraints.max_chips == 1
    assert constraints.max_synops_per_step == 100.0
    assert Constraints.from_chip(loihi1).max_cores == 128
    with pytest.raises(AttributeError):
        constraints.chip = loihi1  # frozen


def test_resource_use_reports_each_budget():
    net = dense_net([full_weights(300, 1000)])  # 3 cores, 300 x 1000 synapses
    use = resource_use(net, Constraints.from_chip("loihi1", max_cores=2, max_synops_per_step=1e6))
    assert (use.cores, use.chips, use.max_neurons_per_core) == (3, 1, 100)
    assert use.synops_per_step == pytest.approx(0.1 * 300 * 1000)
    assert use.within["max_cores"] is False and use.within["max_synops_per_step"] is True
    assert not use.ok
    assert resource_use(net, Constraints.from_chip("loihi1", max_cores=3)).ok
    assert resource_use(net, Constraints.from_chip("loihi1"), {0: 0.0}).synops_per_step == 0.0


def test_resource_use_agrees_with_fit_on_a_five_layer_net():
    """The cheap check a search calls per candidate gives the fit's own totals (its
    speed is measured in benchmarks/bench_fit.py, not here)."""
    net = small_conv_net()  # input neurons, 2 convs, flatten, 2 dense
    constraints = Constraints.from_chip("loihi1")
    use = resource_use(net, constraints)
    report = fit(net, "loihi1")
    assert use.cores == report.totals.cores
    assert use.synapse_memory_bits == report.totals.synapse_memory_bits
