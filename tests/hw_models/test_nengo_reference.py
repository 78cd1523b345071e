"""Synapse memory agrees with nengo-loihi's own accounting (``Synapse.bits()``).

nengo-loihi 1.1.0 is installed (dev dependency) and computed live here: for each core
block of a dense layer we build the nengo-loihi ``Synapse`` that block would hold
(one axon per presynaptic neuron, the block's weights, the same weight width) and
compare its ``bits()`` with ours. The issue asks for agreement within 10%.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse

from hw_models.mapper import map_network

from .conftest import NEURON, dense_net, full_weights, nengo_loihi_build

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from nengo_loihi.block import Synapse, SynapseConfig


def _nengo_bits(weight_out_in: np.ndarray, weight_bits: int, sparse: bool = False) -> int:
    """nengo-loihi's synapse bits for one core holding ``weight_out_in`` (out, in)."""
    synapse = Synapse(weight_out_in.shape[1])
    matrix = weight_out_in.T.astype(np.float32)
    synapse.set_weights(scipy.sparse.csr_matrix(matrix) if sparse else matrix)
    synapse.format(weight_bits=SynapseConfig.WEIGHT_BITS_MAP.index(weight_bits))
    return synapse.bits()


@pytest.mark.parametrize("out, inp, low, high, bits", [
    (10, 784, -128, 127, 8),
    (512, 784, -128, 127, 8),    # 5 cores (memory bound)
    (300, 100, -2, 1, 2),
    (1024, 64, 0, 7, 3),
    (2000, 50, -16, 15, 5),      # 2 cores (neuron bound)
    (64, 4000, 0, 1, 1),
])
def test_dense_layer_memory_agrees_with_nengo_loihi(loihi1, out, inp, low, high, bits):
    weight = full_weights(out, inp, low, high, seed=out + inp)
    allocation = map_network(dense_net([weight]), loihi1)
    layer = allocation.layer(1)
    assert layer.weight_bits == bits
    for block in layer.blocks:
        ours = block.synapse_bits
        theirs = _nengo_bits(weight[block.neuron_start:block.neuron_stop], bits)
        assert ours == pytest.approx(theirs, rel=0.10)  # the bar
        assert ours == theirs  # measured: the same formula, so agreement is exact
        assert ours <= loihi1.max_synapse_bits_per_core
    assert layer.synapse_bits == sum(
        _nengo_bits(weight[b.neuron_start:b.neuron_stop], bits) for b in layer.blocks)


def test_pruned_layer_sparse_memory_agrees_with_nengo_loihi(loihi1):
    rng = np.random.default_rng(3)
    weight = full_weights(200, 300, -8, 7, seed=4)
    weight[rng.random(weight.shape) < 0.9] = 0  # 90% pruned
    layer = map_network(dense_net([weight]), loihi1).layer(1)
    assert layer.encoding == "sparse"
    theirs = _nengo_bits(weight, layer.weight_bits, sparse=True)
    assert layer.synapse_bits == pytest.approx(theirs, rel=0.10)
    assert layer.synapse_bits == theirs  # nengo-loihi's sparse rows: non-zero weights, no index bits



# ----------------------------------------------------------------------------- whole nets
# The same layers built by nengo-loihi's own builder (split_model + Greedy allocator,
# see conftest.nengo_loihi_build) and by our mapper: cores per net and synapse bits per layer
# within 10% (the bar), input axons per layer equal.

def _int8(shape, rng, zeros=0.0):
    weight = rng.integers(-128, 128, size=shape)
    weight[weight == 0] = 1
    weight.flat[0], weight.flat[-1] = -128, 127  # 8-bit mixed: nengo-loihi's width
    weight[rng.random(shape) < zeros] = 0
    return weight.astype(np.int32)


def _compare(network, chip, sparse=False, exact_axons=True):
    theirs, their_cores = nengo_loihi_build(network, sparse=sparse)
    ours = map_network(network, chip)
    assert ours.cores == pytest.approx(their_cores, rel=0.10)
    for layer in ours.layers:
        other = theirs[layer.index]
        assert layer.synapse_bits == pytest.approx(other.synapse_bits, rel=0.10), layer.index
        if exact_axons:
            assert layer.in_axons == other.in_axons, layer.index
        if other.weight_bits:
            assert other.weight_bits == (layer.weight_bits,)
    return ours, theirs, their_cores


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9])
def test_mlp_dense_and_sparse_match_nengo_loihi(loihi1, zeros):
    from neuroprune.ir import DenseLayer, InputLayer, Network

    rng = np.random.default_rng(int(zeros * 10))
    net = Network([InputLayer(shape=(784,), neuron=NEURON)] + [
        DenseLayer(weight=_int8(shape, rng, zeros), neuron=NEURON) for shape in ((512, 784), (512, 512), (10, 512))])
    # 90% zeros: some inputs of the last layer have no synapse left; nengo-loihi keeps
    # their (empty) axons, we do not
    ours, _, cores = _compare(net, loihi1, sparse=zeros > 0, exact_axons=zeros < 0.9)
    assert ours.cores == cores  # measured: the same split
    assert {layer.encoding for layer in ours.layers[1:]} == {"sparse" if zeros else "dense"}


@pytest.mark.parametrize("cin, cout, size", [(1, 16, 28), (16, 32, 14)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_layer_matches_nengo_loihi(loihi1, cin, cout, size, stride, padding):
    from neuroprune.ir import ConvLayer, InputLayer, Network

    rng = np.random.default_rng(cin + stride + padding)
    net = Network([InputLayer(shape=(cin, size, size), neuron=NEURON),
                   ConvLayer(weight=_int8((cout, cin, 3, 3), rng), stride=stride, padding=padding, neuron=NEURON)])
    # nengo's 'same' padding puts the odd pixel at the bottom where torch pads both
    # sides: with stride 2 the receptive fields differ by a row, so axons may differ
    ours, theirs, cores = _compare(net, loihi1, exact_axons=not (stride == 2 and padding == 1))
    assert ours.cores == cores
    assert ours.layer(1).encoding == "population"
    assert ours.layer(0).out_axons == pytest.approx(theirs[0].out_axons, rel=0.10)  # pop32: 2 slots each


def test_small_cnn_matches_nengo_loihi(loihi1):
    from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network

    rng = np.random.default_rng(7)
    net = Network([
        InputLayer(shape=(1, 28, 28), neuron=NEURON),
        ConvLayer(weight=_int8((16, 1, 3, 3), rng), stride=2, padding=1, neuron=NEURON),
        ConvLayer(weight=_int8((32, 16, 3, 3), rng), padding=1, neuron=NEURON),
        ConvLayer(weight=_int8((16, 32, 3, 3), rng), stride=2, padding=1, neuron=NEURON),
        FlattenLayer(),
        DenseLayer(weight=_int8((10, 16 * 7 * 7), rng), neuron=NEURON),
    ], name="small_cnn")
    ours, _, cores = _compare(net, loihi1, exact_axons=False)
    assert ours.cores == cores == 14
