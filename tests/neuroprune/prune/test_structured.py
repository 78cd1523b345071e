import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from hw_models import fit
from neuroprune.errors import PruneError
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron, PoolLayer
from neuroprune.prune.graph import DependencyGraph
from neuroprune.prune.importance import get_criterion, weight_norm
from neuroprune.prune.masks import MaskSet, magnitude_masks
from neuroprune.prune.structured import keep_by_ratio, prune_model, prune_network
from neuroprune.snn import model as snn_model
from neuroprune.snn.activity import fixed_point_activity, record_activity
from neuroprune.snn.fixed import run_fixed

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=60)


def _zeroed(network: Network, layer: int, drop: list[int]) -> Network:
    target = network[layer]
    weight = target.weight.copy()
    weight[drop] = 0
    return network.replace(layer, type(target)(**{**target.__dict__, "weight": weight}))


def test_graph_couples_conv_flatten_dense_columns(conv_net):
    graph = DependencyGraph(conv_net)
    assert graph.prunable() == [1, 2]
    group = graph.group(2, [0, 3])
    # conv2 has 6 channels of 4x4 = 16 columns each in the dense layer after the flatten
    assert [(c.layer, c.role) for c in group.couplings] == [(2, "out"), (4, "in")]
    assert group.couplings[1].indices.tolist() == list(range(0, 16)) + list(range(48, 64))
    assert list(graph.graph.edges(data="block")) == [(0, 1, 1), (1, 2, 1), (2, 4, 16), (3, 4, None)] or \
        graph.graph.edges[2, 4]["block"] == 16


def test_graph_passes_through_pool_and_depthwise_conv():
    net = Network([
        InputLayer(shape=(1, 8, 8), neuron=NEURON),
        ConvLayer(weight=np.ones((4, 1, 3, 3), dtype=np.int32), neuron=NEURON, padding=1),
        PoolLayer(kernel=2, neuron=NEURON),
        ConvLayer(weight=np.ones((4, 1, 3, 3), dtype=np.int32), neuron=NEURON, padding=1, groups=4),
        FlattenLayer(),
        DenseLayer(weight=np.ones((3, 64), dtype=np.int32), neuron=NEURON),
    ])
    graph = DependencyGraph(net)
    assert graph.prunable() == [1]
    group = graph.group(1, [1, 2])
    assert [(c.layer, c.role) for c in group.couplings] == [(1, "out"), (2, "out"), (3, "out"), (5, "in")]
    smaller = prune_network(net, {1: [1, 2]})
    assert smaller.shapes[3] == (2, 4, 4) and smaller[3].groups == 2 and smaller[5].weight.shape == (3, 32)


def test_grouped_conv_protects_its_producer():
    net = Network([
        InputLayer(shape=(2, 6, 6)),
        ConvLayer(weight=np.ones((4, 2, 3, 3), dtype=np.int32), neuron=NEURON),
        ConvLayer(weight=np.ones((4, 2, 3, 3), dtype=np.int32), neuron=NEURON, groups=2),
        FlattenLayer(),
        DenseLayer(weight=np.ones((2, 16), dtype=np.int32), neuron=NEURON),
    ])
    graph = DependencyGraph(net)
    assert 1 not in graph.prunable()
    with pytest.raises(PruneError, match=r"layer 1 \(conv\) is feeding grouped conv layer 2"):
        prune_network(net, {1: [0]})


def test_impossible_prunes_give_clear_errors(conv_net):
    with pytest.raises(PruneError, match=r"keeping 0 of 4 output channels would disconnect the network"):
        prune_network(conv_net, {1: []})
    with pytest.raises(PruneError, match=r"layer 4 \(dense\) is the network output"):
        prune_network(conv_net, {4: [0]})
    with pytest.raises(PruneError, match=r"layer 0 \(input\) is the network input"):
        prune_network(conv_net, {0: [0]})
    with pytest.raises(PruneError, match="layer 9 does not exist"):
        prune_network(conv_net, {9: [0]})
    with pytest.raises(PruneError, match=r"channel indices must be in \[0, 6\)"):
        prune_network(conv_net, {2: [0, 7]})
    graph = DependencyGraph(conv_net)
    with pytest.raises(PruneError, match="keep ratio 0.0"):
        keep_by_ratio(graph, {1: 0.0})


def test_removed_channels_equal_zeroed_channels_bit_for_bit(conv_net):
    drop = [1, 4]
    keep = [c for c in range(6) if c not in drop]
    smaller = prune_network(conv_net, {2: keep})
    assert smaller[2].weight.shape == (4, 4, 3, 3) and smaller[4].weight.shape == (3, 64)
    zeroed = _zeroed(conv_net, 2, drop)
    x = lava_verify.random_input(conv_net, steps=40, samples=4, seed=7)
    small_out = run_fixed(smaller, x).spikes
    zero_out = run_fixed(zeroed, x).spikes
    assert torch.equal(small_out[4], zero_out[4])
    assert torch.equal(small_out[2], zero_out[2][:, keep])
    assert zero_out[2][:, drop].sum() == 0 and small_out[4].sum() > 0


