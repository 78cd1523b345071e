"""energy(counts, chip): each term by hand."""

from __future__ import annotations

import pytest

from hw_models.energy import EnergyCounts, energy


def test_each_term_by_hand(loihi1):
    counts = EnergyCounts(synops=1000, neuron_updates=500, active_neuron_updates=100, spikes=200,
                          mesh_hops_east_west=10, mesh_hops_north_south=20, time_steps=4, ann_macs=3000)
    result = energy(counts, loihi1)
    assert result.synops_j == pytest.approx(1000 * 23.6e-12)
    assert result.neuron_updates_j == pytest.approx(400 * 52e-12 + 100 * 81e-12)
    assert result.spikes_j == pytest.approx(200 * 1.7e-12)
    assert result.mesh_hops_j == pytest.approx(10 * 3.0e-12 + 20 * 4.0e-12)
    assert result.static_j == 0.0
    assert result.total_j == pytest.approx(23.6e-9 + 400 * 52e-12 + 8.1e-9 + 340e-12 + 110e-12)
    assert result.snn_ac_45nm_j == pytest.approx(1000 * 0.9e-12)
    assert result.ann_mac_45nm_j == pytest.approx(3000 * 4.6e-12)
    assert set(result.to_dict()) >= {"synops_j", "total_j", "ann_mac_45nm_j"}


def test_static_power_times_time(tmp_path):
    from hw_models.chip import load_chip

    from .conftest import chip_variant

    chip = load_chip(chip_variant(tmp_path, static_power_w=0.5, time_step_s=2e-3))
    result = energy(EnergyCounts(time_steps=10), chip)
    assert result.static_j == pytest.approx(0.5 * 2e-3 * 10)
    assert result.total_j == pytest.approx(0.01)
