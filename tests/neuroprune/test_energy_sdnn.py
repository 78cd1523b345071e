"""SynOps, messages and energy of sigma-delta (graded-spike) networks: a tiny net by
hand, counts from Lava equal to ours, and ``neuroprune energy`` on lava-dl's PilotNet SDNN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import lava_verify, netx
from hw_models import fit
from hw_models.energy_report import energy_table
from neuroprune.cli import main
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron
from neuroprune.pipeline import NetRun, chip_rates
from neuroprune.snn.activity import fixed_point_activity

PJ = 1e-12


def _tiny() -> tuple[Network, np.ndarray]:
    """Two sigma-delta inputs -> two sigma-delta neurons, 4 steps.

    The input (Delta, threshold 0) sends ``delta >> 6`` every step, also when the delta is
    0: input 0 reads 3, 3, 5, 5 and sends payloads 192, 0, 128, 0 (two non-zero messages);
    input 1 reads 0 and sends nothing. Netx stores weight 64 as 128 with a right shift of
    1, so a payload p arrives as 64 p one step later: neuron 0 (weight 64 from input 0)
    and neuron 1 (64 from each input) both receive 3 << 12 at t = 1 and 2 << 12 at t = 3,
    deltas over their threshold 1 << 12, and send at t = 1 and t = 3 only."""
    sd = Neuron(kind="SDNN", v_th_mant=1, activation="relu")
    network = Network([InputLayer(shape=(2,), neuron=Neuron(kind="SDNN", v_th_mant=0, activation="relu")),
                       DenseLayer(weight=np.array([[64, 0], [64, 64]], dtype=np.int32), neuron=sd)])
    x = np.zeros((1, 2, 4), dtype=np.int64)
    x[0, 0] = [3, 3, 5, 5]
    return network, x


def test_tiny_graded_network_synops_and_energy_by_hand():
    network, x = _tiny()
    rates, _ = chip_rates(NetRun("tiny", network, x))
    assert rates[0].tolist() == [0.5, 0.0]  # 2 non-zero payloads of 4 steps; the zero ones are not sent
    assert rates[1].tolist() == [0.5, 0.5]
    assert fixed_point_activity(network, x).rates[1].tolist() == [0.5, 0.5]
    table = energy_table(fit(network, "loihi2", rates, time_steps=4))
    dense = table.layers[1]
    # SynOps: input 0 sends 2 messages x 2 non-zero outgoing synapses; input 1 sends none
    assert dense.synops == 4
    assert dense.spikes == 4 and dense.neuron_updates == 8 and dense.neurons == 2
    assert table.layers[0].spikes == 2
    # Loihi 2 file (Loihi 1 estimates): 4 SynOps x 23.6 pJ + 4 active updates x 81 pJ
    # + 4 inactive x 52 pJ + 4 messages x 1.7 pJ (no per-payload-bit energy in the file)
    assert dense.energy_j == pytest.approx((4 * 23.6 + 4 * 81 + 4 * 52 + 4 * 1.7) * PJ)
    assert table.synops == 4


def test_graded_counts_from_lava_equal_counts_from_our_model(tmp_path):
    rng = np.random.default_rng(2)
    network = Network([
        InputLayer(shape=(6,), neuron=Neuron(kind="SDNN", v_th_mant=2, activation="relu")),
        DenseLayer(weight=rng.integers(-80, 120, size=(5, 6)).astype(np.int32), neuron=Neuron(
            kind="SDNN", v_th_mant=8, activation="relu"), bias=rng.integers(-5, 20, size=5).astype(np.int32)),
        DenseLayer(weight=rng.integers(-80, 120, size=(3, 5)).astype(np.int32),
                   neuron=Neuron(kind="SDNN", v_th_mant=0, activation="relu", sigma_output=True)),
    ])
    x = rng.integers(0, 40, size=(2, 6, 10)).astype(np.int64)
    run = NetRun("sdnn", network, x)
    ours, _ = chip_rates(run, "model")
    lava, _ = chip_rates(run, "lava")
    assert sorted(ours) == sorted(lava) == [0, 1, 2]
    for index in ours:
        assert np.array_equal(ours[index], lava[index]), index
    assert all(0 < float(r.mean()) < 1 for r in ours.values())  # some messages, not every step
    assert energy_table(fit(network, "loihi2", ours, time_steps=10)).to_dict() == \
        energy_table(fit(network, "loihi2", lava, time_steps=10)).to_dict()


def test_energy_cli_reports_lava_dl_pilotnet_sdnn_per_layer(lava_dl_netx_dir, tmp_path, capsys):
    folder = lava_dl_netx_dir / "gts/pilotnet_sdnn"
    path = folder / "network.net"
    network = netx.read(path)
    recorded = lava_verify.to_chw(np.repeat(np.load(folder / "input.npy"), 9, axis=-1), network.input_shape, "xyc")
    np.save(tmp_path / "input.npy", recorded)
    assert main(["energy", str(path), "--data", str(tmp_path / "input.npy"), "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    layers = {row["index"]: row for row in entry["layers"]}
    assert sorted(layers) == list(range(10))
    ours = fixed_point_activity(network, recorded)
    for index in network.compartment_indices():
        messages = ours.spikes_per_inference(index)
        assert layers[index]["spikes"] == pytest.approx(messages) and messages > 0
    # SynOps of the last dense layer: every message of layer 8 reaches its one neuron
    # through a non-zero weight (all 10 are), so SynOps = layer 8's messages
    assert np.count_nonzero(network[9].weight) == 10
    assert layers[9]["synops"] == pytest.approx(ours.spikes_per_inference(8))
    assert entry["synops"] > 0 and entry["energy_j"]["total_j"] > 0 and entry["time_steps"] == 9
