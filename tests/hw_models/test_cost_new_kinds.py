"""Costs of convT, unpool (the unrolled dense synapses Lava runs) and concat (free, its
consumer's axons owed by its sources), computed by hand."""

from __future__ import annotations

import numpy as np

from hw_models import fit
from hw_models.cost import make_coster
from neuroprune.ir import ConcatLayer, ConvLayer, ConvTransposeLayer, DenseLayer, InputLayer, Network, UnpoolLayer

from .conftest import NEURON


def test_conv_transpose_by_hand(loihi1):
    # 1 channel 2x2 -> 4x4, kernel 2x2 at stride 2: every input neuron drives its own 2x2 window
    layer = ConvTransposeLayer(weight=np.array([[[[1, 2], [3, 4]]]]), stride=2, neuron=NEURON)
    coster, required, delay = make_coster(layer, (1, 2, 2), (1, 4, 4), loihi1)
    assert (required, delay, coster.fmt.weight_bits) == (3, 0, 3)  # max 4 -> 3 magnitude bits
    costs = coster.evaluate(16)
    assert list(costs.neurons) == [16] and list(costs.in_axons) == [4] and list(costs.synapses) == [16]
    # dense: 4 axons x (16 x 3 + 10 = 58 -> one 64-bit word); sparse: 4 axons x (4 x 3 + 10 = 22 -> 64)
    assert list(costs.dense_bits) == [256] and list(costs.sparse_bits) == [256]
    assert list(costs.fanout_synapses) == [4, 4, 4, 4]
    report = fit(Network([InputLayer(shape=(1, 2, 2)), layer]), "loihi1", activity={0: 0.5})
    assert report.layers[1].synops_per_step == 4 * 0.5 * 4  # 4 inputs at 0.5 spikes/step, 4 synapses each
    assert (report.layers[1].neurons, report.layers[1].synapses, report.layers[1].cores) == (16, 16, 1)


def test_unpool_by_hand(loihi1):
    # 2 channels 1x1 -> 2x2 each: one input neuron per channel reaches the 4 outputs of its channel
    layer = UnpoolLayer(kernel=2, weight=6, neuron=NEURON)
    coster, required, _ = make_coster(layer, (2, 1, 1), (2, 2, 2), loihi1)
    assert (required, coster.fmt.weight_bits) == (2, 2)  # 6 = 3 x 2: 2 bits, the factor 2 in the exponent
    costs = coster.evaluate(8)
    assert list(costs.in_axons) == [2] and list(costs.synapses) == [8] and list(costs.fanout_synapses) == [4, 4]
    # dense: 2 axons x (8 x 2 + 10 = 26 -> 64); sparse: 2 axons x (4 x 2 + 10 = 18 -> 64)
    assert list(costs.dense_bits) == [128] and list(costs.sparse_bits) == [128]


def test_concat_costs_nothing_and_its_sources_owe_the_axons_by_hand():
    net = Network([
        InputLayer(shape=(4,)),
        DenseLayer(weight=np.ones((3, 4), dtype=np.int32), neuron=NEURON),       # A
        DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=NEURON),       # B
        ConcatLayer(layers=(1,)),                                                # (B, A): 5 neurons
        DenseLayer(weight=np.array([[1, 1, 0, 1, 1]], dtype=np.int32), neuron=NEURON),  # C
    ])
    report = fit(net, "loihi1", activity={0: 0.5, 1: 0.25, 2: 1.0, 4: 0.0})
    rows = report.layers
    assert (rows[3].neurons, rows[3].cores, rows[3].synapses, rows[3].synops_per_step) == (0, 0, 0, 0)
    assert rows[4].in_axons == 4  # B's two neurons and A's last two: the inputs with a synapse
    assert rows[4].synops_per_step == 1.0 * 2 + 0.25 * 2  # B's 2 at 1.0, A's 2 non-zero at 0.25
    assert rows[1].out_axons == 3 + 2  # A: each neuron to B's core, and two of them to C's core
    assert rows[2].out_axons == 2      # B: both neurons to C's core
    assert rows[1].synops_per_step == 0.5 * 4 * 3 and rows[2].synops_per_step == 0.25 * 3 * 2


def test_a_shared_weight_conv_after_a_concat_receives_each_sources_population_axons(loihi1):
    one = np.ones((1, 1, 1, 1), dtype=np.int32)
    net = Network([
        InputLayer(shape=(1, 2, 2)),
        ConvLayer(weight=one, neuron=NEURON),                                   # A: 4 neurons
        ConvLayer(weight=one, neuron=NEURON),                                   # B
        ConcatLayer(layers=(1,)),                                               # (B, A): 2 channels
        ConvLayer(weight=np.ones((1, 2, 1, 1), dtype=np.int32), neuron=NEURON),  # C
    ])
    slots = loihi1.population_axon_slots
    rows = fit(net, loihi1).layers
    assert rows[4].in_axons == 2 * 4  # a population axon per pixel from B and from A
    assert rows[2].out_axons == 4 * slots  # B: each pixel to C's core
    assert rows[1].out_axons == 4 * slots + 4 * slots  # A: each pixel to B's core and to C's core
