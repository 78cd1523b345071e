"""Round trips through Lava for resonate-and-fire neurons and recurrent dense layers:
IR -> netx.write -> lava-dl's netx builds it -> Lava runs it (Loihi2SimCfg, fixed point)
-> run_fixed agrees exactly on every layer.

lava-dl 0.6's netx builds resonate-and-fire neurons only behind a complex synapse written
as slayer writes it (type ``dense`` with ``weight/real`` and ``weight/imag``: a ComplexDense
block); it has no builder for the ``dense_comp`` type, which ``converters.lava_build`` builds
from the same ComplexDense block. Its Input, Dense and RecurrentDense blocks feed an ``a_in``
that Lava's RF processes lack, as do its Conv block and lava_build's pool and transposed
conv: ``converters.lava_build`` builds those synapses as netx's blocks would and feeds them
into the neurons' real input. RF neurons with a bias are refused in one line (Lava's RF
processes have none)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from converters import lava_build, lava_verify, netx
from neuroprune.cli import main
from neuroprune.ir import (ComplexDenseLayer, ConvLayer, ConvTransposeLayer, DenseLayer, InputLayer, Network, Neuron,
                           PoolLayer, RecurrentDenseLayer)
from neuroprune.snn.fixed import dense_synapse_weights, run_fixed

STEPS = 40
LIF = Neuron(i_decay=1024, v_decay=256, v_th_mant=40)


def _ints(rng, low, high, shape):
    return rng.integers(low, high, size=shape).astype(np.int32)


def _slayer_form(path):
    """Rewrite every dense_comp layer as slayer writes a complex synapse (type dense, weight/real, weight/imag)."""
    with h5py.File(path, "r+") as handle:
        for key in handle["layer"]:
            group = handle[f"layer/{key}"]
            if group["type"][0] == b"dense_comp":
                del group["type"]
                group.create_dataset("type", (1,), "S10", [b"dense"])
    return path


def _assert_exact(result, layers):
    assert result.exact, [(m.index, m.percent, m.first_mismatch) for m in result.layers]
    assert [m.index for m in result.layers] == layers
    assert all(m.lava_spikes > 0 for m in result.layers), [(m.index, m.lava_spikes) for m in result.layers]


@pytest.mark.parametrize("rec_range,threshold", [((-300, 600), 200), ((0, 250), 800)],
                         ids=["mixed-clipped", "excitatory-one-exponent"])
def test_recurrent_cuba_layer_agrees_with_lava(tmp_path, rec_range, threshold):
    rng = np.random.default_rng(1)
    low, high = (0, 20) if rec_range[0] == 0 else (-20, 40)
    rec = RecurrentDenseLayer(weight=_ints(rng, low, high, (8, 12)), weight_rec=_ints(rng, *rec_range, (8, 8)),
                              bias=_ints(rng, -20, 40, (8,)), neuron=Neuron(i_decay=1024, v_decay=256,
                                                                            v_th_mant=threshold))
    net = Network([InputLayer(shape=(10,)), DenseLayer(weight=_ints(rng, -40, 80, (12, 10)), neuron=LIF), rec])
    if rec_range[0] == 0:  # netx scales both matrices with one exponent; the feed-forward alone would get another
        assert dense_synapse_weights(rec.weight)[1] != dense_synapse_weights(rec.all_weights)[1]
    path = netx.write(net, tmp_path / "rec.net")
    x = lava_verify.random_input(net, STEPS, seed=2)
    result = lava_verify.verify(path, x=x)
    _assert_exact(result, [1, 2])
    # not vacuous: without its recurrent synapses the layer spikes otherwise than in Lava
    lava = lava_verify.run_lava(path, net, x[0])
    alone = net.replace(2, RecurrentDenseLayer(weight=rec.weight, weight_rec=np.zeros((8, 8), np.int32),
                                               bias=rec.bias, neuron=rec.neuron))
    assert not np.array_equal(run_fixed(alone, x).spikes[2][0].numpy(), lava[2])


def test_netx_one_exponent_can_silence_the_feed_forward_weights(tmp_path):
    """Recurrent weights above 255 with odd feed-forward ones: netx's optimize_weight_bits on
    hstack(weight, weight_rec) leaves no feed-forward weight; Lava and run_fixed agree that
    the layer never spikes, where the feed-forward weights scaled alone would drive it."""
    rng = np.random.default_rng(1)
    rec = RecurrentDenseLayer(weight=_ints(rng, 0, 40, (8, 12)), weight_rec=_ints(rng, 0, 500, (8, 8)),
                              neuron=Neuron(i_decay=1024, v_decay=256, v_th_mant=60))
    assert not dense_synapse_weights(rec.all_weights)[0][:, :12].any()
    net = Network([InputLayer(shape=(10,)), DenseLayer(weight=_ints(rng, -40, 80, (12, 10)), neuron=LIF), rec])
    path = netx.write(net, tmp_path / "rec.net")
    x = lava_verify.random_input(net, STEPS, seed=2)
    result = lava_verify.verify(path, x=x)
    assert result.exact and result.layers[0].lava_spikes > 0 and result.layers[1].lava_spikes == 0
    alone = net.replace(2, DenseLayer(weight=rec.weight, neuron=rec.neuron))
    assert run_fixed(alone, x).spikes[2].sum() > 0


def _complex(rng, out, inp, neuron, imag=(-30, 40)):
    return ComplexDenseLayer(weight=_ints(rng, -50, 90, (out, inp)), weight_imag=_ints(rng, *imag, (out, inp)),
                             neuron=neuron)


@pytest.mark.parametrize("form", ["slayer", "dense_comp"])
def test_rf_phase_layers_agree_with_lava(tmp_path, capsys, form):
    # slayer's form (dense with weight/real, weight/imag) is built by lava-dl's netx; the
    # dense_comp type, which netx 0.6 cannot load, by converters.lava_build from the same
    # ComplexDense block
    rng = np.random.default_rng(4)
    net = Network([
        InputLayer(shape=(10,)),
        DenseLayer(weight=_ints(rng, -40, 80, (12, 10)), neuron=LIF),
        _complex(rng, 16, 12, Neuron(kind="RF_PHASE", v_th_mant=2, sin_decay=900, cos_decay=3900)),
        _complex(rng, 6, 16, Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=1300, cos_decay=3700)),
    ])
    path = netx.write(net, tmp_path / "rf.net")
    if form == "slayer":
        path = _slayer_form(path)
    assert netx.read(path).same_as(net)
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=3), [1, 2, 3])
    assert main(["verify", str(path), "--steps", "16"]) == 0
    assert "spike-exact" in capsys.readouterr().out


def test_rf_izhikevich_layer_agrees_with_lava(tmp_path):
    rng = np.random.default_rng(5)
    net = Network([
        InputLayer(shape=(10,)),
        _complex(rng, 8, 10, Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=-700, cos_decay=3950),
                 imag=(-30, 60)),
        DenseLayer(weight=_ints(rng, -40, 80, (5, 8)), neuron=LIF),
    ])
    path = _slayer_form(netx.write(net, tmp_path / "rfiz.net"))
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=1), [1, 2])


def _rf_dense(rng, neuron, **extra):
    return DenseLayer(weight=_ints(rng, -90, 90, (8, 10)), neuron=neuron, **extra)


@pytest.mark.parametrize("neuron", [Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400),
                                    Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=-700, cos_decay=3950)],
                         ids=["RF_PHASE", "RF_IZHIKEVICH"])
def test_rf_neurons_behind_a_dense_layer_agree_with_lava(tmp_path, neuron):
    # netx's Dense block would feed the neurons' a_in, which Lava's RF processes lack:
    # converters.lava_build feeds the same synapse into their real input
    rng = np.random.default_rng(6)
    net = Network([InputLayer(shape=(10,)), _rf_dense(rng, neuron),
                   DenseLayer(weight=_ints(rng, 40, 120, (5, 8)), neuron=Neuron(i_decay=1024, v_decay=256,
                                                                               v_th_mant=4))])
    path = netx.write(net, tmp_path / "rf_dense.net")
    assert not lava_build.netx_builds(path, netx.read(path))
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=3), [1, 2])


def test_rf_neurons_behind_delayed_dense_synapses_agree_with_lava(tmp_path):
    rng = np.random.default_rng(7)
    rf = Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)
    net = Network([InputLayer(shape=(10,)), _rf_dense(rng, rf, delay=rng.integers(0, 4, (8, 10)))])
    path = netx.write(net, tmp_path / "rf_delay.net")
    x = lava_verify.random_input(net, STEPS, seed=3)
    _assert_exact(lava_verify.verify(path, x=x), [1])
    # not vacuous: without its delays the layer spikes otherwise than in Lava
    plain = net.replace(1, DenseLayer(weight=net[1].weight, neuron=rf))
    assert not np.array_equal(run_fixed(plain, x).spikes[1][0].numpy(), lava_verify.run_lava(path, net, x[0])[1])


@pytest.mark.parametrize("neuron,rec_range", [
    (Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400), (-100, 100)),
    (Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=1300, cos_decay=3700), (-100, 100)),
    (Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400), (-250, 250)),
], ids=["RF_PHASE", "RF_IZHIKEVICH", "RF_PHASE-one-exponent"])
def test_rf_neurons_behind_a_recurrent_dense_layer_agree_with_lava(tmp_path, neuron, rec_range):
    rng = np.random.default_rng(8)
    rec = RecurrentDenseLayer(weight=_ints(rng, -40, 40, (8, 10)), weight_rec=_ints(rng, *rec_range, (8, 8)),
                              neuron=neuron)
    if rec_range[1] > 127:  # netx scales both matrices with one exponent; the feed-forward alone would get another
        assert dense_synapse_weights(rec.weight)[1] != dense_synapse_weights(rec.all_weights)[1]
    net = Network([InputLayer(shape=(10,)), rec])
    path = netx.write(net, tmp_path / "rf_rec.net")
    x = lava_verify.random_input(net, STEPS, seed=3)
    _assert_exact(lava_verify.verify(path, x=x), [1])
    # not vacuous: without its recurrent synapses the layer spikes otherwise than in Lava
    alone = net.replace(1, RecurrentDenseLayer(weight=rec.weight, weight_rec=np.zeros((8, 8), np.int32),
                                               neuron=neuron))
    assert not np.array_equal(run_fixed(alone, x).spikes[1][0].numpy(), lava_verify.run_lava(path, net, x[0])[1])


def test_rf_neurons_fed_graded_spikes_agree_with_lava(tmp_path):
    # a sigma-delta input layer sends graded payloads: the RF layer's synapse reads them with
    # the message bits netx gives it; RF neurons themselves send binary spikes to the next layer
    rng = np.random.default_rng(11)
    rf = Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=1300, cos_decay=3700)
    net = Network([InputLayer(shape=(10,), neuron=Neuron(kind="SDNN", v_th_mant=3, activation="relu")),
                   _rf_dense(rng, rf),
                   RecurrentDenseLayer(weight=_ints(rng, -90, 90, (4, 8)), weight_rec=_ints(rng, -90, 90, (4, 4)),
                                       neuron=rf)])
    path = netx.write(net, tmp_path / "rf_graded.net")
    result = lava_verify.verify(path, steps=STEPS, seed=3)
    _assert_exact(result, [0, 1, 2])
    assert [m.graded for m in result.layers] == [True, False, False]


def test_rf_input_layer_agrees_with_lava(tmp_path, capsys):
    # the input mantissas arrive as the input neurons' real input, in the same step
    rng = np.random.default_rng(9)
    rf = Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)
    net = Network([InputLayer(shape=(10,), neuron=rf),
                   DenseLayer(weight=_ints(rng, -40, 80, (6, 10)), neuron=LIF)])
    path = netx.write(net, tmp_path / "rf_input.net")
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=3), [0, 1])
    assert main(["verify", str(path), "--steps", "16"]) == 0
    assert "spike-exact" in capsys.readouterr().out


def test_rf_neurons_behind_conv_pool_and_convT_layers_agree_with_lava(tmp_path):
    # netx's Conv block (and lava_build's pool and transposed conv) would feed an a_in too;
    # the input layer's RF neurons in Lava's W, H, C order
    rng = np.random.default_rng(10)
    net = Network([
        InputLayer(shape=(2, 6, 5), neuron=Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)),
        ConvLayer(weight=_ints(rng, -90, 90, (3, 2, 3, 3)), padding=(1, 0), stride=(1, 2),
                  neuron=Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)),
        PoolLayer(kernel=(2, 1), weight=-60,
                  neuron=Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=1300, cos_decay=3700)),
        ConvTransposeLayer(weight=_ints(rng, -90, 90, (3, 2, 3, 3)), stride=(2, 1),
                           neuron=Neuron(kind="RF_PHASE", v_th_mant=1, sin_decay=2000, cos_decay=3400)),
    ])
    path = netx.write(net, tmp_path / "rf_conv.net")
    with h5py.File(path, "a") as handle:  # the pool as lava-dl's slayer writes it (our writer stores a conv)
        group = handle["layer/2"]
        del group["type"], group["weight"], group["groups"], group["inChannels"], group["outChannels"]
        group.create_dataset("type", (1,), "S10", [b"pool"])
        group.create_dataset("weight", data=np.full((1, 1, 2, 1), -60))
    assert [layer.kind for layer in netx.read(path).layers] == ["input", "conv", "pool", "convT"]
    _assert_exact(lava_verify.verify(path, steps=STEPS, seed=3), [0, 1, 2, 3])


def test_rf_neurons_with_a_bias_are_refused_in_one_line(tmp_path, capsys):
    rf = Neuron(kind="RF_PHASE", v_th_mant=2, sin_decay=900, cos_decay=3900)
    net = Network([InputLayer(shape=(4,)),
                   DenseLayer(weight=np.ones((3, 4), np.int32), bias=np.array([0, 2, 0]), neuron=rf)])
    path = netx.write(net, tmp_path / "rf_bias.net")
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "layer 1 (dense): RF_PHASE neurons take no bias in Lava" in err, err
