"""Energy per inference: a tiny network checked by hand, and counts from Lava equal to
counts from our model on the same input."""

import numpy as np
import pytest

from hw_models import fit
from hw_models.energy_report import energy_table
from neuroprune.cli import main
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron
from neuroprune.pipeline import NetRun, chip_rates

PJ = 1e-12


def _tiny() -> tuple[Network, np.ndarray]:
    """Two inputs -> two neurons. Input 0 spikes at every one of 4 steps, input 1 never.
    No current or voltage memory and threshold 63 << 6 = 4032: each arriving spike
    (weight 64 -> u = 4096) fires the neuron, one step after the input spike."""
    neuron = Neuron(i_decay=4096, v_decay=4096, v_th_mant=63)
    network = Network([InputLayer(shape=(2,)),
                       DenseLayer(weight=np.array([[64, 0], [64, 64]], dtype=np.int32), neuron=neuron)])
    x = np.zeros((1, 2, 4), dtype=np.int64)
    x[0, 0, :] = 1
    return network, x


def test_tiny_network_energy_by_hand():
    network, x = _tiny()
    rates, _ = chip_rates(NetRun("tiny", network, x))
    assert rates[0].tolist() == [1.0, 0.0]
    assert rates[1].tolist() == [0.75, 0.75]  # spikes at t = 1, 2, 3 (the synapse delays one step)
    table = energy_table(fit(network, "loihi1", rates, time_steps=4))
    dense = table.layers[1]
    # SynOps: input 0 spikes 4 times x 2 non-zero outgoing synapses; input 1 never spikes
    assert dense.synops == 8
    assert dense.spikes == 6 and dense.neuron_updates == 8 and dense.neurons == 2 and dense.cores == 1
    # 8 SynOps x 23.6 pJ + 6 active updates x 81 pJ + 2 inactive x 52 pJ + 6 spikes x 1.7 pJ
    assert dense.energy_j == pytest.approx((8 * 23.6 + 6 * 81 + 2 * 52 + 6 * 1.7) * PJ)
    assert table.synops == 8 and table.breakdown["synops_j"] == pytest.approx(8 * 23.6 * PJ)
    assert table.breakdown["neuron_updates_j"] == pytest.approx((6 * 81 + 2 * 52) * PJ)
    assert table.breakdown["snn_ac_45nm_j"] == pytest.approx(8 * 0.9 * PJ)
    # the equivalent ANN does one MAC per stored synapse (3 non-zero) per pass
    assert table.breakdown["ann_mac_45nm_j"] == pytest.approx(3 * 4.6 * PJ)


@pytest.mark.slow
def test_counts_from_lava_equal_counts_from_our_model(conv_net):
    from converters import lava_verify

    x = lava_verify.random_input(conv_net, steps=24, samples=2, seed=11)
    run = NetRun("conv", conv_net, x)
    ours, _ = chip_rates(run, "model")
    lava, _ = chip_rates(run, "lava")
    assert sorted(ours) == sorted(lava)
    for index in ours:
        assert np.array_equal(ours[index], lava[index]), index
    assert sum(float(r.sum()) for r in ours.values()) > 0
    ours_table = energy_table(fit(conv_net, "loihi1", ours, time_steps=24))
    lava_table = energy_table(fit(conv_net, "loihi1", lava, time_steps=24))
    assert ours_table.to_dict() == lava_table.to_dict()


def test_energy_cli_compares_two_nets_and_refuses_bad_input(tmp_path, capsys, dense_net):
    from converters import netx
    from neuroprune.prune.structured import prune_network

    dense_path = netx.write(dense_net, tmp_path / "dense.net")
    pruned = prune_network(dense_net, {1: list(range(8))})
    pruned_path = netx.write(pruned, tmp_path / "pruned.net")
    assert main(["energy", str(dense_path), str(pruned_path), "--samples", "4", "--json"]) == 0
    import json

    tables = json.loads(capsys.readouterr().out)
    assert [t["net"] for t in tables] == ["dense", "pruned"]
    assert tables[1]["synops"] < tables[0]["synops"]
    assert main(["energy", str(dense_path), "--data", str(tmp_path / "nope.npy")]) == 2
    assert "nope.npy" in capsys.readouterr().err
