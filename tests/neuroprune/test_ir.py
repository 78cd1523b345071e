import subprocess
import sys

import numpy as np
import pytest

from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    Network,
    Neuron,
    PoolLayer,
    conv_output_size,
)


def test_shapes_are_inferred_through_conv_pool_flatten_dense():
    net = Network(
        [
            InputLayer(shape=(3, 11, 9)),
            ConvLayer(weight=np.ones((8, 3, 3, 3)), stride=2, padding=1),
            PoolLayer(kernel=2),
            ConvLayer(weight=np.ones((8, 2, 3, 3)), groups=4, dilation=2, padding=2),
            FlattenLayer(),
            DenseLayer(weight=np.ones((5, 8 * 3 * 2))),
        ]
    )
    # (11 + 2 - 2 - 1)//2 + 1 = 6, (9 + 2 - 2 - 1)//2 + 1 = 5
    assert net.shapes[1] == (8, 6, 5)
    assert net.shapes[2] == (8, 3, 2)
    assert net.shapes[3] == (8, 3, 2)
    assert net.shapes[4] == (48,)
    assert net.output_shape == (5,)
    assert net.synaptic_indices() == [1, 2, 3, 5]
    assert list(net.graph.edges) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert net.graph.nodes[1]["shape"] == (8, 6, 5)


def test_conv_output_size_matches_torch_formula():
    assert conv_output_size(8, 3, 1, 1, 1) == 8
    assert conv_output_size(8, 3, 2, 1, 1) == 4
    assert conv_output_size(7, 3, 2, 0, 2) == 2


@pytest.mark.parametrize(
    "layers, match",
    [
        ([InputLayer(shape=(2, 4, 4)), DenseLayer(weight=np.ones((3, 32)))], "insert a flatten"),
        ([InputLayer(shape=(10,)), DenseLayer(weight=np.ones((3, 9)))], "expects 9 inputs"),
        ([InputLayer(shape=(2, 4, 4)), ConvLayer(weight=np.ones((3, 1, 3, 3)))], "expects 1 input channels"),
        ([InputLayer(shape=(2, 2, 2)), ConvLayer(weight=np.ones((3, 2, 5, 5)))], "does not fit"),
        ([DenseLayer(weight=np.ones((3, 9)))], "must start with an input layer"),
    ],
)
def test_shape_errors_name_the_layer(layers, match):
    with pytest.raises(ShapeError, match=match):
        Network(layers)


def test_bad_layer_parameters_are_refused():
    with pytest.raises(ShapeError, match="weight must be 2-D"):
        DenseLayer(weight=np.ones((3,)))
    with pytest.raises(ShapeError, match="mask shape"):
        DenseLayer(weight=np.ones((3, 2)), mask=np.ones((2, 3)))
    with pytest.raises(ShapeError, match="outside"):
        Neuron(i_decay=5000)
    with pytest.raises(UnsupportedLayerError, match="'ADAPTIVE' is not supported; use one of CUBA, LOIHI, SDNN"):
        Neuron(kind="ADAPTIVE")
    with pytest.raises(ShapeError, match="sigma_output belongs to SDNN neurons, not CUBA"):
        Neuron(sigma_output=True)


def test_mask_gives_effective_weight_and_nonzero_count():
    layer = DenseLayer(weight=np.array([[2, 4], [6, 0]]), mask=np.array([[1, 0], [1, 1]]))
    assert layer.effective_weight.tolist() == [[2, 0], [6, 0]]
    assert layer.num_nonzero == 2
    assert layer.num_params == 4


def test_pool_as_conv_is_depthwise():
    conv = PoolLayer(kernel=2, weight=32).as_conv(3)
    assert conv.groups == 3 and conv.weight.shape == (3, 1, 2, 2) and conv.stride == (2, 2)
    assert (conv.weight == 32).all()


def test_same_as_compares_arrays_by_value(dense_net):
    clone = Network(list(dense_net.layers))
    assert dense_net.same_as(clone)
    changed = dense_net.replace(1, DenseLayer(weight=dense_net[1].weight + 2, neuron=dense_net[1].neuron))
    assert not dense_net.same_as(changed)


def test_importing_ir_does_not_import_torch_or_lava():
    code = (
        "import sys, neuroprune.ir, converters.netx; "
        "bad = [m for m in ('torch', 'lava') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