def test_prune_model_equals_zeroed_model_and_shrinks_tensors():
    model = snn_model.build("c6,c8s2,f,d4", (1, 8, 8), seed=5)
    keep = {1: [0, 2, 3, 5], 2: [1, 2, 4, 6, 7]}
    smaller = prune_model(model, keep)
    assert [s.out for s in smaller.specs() if s.kind != "flatten"][1:] == [4, 5, 4]
    assert smaller.blocks[2].synapse.weight.shape == (5, 4, 3, 3, 1)
    assert smaller.blocks[4].synapse.weight.shape == (4, 5 * 16, 1, 1, 1)
    zeroed = snn_model.build("c6,c8s2,f,d4", (1, 8, 8), seed=5)
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        zeroed.blocks[1].synapse.weight[[1, 4]] = 0
        zeroed.blocks[2].synapse.weight[[0, 3, 5]] = 0
    x = torch.rand(6, 1, 8, 8, 1).repeat(1, 1, 1, 1, 24)
    with torch.no_grad():
        assert torch.equal(smaller(x), zeroed(x))
    assert snn_model.to_ir(smaller).num_params < snn_model.to_ir(model).num_params
    # the original is untouched
    assert model.blocks[2].synapse.weight.shape == (8, 6, 3, 3, 1)


def test_synops_params_and_fit_drop_after_pruning():
    model = snn_model.build("c8,c16s2,f,d10", (1, 8, 8), seed=6)
    x = torch.rand(16, 1, 8, 8, 1).repeat(1, 1, 1, 1, 16)
    dense_net = snn_model.to_ir(model)
    graph = DependencyGraph(dense_net)
    keep = keep_by_ratio(graph, {1: 0.5, 2: 0.5}, weight_norm(dense_net))
    smaller = prune_model(model, keep)
    small_net = snn_model.to_ir(smaller)
    before = fit(dense_net, "loihi1", fixed_point_activity(dense_net, model.chip_input(x)).rates)
    after = fit(small_net, "loihi1", fixed_point_activity(small_net, smaller.chip_input(x)).rates)
    for index in (1, 2, 4):
        assert after.layers[index].synapses < before.layers[index].synapses
    # layer 2's SynOps come from layer 1's spikes x fan-out: half the sources, half the fan-out
    assert after.layers[2].synops_per_step < 0.5 * before.layers[2].synops_per_step
    assert after.totals.synops_per_step < before.totals.synops_per_step
    assert after.totals.neurons < before.totals.neurons
    assert after.totals.synapse_memory_bits < before.totals.synapse_memory_bits
    assert after.totals.cores <= before.totals.cores


def test_importance_criteria_by_hand():
    net = Network([
        InputLayer(shape=(3,)),
        DenseLayer(weight=np.array([[1, -2, 2], [0, 0, 4], [-6, 0, 0]], dtype=np.int32), neuron=NEURON),
        DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=NEURON),
    ])
    assert weight_norm(net)[1].tolist() == [5, 4, 6]
    assert np.allclose(get_criterion("l2")(net, None)[1], [3, 4, 6])
    keep = keep_by_ratio(DependencyGraph(net), {1: 0.67}, weight_norm(net))
    assert keep[1].tolist() == [0, 2]
    with pytest.raises(PruneError, match="needs recorded activity"):
        get_criterion("rate")(net, None)
    with pytest.raises(PruneError, match="unknown importance criterion 'bogus'"):
        get_criterion("bogus")


def test_rate_and_membrane_criteria_use_recorded_activity():
    model = snn_model.build("c4,c6s2,f,d3", (1, 8, 8), seed=2)
    with torch.no_grad():
        model.blocks[1].synapse.weight[2] = 0  # a silent channel scores lowest
    x = torch.rand(4, 1, 8, 8, 1).repeat(1, 1, 1, 1, 16)
    activity = record_activity(model, x, voltage=True)
    net = snn_model.to_ir(model)
    rate = get_criterion("rate")(net, activity)[1]
    mem = get_criterion("membrane")(net, activity)[1]
    assert rate.shape == (4,) and rate[2] == 0 and rate.max() > 0
    assert mem[2] == 0 and mem.min() == 0 and mem.max() > 0


def test_magnitude_masks_and_apply():
    model = snn_model.build("d8,d3", (10,), input_neuron=False, seed=1)
    masks = magnitude_masks(model, 0.75)
    assert abs(masks.sparsity() - 0.75) < 0.02
    masks.apply(model)
    weight = model.blocks[0].synapse.weight
    assert int((weight != 0).sum()) == int(masks.masks[1].sum())
    net = snn_model.to_ir(model)
    assert net[1].num_nonzero <= masks.masks[1].sum()
    fresh = snn_model.build("d8,d3", (10,), input_neuron=False, seed=1)
    assert abs(magnitude_masks(fresh, 0.5, scope="global").sparsity() - 0.5) < 0.02
    with pytest.raises(PruneError, match="sparsity 1.0"):
        magnitude_masks(model, 1.0)
    assert MaskSet.full(model).sparsity() == 0.0


@pytest.mark.slow
def test_pruned_net_exports_and_is_spike_exact_in_lava(tmp_path):
    model = snn_model.build("c8,c12s2,f,d5", (1, 8, 8), seed=8)
    net = snn_model.to_ir(model)
    keep = keep_by_ratio(DependencyGraph(net), {1: 0.5, 2: 0.75}, weight_norm(net))
    smaller = prune_model(model, keep)
    path = netx.write(snn_model.to_ir(smaller), tmp_path / "pruned.net")
    loaded = netx.read(path)
    assert loaded.shapes[1] == (4, 8, 8) and loaded.shapes[2] == (9, 4, 4)
    result = lava_verify.verify(path, steps=32, samples=1, seed=3)
    assert result.exact and all(m.lava_spikes > 0 for m in result.layers)
