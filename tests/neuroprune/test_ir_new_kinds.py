"""The layer kinds convT, unpool and concat in the IR and the fixed-point model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroprune.errors import ShapeError
from neuroprune.ir import (ConcatLayer, ConvLayer, ConvTransposeLayer, DenseLayer, FlattenLayer, InputLayer,
                           Network, Neuron, UnpoolLayer)
from neuroprune.snn.fixed import run_fixed

NEURON = Neuron(i_decay=1024, v_decay=128, v_th_mant=20)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), ((2, 1), (1, 0), (1, 2), 2), (3, 2, 1, 4)])
def test_conv_transpose_shape_and_unrolled_weight_are_torch_conv_transpose2d(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    weight = rng.integers(-5, 6, size=(4, 6 // 2 if groups == 2 else 3, 3, 2))
    layer = ConvTransposeLayer(weight=weight, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.integers(0, 2, size=(4, 3, 5))
    expected = F.conv_transpose2d(torch.tensor(x[None], dtype=torch.float64), torch.tensor(weight, dtype=torch.float64),
                                  stride=stride, padding=padding, dilation=dilation, groups=groups)[0].numpy()
    assert layer.output_shape((4, 3, 5)) == expected.shape
    assert np.array_equal(layer.unrolled_weight((4, 3, 5)) @ x.ravel(), expected.ravel())
    weight[0, 0, 0, 0] = 0  # a pruned tap
    assert layer.unrolled_nonzero((4, 3, 5)) == np.count_nonzero(layer.unrolled_weight((4, 3, 5)))


def test_unpool_is_nearest_upsampling_by_its_weight():
    layer = UnpoolLayer(kernel=2, weight=7)
    x = np.arange(12).reshape(2, 2, 3) % 2
    out = (layer.as_conv_transpose(2).unrolled_weight((2, 2, 3)) @ x.ravel()).reshape(layer.output_shape((2, 2, 3)))
    assert out.shape == (2, 4, 6)
    assert np.array_equal(out, 7 * np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def _skip_net() -> Network:
    rng = np.random.default_rng(1)
    return Network([
        InputLayer(shape=(2, 4, 4)),
        ConvLayer(weight=rng.integers(-10, 60, size=(3, 2, 3, 3)), padding=1, neuron=NEURON),
        ConvLayer(weight=rng.integers(-10, 60, size=(2, 3, 1, 1)), neuron=NEURON),
        ConcatLayer(layers=(1, 0)),  # joins layer 2, then 1, then the input
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-10, 40, size=(4, 7 * 16)), neuron=NEURON),
    ])


def test_concat_joins_the_previous_layer_and_its_sources_along_channels():
    net = _skip_net()
    assert net.shapes[3] == (7, 4, 4)
    assert net.sources_of(3) == (2, 1, 0) and net.sources_of(5) == (4,)
    assert [net.producer_of(i) for i in range(len(net))] == [None, 0, 1, 2, 3, 3]  # a concat is a producer
    assert not net[3].holds_compartments and net.source_indices() == [0, 1, 2, 3, 5]
    assert sorted(net.graph.edges) == [(0, 1), (0, 3), (1, 2), (1, 3), (2, 3), (3, 4), (4, 5)]


def test_concat_errors_name_the_layer_and_the_fix():
    layers = list(_skip_net().layers)
    with pytest.raises(ShapeError,
                       match=r"layer 3: concat layer 'concat3' joins layer 2; name earlier layers \(0..1\)"):
        Network(layers[:3] + [ConcatLayer(layers=(2,))])
    with pytest.raises(ShapeError, match=r"layer 3: concat layer 'concat3' cannot join shapes "
                                         r"\[\(48,\), \(2, 4, 4\)\]: all but the channel size must agree"):
        Network(layers[:2] + [FlattenLayer(), ConcatLayer(layers=(0,))])
    with pytest.raises(ShapeError, match=r"name at least one earlier layer"):
        ConcatLayer(layers=())


def test_fixed_point_concat_is_the_joined_spikes_and_convT_the_dense_arithmetic():
    net = _skip_net()
    x = (np.random.default_rng(2).random((2, 2, 4, 4, 9)) < 0.4).astype(np.int64)
    spikes = run_fixed(net, x).spikes
    joined = torch.cat([spikes[2].long(), spikes[1].long(), torch.as_tensor(x)], dim=1)
    assert joined.sum() > 0
    # layer 5 sees exactly the joined spikes: run it alone on them
    alone = Network([InputLayer(shape=(7 * 16,)), net[5]])
    assert torch.equal(run_fixed(alone, joined.reshape(2, -1, 9)).spikes[1], spikes[5])



@pytest.mark.parametrize("low,high,stride", [(-40, 90, 2), (-300, 400, 1), (-90, -5, 2), (1, 255, 3)])
def test_fixed_point_conv_transpose_is_the_dense_arithmetic_of_the_unrolled_matrix(low, high, stride):
    # the unrolled matrix's zeros take part in lava-dl's weight scaling (all-negative taps scale as mixed)
    rng = np.random.default_rng(3)
    convt = ConvTransposeLayer(weight=rng.integers(low, high, size=(2, 3, 2, 2)), stride=stride, neuron=NEURON,
                               bias=np.array([40, 0, 25]))
    dense = DenseLayer(weight=convt.unrolled_weight((2, 3, 3)), neuron=NEURON, bias=None)
    inputs = (rng.random((2, 2, 3, 3, 8)) < 0.5).astype(np.int64)
    ours = run_fixed(Network([InputLayer(shape=(2, 3, 3)), convt]), inputs).spikes[1]
    out_shape = convt.output_shape((2, 3, 3))
    flat_bias = np.broadcast_to(np.array([40, 0, 25]).reshape(3, 1, 1), out_shape).reshape(-1)
    flat = run_fixed(Network([InputLayer(shape=(18,)), DenseLayer(weight=dense.weight, neuron=NEURON, bias=flat_bias)]),
                     inputs.reshape(2, 18, 8)).spikes[1]
    assert ours.sum() > 0 and torch.equal(ours.reshape(2, -1, 8), flat)


def test_class_facts_of_the_new_kinds():
    convt = ConvTransposeLayer(weight=np.ones((3, 1, 1, 1), dtype=np.int32), groups=3, neuron=NEURON)
    net = Network([InputLayer(shape=(3, 2, 2)), UnpoolLayer(neuron=NEURON), convt, ConcatLayer(layers=(1,))])
    assert [layer.shared_weights for layer in net] == [False, True, True, False]
    assert [layer.channel_wise for layer in net] == [False, True, True, False]  # unpool, depthwise convT
    assert [layer.holds_compartments for layer in net] == [False, True, True, False]
    assert [layer.passthrough for layer in net] == [False] * 4  # a concat is a producer, not a reshape
    assert net.compartment_indices() == [1, 2] and net.shapes[3] == (6, 4, 4)
