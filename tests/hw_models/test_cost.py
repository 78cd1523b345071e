"""Per-layer costs: weight bits, the synapse-memory formula, hand-computed dense and
conv layers, and the vectorised conv fan-in/fan-out against a brute-force count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hw_models.cost import make_coster, required_delay_bits, required_weight_bits, snap_bits, synapse_memory_bits
from neuroprune.ir import ConvLayer, DenseLayer, PoolLayer

from .conftest import NEURON, check_axons_against_brute_force


@pytest.mark.parametrize("weights, bits", [
    ([0, 0], 0),
    ([0, 1], 1),           # excitatory, 1 bit
    ([1, -1], 2),          # mixed: sign bit
    ([2, -2, 0], 2),       # common factor 2 goes into the exponent
    ([64, 128], 2),        # 1, 2 (x 64)
    ([-4, -8], 2),         # inhibitory: magnitude only
    ([127, -128], 8),      # two's complement, 8 bits
    ([254, -256], 8),      # lava-dl's 8-bit mantissa range (even numbers)
    ([-255, 3], 9),        # does not fit 8 bits
])
def test_required_weight_bits(weights, bits):
    assert required_weight_bits(np.array(weights)) == bits


def test_delay_bits_and_snapping():
    assert required_delay_bits(None) == 0
    assert required_delay_bits(np.array([0, 3, 62])) == 6
    assert snap_bits(7, (1, 2, 3, 4, 5, 6, 8)) == 8
    assert snap_bits(9, (1, 2, 3, 4, 5, 6, 8)) is None


def test_synapse_memory_formula_by_hand(loihi1):
    # one axon with n synapses of b bits: groups of 64, each n*b + 10 header bits, in 64-bit words
    assert synapse_memory_bits(0, 8, loihi1) == 0
    assert synapse_memory_bits(3, 1, loihi1) == 64          # 3 + 10 = 13 -> one word
    assert synapse_memory_bits(64, 8, loihi1) == 576        # 512 + 10 = 522 -> 9 words
    assert synapse_memory_bits(65, 8, loihi1) == 576 + 64   # second group: 8 + 10 = 18 -> 1 word
    assert list(synapse_memory_bits(np.array([1, 7, 128]), 8, loihi1)) == [64, 128, 1152]


def test_small_dense_layer_by_hand(loihi1):
    layer = DenseLayer(weight=np.ones((3, 4), dtype=np.int32), neuron=NEURON)
    coster, required, delay = make_coster(layer, (4,), (3,), loihi1)
    assert (required, delay, coster.fmt.weight_bits) == (1, 0, 1)
    costs = coster.evaluate(3)
    assert list(costs.neurons) == [3]
    assert list(costs.in_axons) == [4]
    assert list(costs.synapses) == [12]
    # dense: 4 axons x (3 x 1 bit + 10) -> 64 bits each; sparse: index bits 6 -> 3 x 7 + 10 -> 64 each
    assert list(costs.dense_bits) == [256]
    assert list(costs.sparse_bits) == [256]
    assert list(costs.fanout_synapses) == [3, 3, 3, 3]


def test_pruned_dense_layer_prefers_sparse(loihi1):
    weight = np.zeros((200, 10), dtype=np.int32)
    weight[::50, :] = 5  # 4 of 200 neurons connected
    layer = DenseLayer(weight=weight, neuron=NEURON)
    coster, _, _ = make_coster(layer, (10,), (200,), loihi1)
    costs = coster.evaluate(200)
    # weights 5 -> 3 bits; dense: 10 axons x bits(200 x 3) = 10 x (3 x 256 + 64) ; sparse: index 8 bits -> 4 x 11 + 10 -> 64
    assert costs.dense_bits[0] == 10 * (3 * 256 + 64)
    assert costs.sparse_bits[0] == 10 * 64
    assert costs.encodings == ["sparse"]


def test_small_conv_layer_by_hand(loihi1):
    # input 1x4x4, 2 filters 3x3 of ones, no padding: output 2x2x2, one block. Every
    # input pixel has one population axon; pixels with the same valid taps share a
    # weight list: 4 x 4 tap classes -> 16 lists of 2 x (1, 2, 2, 1) x (1, 2, 2, 1)
    # entries; index 7 -> 6 index bits, 1 weight bit: 2 or 4 entries -> 64 bits, 8 -> 128
    layer = ConvLayer(weight=np.ones((2, 1, 3, 3), dtype=np.int32), neuron=NEURON)
    coster, _, _ = make_coster(layer, (1, 4, 4), (2, 2, 2), loihi1)
    costs = coster.evaluate(8)
    assert list(costs.neurons) == [8]
    assert list(costs.in_axons) == [16]
    assert list(costs.synapses) == [72]
    edge = np.array([1, 2, 2, 1])
    assert np.array_equal(costs.fanout_synapses.reshape(4, 4), 2 * np.outer(edge, edge))
    assert list(costs.memory_bits) == [4 * 64 + 8 * 64 + 4 * 128]
    assert costs.encodings == ["population"]
    assert set(costs.pair_axons) == {loihi1.population_axon_slots}


def _brute_force(layer: ConvLayer, in_shape, out_shape, blocks):
    """Synapse counts per (block, input neuron) by enumerating every connection; output
    neurons in H, W, C order, input neurons in torch order."""
    cin, height, width = in_shape
    cout, oh, ow = out_shape
    nonzero = layer.effective_weight != 0
    per_out, per_in = cout // layer.groups, cin // layer.groups
    counts = np.zeros((len(blocks), cin * height * width), dtype=np.int64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    for co, oy, ox in itertools.product(range(cout), range(oh), range(ow)):
        post = (oy * ow + ox) * cout + co
        block = next(b for b, (start, stop) in enumerate(blocks) if start <= post < stop)
        group = co // per_out
        for cl, ky, kx in itertools.product(range(per_in), range(kh), range(kw)):
            y, x = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
            if 0 <= y < height and 0 <= x < width:
                counts[block, ((group * per_in + cl) * height + y) * width + x] += 1 + 1000 * nonzero[co, cl, ky, kx]
    return counts


@pytest.mark.parametrize("spec", [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, size=7),
    dict(cin=2, cout=6, k=3, stride=2, padding=1, dilation=1, groups=1, size=9),
    dict(cin=4, cout=4, k=3, stride=1, padding=2, dilation=2, groups=2, size=8),
    dict(cin=3, cout=3, k=2, stride=2, padding=0, dilation=1, groups=3, size=6),
    dict(cin=2, cout=2, k=5, stride=3, padding=2, dilation=1, groups=1, size=11),
    dict(cin=2, cout=3, k=3, stride=1, padding=0, dilation=2, groups=1, size=9),
])
@pytest.mark.parametrize("chunk", [1000, 20, 7, 3])
def test_conv_axons_match_brute_force(loihi1, spec, chunk):
    rng = np.random.default_rng(sum(spec.values()) + chunk)
    weight = rng.integers(-3, 4, size=(spec["cout"], spec["cin"] // spec["groups"], spec["k"], spec["k"]))
    weight[rng.random(weight.shape) < 0.3] = 0  # pruned taps
    layer = ConvLayer(weight=weight.astype(np.int32), stride=spec["stride"], padding=spec["padding"],
                      dilation=spec["dilation"], groups=spec["groups"], neuron=NEURON)
    check_axons_against_brute_force(layer, spec, chunk, loihi1, _brute_force)


def test_pool_is_costed_as_depthwise_conv(loihi1):
    pool = PoolLayer(kernel=2, weight=64, neuron=NEURON)
    coster, required, _ = make_coster(pool, (3, 4, 4), (3, 2, 2), loihi1)
    costs = coster.evaluate(12)
    assert required == 1  # one shared weight mantissa
    # discrete axons: each of the 48 input neurons feeds one output neuron
    assert list(costs.in_axons) == [48] and list(costs.synapses) == [48]
    assert np.all(costs.fanout_synapses == 1)
    assert costs.encodings == ["sparse"]
