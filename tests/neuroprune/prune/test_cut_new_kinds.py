"""Channel cuts through transposed convs, unpools and concats (and recurrent and complex
dense layers): the cut network runs exactly as the original with the cut neurons silenced
(their incoming weights zeroed: a neuron without bias that receives nothing never spikes,
so its outgoing synapses carry nothing), shapes stay consistent, and the cut network
survives a netx round trip and runs in Lava exactly as our fixed point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from converters import netx
from hw_models.fixes import keep_channels
from neuroprune.errors import PruneError
from neuroprune.ir import (ConcatLayer, ComplexDenseLayer, ConvLayer, ConvTransposeLayer, DenseLayer, FlattenLayer,
                           InputLayer, Network, Neuron, PoolLayer, RecurrentDenseLayer, UnpoolLayer)
from neuroprune.prune.graph import DependencyGraph, cut_plan
from neuroprune.prune.structured import cut_network, prune_network
from neuroprune.snn.fixed import run_fixed

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=30)


def _ints(seed: int, *shape: int, low: int = -20, high: int = 70) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape)


def _silenced(network: Network, root: int, drop: list[int]) -> Network:
    """``network`` with the incoming weights of output channels ``drop`` of ``root`` zeroed."""
    layer = network[root]
    weight = layer.weight.copy()
    if layer.kind == "convT":  # (in, out // groups, kH, kW): channel o is column o % per_group of its group's rows
        per_in, per_out = weight.shape[0] // layer.groups, weight.shape[1]
        for channel in drop:
            group = channel // per_out
            weight[group * per_in:(group + 1) * per_in, channel % per_out] = 0
    else:
        weight[drop] = 0
    changes = {"weight": weight}
    if layer.kind == "dense_rec":  # the recurrent synapses into the cut neurons go too
        changes["weight_rec"] = layer.weight_rec.copy()
        changes["weight_rec"][drop] = 0
    return network.replace(root, type(layer)(**{**layer.__dict__, **changes}))


def _check_cut_equals_silenced(network: Network, root: int, keep: list[int], seed: int = 3,
                               steps: int = 12) -> Network:
    """Cut ``root`` to ``keep`` (fit's cut and the pruning graph's give the same network);
    every layer of the cut net spikes as the silenced original on the channels it keeps."""
    channels = network.shapes[root][0]
    drop = [c for c in range(channels) if c not in keep]
    cut = cut_network(network, {root: np.asarray(keep)})
    silenced = _silenced(network, root, drop)
    x = (np.random.default_rng(seed).random((3, *network.input_shape, steps)) < 0.4).astype(np.int64)
    original, small, reference = (run_fixed(net, x).spikes for net in (network, cut, silenced))
    assert original[root][:, drop].sum() > 0  # the cut removes neurons that do spike
    kept_by_layer = {c.layer: c.indices for c in cut_plan(network, {root: np.asarray(keep)}) if c.role == "out"}
    for index in small:
        if index in kept_by_layer:
            assert cut.shapes[index][0] == len(kept_by_layer[index])
            assert torch.equal(small[index], reference[index][:, kept_by_layer[index]]), index
            dropped = np.setdiff1d(np.arange(network.shapes[index][0]), kept_by_layer[index])
            assert reference[index][:, dropped].sum() == 0
        else:
            assert cut.shapes[index] == network.shapes[index]
            assert torch.equal(small[index], reference[index]), index
    last = max(small)
    assert small[last].sum() > 0
    return cut


def _round_trip(network: Network, tmp_path) -> None:
    path = netx.write(network, tmp_path / "cut.net")
    assert netx.read(path).same_as(network)


def _convT_net(groups: int = 1) -> Network:
    return Network([
        InputLayer(shape=(2, 3, 3)),
        ConvLayer(weight=_ints(1, 4, 2, 2, 2), padding=1, neuron=NEURON),                     # (4, 4, 4)
        ConvTransposeLayer(weight=_ints(2, 4, 6 // groups, 3, 3), stride=2, padding=1, groups=groups,
                           neuron=NEURON),                                                      # (6, 7, 7)
        ConvLayer(weight=_ints(3, 3, 6, 3, 3), stride=2, neuron=NEURON),                       # (3, 3, 3)
        FlattenLayer(),
        DenseLayer(weight=_ints(4, 4, 27, low=-10, high=50), neuron=NEURON),
    ], name="convT")


def test_cutting_a_transposed_convs_outputs_cuts_its_axis_1_and_its_consumers_inputs(tmp_path):
    net = _convT_net()
    cut = _check_cut_equals_silenced(net, 2, [0, 2, 5])
    assert cut[2].weight.shape == (4, 3, 3, 3) and cut[3].weight.shape == (3, 3, 3, 3)
    assert np.array_equal(cut[2].weight, net[2].weight[:, [0, 2, 5]])
    _round_trip(cut, tmp_path)


def test_a_transposed_conv_reading_a_cut_layer_loses_its_axis_0(tmp_path):
    net = _convT_net()
    cut = _check_cut_equals_silenced(net, 1, [1, 3])
    assert cut[1].weight.shape == (2, 2, 2, 2) and cut[2].weight.shape == (2, 6, 3, 3)
    assert np.array_equal(cut[2].weight, net[2].weight[[1, 3]])
    _round_trip(cut, tmp_path)


def test_a_grouped_transposed_conv_keeps_as_many_channels_in_each_group(tmp_path):
    net = _convT_net(groups=2)  # outputs 0..2 belong to group 0 (inputs 0, 1), 3..5 to group 1 (inputs 2, 3)
    cut = _check_cut_equals_silenced(net, 2, [0, 2, 3, 4])
    assert cut[2].groups == 2 and cut[2].weight.shape == (4, 2, 3, 3)
    assert np.array_equal(cut[2].weight[:2], net[2].weight[:2, [0, 2]])
    assert np.array_equal(cut[2].weight[2:], net[2].weight[2:, [0, 1]])
    _round_trip(cut, tmp_path)
    with pytest.raises(PruneError, match=r"convT layer 'convT2' \(groups=2\): keep the same number of output "
                                         r"channels in each group \(kept \[2, 1\]\)"):
        cut_network(net, {2: np.array([0, 1, 3])})
    # its producer cannot lose channels: a grouped layer reads them
    with pytest.raises(PruneError, match=r"layer 1 \(conv\) is feeding grouped convT layer 2 \(groups=2\)"):
        keep_channels(net, 1, 2)
    assert 1 not in DependencyGraph(net).prunable()
    # fit's cut keeps the first channels of each group: prune to <= 5 keeps 2 + 2
    assert keep_channels(net, 2, 5).shapes[2][0] == 4


def test_a_depthwise_transposed_conv_and_an_unpool_follow_their_producers_cut(tmp_path):
    net = Network([
        InputLayer(shape=(2, 3, 3)),
        ConvLayer(weight=_ints(5, 4, 2, 2, 2), padding=1, neuron=NEURON),                      # (4, 4, 4)
        ConvTransposeLayer(weight=_ints(6, 4, 1, 2, 2, low=10, high=60), groups=4, neuron=NEURON),  # (4, 5, 5)
        UnpoolLayer(kernel=2, weight=40, neuron=NEURON),                                         # (4, 10, 10)
        ConvLayer(weight=_ints(7, 3, 4, 3, 3), stride=3, neuron=NEURON),                       # (3, 3, 3)
        FlattenLayer(),
        DenseLayer(weight=_ints(8, 4, 27, low=-10, high=50), neuron=NEURON),
    ], name="follow")
    plan = cut_plan(net, {1: np.array([0, 3])})
    assert [(c.layer, c.role) for c in plan] == [(1, "out"), (2, "out"), (3, "out"), (4, "in")]
    cut = _check_cut_equals_silenced(net, 1, [0, 3])
    assert cut[2].groups == 2 and cut[2].weight.shape == (2, 1, 2, 2) and cut.shapes[3] == (2, 10, 10)
    assert cut[4].weight.shape == (3, 2, 3, 3)
    assert DependencyGraph(net).prunable() == [1, 4]
    _round_trip(cut, tmp_path)


def test_an_unpool_passes_the_cut_to_a_dense_layer_through_a_flatten(tmp_path):
    net = Network([
        InputLayer(shape=(2, 3, 3)),
        ConvLayer(weight=_ints(9, 3, 2, 2, 2), neuron=NEURON),                                 # (3, 2, 2)
        UnpoolLayer(kernel=2, weight=40, neuron=NEURON),                                         # (3, 4, 4)
        FlattenLayer(),
        DenseLayer(weight=_ints(10, 5, 48, low=-10, high=40), neuron=NEURON),
    ], name="unpool")
    cut = _check_cut_equals_silenced(net, 1, [0, 2])
    assert np.array_equal(cut[4].weight, net[4].weight[:, list(range(16)) + list(range(32, 48))])
    _round_trip(cut, tmp_path)


def _concat_net() -> Network:
    return Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=_ints(11, 3, 2, 3, 3), padding=1, neuron=NEURON),                     # (3, 4, 4)
        ConvLayer(weight=_ints(12, 2, 3, 1, 1), neuron=NEURON),                                # (2, 4, 4)
        ConcatLayer(layers=(1, 0)),                       # channels: layer 2 (0, 1), layer 1 (2..4), input (5, 6)
        ConvLayer(weight=_ints(13, 3, 7, 2, 2), stride=2, neuron=NEURON),                      # (3, 2, 2)
        FlattenLayer(),
        DenseLayer(weight=_ints(14, 6, 12, low=-10, high=60), neuron=NEURON),
        ConcatLayer(layers=(5,)),                         # vectors: the dense output (0..5), then the flatten (6..17)
        DenseLayer(weight=_ints(15, 4, 18, low=-10, high=60), neuron=NEURON),
    ], name="concat")


def test_a_source_read_directly_and_through_a_concat_is_cut_on_both_paths(tmp_path):
    net = _concat_net()
    plan = cut_plan(net, {1: np.array([0, 2])})
    assert [(c.layer, c.role) for c in plan] == [(1, "out"), (2, "in"), (4, "in")]
    assert plan[1].indices.tolist() == [0, 2] and plan[2].indices.tolist() == [0, 1, 2, 4, 5, 6]
    cut = _check_cut_equals_silenced(net, 1, [0, 2])
    assert cut.shapes[3] == (6, 4, 4) and cut[2].weight.shape == (2, 2, 1, 1) and cut[4].weight.shape == (3, 6, 2, 2)
    _round_trip(cut, tmp_path)


def test_a_concat_maps_each_sources_cut_onto_its_range_of_the_join(tmp_path):
    net = _concat_net()
    cut = _check_cut_equals_silenced(net, 2, [1])  # the concat's first source: channel 0 of the join goes
    assert np.array_equal(cut[4].weight, net[4].weight[:, 1:])
    # the conv after the concat: its channels reach the dense layer through a flatten and the
    # second dense layer through the vector concat (entries 6 + 4c .. 9 + 4c)
    plan = cut_plan(net, {4: np.array([0, 2])})
    assert [(c.layer, c.role) for c in plan] == [(4, "out"), (6, "in"), (8, "in")]
    assert plan[2].indices.tolist() == list(range(6)) + [6, 7, 8, 9, 14, 15, 16, 17]
    cut = _check_cut_equals_silenced(net, 4, [0, 2])
    assert cut[8].weight.shape == (4, 14)
    cut = _check_cut_equals_silenced(net, 6, [1, 2, 5])  # the vector concat's first source
    assert np.array_equal(cut[8].weight, net[8].weight[:, [1, 2, 5, *range(6, 18)]])
    _round_trip(cut, tmp_path)
    assert DependencyGraph(net).prunable() == [1, 2, 4, 6]


def test_two_sources_of_one_concat_cut_together():
    net = _concat_net()
    both = prune_network(net, {1: [1], 2: [0]})
    assert both.shapes[3] == (4, 4, 4)
    assert np.array_equal(both[4].weight, net[4].weight[:, [0, 3, 5, 6]])
    assert np.array_equal(both[2].weight, net[2].weight[[0]][:, [1]])


def test_a_layer_joined_with_its_own_channel_wise_follower_is_cut_alike_on_both():
    net = Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=_ints(16, 3, 2, 3, 3), padding=1, neuron=NEURON),                     # (3, 4, 4)
        ConvLayer(weight=_ints(17, 3, 1, 3, 3, low=0, high=60), padding=1, groups=3, neuron=NEURON),  # depthwise
        ConcatLayer(layers=(1,)),                         # the depthwise conv's channels (0..2), then layer 1's (3..5)
        ConvLayer(weight=_ints(18, 2, 6, 2, 2), stride=2, neuron=NEURON),
    ], name="self_join")
    plan = cut_plan(net, {1: np.array([1])})
    assert [(c.layer, c.role) for c in plan] == [(1, "out"), (2, "out"), (4, "in")]
    assert plan[-1].indices.tolist() == [1, 4]
    _check_cut_equals_silenced(net, 1, [1])


def test_recurrent_and_complex_dense_layers_lose_rows_and_columns():
    rec = Network([
        InputLayer(shape=(4,)),
        RecurrentDenseLayer(weight=_ints(19, 5, 4, low=0, high=60), weight_rec=_ints(20, 5, 5, low=-20, high=40),
                            neuron=NEURON),
        DenseLayer(weight=_ints(21, 3, 5, low=0, high=60), neuron=NEURON),
    ])
    cut = _check_cut_equals_silenced(rec, 1, [0, 2, 3])
    assert np.array_equal(cut[1].weight_rec, rec[1].weight_rec[np.ix_([0, 2, 3], [0, 2, 3])])
    comp = Network([
        InputLayer(shape=(4,)),
        DenseLayer(weight=_ints(22, 5, 4, low=0, high=60), neuron=NEURON),
        ComplexDenseLayer(weight=_ints(23, 3, 5), weight_imag=_ints(24, 3, 5), neuron=NEURON),
    ])
    cut = cut_network(comp, {1: np.array([1, 4])})
    assert np.array_equal(cut[2].weight_imag, comp[2].weight_imag[:, [1, 4]])
    assert np.array_equal(cut_network(comp, {2: np.array([2])})[2].weight_imag, comp[2].weight_imag[[2]])


def test_a_host_side_readout_and_channel_wise_roots_refuse_a_cut():
    net = Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=_ints(25, 4, 2, 3, 3), padding=1, neuron=NEURON),
        PoolLayer(kernel=2, neuron=NEURON),
        FlattenLayer(),
        DenseLayer(weight=_ints(26, 4, 16), neuron=NEURON),
    ])
    with pytest.raises(PruneError, match=r"layer 2 \(pool\) is channel-wise: it follows its producer's channels; "
                                         r"cut the layer that feeds it"):
        cut_network(net, {2: np.array([0])})
    with pytest.raises(PruneError, match=r"layer 3 \(flatten\) is not a layer with synapses"):
        cut_network(net, {3: np.array([0])})


def test_the_graph_protects_a_source_of_a_concat_that_ends_the_network():
    net = Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=_ints(27, 3, 2, 3, 3), padding=1, neuron=NEURON),
        ConvLayer(weight=_ints(28, 2, 3, 1, 1), neuron=NEURON),
        ConcatLayer(layers=(1,)),                         # the network's output: layer 2's and layer 1's spikes
    ])
    graph = DependencyGraph(net)
    assert graph.prunable() == []
    with pytest.raises(PruneError, match=r"layer 1 \(conv\) is a source of the network output"):
        prune_network(net, {1: [0]})
    assert keep_channels(net, 1, 2).shapes[3] == (4, 4, 4)  # fit's cut may change the output


def test_a_grouped_conv_keeps_its_groups_when_it_loses_outputs():
    net = Network([
        InputLayer(shape=(4, 4, 4)),
        ConvLayer(weight=_ints(29, 6, 2, 3, 3), padding=1, groups=2, neuron=NEURON),  # outputs 0..2 | 3..5
        ConvLayer(weight=_ints(30, 3, 6, 2, 2), stride=2, neuron=NEURON),
    ])
    cut = _check_cut_equals_silenced(net, 1, [0, 1, 4, 5])
    assert cut[1].groups == 2 and cut[1].weight.shape == (4, 2, 3, 3) and cut[2].weight.shape == (3, 4, 2, 2)
    with pytest.raises(PruneError, match=r"keep the same number of output channels in each group \(kept \[1, 2\]\)"):
        prune_network(net, {1: [0, 3, 4]})


@pytest.mark.parametrize("build,root,keep", [(_convT_net, 2, [0, 2, 5]), (_concat_net, 1, [0, 2])],
                         ids=["convT", "concat"])
def test_a_cut_net_runs_in_lava_exactly_as_our_fixed_point(build, root, keep, tmp_path):
    from converters import lava_verify

    cut = cut_network(build(), {root: np.asarray(keep)})
    path = netx.write(cut, tmp_path / "cut.net")
    result = lava_verify.verify(path, steps=10, samples=1, seed=2)
    assert [layer.index for layer in result.layers] == cut.compartment_indices()
    assert result.exact and any(layer.lava_spikes > 0 for layer in result.layers), result.to_dict()
