"""Resonate-and-fire neurons, recurrent and complex dense synapses in the bit-exact
fixed-point model, against lava-dl's recorded ground truth (its test_blocks) and against
lava-dl's blocks built directly and run in Lava (``Loihi2SimCfg(select_tag="fixed_pt")``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import ComplexDenseLayer, DenseLayer, InputLayer, Network, Neuron, RecurrentDenseLayer
from neuroprune.snn.fixed import NEURON_MODELS, run_fixed
from neuroprune.snn.fixed_rf import lava_rf_decays


def _gts(lava_dl_netx_dir, name):
    return lava_dl_netx_dir / "gts" / name


def _decays(period: float, alpha: float) -> tuple[int, int]:
    """The decays Lava's RF process computes from a period and an alpha (its own formula)."""
    return (int(np.int32((1 - alpha) * np.sin(2 * np.pi / period) * 4096)),
            int(np.int32((1 - alpha) * np.cos(2 * np.pi / period) * 4096)))


def test_lava_rf_decays_repeat_netx_float_round_trip():
    assert lava_rf_decays(300, 4000) == (300, 4000)
    assert lava_rf_decays(-100, 3900) == (-100, 3899)  # truncation after the period/alpha detour
    assert lava_rf_decays(0, 0) == (0, 0)  # no rotation, infinite period
    assert lava_rf_decays(*_decays(11, 0.05)) == _decays(11, 0.05)


def test_complex_dense_matches_lava_dl_ground_truth(lava_dl_netx_dir):
    """lava-dl's test_blocks TestRFBlocks.test_dense: ComplexDense of RF neurons (vth 25,
    period 11, alpha 0.05), 200 -> 256, 2000 steps; out.npy is what Lava recorded."""
    root = _gts(lava_dl_netx_dir, "complex_dense")
    sin, cos = _decays(11, 0.05)
    net = Network([
        InputLayer(shape=(200,)),
        ComplexDenseLayer(weight=np.load(root / "weight_r.npy").astype(np.int32),
                          weight_imag=np.load(root / "weight_img.npy").astype(np.int32),
                          neuron=Neuron(kind="RF_PHASE", v_th_mant=25, sin_decay=sin, cos_decay=cos)),
    ])
    x = np.load(root / "in.npy").astype(np.int64)[None]
    ours = run_fixed(net, x).spikes[1][0].numpy()
    truth = np.load(root / "out.npy")
    assert truth.sum() > 1000
    assert np.array_equal(ours, truth), int(np.abs(ours - truth).sum())


def test_rf_izhikevich_input_matches_lava_dl_ground_truth(lava_dl_netx_dir):
    """lava-dl's TestRFBlocks.test_input: ComplexInput of RF_IZ neurons (the input into the
    real and the imaginary part), vth 1.1 -> int(1.1 * 64) = 70, period 7, alpha 0.05."""
    root = _gts(lava_dl_netx_dir, "complex_dense")
    sin, cos = _decays(7, 0.05)
    x = torch.as_tensor(np.load(root / "in.npy").astype(np.int64))
    model = NEURON_MODELS["RF_IZHIKEVICH"](Neuron(kind="RF_IZHIKEVICH", sin_decay=sin, cos_decay=cos),
                                          (200,), 1, None, torch.device("cpu"))
    model.vth = 70  # not a multiple of 64: the block takes a float threshold
    ours = np.stack([model.step(x[:, t][None], x[:, t][None])[0].numpy() for t in range(x.shape[1])], axis=-1)
    truth = np.load(root / "current.npy")
    assert truth.sum() > 1000
    assert np.array_equal(ours, truth), int(np.abs(ours - truth).sum())


def test_dense_matches_lava_dl_ground_truth(lava_dl_netx_dir):
    """lava-dl's TestLIFBlocks.test_dense: Dense of LIF (vth 6, du 4095, dv 415), 200 -> 256, 2000 steps."""
    root = _gts(lava_dl_netx_dir, "dense")
    net = Network([InputLayer(shape=(200,)),
                   DenseLayer(weight=np.load(root / "weight.npy").astype(np.int32),
                              neuron=Neuron(i_decay=4096, v_decay=415, v_th_mant=6))])
    ours = run_fixed(net, np.load(root / "in.npy").astype(np.int64)[None]).spikes[1][0].numpy()
    truth = np.load(root / "out.npy")
    assert truth.sum() > 1000 and np.array_equal(ours, truth), int(np.abs(ours - truth).sum())


def _rf(kind: str, **kw) -> Neuron:
    return Neuron(kind=kind, v_th_mant=kw.pop("v_th_mant", 12), sin_decay=kw.pop("sin_decay", 1200),
                  cos_decay=kw.pop("cos_decay", 3700), **kw)


def test_plain_dense_feeds_the_real_part_only():
    neuron = _rf("RF_PHASE", sin_decay=0, cos_decay=4096, v_th_mant=1)  # no rotation, no decay
    net = Network([InputLayer(shape=(1,)), DenseLayer(weight=np.array([[1]], dtype=np.int32), neuron=neuron)])
    result = run_fixed(net, np.array([[[1, 0, 0]]]), record_voltage=True)
    assert result.voltages[1][0, 0].tolist() == [0, 64, 64]  # real part: the input << 6, kept
    assert result.spikes[1].sum() == 0  # the imaginary part never crosses zero upward


