"""lava-dl netx's recurrent dense layer (``dense_rec``): read and written as lava-dl's
netx loads it, costed with its recurrent fan-in, refused in one line where not modelled."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from converters import netx
from hw_models import fit
from neuroprune.cli import main
from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron, RecurrentDenseLayer

FF = np.array([[1, 0, 2], [0, 0, 3]], dtype=np.int32)
REC = np.array([[0, 4], [5, 0]], dtype=np.int32)


def _net() -> Network:
    return Network([
        InputLayer(shape=(4,)),
        DenseLayer(weight=np.ones((3, 4), dtype=np.int32), neuron=Neuron()),
        RecurrentDenseLayer(weight=FF, weight_rec=REC, neuron=Neuron()),
    ], name="rec")


def test_dense_rec_round_trips_with_lava_dl_keys(tmp_path):
    net = _net()
    path = netx.write(net, tmp_path / "rec.net")
    with h5py.File(path) as handle:
        assert handle["layer/2/type"][0] == b"dense_rec"
        assert np.array_equal(handle["layer/2/weight_rec"][()], REC)
    back = netx.read(path)
    assert back.same_as(net)
    assert back[2].num_params == 10 and back[2].num_nonzero == 5


def test_bad_recurrent_weight_is_refused(tmp_path):
    with pytest.raises(ShapeError, match=r"weight_rec has shape \(2, 3\).*\(2, 2\)"):
        RecurrentDenseLayer(weight=FF, weight_rec=np.ones((2, 3)))
    with pytest.raises(UnsupportedLayerError, match=r"dense_rec layer 'r' with synaptic delays is not supported"):
        RecurrentDenseLayer(name="r", weight=FF, weight_rec=REC, delay=np.array([1, 2]))
    path = netx.write(_net(), tmp_path / "rec.net")
    with h5py.File(path, "r+") as handle:
        del handle["layer/2/weight_rec"]
    with pytest.raises(Exception, match=r"layer 2 \(dense_rec\): no 'weight_rec'"):
        netx.read(path)


def test_recurrent_axons_count_in_fan_in_and_memory_holds_both_matrices():
    report = fit(_net(), "loihi2")
    row = report.layers[2]
    # input axons: feed-forward inputs 0 and 2 (input 1 has no synapse) + both own neurons
    assert row.in_axons == 4
    assert row.synapses == 3 + 2  # non-zero feed-forward + recurrent synapses
    assert row.weight_bits == 3  # largest weight 5 over both matrices, one format
    producer = report.layers[1]
    assert producer.out_axons == 2  # the producer owes axons for inputs 0 and 2 only
    assert row.out_axons == 2  # each neuron sends one axon back into the layer's one block


def test_recurrent_out_axons_follow_the_split():
    import dataclasses

    from hw_models.chip import load_chip

    chip = dataclasses.replace(load_chip("loihi2"), max_neurons_per_core=2)
    rec = np.zeros((4, 4), dtype=np.int32)
    rec[0, 3] = rec[1, 3] = 1  # neuron 3 reaches neurons 0, 1 (block 0)
    rec[2, 0] = rec[3, 0] = 1  # neuron 0 reaches neurons 2, 3 (block 1)
    rec[1, 1] = 1              # neuron 1 reaches itself (block 0)
    net = Network([InputLayer(shape=(2,)),
                   RecurrentDenseLayer(weight=np.ones((4, 2), dtype=np.int32), weight_rec=rec, neuron=Neuron())])
    blocks = fit(net, chip).allocation.layers[0].blocks
    assert [block.out_axons for block in blocks] == [2, 1]  # block 0: neurons 0 and 1; block 1: neuron 3


def test_synops_count_the_recurrent_synapses_the_layer_own_spikes_reach():
    activity = {1: np.array([0.5, 0.0, 0.25]), 2: np.array([0.2, 0.4])}
    report = fit(_net(), "loihi2", activity)
    # feed-forward: input 0 (rate 0.5) reaches 1 synapse, input 2 (0.25) reaches 2;
    # recurrent: neuron 0 (0.2) reaches neuron 1 (weight 5), neuron 1 (0.4) reaches neuron 0 (weight 4)
    assert report.layers[2].synops_per_step == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.2 * 1 + 0.4 * 1)


@pytest.mark.slow
def test_lava_dl_netx_builds_the_written_recurrent_block(tmp_path):
    from lava.lib.dl.netx import hdf5
    from lava.lib.dl.netx.blocks.process import RecurrentDense

    path = netx.write(_net(), tmp_path / "rec.net")
    lava_net = hdf5.Network(net_config=str(path))
    block = lava_net.layers[-1]
    assert isinstance(block, RecurrentDense)
    rec, ff = block.synapse_rec.weights.init, block.synapse.weights.init
    scale = int(rec.max()) // int(REC.max())  # Lava's optimize_weight_bits shifts both by one exponent
    assert scale >= 1 and np.array_equal(rec, REC * scale) and np.array_equal(ff, FF * scale)


def test_commands_without_a_recurrent_model_refuse_in_one_line(tmp_path, capsys):
    path = netx.write(_net(), tmp_path / "rec.net")
    for argv, text in ((["convert", str(path), str(tmp_path / "x.onnx")], "'dense_rec' has no ONNX export"),):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and text in err, err
