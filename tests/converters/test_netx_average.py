"""lava-dl's ``average`` readout (slayer's ``Average`` block): read, written so that
slayer loads it back, free on the chip, left out of the Lava run, refused where not mapped
(checkpoints; NIR and ONNX map it, see test_nir_onnx_kinds.py)."""

from __future__ import annotations

import numpy as np
import pytest

from converters import netx
from hw_models import fit
from neuroprune.cli import main
from neuroprune.errors import ShapeError
from neuroprune.ir import AverageLayer, DenseLayer, InputLayer, Network, Neuron


def _net(groups: int = 3) -> Network:
    rng = np.random.default_rng(1)
    return Network([
        InputLayer(shape=(8,)),
        DenseLayer(weight=rng.integers(-60, 60, size=(12, 8), dtype=np.int32), neuron=Neuron()),
        AverageLayer(num_outputs=groups),
    ], name="avg")


def test_lava_dl_ntidigits_ends_in_an_average_readout(lava_dl_netx_dir):
    net = netx.read(lava_dl_netx_dir / "gts/ntidigits/ntidigits.net")
    assert [layer.kind for layer in net] == ["input", "flatten", "dense", "dense", "dense", "average"]
    assert net[5].num_outputs == 11 and net.shapes[5] == (11,) and net.shapes[4] == (242,)
    assert net.source_indices() == [0, 2, 3, 4]  # the readout sends no spikes on the chip
    assert [layer.kind for layer in net.chip_part()] == ["input", "flatten", "dense", "dense", "dense"]


def test_written_average_round_trips_and_slayer_loads_it_back(tmp_path):
    import torch
    from lava.lib.dl.slayer.auto import SequentialNetwork

    net = _net()
    path = netx.write(net, tmp_path / "avg.net")
    assert netx.read(path).same_as(net)
    slayer = SequentialNetwork(str(path))
    average = slayer.blocks[-1]
    assert type(average).__name__ == "Average" and average.num_outputs == 3
    spikes = torch.tensor(np.random.default_rng(2).integers(0, 2, size=(1, 12, 5)), dtype=torch.float32)
    expected = spikes.numpy().reshape(1, 3, 4, 5).mean(axis=2)  # group i = inputs 4i .. 4i+3
    assert np.allclose(average(spikes).numpy(), expected)


def test_average_must_end_the_network_and_split_its_input_evenly():
    with pytest.raises(ShapeError, match=r"layer 2: average layer 'average2': 12 inputs do not split into 5 equal groups"):
        _net(groups=5)
    with pytest.raises(ShapeError, match=r"layer 3: a dense layer cannot follow the average layer 2"):
        Network([*_net().layers, DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=Neuron())])


def test_average_costs_nothing_on_the_chip():
    net = _net()
    with_readout, without = fit(net, "loihi1"), fit(net.chip_part(), "loihi1")
    assert with_readout.totals == without.totals
    row = with_readout.layers[2]
    assert (row.type, row.neurons, row.cores, row.synapses, row.synops_per_step) == ("average", 0, 0, 0, 0)


@pytest.mark.parametrize("suffix,match", [(".pt", "average")])  # NIR and ONNX map it: test_nir_onnx_kinds.py
def test_formats_without_a_readout_refuse_it_in_one_line(tmp_path, capsys, suffix, match):
    source = netx.write(_net(), tmp_path / "avg.net")
    target = tmp_path / f"out{suffix}"
    assert main(["convert", str(source), str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err, err
    assert not target.exists()


@pytest.mark.slow
def test_verify_runs_ntidigits_in_lava_without_its_readout(lava_dl_netx_dir, capsys):
    path = lava_dl_netx_dir / "gts/ntidigits/ntidigits.net"
    assert main(["verify", str(path), "--steps", "12", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    assert "spike-exact" in out and "average" not in out.split("spike-exact")[0].split("first mismatch")[1]
