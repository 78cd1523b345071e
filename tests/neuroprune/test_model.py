import numpy as np
import pytest
import torch

from converters import netx
from neuroprune.errors import ShapeError, UnsupportedLayerError
from neuroprune.ir import DenseLayer, InputLayer
from neuroprune.snn import model as snn_model
from neuroprune.snn.fixed import dense_synapse_weights, run_fixed


def test_parse_arch_tokens():
    specs = snn_model.parse_arch("c16, c32k5s2p1g2, f, d10")
    assert [s.kind for s in specs] == ["conv", "conv", "flatten", "dense"]
    assert (specs[0].out, specs[0].kernel, specs[0].stride, specs[0].pad) == (16, 3, 1, 1)
    assert (specs[1].out, specs[1].kernel, specs[1].stride, specs[1].pad, specs[1].groups) == (32, 5, 2, 1, 2)
    assert specs[3].out == 10


def test_parse_arch_refuses_pooling_and_garbage():
    with pytest.raises(UnsupportedLayerError, match="no pooling layer.*strided convolution"):
        snn_model.parse_arch("c8,p2,f,d10")
    with pytest.raises(ShapeError, match="'x9' not understood"):
        snn_model.parse_arch("c8,x9")
    with pytest.raises(ShapeError, match="add 'f'"):
        snn_model.build("c8,d10", (1, 8, 8))


def test_build_appends_classifier_and_to_ir_shapes():
    model = snn_model.build("c4,c6s2", (1, 8, 8), num_classes=3, seed=0)
    net = snn_model.to_ir(model)
    assert [layer.kind for layer in net] == ["input", "conv", "conv", "flatten", "dense"]
    assert net.shapes[2] == (6, 4, 4) and net.output_shape == (3,)
    assert isinstance(net[0], InputLayer) and net[0].neuron.v_th_mant == 80
    assert net[1].neuron.i_decay == 1024  # 0.25 * 4096
    # weights are 8-bit mantissas: even integers in [-256, 254]
    for layer in (net[1], net[2], net[4]):
        assert layer.weight.dtype == np.int32
        assert (layer.weight % 2 == 0).all() and layer.weight.min() >= -256 and layer.weight.max() <= 254


def test_from_ir_round_trip_keeps_weights_and_outputs():
    model = snn_model.build("c4,c6s2,f,d3", (1, 8, 8), seed=1)
    net = snn_model.to_ir(model)
    clone = snn_model.from_ir(net)
    assert snn_model.to_ir(clone).same_as(net)
    x = torch.rand(3, 1, 8, 8, 12)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_meta_rebuilds_same_sizes():
    model = snn_model.build("c5,c7s2,f,d4", (2, 6, 6), seed=2)
    rebuilt = snn_model.build_from_meta(model.meta())
    rebuilt.load_state_dict(model.state_dict())
    assert snn_model.to_ir(rebuilt).same_as(snn_model.to_ir(model))


def _slayer_vs_fixed(model, x):
    """Every neuron's spikes in slayer (recorded at the neurons, before slayer's
    output delay) equal the chip's, step for step; so does the model's output."""
    recorded = {}
    handles = [
        block.neuron.register_forward_hook(lambda m, i, o, k=k: recorded.__setitem__(k, o.detach()))
        for k, block in enumerate(model.blocks) if getattr(block, "neuron", None) is not None
    ]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    fixed = run_fixed(snn_model.to_ir(model), model.chip_input(x)).spikes
    agree = [torch.equal(spikes.to(torch.int8), fixed[k + model.ir_offset]) for k, spikes in sorted(recorded.items())]
    agree.append(torch.equal(output.to(torch.int8), fixed[max(fixed)]))
    return agree


def test_slayer_forward_equals_fixed_point_run():
    model = snn_model.build("c8,c16s2,f,d10", (1, 8, 8), seed=0)
    x = torch.rand(8, 1, 8, 8, 1).repeat(1, 1, 1, 1, 24)
    agree = _slayer_vs_fixed(model, x)
    assert agree == [True] * 5


def test_slayer_forward_equals_fixed_point_without_input_neuron():
    model = snn_model.build("d12,d5", (20,), input_neuron=False, seed=3)
    with torch.no_grad():
        for block in model.blocks:
            block.synapse.weight.mul_(4)  # enough drive to spike from binary input
    x = (torch.rand(6, 20, 24) < 0.4).float()
    assert _slayer_vs_fixed(model, x) == [True, True, True]


def test_dense_synapse_weights_follow_netx_rescaling():
    # small odd weights are shifted up to use the 8-bit range and shifted back after the sum
    weight, shift = dense_synapse_weights(np.array([[3, -5], [7, 1]]))
    assert shift > 0 and np.array_equal(weight >> shift, [[3, -5], [7, 1]])
    # excitatory weights are scaled to use all 8 bits, then shifted back
    weight, shift = dense_synapse_weights(np.array([[100, 12]]))
    assert weight.max() <= 255 and np.array_equal(weight >> shift, [[100, 12]])


def test_fixed_point_neuron_dynamics_by_hand():
    """One dense neuron, weight 64, i_decay 1024, v_decay 0, threshold 80 << 6.

    t=0: no synaptic input yet (one-step delay). t=1: u = 64 << 6 = 4096, v = 4096.
    t=2: u = 3072, v = 7168 > 5120 -> spike, v = 0. t=3: u = 2304, v = 2304.
    t=4: u = 1728, v = 4032. t=5: u = 1296, v = 5328 > 5120 -> spike, v = 0.
    """
    from neuroprune.ir import Network, Neuron

    neuron = Neuron(i_decay=1024, v_decay=0, v_th_mant=80)
    net = Network([InputLayer(shape=(1,)), DenseLayer(weight=np.array([[64]]), neuron=neuron)])
    x = np.zeros((1, 1, 6), dtype=np.int64)
    x[0, 0, 0] = 1
    result = run_fixed(net, x, record_voltage=True)
    assert result.voltages[1][0, 0].tolist() == [0, 4096, 0, 2304, 4032, 0]
    assert result.spikes[1][0, 0].tolist() == [0, 0, 1, 0, 0, 1]


def test_fixed_point_refuses_wrong_input_shape(conv_net):
    with pytest.raises(ShapeError, match="does not match the network input"):
        run_fixed(conv_net, np.zeros((1, 1, 8, 8, 4)))


@pytest.mark.slow
def test_our_export_matches_lava_dl_export_of_same_model(tmp_path):
    import h5py

    model = snn_model.build("c4,c6s2,f,d3", (1, 8, 8), seed=4)
    with torch.no_grad():
        model(torch.rand(1, 1, 8, 8, 4))  # slayer sets neuron shapes on the first forward
    theirs = tmp_path / "slayer.net"
    with h5py.File(theirs, "w") as handle:
        group = handle.create_group("layer")
        for index, block in enumerate(model.blocks):
            block.export_hdf5(group.create_group(str(index)))
    ours = netx.write(snn_model.to_ir(model), tmp_path / "ours.net")
    assert netx.read(ours).same_as(netx.read(theirs))
