"""Complex dense synapses (``dense_comp``; slayer writes them as ``dense`` with
``weight/real`` and ``weight/imag``): read in both forms, written, costed as two weight
matrices behind one set of input axons."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from converters import netx
from hw_models import fit
from hw_models.chip import load_chip
from hw_models.cost import synapse_memory_bits
from neuroprune.errors import ShapeError
from neuroprune.ir import ComplexDenseLayer, DenseLayer, InputLayer, Network, Neuron

REAL = np.array([[1, 0, 0], [0, 0, 2]], dtype=np.int32)
IMAG = np.array([[0, 0, 3], [0, 0, 0]], dtype=np.int32)
RF = Neuron(kind="RF_PHASE", v_th_mant=20, sin_decay=300, cos_decay=4000)


def _net() -> Network:
    return Network([
        InputLayer(shape=(4,)),
        DenseLayer(weight=np.ones((3, 4), dtype=np.int32), neuron=Neuron()),
        ComplexDenseLayer(weight=REAL, weight_imag=IMAG, neuron=RF),
    ], name="complex")


def test_dense_comp_round_trips(tmp_path):
    net = _net()
    path = netx.write(net, tmp_path / "c.net")
    with h5py.File(path) as handle:
        assert handle["layer/2/type"][0] == b"dense_comp"
        assert sorted(handle["layer/2/weight"].keys()) == ["imag", "real"]
    back = netx.read(path)
    assert back.same_as(net) and back[2].num_params == 12 and back[2].num_nonzero == 3


def test_slayer_form_dense_with_real_and_imag_weights_reads_as_complex(tmp_path):
    path = netx.write(_net(), tmp_path / "c.net")
    with h5py.File(path, "r+") as handle:  # slayer's block export: type dense, weight/real + weight/imag
        del handle["layer/2/type"]
        handle["layer/2"].create_dataset("type", (1,), "S10", [b"dense"])
    back = netx.read(path)
    assert back[2].kind == "dense_comp" and back.same_as(_net())


def test_imaginary_part_must_match_the_real_part():
    with pytest.raises(ShapeError, match=r"weight_imag has shape \(3, 3\); the imaginary part has the real"):
        ComplexDenseLayer(weight=REAL, weight_imag=np.zeros((3, 3)))


def test_cost_holds_two_matrices_behind_one_set_of_axons():
    chip = load_chip("loihi2")
    report = fit(_net(), chip)
    row = report.layers[2]
    assert row.in_axons == 2  # inputs 0 and 2 reach a real or an imaginary synapse; input 1 none
    assert row.synapses == 3
    assert row.weight_bits == 2  # largest weight 3 over both parts
    assert report.layers[1].out_axons == 2
    # per axon, dense encoding: 2 compartments x 2 matrices = 4 entries; sparse: its non-zero synapses
    dense = 2 * int(synapse_memory_bits(4, 2, chip))
    sparse = int(synapse_memory_bits(1, 2, chip)) + int(synapse_memory_bits(2, 2, chip))
    assert row.synapse_memory_bits == min(dense, sparse)


def test_dense_encoding_stores_both_matrices_for_every_compartment():
    import dataclasses

    chip = dataclasses.replace(load_chip("loihi2"), sparse_index_bits=True)  # sparse entries pay index bits
    full = np.full((40, 3), 3, dtype=np.int32)
    net = Network([InputLayer(shape=(3,)), ComplexDenseLayer(weight=full, weight_imag=-full, neuron=RF)])
    row = fit(net, chip).layers[1]
    assert row.weight_bits == 3  # -3 .. 3: two's complement
    per_axon_dense = int(synapse_memory_bits(2 * 40, 3, chip))  # 80 entries: real and imaginary per compartment
    per_axon_sparse = int(synapse_memory_bits(80, 3 + 6, chip))  # 6 index bits address 40 compartments
    assert per_axon_dense < per_axon_sparse
    assert row.synapse_memory_bits == 3 * per_axon_dense