def test_recurrent_dense_uses_its_own_last_output_and_one_exponent():
    # neuron 0 spikes on its feed-forward input; neuron 1 only through the recurrent synapse
    lif = Neuron(i_decay=4096, v_decay=4096, v_th_mant=1)  # no memory: v = this step's input
    net = Network([InputLayer(shape=(1,)),
                   RecurrentDenseLayer(weight=np.array([[2], [0]], dtype=np.int32),
                                       weight_rec=np.array([[0, 0], [2, 0]], dtype=np.int32), neuron=lif)])
    out = run_fixed(net, np.array([[[1, 0, 0, 1, 0]]])).spikes[1][0].numpy()
    assert out[0].tolist() == [0, 1, 0, 0, 1]
    assert out[1].tolist() == [0, 0, 1, 0, 0]


def test_complex_dense_needs_a_resonate_and_fire_neuron():
    net = Network([InputLayer(shape=(2,)),
                   ComplexDenseLayer(name="c", weight=np.ones((2, 2), dtype=np.int32),
                                     weight_imag=np.ones((2, 2), dtype=np.int32), neuron=Neuron())])
    with pytest.raises(UnsupportedLayerError, match=r"complex dense layer 'c' drives .* not CUBA neurons"):
        run_fixed(net, np.ones((1, 2, 3)))


def test_rf_bias_is_refused():
    net = Network([InputLayer(shape=(2,)),
                   DenseLayer(weight=np.ones((2, 2), dtype=np.int32), bias=np.array([1, 0]), neuron=_rf("RF_PHASE"))])
    with pytest.raises(UnsupportedLayerError, match=r"RF_PHASE neurons take no bias"):
        run_fixed(net, np.ones((1, 2, 3)))


# ----------------------------------------------------------------------------- Lava blocks built directly
def _run_block(block, x: np.ndarray) -> np.ndarray:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps = x.shape[-1]
    source, sink = Source(data=x.astype(np.int32)), Sink(shape=block.out.shape, buffer=steps)
    source.s_out.connect(block.inp)
    block.out.connect(sink.a_in)
    try:
        block.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return sink.data.get()
    finally:
        block.stop()


def _rf_params(neuron: Neuron) -> dict:
    """The RF process parameters lava-dl's netx derives from the neuron (hdf5.get_neuron_params)."""
    from lava.lib.dl.netx.hdf5 import Network as NetxNetwork
    from lava.proc.rf.process import RF
    from lava.proc.rf_iz.process import RF_IZ

    params = NetxNetwork.get_neuron_params({"type": neuron.kind, "vThMant": np.int64(neuron.v_th_mant),
                                            "sinDecay": np.int64(neuron.sin_decay),
                                            "cosDecay": np.int64(neuron.cos_decay)})
    assert params["neuron_proc"] is (RF if neuron.kind == "RF_PHASE" else RF_IZ)
    return params


def _complex_block_agrees(real, imag, neuron, x):
    """Our spikes and voltages of a complex dense layer; asserts they equal Lava's ComplexDense block's."""
    from lava.lib.dl.netx.blocks.process import ComplexDense
    from lava.lib.dl.netx.utils import optimize_weight_bits

    w_r, bits_r, exp_r, mode_r = optimize_weight_bits(real)  # as netx's create_dense does
    w_i, bits_i, exp_i, mode_i = optimize_weight_bits(imag)
    block = ComplexDense(shape=(real.shape[0],), neuron_params=_rf_params(neuron), weight_real=w_r,
                         weight_imag=w_i, num_weight_bits_real=bits_r, num_weight_bits_imag=bits_i,
                         weight_exponent_real=exp_r, weight_exponent_imag=exp_i, sign_mode_real=mode_r,
                         sign_mode_imag=mode_i)
    lava = _run_block(block, x)
    net = Network([InputLayer(shape=(real.shape[1],)),
                   ComplexDenseLayer(weight=real, weight_imag=imag, neuron=neuron)])
    result = run_fixed(net, x[None], record_voltage=True)
    ours = result.spikes[1][0].numpy()
    assert lava.sum() > 5
    assert np.array_equal(ours, lava), (int(lava.sum()), int(ours.sum()))
    return result


@pytest.mark.parametrize("kind,sin", [("RF_PHASE", 900), ("RF_IZHIKEVICH", -700)])
def test_complex_dense_block_in_lava_agrees(kind, sin):
    rng = np.random.default_rng(3)
    real = rng.integers(-60, 90, size=(12, 9)).astype(np.int32)  # odd and even, mixed signs
    imag = rng.integers(-20, 15, size=(12, 9)).astype(np.int32)
    neuron = _rf(kind, v_th_mant=9, sin_decay=sin, cos_decay=3900)  # Lava holds cos 3899 for sin 900
    _complex_block_agrees(real, imag, neuron, (rng.random((9, 40)) < 0.4).astype(np.int64))


def test_saturating_resonator_block_in_lava_agrees():
    """Strong input into an undamped resonator drives the state to Lava's 24-bit clip."""
    rng = np.random.default_rng(7)
    real = rng.integers(0, 254, size=(6, 30)).astype(np.int32)
    imag = rng.integers(-100, 254, size=(6, 30)).astype(np.int32)
    neuron = _rf("RF_IZHIKEVICH", v_th_mant=120000, sin_decay=40, cos_decay=4095)
    result = _complex_block_agrees(real, imag, neuron, (rng.random((30, 120)) < 0.8).astype(np.int64))
    assert int(result.voltages[1].abs().max()) == (1 << 23) - 1
