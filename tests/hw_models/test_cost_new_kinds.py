"""Costs of convT and unpool (mapped as a conv and a pool are: shared weights) and concat
(free, its consumer's axons owed by its sources), computed by hand; the transposed conv's
axons and fan-out against a brute-force count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hw_models import fit
from hw_models.cost import make_coster
from neuroprune.ir import ConcatLayer, ConvLayer, ConvTransposeLayer, DenseLayer, InputLayer, Network, UnpoolLayer

from .conftest import NEURON, check_axons_against_brute_force


def test_conv_transpose_by_hand(loihi1):
    # 1 channel 2x2 -> 4x4, kernel 2x2 at stride 2: every input neuron drives its own 2x2 window
    layer = ConvTransposeLayer(weight=np.array([[[[1, 2], [3, 4]]]]), stride=2, neuron=NEURON)
    coster, required, delay = make_coster(layer, (1, 2, 2), (1, 4, 4), loihi1)
    assert (required, delay, coster.fmt.weight_bits) == (3, 0, 3)  # max 4 -> 3 magnitude bits
    costs = coster.evaluate(16)
    assert list(costs.neurons) == [16] and list(costs.synapses) == [16]
    # a population axon per input pixel (4), each taking population_axon_slots at the producer
    assert list(costs.in_axons) == [4] and costs.encodings == ["population"]
    assert list(costs.pair_axons) == [loihi1.population_axon_slots] * 4
    # the 4 pixels reach the same pattern (their own 2x2 window): one shared list of 4 weights of
    # 3 bits + 6 index bits (largest index 5 needs 3, the chip's narrowest index width is 6): 46 -> 64
    assert list(costs.memory_bits) == [64]
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
    # as a pool: discrete axons, taps stored sparse only: 2 axons x (4 x 2 + 10 = 18 -> 64)
    assert list(costs.memory_bits) == [128] and costs.encodings == ["sparse"]


def _vector_concat() -> Network:
    return Network([
        InputLayer(shape=(4,)),
        DenseLayer(weight=np.ones((3, 4), dtype=np.int32), neuron=NEURON),       # A
        DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=NEURON),       # B
        ConcatLayer(layers=(1,)),                                                # (B, A): 5 neurons
        DenseLayer(weight=np.array([[1, 1, 0, 1, 1]], dtype=np.int32), neuron=NEURON),  # C
    ])


def test_concat_costs_nothing_and_its_sources_owe_the_axons_by_hand():
    net = _vector_concat()
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

    from hw_models.report import _traffic

    report = fit(net, loihi1)
    rates = {0: np.full(4, 0.1), 1: np.full(4, 0.5), 2: np.full(4, 0.25), 4: np.zeros(4)}
    rates[3] = np.concatenate([rates[2], rates[1]])  # (B, A) in C, H, W order
    messages, east_west, _ = _traffic(net, report.allocation, rates, loihi1)
    # population messages per pixel: into A 0.1, into B 0.5 (A), into C 0.25 + 0.5 (B's and A's axons)
    assert messages == 4 * 0.1 + 4 * 0.5 + 4 * (0.25 + 0.5)
    # A (core 0) -> B (core 1): 1 hop, B -> C (core 2): 1 hop, A -> C: 2 hops
    assert east_west == 4 * 0.5 * 1 + 4 * 0.25 * 1 + 4 * 0.5 * 2


def _brute_force_transposed(layer: ConvTransposeLayer, in_shape, out_shape, blocks):
    """Synapse counts per (block, input neuron) by enumerating every connection of the
    transposed conv; output neurons in H, W, C order, input neurons in torch order."""
    cin, height, width = in_shape
    cout, oh, ow = out_shape
    nonzero = layer.effective_weight != 0  # (in, out / groups, kH, kW)
    per_out, per_in = cout // layer.groups, cin // layer.groups
    counts = np.zeros((len(blocks), cin * height * width), dtype=np.int64)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    for ci, y, x in itertools.product(range(cin), range(height), range(width)):
        for cl, ky, kx in itertools.product(range(per_out), range(kh), range(kw)):
            oy, ox = y * sh - ph + ky * dh, x * sw - pw + kx * dw
            if 0 <= oy < oh and 0 <= ox < ow:
                post = (oy * ow + ox) * cout + (ci // per_in) * per_out + cl
                block = next(b for b, (start, stop) in enumerate(blocks) if start <= post < stop)
                counts[block, (ci * height + y) * width + x] += 1 + 1000 * nonzero[ci, cl, ky, kx]
    return counts


@pytest.mark.parametrize("spec", [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, size=5),
    dict(cin=2, cout=6, k=3, stride=2, padding=1, dilation=1, groups=1, size=4),
    dict(cin=4, cout=4, k=3, stride=2, padding=2, dilation=2, groups=2, size=5),
    dict(cin=3, cout=3, k=2, stride=2, padding=0, dilation=1, groups=3, size=3),
    dict(cin=2, cout=2, k=4, stride=3, padding=1, dilation=1, groups=1, size=4),
])
@pytest.mark.parametrize("chunk", [1000, 20, 7, 3])
def test_conv_transpose_axons_match_brute_force(loihi1, spec, chunk):
    rng = np.random.default_rng(sum(spec.values()) + chunk)
    weight = rng.integers(-3, 4, size=(spec["cin"], spec["cout"] // spec["groups"], spec["k"], spec["k"]))
    weight[rng.random(weight.shape) < 0.3] = 0  # pruned taps
    layer = ConvTransposeLayer(weight=weight.astype(np.int32), stride=spec["stride"], padding=spec["padding"],
                               dilation=spec["dilation"], groups=spec["groups"], neuron=NEURON)
    check_axons_against_brute_force(layer, spec, chunk, loihi1, _brute_force_transposed)


def test_messages_and_mesh_hops_through_a_concat_by_hand(loihi1):
    from hw_models.report import _traffic

    net = _vector_concat()
    rates = {0: 0.5, 1: 0.25, 2: 1.0, 4: 0.0}
    report = fit(net, loihi1, activity=rates)
    assert [report.allocation.layer(i).blocks[0].core for i in (1, 2, 4)] == [0, 1, 2]  # one row of the mesh
    full = {0: np.full(4, 0.5), 1: np.full(3, 0.25), 2: np.full(2, 1.0), 3: np.r_[np.full(2, 1.0), np.full(3, 0.25)],
            4: np.zeros(1)}
    messages, east_west, north_south = _traffic(net, report.allocation, full, loihi1)
    # into A: 4 inputs x 0.5; into B: A's 3 x 0.25; into C: B's 2 x 1.0 and A's 2 non-zero x 0.25
    assert messages == 4 * 0.5 + 3 * 0.25 + 2 * 1.0 + 2 * 0.25
    # host -> A: none; A (core 0) -> B (core 1): 1 hop; B -> C (core 2): 1 hop; A -> C: 2 hops
    assert east_west == 3 * 0.25 * 1 + 2 * 1.0 * 1 + 2 * 0.25 * 2 and north_south == 0
    assert report.totals.spikes_per_step == 4 * 0.5 + 3 * 0.25 + 2 * 1.0  # the concat's spikes counted once
