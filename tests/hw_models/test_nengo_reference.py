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

from .conftest import dense_net, full_weights

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

