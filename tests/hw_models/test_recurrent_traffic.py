"""A recurrent dense layer's own spikes in the spike-message and mesh-hop counts (and so in
the energy of a fit report), counted by hand on a layer split over two cores."""

from __future__ import annotations

import numpy as np
import pytest

from hw_models import fit
from hw_models.chip import load_chip
from hw_models.report import DEFAULT_TIME_STEPS, _rates, _traffic
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron, RecurrentDenseLayer

from .conftest import chip_variant

RATES = {0: 0.25, 1: np.array([0.5, 1.0]), 2: np.array([0.1, 0.2, 0.3, 0.4])}


def _rec() -> np.ndarray:
    rec = np.zeros((4, 4), dtype=np.int32)  # rec[target, source]
    rec[0, 3] = rec[1, 3] = 2  # neuron 3 reaches neurons 0 and 1 (block 0)
    rec[2, 0] = rec[3, 0] = 3  # neuron 0 reaches neurons 2 and 3 (block 1)
    rec[1, 1] = 1              # neuron 1 reaches itself (block 0); neuron 2 reaches nothing
    return rec


def _net(rec: np.ndarray | None) -> Network:
    """Host input (2) -> dense (2 neurons) -> recurrent dense (4 neurons), or a plain dense
    layer with the same feed-forward weights when ``rec`` is None."""
    feed_forward = np.ones((4, 2), dtype=np.int32)
    last = DenseLayer(weight=feed_forward, neuron=Neuron()) if rec is None else \
        RecurrentDenseLayer(weight=feed_forward, weight_rec=rec, neuron=Neuron())
    return Network([InputLayer(shape=(2,)), DenseLayer(weight=np.ones((2, 2), dtype=np.int32), neuron=Neuron()),
                    last], name="rec_traffic")


@pytest.fixture()
def small_cores(tmp_path):
    # two neurons per core, mesh two cores wide: core 0 at (row 0, col 0), 1 at (0, 1), 2 at (1, 0)
    return load_chip(chip_variant(tmp_path, max_neurons=2, mesh_columns=2))


def _counts(net: Network, chip) -> tuple[float, float, float]:
    report = fit(net, chip, RATES)
    rates, _ = _rates(net, RATES, 0.1)
    return _traffic(net, report.allocation, rates, chip)


def test_recurrent_pairs_are_kept_per_own_neuron_and_block(small_cores):
    placed = fit(_net(_rec()), small_cores, RATES).allocation.layer(2)
    assert [(b.core, b.neuron_start, b.neuron_stop) for b in placed.blocks] == [(1, 0, 2), (2, 2, 4)]
    pairs = placed.recurrent_inputs
    assert sorted(zip(pairs.blocks.tolist(), pairs.units.tolist())) == [(0, 1), (0, 3), (1, 0)]
    assert np.array_equal(pairs.share, np.ones(3)) and pairs.unit_size == 1
    # the feed-forward pairs stay the producer's: both of layer 1's neurons into both blocks
    assert sorted(zip(placed.inputs.blocks.tolist(), placed.inputs.units.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_recurrent_messages_and_mesh_hops_by_hand(small_cores):
    messages, east_west, north_south = _counts(_net(_rec()), small_cores)
    # feed-forward: host -> layer 1: 2 inputs x 0.25, no hops; layer 1 (core 0) -> both rec blocks
    # (cores 1 and 2): 2 x (0.5 + 1.0), core 0 -> 1 one hop east-west, core 0 -> 2 one hop north-south
    feed_messages, feed_ew, feed_ns = 2 * 0.25 + 2 * (0.5 + 1.0), 0.5 + 1.0, 0.5 + 1.0
    # recurrent: neuron 0 (0.1, core 1) -> block 1 (core 2): 1 hop each way; neuron 1 (0.2, core 1)
    # -> block 0 (core 1): none; neuron 3 (0.4, core 2) -> block 0 (core 1): 1 hop each way
    rec_messages, rec_ew, rec_ns = 0.1 + 0.2 + 0.4, 0.1 + 0.4, 0.1 + 0.4
    assert messages == pytest.approx(feed_messages + rec_messages)
    assert east_west == pytest.approx(feed_ew + rec_ew)
    assert north_south == pytest.approx(feed_ns + rec_ns)


def test_recurrent_spikes_reach_the_energy_report(small_cores):
    report = fit(_net(_rec()), small_cores, RATES)
    e, steps = small_cores.energy, DEFAULT_TIME_STEPS
    assert report.energy.spikes_j == pytest.approx((3.5 + 0.7) * steps * e.spike_j)
    assert report.energy.mesh_hops_j == pytest.approx(
        (1.5 + 0.5) * steps * e.hop_east_west_j + (1.5 + 0.5) * steps * e.hop_north_south_j)


def test_zero_recurrent_weights_add_no_traffic(small_cores):
    silent = _counts(_net(np.zeros((4, 4), dtype=np.int32)), small_cores)
    assert silent == _counts(_net(None), small_cores)  # the same as the feed-forward layer alone
    assert silent == pytest.approx((3.5, 1.5, 1.5))
    pairs = fit(_net(np.zeros((4, 4), dtype=np.int32)), small_cores, RATES).allocation.layer(2).recurrent_inputs
    assert len(pairs.blocks) == 0


def test_silent_recurrent_neurons_send_nothing(small_cores):
    quiet = {**RATES, 2: np.zeros(4)}
    report = fit(_net(_rec()), small_cores, quiet)
    rates, _ = _rates(_net(_rec()), quiet, 0.1)
    assert _traffic(_net(_rec()), report.allocation, rates, small_cores) == pytest.approx((3.5, 1.5, 1.5))


def test_feed_forward_layers_list_no_recurrent_pairs(small_cores):
    allocation = fit(_net(None), small_cores, RATES).allocation
    assert all(layer.recurrent_inputs is None for layer in allocation.layers)
