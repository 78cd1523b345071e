"""fit() and FitReport: JSON keys, SynOps from activity, violations with fixes that
really work, multi-chip nets, raise_if_invalid."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hw_models.mapper import map_network
from hw_models.report import DEFAULT_TIME_STEPS, fit
from neuroprune.errors import FitError, ShapeError
from neuroprune.ir import ConvLayer, DenseLayer, InputLayer, Network

from .conftest import NEURON, chip_variant, dense_net, full_weights, small_conv_net

TOTAL_KEYS = {"cores", "chips", "neurons", "synapses", "synapse_memory_bits", "synops_per_step",
              "energy_per_inference_j"}
LAYER_KEYS = {"index", "type", "neurons", "in_axons", "out_axons", "synapses", "synapse_memory_bits",
              "weight_bits", "cores", "synops_per_step"}
VIOLATION_KEYS = {"limit", "layer", "budget", "actual", "fix"}


def _big_conv_net() -> Network:
    """Needs 241 Loihi 1 cores (2 chips): 64 channels of 62x62 neurons, 1021 per core."""
    return Network([InputLayer(shape=(1, 64, 64)),
                    ConvLayer(weight=np.ones((64, 1, 3, 3), dtype=np.int32), neuron=NEURON)], name="big")


def test_json_has_the_documented_keys(loihi1):
    report = fit(small_conv_net(), loihi1, max_cores=2)
    data = json.loads(report.to_json())
    assert {"chip", "fits", "totals", "layers", "violations"} <= set(data)
    assert data["chip"] == "loihi1" and data["fits"] is False
    assert TOTAL_KEYS <= set(data["totals"])
    assert len(data["layers"]) == 6 and all(LAYER_KEYS <= set(layer) for layer in data["layers"])
    assert data["violations"] and all(VIOLATION_KEYS <= set(v) for v in data["violations"])
    assert [layer["index"] for layer in data["layers"]] == list(range(6))


def test_totals_add_up(loihi1):
    report = fit(small_conv_net(), loihi1)
    assert report.ok
    assert report.totals.cores == sum(layer.cores for layer in report.layers) == report.allocation.cores
    assert report.totals.synapses == sum(layer.synapses for layer in report.layers)
    assert report.totals.synapse_memory_bits == sum(layer.synapse_memory_bits for layer in report.layers)
    assert report.totals.synops_per_step == pytest.approx(sum(layer.synops_per_step for layer in report.layers))


def test_synops_of_a_dense_layer_by_hand(loihi1):
    weight = np.array([[1, 0, 2, 0], [3, 4, 0, 0], [0, 5, 0, 0]], dtype=np.int32)  # fan-outs 2, 2, 1, 0
    net = dense_net([weight])
    assert fit(net, loihi1).totals.synops_per_step == pytest.approx(0.1 * 5)
    rates = np.array([1.0, 0.5, 0.25, 1.0])
    report = fit(net, loihi1, {0: rates})
    assert report.layers[1].synops_per_step == pytest.approx(2 * 1.0 + 2 * 0.5 + 1 * 0.25 + 0 * 1.0)
    assert report.totals.activity_source == "measured (layers 0), assumed 0.1 elsewhere"
    assert fit(net, loihi1, {0: 0.2, 1: 0.0}).totals.activity_source == "measured"
    assert fit(net, loihi1).totals.activity_source == "assumed 0.1"


def test_synops_of_a_conv_layer_counts_real_fan_out(loihi1):
    # 1x4x4 input, 2 filters of ones 3x3 valid: fan-out per pixel 2 * outer([1,2,2,1], [1,2,2,1])
    net = Network([InputLayer(shape=(1, 4, 4)),
                   ConvLayer(weight=np.ones((2, 1, 3, 3), dtype=np.int32), neuron=NEURON)])
    rates = np.zeros((1, 4, 4))
    rates[0, 0, 0], rates[0, 1, 1] = 1.0, 0.5   # a corner (2 synapses) and a centre pixel (8)
    report = fit(net, loihi1, {0: rates})
    assert report.layers[1].synops_per_step == pytest.approx(1.0 * 2 + 0.5 * 8)
    assert report.layers[1].synapses == 72


def test_bad_activity_is_rejected(loihi1):
    net = small_conv_net()
    with pytest.raises(ShapeError, match="activity of layer 1 has shape"):
        fit(net, loihi1, {1: np.zeros(5)})
    with pytest.raises(ShapeError, match="layer 3, which has no neurons"):
        fit(net, loihi1, {3: 0.1})
    with pytest.raises(ShapeError, match="rates >= 0"):
        fit(net, loihi1, {0: -0.1})


def test_core_budget_fixes_really_fit(loihi1):
    net = dense_net([full_weights(300, 1000)])   # 3 cores: 118 neurons per core (memory bound)
    report = fit(net, loihi1, max_cores=2)
    assert not report.ok
    (violation,) = report.violations
    assert (violation.limit, violation.budget, violation.actual, violation.layer) == ("max_cores", 2, 3, None)
    assert "raise --max-cores to 3" in violation.fix
    keep = int(re.search(r"prune layer 1 to <= (\d+) output neurons \(now 300\)", violation.fix).group(1))
    assert keep == 236
    pruned = dense_net([full_weights(300, 1000)[:keep]])
    assert fit(pruned, loihi1, max_cores=2).ok and not fit(dense_net([full_weights(300, 1000)[:keep + 1]]),
                                                           loihi1, max_cores=2).ok
    bits = int(re.search(r"quantize layer 1 to <= (\d)-bit weights \(now 8\)", violation.fix).group(1))
    assert map_network(net, loihi1, {1: bits}).cores <= 2
    assert map_network(net, loihi1, {1: bits + 1}).cores > 2 or bits + 1 not in loihi1.weight_bits


def test_multi_chip_network_is_reported_with_the_count(loihi1):
    report = fit(_big_conv_net(), loihi1)
    assert (report.totals.cores, report.totals.chips) == (241, 2)
    violation = next(v for v in report.violations if v.limit == "max_chips")
    assert (violation.budget, violation.actual) == (1, 2)
    assert "raise --max-chips to 2 (2 chips fit one board of 32)" in violation.fix
    # Loihi 2: 8192 neurons per core (neuron bound): ceil(246016 / 8192) = 31 cores
    assert "use loihi2 (needs 31 cores on 1 chip)" in violation.fix
    # 34 x 3844 neurons fit 128 cores of 1024 (35 would need 132)
    assert "prune layer 1 to <= 34 output channels (now 64)" in violation.fix
    assert "chips (2) exceeded max (1)" in violation.message
    relaxed = fit(_big_conv_net(), loihi1, max_chips=2)
    assert relaxed.ok and relaxed.totals.chips == 2


def test_weight_and_delay_bits_violations(loihi1):
    weight = full_weights(4, 4, -255, 255)
    delay = np.full((4, 4), 200)
    net = Network([InputLayer(shape=(4,)), DenseLayer(weight=weight, delay=delay, neuron=NEURON)])
    report = fit(net, loihi1)
    by_limit = {v.limit: v for v in report.violations}
    assert (by_limit["weight_bits"].actual, by_limit["weight_bits"].budget) == (9, 8)
    assert by_limit["weight_bits"].fix == "quantize layer 1 to <= 8-bit weights"
    assert (by_limit["max_delay_bits"].actual, by_limit["max_delay_bits"].budget) == (8, 7)
    assert "delays to <= 127 time steps" in by_limit["max_delay_bits"].fix


def test_per_core_input_axon_violation_names_the_producer(tmp_path):
    chip = chip_variant(tmp_path, max_in_axons=50)
    net = dense_net([full_weights(80, 10, 1, 3), full_weights(4, 80, 1, 3)])
    report = fit(net, chip)
    (violation,) = report.violations
    assert (violation.limit, violation.layer, violation.actual, violation.budget) == (
        "max_in_axons_per_core", 2, 80, 50)
    assert "prune layer 1 to <= 50 output neurons (now 80)" in violation.fix
    assert violation.message.startswith("layer 2 (dense2): input axons per core (80) exceeded max (50); fix:")
    fixed = dense_net([full_weights(50, 10, 1, 3), full_weights(4, 50, 1, 3)])
    assert fit(fixed, chip).ok


def test_per_core_memory_violation_suggests_quantization(tmp_path):
    chip = chip_variant(tmp_path, max_synapse_bits=3000)
    net = dense_net([full_weights(4, 60)])  # one neuron: 60 axons x 64 bits = 3840 > 3000
    (violation,) = fit(net, chip).violations
    assert violation.limit == "max_synapse_bits_per_core"
    assert violation.actual == 3840
    assert "prune layer 1 to <= 46 non-zero inputs per neuron (now 60)" in violation.fix


def test_synops_budget(loihi1):
    net = dense_net([np.ones((3, 4), dtype=np.int32)])
    report = fit(net, loihi1, max_synops_per_step=0.6)  # 0.1 x 12 = 1.2 SynOps per step
    (violation,) = report.violations
    assert (violation.limit, violation.actual, violation.budget) == ("max_synops_per_step", pytest.approx(1.2), 0.6)
    assert "prune layer 1 to <= 50% of its synapses" in violation.fix
    assert fit(net, loihi1, max_synops_per_step=1.2).ok


def test_raise_if_invalid(loihi1):
    net = dense_net([full_weights(300, 1000)])
    fit(net, loihi1).raise_if_invalid()
    with pytest.raises(FitError, match=r"does not fit loihi1 \(1 violation\): network: cores \(3\) exceeded max \(2\)"):
        fit(net, loihi1, max_cores=2).raise_if_invalid()


def test_energy_per_inference_by_hand(loihi1):
    net = dense_net([np.ones((3, 4), dtype=np.int32)])
    report = fit(net, loihi1, {0: 0.5, 1: 1.0}, time_steps=10)
    e = loihi1.energy
    synops = 0.5 * 12 * 10
    updates, active = 3 * 10, 3 * 1.0 * 10
    messages = 0.5 * 4 * 10  # every input reaches the one core of layer 1
    expected = synops * e.synop_j + active * e.neuron_update_active_j + (updates - active) * e.neuron_update_inactive_j \
        + messages * e.spike_j
    assert report.totals.energy_per_inference_j == pytest.approx(expected)
    assert report.energy.ann_mac_45nm_j == pytest.approx(12 * 4.6e-12)
    assert report.energy.snn_ac_45nm_j == pytest.approx(synops * 0.9e-12)


def test_mesh_hops_between_cores(tmp_path):
    chip = chip_variant(tmp_path, max_neurons=2, mesh_columns=2)
    net = dense_net([full_weights(2, 4, 1, 3), full_weights(4, 2, 1, 3)])
    report = fit(net, chip, {1: 1.0})
    # layer 1 on core 0 (0,0); layer 2 on cores 1 (1,0) and 2 (0,1): each of the 2 spikes
    # goes 1 hop east-west to core 1 and 1 hop north-south to core 2
    steps = DEFAULT_TIME_STEPS
    assert report.energy.mesh_hops_j == pytest.approx(2 * 3.0e-12 * steps + 2 * 4.0e-12 * steps)


def test_graded_input_counts_macs_apart(loihi1):
    net = dense_net([np.ones((3, 4), dtype=np.int32), np.ones((2, 3), dtype=np.int32)])
    spiking = fit(net, loihi1)
    graded = fit(net, loihi1, graded_input=True)
    assert spiking.totals.macs_per_step == 0.0
    assert graded.totals.macs_per_step == 12          # every input value meets every synapse
    assert graded.layers[1].synops_per_step == 0.0
    assert graded.totals.synops_per_step == pytest.approx(spiking.totals.synops_per_step - 0.1 * 12)


def test_the_other_chip_fix_follows_the_chip_files_successor(tmp_path):
    """Which chip a fit suggests is data (``[chip] successor``), not a chip name in the code."""
    from hw_models.chip import CHIPS_DIR, load_chip

    assert load_chip("loihi1").successor == "loihi2" and load_chip("loihi2").successor is None
    text = (CHIPS_DIR / "loihi1.toml").read_text()
    alone = tmp_path / "no_successor.toml"
    alone.write_text("\n".join(line for line in text.splitlines() if not line.startswith("successor")))
    fixes = [v.fix for v in fit(_big_conv_net(), load_chip(alone)).violations if v.limit == "max_chips"]
    assert fixes and not any("use " in fix for fix in fixes)
    renamed = load_chip(chip_variant(tmp_path, name='"my_loihi"'))
    violation = next(v for v in fit(_big_conv_net(), renamed).violations if v.limit == "max_chips")
    assert "use loihi2 (needs 31 cores on 1 chip)" in violation.fix  # a renamed copy keeps its successor
