"""Sigma-delta (SDNN) networks: our bit-exact fixed point against Lava's fixed-point
sigma-delta processes (``Loihi2SimCfg(select_tag="fixed_pt")``), graded payload by
payload, on nets we write and on lava-dl's own PilotNet SDNN files. These run Lava."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converters import lava_verify, netx
from neuroprune.cli import main
from neuroprune.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, Neuron
from neuroprune.snn.fixed import run_fixed

DELTA = Neuron(kind="SDNN", v_th_mant=3, activation="relu")  # the input layer: Lava's Delta
SIGMA_DELTA = Neuron(kind="SDNN", v_th_mant=20, activation="relu")
SIGMA = Neuron(kind="SDNN", v_th_mant=0, activation="relu", sigma_output=True)
STEPS = 12


def _assert_graded_exact(result: lava_verify.VerifyResult, network: Network) -> None:
    assert result.exact, [(m.index, m.percent, m.first_mismatch) for m in result.layers]
    assert [m.index for m in result.layers] == network.compartment_indices()
    # not vacuous: every layer sent messages, and Lava's payloads are graded (not 0/1)
    assert all(m.lava_spikes > 0 for m in result.layers), [(m.index, m.lava_spikes) for m in result.layers]
    assert [m.graded for m in result.layers] == [network[m.index].neuron.sends_graded for m in result.layers]


def _payload_values(network: Network, x: np.ndarray) -> dict[int, set[int]]:
    out = run_fixed(network, x).spikes
    return {i: set(np.unique(v.numpy()).tolist()) for i, v in out.items()}


def _dense_sdnn(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network([
        InputLayer(shape=(12,), neuron=DELTA),
        DenseLayer(weight=rng.integers(-60, 90, size=(10, 12)).astype(np.int32) * 2, neuron=SIGMA_DELTA,
                   bias=rng.integers(-40, 60, size=10).astype(np.int32)),
        DenseLayer(weight=rng.integers(-120, 127, size=(6, 10)).astype(np.int32), neuron=SIGMA_DELTA,
                   bias=rng.integers(-10, 30, size=6).astype(np.int32)),
        DenseLayer(weight=rng.integers(-100, 100, size=(3, 6)).astype(np.int32), neuron=SIGMA),
    ], name="sdnn_dense")


def _conv_sdnn(seed: int = 1) -> Network:
    rng = np.random.default_rng(seed)
    return Network([
        InputLayer(shape=(2, 7, 6), neuron=DELTA),
        ConvLayer(weight=rng.integers(-80, 120, size=(4, 2, 3, 3)).astype(np.int32), neuron=SIGMA_DELTA,
                  bias=rng.integers(-30, 50, size=4).astype(np.int32), padding=1),
        ConvLayer(weight=rng.integers(-80, 120, size=(5, 4, 3, 3)).astype(np.int32), neuron=SIGMA_DELTA,
                  bias=rng.integers(-30, 50, size=5).astype(np.int32), stride=2, padding=(1, 0)),
        FlattenLayer(),
        DenseLayer(weight=rng.integers(-60, 60, size=(4, 5 * 4 * 2)).astype(np.int32), neuron=SIGMA),
    ], name="sdnn_conv")


def _delayed_sdnn(seed: int = 3) -> Network:
    """Sigma-delta dense layers with synaptic delays (Lava's DelayDense, graded input)."""
    rng = np.random.default_rng(seed)
    return Network([
        InputLayer(shape=(8,), neuron=DELTA),
        DenseLayer(weight=rng.integers(-90, 120, size=(6, 8)).astype(np.int32), neuron=SIGMA_DELTA,
                   delay=rng.integers(0, 4, size=(6, 8)), bias=rng.integers(-5, 30, size=6).astype(np.int32)),
        DenseLayer(weight=rng.integers(-90, 120, size=(3, 6)).astype(np.int32), neuron=SIGMA,
                   delay=rng.integers(0, 3, size=6)),
    ], name="sdnn_delays")


def _mixed_sdnn(seed: int = 4) -> Network:
    """Graded payloads into a CUBA layer (Lava's graded dense, then LIF), whose binary
    spikes feed a sigma-delta layer."""
    rng = np.random.default_rng(seed)
    return Network([
        InputLayer(shape=(8,), neuron=DELTA),
        DenseLayer(weight=rng.integers(-60, 120, size=(6, 8)).astype(np.int32),
                   neuron=Neuron(i_decay=500, v_decay=300, v_th_mant=200)),
        DenseLayer(weight=rng.integers(-90, 120, size=(5, 6)).astype(np.int32),
                   neuron=Neuron(kind="SDNN", v_th_mant=2, activation="relu"),
                   bias=rng.integers(0, 20, size=5).astype(np.int32)),
        DenseLayer(weight=rng.integers(-90, 120, size=(3, 5)).astype(np.int32), neuron=SIGMA),
    ], name="sdnn_cuba")


def _signed_input(network: Network, seed: int, high: int = 200, samples: int = 2) -> np.ndarray:
    """Input mantissas that rise, fall and go negative, so deltas of both signs and
    residues below the threshold occur."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-high // 2, high, size=(samples, *network.input_shape, 1))
    drift = rng.integers(-high // 8, high // 8, size=(samples, *network.input_shape, STEPS)).cumsum(axis=-1)
    return (base + drift).astype(np.int64)


@pytest.mark.parametrize("build", [_dense_sdnn, _conv_sdnn, _delayed_sdnn, _mixed_sdnn],
                         ids=["delta-sigmadelta-dense-sigma", "sigmadelta-conv", "sigmadelta-dense-delays",
                              "graded-into-cuba-into-sigmadelta"])
def test_sdnn_round_trip_through_lava_dl_agrees_on_every_payload(tmp_path, build):
    network = build()
    path = netx.write(network, tmp_path / f"{network.name}.net")
    back = netx.read(path)
    assert back.same_as(network)
    x = _signed_input(network, seed=3)
    result = lava_verify.verify(path, x=x, network=back)
    _assert_graded_exact(result, network)
    values = _payload_values(back, x)
    for index in network.compartment_indices():
        if network[index].neuron.sends_graded:
            assert len(values[index]) > 3, (index, sorted(values[index])[:10])  # graded, not binary
        else:
            assert values[index] == {0, 1}


def test_sdnn_thresholds_hold_back_small_deltas_as_residue():
    """Lava's delta rule, by hand: with vth = 3 << 12, an input step of 2 is held back
    (residue 2 << 12) and sent with the next step that brings the delta to >= 3 << 12."""
    network = Network([InputLayer(shape=(1,), neuron=DELTA),
                       DenseLayer(weight=np.array([[64]], dtype=np.int32), neuron=SIGMA)])
    x = np.array([[[5, 7, 8, 8, 4]]], dtype=np.int64)
    out = run_fixed(network, x)
    sent = out.spikes[0][0, 0].tolist()
    # deltas in input units: 5 (sent), 2 (held), 1 (+2 held = 3: sent), 0, -4 (sent)
    assert sent == [5 << 6, 0, 3 << 6, 0, -4 << 6]
    # the dense synapse (weight 64 scaled by netx to 2**7 with a right shift of 1) delivers
    # one step later; the sigma neuron sums what arrived
    assert out.spikes[1][0, 0].tolist() == [0, 5 << 12, 5 << 12, 8 << 12, 8 << 12]


def test_large_conv_sums_wrap_as_lavas_conv(tmp_path):
    """Payloads of up to 2**22 into a 3x3x3 conv of 8-bit weights: some sums pass 2**24
    (exact in Lava's float64 conv, then wrapped to 24 bits), some pass 2**31 (Lava's cast
    to int32 makes them -2**31, which wraps to 0). A Delta input sends multiples of 64;
    the 1x1 sigma-delta layer in between sends payloads with every low bit, and its bias
    of up to 2**16 makes the large ones."""
    rng = np.random.default_rng(7)
    network = Network([
        InputLayer(shape=(2, 5, 5), neuron=Neuron(kind="SDNN", v_th_mant=0, activation="relu")),
        ConvLayer(weight=rng.integers(60, 127, size=(3, 2, 1, 1)).astype(np.int32), neuron=Neuron(
            kind="SDNN", v_th_mant=0, activation="relu"), bias=np.array([5, -3, 60000], dtype=np.int32)),
        ConvLayer(weight=rng.integers(1, 127, size=(3, 3, 3, 3)).astype(np.int32), neuron=SIGMA, padding=1),
    ], name="big")
    x = rng.integers(200, 500, size=(1, 2, 5, 5, 4)).astype(np.int64)
    payload = run_fixed(network, x).spikes[1][0].permute(3, 0, 1, 2).to(torch.float64)  # (T, C, H, W)
    sums = torch.nn.functional.conv2d(payload, torch.as_tensor(network[2].weight, dtype=torch.float64), padding=1)
    assert float(sums.abs().max()) >= 2 ** 31  # cast to -2**31 by Lava
    assert bool(((sums.abs() >= 2 ** 24) & (sums.abs() < 2 ** 31)).any())  # wrapped to 24 bits
    path = netx.write(network, tmp_path / "big.net")
    _assert_graded_exact(lava_verify.verify(path, x=x), network)


def test_graded_dense_sums_wrap_at_32_bits_as_lavas_int32(tmp_path):
    """Payloads near 2**22 (a bias of about 2**16) through 8-bit weights, four inputs: the
    dense sum passes 2**31 and Lava's int32 dot product wraps; so must ours."""
    rng = np.random.default_rng(3)
    relu = Neuron(kind="SDNN", v_th_mant=0, activation="relu")
    network = Network([
        InputLayer(shape=(4,), neuron=relu),
        DenseLayer(weight=np.full((4, 4), 2, dtype=np.int32), neuron=relu,
                   bias=np.array([65535, 60001, 65001, 50001], dtype=np.int32)),
        DenseLayer(weight=rng.integers(200, 255, size=(3, 4)).astype(np.int32), neuron=SIGMA),
    ], name="wrap")
    x = rng.integers(0, 100, size=(1, 4, 6)).astype(np.int64)
    out = run_fixed(network, x).spikes
    exact = network[2].weight.astype(np.int64) @ out[1][0, :, 0].numpy().astype(np.int64)
    assert exact.max() >= 2 ** 31  # the int32 sum really wraps
    assert int(out[2][0, :, 1].min()) < 0  # positive weights and payloads, wrapped negative
    path = netx.write(network, tmp_path / "wrap.net")
    _assert_graded_exact(lava_verify.verify(path, x=x), network)


def test_lava_dl_pilotnet_sdnn_output_equals_its_recorded_ground_truth(lava_dl_netx_dir):
    """No Lava needed: lava-dl recorded the PilotNet SDNN's sigma output for its input
    (held for 9 steps, one per block, as its test runs it)."""
    folder = lava_dl_netx_dir / "gts/pilotnet_sdnn"
    network = netx.read(folder / "network.net")
    x = lava_verify.to_chw(np.load(folder / "input.npy"), network.input_shape, "xyc")
    out = run_fixed(network, np.repeat(x, 9, axis=-1)).output()
    assert out.dtype == torch.int32
    assert out[0].numpy().tolist() == np.load(folder / "output.npy").astype(np.int64).tolist()


def test_verify_passes_on_lava_dl_square_pilotnet_sdnn_with_its_recorded_input(lava_dl_netx_dir, tmp_path, capsys):
    folder = lava_dl_netx_dir / "gts/pilotnet_sdnn"
    # the square crop lava-dl's test uses, one step replayed for 5 as its RingBuffer source does
    np.save(tmp_path / "input.npy", np.load(folder / "input.npy")[:33])
    assert main(["verify", str(folder / "square_network.net"), "--input", str(tmp_path / "input.npy"),
                 "--input-layout", "xyc", "--steps", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exact"] and result["steps"] == 5 and len(result["layers"]) == 5
    assert all(layer["lava_spikes"] > 0 and layer["graded"] for layer in result["layers"])


def test_verify_of_a_sdnn_file_we_write_runs(tmp_path, capsys):
    network = _dense_sdnn(seed=5)
    path = netx.write(network, tmp_path / "n.net")
    assert main(["verify", str(path), "--steps", "8", "--json"]) == 0
    assert '"exact": true' in capsys.readouterr().out


@pytest.mark.slow
def test_verify_passes_on_lava_dl_pilotnet_sdnn_recorded_and_random_input(lava_dl_netx_dir, capsys):
    """The whole PilotNet SDNN (about 10 s in Lava): its recorded input, held for 9 steps
    (one per block, as lava-dl's test runs it), and random input."""
    folder = lava_dl_netx_dir / "gts/pilotnet_sdnn"
    assert main(["verify", str(folder / "network.net"), "--input", str(folder / "input.npy"),
                 "--input-layout", "xyc", "--steps", "9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exact"] and result["steps"] == 9
    assert [layer["index"] for layer in result["layers"]] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert all(layer["lava_spikes"] > 0 and layer["graded"] for layer in result["layers"])
    random = lava_verify.verify(folder / "network.net", steps=8, seed=4)
    assert random.exact, [(m.index, m.percent, m.first_mismatch) for m in random.layers]


def test_a_sigma_output_with_a_bias_is_refused_naming_the_layer(tmp_path, capsys):
    network = Network([InputLayer(shape=(3,), neuron=DELTA),
                       DenseLayer(weight=np.ones((2, 3), dtype=np.int32), neuron=SIGMA,
                                  bias=np.array([1, 0], dtype=np.int32))])
    path = netx.write(network, tmp_path / "biased.net")
    assert main(["verify", str(path), "--steps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "layer 1 (" in err and "no bias" in err, err
