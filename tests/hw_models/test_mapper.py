"""Greedy core mapping: hand-computed core counts, output axons, multi-chip nets, and
every block within every per-core limit."""

from __future__ import annotations

import numpy as np
import pytest

from hw_models.chip import load_chip
from hw_models.mapper import map_network
from neuroprune.ir import ConvLayer, InputLayer, Network

from .conftest import NEURON, chip_variant, dense_net, full_weights, small_conv_net


def test_dense_layer_limited_by_neurons(loihi1):
    # 100 -> 2000 with 8-bit weights: 2 cores (1024 neurons per core), split equally
    # (as nengo-loihi splits); memory 100 x bits(1000) fits
    allocation = map_network(dense_net([full_weights(2000, 100)]), loihi1)
    layer = allocation.layer(1)
    assert [block.neurons for block in layer.blocks] == [1000, 1000]
    assert [block.in_axons for block in layer.blocks] == [100, 100]
    # bits(1000) = 15 groups x 576 + (40 x 8 + 10 -> 384)
    assert [block.synapse_bits for block in layer.blocks] == [100 * (15 * 576 + 384)] * 2
    assert allocation.cores == 2 and allocation.chips == 1


def test_dense_layer_limited_by_synapse_memory(loihi1):
    # 1000 -> 300, 8-bit: 1000 axons share 1048576 bits, 1048 per axon: at most 118
    # synapses (576 + (54 x 8 + 10 -> 448) = 1024 bits), so 3 cores, split equally: 100
    # neurons each, 576 + (36 x 8 + 10 -> 320) = 896 bits per axon
    allocation = map_network(dense_net([full_weights(300, 1000)]), loihi1)
    layer = allocation.layer(1)
    assert [block.neurons for block in layer.blocks] == [100, 100, 100]
    assert layer.synapse_bits == 3 * 1000 * 896
    assert layer.encoding == "dense"


def test_output_axons_count_destination_cores(tmp_path):
    chip = load_chip(chip_variant(tmp_path, max_neurons=2))
    net = dense_net([full_weights(6, 4, 1, 3), full_weights(3, 6, 1, 3)])
    allocation = map_network(net, chip)
    first, second = allocation.layer(1), allocation.layer(2)
    assert [b.neurons for b in first.blocks] == [2, 2, 2]
    assert [b.neurons for b in second.blocks] == [2, 1]
    assert [b.out_axons for b in first.blocks] == [4, 4, 4]   # 2 neurons x 2 cores of the next layer
    assert [b.out_axons for b in second.blocks] == [0, 0]     # last layer: spikes go to the host
    assert [b.core for b in first.blocks + second.blocks] == [0, 1, 2, 3, 4]


def test_output_axon_limit_shrinks_blocks(tmp_path):
    # 4 neurons per core would need 4 x 3 = 12 output axons; the limit 8 allows 2 per core
    chip = load_chip(chip_variant(tmp_path, max_neurons=4, max_out_axons=8))
    net = dense_net([full_weights(8, 4, 1, 3), full_weights(12, 8, 1, 3)])
    allocation = map_network(net, chip)
    assert allocation.layer(2).cores == 3
    assert [b.neurons for b in allocation.layer(1).blocks] == [2, 2, 2, 2]
    assert all(b.out_axons == 6 for b in allocation.layer(1).blocks)


def test_conv_blocks_pack_pixels_across_channels(loihi1):
    # 1x64x64 -> 64 filters 3x3 valid: 62 x 62 x 64 = 246016 neurons in H, W, C order;
    # 241 cores (neuron bound) of 1021 neurons: a block is 15.95 pixels of row 0, not
    # one channel; its inputs are rows 0..2 x columns 0..17 (one axon per pixel)
    net = Network([InputLayer(shape=(1, 64, 64)),
                   ConvLayer(weight=np.ones((64, 1, 3, 3), dtype=np.int32), neuron=NEURON)])
    allocation = map_network(net, loihi1)
    layer = allocation.layer(1)
    assert layer.cores == 241 and allocation.chips == 2
    assert [b.neurons for b in layer.blocks[:2]] == [1021, 1021] and layer.blocks[-1].neurons == 976
    assert layer.blocks[0].in_axons == 3 * 18
    assert layer.encoding == "population"


def test_input_layer_with_neurons_takes_cores(loihi1):
    net = small_conv_net()
    allocation = map_network(net, loihi1)
    assert allocation.layer(0).cores == 1 and allocation.layer(0).synapses == 0
    with pytest.raises(KeyError):
        allocation.layer(3)  # flatten holds no compartments


@pytest.mark.parametrize("max_neurons, max_in, max_bits", [(64, 4096, 1048576), (16, 100, 20000), (7, 50, 4000)])
def test_every_block_respects_every_limit(tmp_path, max_neurons, max_in, max_bits):
    chip = load_chip(chip_variant(tmp_path, max_neurons=max_neurons, max_in_axons=max_in,
                                  max_synapse_bits=max_bits))
    net = small_conv_net()
    allocation = map_network(net, chip)
    for layer in allocation.layers:
        assert sum(b.neurons for b in layer.blocks) == layer.neurons
        if layer.over_limits:
            continue
        for block in layer.blocks:
            assert block.neurons <= max_neurons
            assert block.in_axons <= max_in
            assert block.synapse_bits <= max_bits
            assert block.out_axons <= chip.max_out_axons_per_core


def test_impossible_layer_is_flagged_not_hidden(tmp_path):
    chip = load_chip(chip_variant(tmp_path, max_in_axons=50))
    allocation = map_network(dense_net([full_weights(4, 80)]), chip)
    layer = allocation.layer(1)
    assert layer.neurons_per_core == 1
    assert ("max_in_axons_per_core", 80, 50) in layer.over_limits


def test_weight_bits_override_shrinks_memory(loihi1):
    net = dense_net([full_weights(300, 1000)])
    assert map_network(net, loihi1).cores == 3
    quantized = map_network(net, loihi1, {1: 2})
    assert quantized.layer(1).weight_bits == 2 and quantized.cores == 1


@pytest.mark.parametrize("max_neurons, max_bits", [(1024, 1048576), (40, 6000), (9, 2500)])
def test_search_finds_the_fewest_fitting_blocks(tmp_path, max_neurons, max_bits):
    from hw_models.cost import make_coster
    from hw_models.mapper import fewest_blocks

    chip = load_chip(chip_variant(tmp_path, max_neurons=max_neurons, max_synapse_bits=max_bits))
    net = small_conv_net()
    allocation = map_network(net, chip)
    for index in (1, 2, 4):
        coster, _, _ = make_coster(net.layers[index], net.input_shape_of(index), net.shapes[index], chip)
        n = coster.neurons

        def fits(k):
            costs = coster.evaluate(-(-n // k))
            return (costs.memory_bits.max() <= max_bits and costs.in_axons.max() <= chip.max_in_axons_per_core
                    and costs.neurons.max() <= max_neurons)

        fitting = [k for k in range(1, n + 1) if fits(k)]
        if fitting:
            assert allocation.layer(index).cores == fitting[0]
    calls = []
    assert fewest_blocks(100, 100, lambda c: calls.append(c) or c / 37) == 34  # 3 blocks of 34
    assert calls == [100, 50, 34]  # small counts one by one
    calls.clear()
    # 10000 neurons, at most 3 per block: the overshoot jumps to 3334 blocks at once
    assert fewest_blocks(10000, 100, lambda c: calls.append(c) or c / 3) == 3
    assert len(set(calls)) < 10
    assert fewest_blocks(3, 3, lambda c: 2.0) == 1
