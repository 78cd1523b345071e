"""lava-dl's recorded ground truth, whole networks: N-TIDIGITS (dense layers with axonal
delays), PilotNet LIF (five convs, four dense layers), tiny.net and the PilotNet SDNN
states, read with ``converters.netx`` and run by our bit-exact fixed point, layer by layer
and step by step against the arrays lava-dl ships in ``tests/lava/lib/dl/netx/gts``; then
``neuroprune verify`` runs the same whole files in Lava with the same recorded input
(PilotNet SDNN's: ``test_lava_sdnn.py``).

What the recorded arrays are (found by running the files, see the tests):

- ``ntidigits/output.npy`` ``(242, 3000)``: the spikes of the last dense layer (11 classes x
  22 neurons, the input of the host-side ``average``) one step late: column ``t + 1`` holds
  step ``t``, column 0 is empty. lava-dl's own test compares one column of it.
- ``pilotnet_lif/input.npy`` ``(W, H, C, 24)``: the spikes of the input layer, driven by
  ``image.npy`` as its input mantissa every step; ``conv-N``, ``fc-N``: the spikes of the
  later layers, ``-u`` their currents, ``-v`` their voltages after the spike reset, read as
  ``128`` (``2 << 6``) at every step where the neuron spiked. They were recorded with netx's
  periodic reset every 17 steps (each layer one step after the one before it); ``input-s.npy``
  is the input layer's spikes with a reset every 16 steps. lava-dl's own tests compare one
  layer at step 14, before any periodic reset. ``fc-3-u``, ``fc-3-v`` (25 steps) are from
  another run, with a reset every 16 steps one step earlier.
- ``tinynet/*.npy``: see :func:`test_tinynet_every_recorded_layer_equals_ours_from_its_first_reset`.
- ``pilotnet_sdnn/act0.npy``: the input layer's payloads; ``sigma1.npy``, ``sigma2.npy``
  and ``sigma{1..4}_square.npy``: sigma states, all at the step they were computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.errors import UnsupportedLayerError
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron, PoolLayer
from neuroprune.snn.fixed import dense_synapse_weights, reset_phases, run_fixed


def _lava_dl_gts() -> Path:
    """lava-dl's reference networks and recorded data (its wheel ships tests/.../netx/gts)."""
    import importlib.util

    spec = importlib.util.find_spec("lava.lib.dl.netx")
    site = Path(spec.origin).parents[4]  # .../site-packages/lava/lib/dl/netx/__init__.py
    return site / "tests" / "lava" / "lib" / "dl" / "netx" / "gts"


GTS = _lava_dl_gts()
NTIDIGITS = GTS / "ntidigits"
PILOTNET = GTS / "pilotnet_lif"
PILOTNET_RESET = 17  # the reset interval the PilotNet LIF arrays were recorded with
#: IR layer index -> the recorded array of its spikes
PILOTNET_LAYERS = {0: "input", 1: "conv-0", 2: "conv-1", 3: "conv-2", 4: "conv-3", 5: "conv-4",
                   7: "fc-0", 8: "fc-1", 9: "fc-2", 10: "fc-3-s"}
SPIKE_MARK = 2 << 6  # what the recorded voltages read at a step where the neuron spiked


def _xyc(values: np.ndarray) -> np.ndarray:
    """Our ``(C, H, W, T)`` (or ``(F, T)``) as lava-dl's ``(W, H, C, T)``."""
    return np.transpose(values, (*range(values.ndim - 2, -1, -1), values.ndim - 1))


def _pilotnet_image(steps: int) -> np.ndarray:
    """``image.npy`` ``(W, H, C)`` as the input mantissa of every step, ``(W, H, C, steps)``.
    lava-dl's test sets it as the input neuron's bias; with the input layer's ``iDecay`` of
    4096 (no current kept) an input mantissa ``a`` each step gives the same voltages."""
    image = np.load(PILOTNET / "image.npy").astype(np.int64)
    return np.repeat(image[..., None], steps, axis=-1)


def _run_pilotnet(reset_interval: int | None, steps: int = 24, reset_offset: int = 0):
    network = netx.read(PILOTNET / "network.net")
    x = np.transpose(_pilotnet_image(steps), (2, 1, 0, 3))[None]  # (1, C, H, W, T)
    return network, run_fixed(network, x, record_voltage=True, record_current=True, reset_interval=reset_interval,
                              reset_offset=reset_offset)


def _ours(result_part: dict, index: int, like: np.ndarray) -> np.ndarray:
    values = _xyc(result_part[index][0].numpy().astype(np.int64))
    return values.reshape(*like.shape[:-1], values.shape[-1])


# ------------------------------------------------------------------ fixed point vs recorded, no Lava


def test_ntidigits_whole_chip_part_equals_recorded_output_over_all_3000_steps():
    network = netx.read(NTIDIGITS / "ntidigits.net")
    assert [layer.kind for layer in network.layers] == ["input", "flatten", "dense", "dense", "dense", "average"]
    assert int(np.max(network[2].delay)) > 0 and int(np.max(network[3].delay)) > 0  # the axonal delays run
    x = np.load(NTIDIGITS / "input.npy")  # (64, 3000) spikes
    recorded = np.load(NTIDIGITS / "output.npy").astype(np.int64)  # (242, 3000)
    assert x.shape == (64, 3000) and recorded.shape == (242, 3000)
    ours = run_fixed(network, x.reshape(1, *network.input_shape, -1).astype(np.int64)).spikes
    out = ours[4][0].numpy().astype(np.int64)  # the last dense layer, before the host-side average
    assert out.shape == (242, 3000)
    assert not recorded[:, 0].any()
    # every one of the 2999 recorded steps equals ours one step earlier
    np.testing.assert_array_equal(recorded[:, 1:], out[:, :-1])
    assert int(recorded.sum()) == 22572 and int(out[:, :-1].sum()) == 22572
    assert not out[:, -1].any()  # so nothing we send goes unrecorded
    assert int((recorded != out).sum()) > 6000  # the one-step alignment is not a no-op
    # the layers before it spike too (17138 and 26213 spikes)
    assert int(ours[2].sum()) > 10000 and int(ours[3].sum()) > 10000


def test_pilotnet_lif_every_recorded_layer_spikes_currents_voltages_equal_ours_over_24_steps():
    network, result = _run_pilotnet(PILOTNET_RESET)
    agreed = {}
    for index, name in PILOTNET_LAYERS.items():
        recorded = np.load(PILOTNET / f"{name}.npy").astype(np.int64)[..., :24]  # fc-3-s holds 25 columns
        spikes = _ours(result.spikes, index, recorded)
        np.testing.assert_array_equal(spikes, recorded, err_msg=name)
        agreed[name] = int(spikes.sum())
        if index == 0 or index == 10:
            continue  # no input-v.npy; fc-3's u and v come from another run, see the test below
        for state, ours in (("u", result.currents), ("v", result.voltages)):
            want = np.load(PILOTNET / f"{name}-{state}.npy").astype(np.int64)
            got = _ours(ours, index, want)
            if state == "v":
                assert (want[spikes.astype(bool)] == SPIKE_MARK).all(), name
                got = np.where(spikes.astype(bool), SPIKE_MARK, got)
            np.testing.assert_array_equal(got, want, err_msg=f"{name}-{state}")
    # not vacuous: every layer but the output spikes (recorded counts)
    assert agreed == {"input": 843085, "conv-0": 166897, "conv-1": 63672, "conv-2": 23247, "conv-3": 14567,
                      "conv-4": 6770, "fc-0": 226, "fc-1": 49, "fc-2": 8, "fc-3-s": 0}
    assert network[0].neuron.i_decay == 4096  # the bias / input mantissa equivalence of _pilotnet_image


def test_pilotnet_lif_recorded_resets_are_every_17_steps_and_input_s_every_16():
    """Without the periodic reset (or with lava-dl's test's 16 steps) our spikes depart
    from the recorded ones; ``input-s.npy`` is the input layer with a reset every 16 steps."""
    recorded = np.load(PILOTNET / "input.npy")
    for interval in (None, 16):
        _, result = _run_pilotnet(interval)
        ours = _ours(result.spikes, 0, recorded)
        bad = [t for t in range(24) if (ours[..., t] != recorded[..., t]).any()]
        assert bad and bad[0] == 17, (interval, bad[:3])  # equal before the second sample
        conv = np.load(PILOTNET / "conv-0-v.npy")
        # conv-0 resets at step 1 (its bias has charged it at step 0): without reset, step 1 differs
        if interval is None:
            assert (_ours(result.voltages, 1, conv)[..., 1] != conv[..., 1]).any()
    _, result = _run_pilotnet(16)
    np.testing.assert_array_equal(_ours(result.spikes, 0, recorded), np.load(PILOTNET / "input-s.npy"))


def test_pilotnet_lif_output_state_was_recorded_with_a_reset_every_16_steps_one_step_earlier():
    """fc-3 (1 neuron, threshold 131071: it never spikes): its ``-u``, ``-v`` arrays (25
    steps) come from another run than the other layers' arrays: a reset every 16 steps
    with netx's ``reset_offset=15`` (lava-dl's tiny-net reset: block ``i`` after step
    ``i - 1``). With the 17-step reset they depart at step 8, where fc-2's recorded spike
    of step 7 reaches fc-3 (current -1536) and the recorded current is 0."""
    u_rec = np.load(PILOTNET / "fc-3-u.npy").astype(np.int64)[0]
    v_rec = np.load(PILOTNET / "fc-3-v.npy").astype(np.int64)[0]
    assert u_rec.shape == (25,) and np.count_nonzero(u_rec) == 4 and np.count_nonzero(v_rec) == 18
    network, result = _run_pilotnet(16, steps=25, reset_offset=15)
    np.testing.assert_array_equal(result.currents[10][0, 0].numpy(), u_rec)
    np.testing.assert_array_equal(result.voltages[10][0, 0].numpy(), v_rec)
    assert not result.spikes[10].any() and not np.load(PILOTNET / "fc-3-s.npy").any()
    # the same run's fc-2 spikes are not fc-2.npy: the two arrays come from different runs
    assert (_ours(result.spikes, 9, np.load(PILOTNET / "fc-2.npy")[..., :24])[..., :24]
            != np.load(PILOTNET / "fc-2.npy")).any()
    _, seventeen = _run_pilotnet(PILOTNET_RESET, steps=25)
    u = seventeen.currents[10][0, 0].numpy()
    np.testing.assert_array_equal(u[:8], u_rec[:8])
    fc2 = np.load(PILOTNET / "fc-2.npy")
    assert fc2[:, 7].nonzero()[0].tolist() == [5]  # fc-2's neuron 5 spiked at step 7 ...
    weight, shift = dense_synapse_weights(network[10].weight)
    assert (int(weight[0, 5]) >> shift) << 6 == -1536 == u[8] != u_rec[8]  # ... recorded current at step 8: 0


SDNN = GTS / "pilotnet_sdnn"


def test_pilotnet_sdnn_recorded_input_payloads_and_sigma_states_equal_ours_over_20_steps():
    """``act0.npy`` is the input layer's (Delta) payloads for ``input.npy`` held 20 steps,
    ``sigma1.npy`` and ``sigma2.npy`` the sigma states of the first two convs, step by step."""
    network = netx.read(SDNN / "network.net")
    image = np.load(SDNN / "input.npy").astype(np.int64)  # (W, H, C, 1)
    x = np.transpose(np.repeat(image, 20, axis=-1), (2, 1, 0, 3))[None]
    result = run_fixed(network, x, record_voltage=True)
    act0 = np.load(SDNN / "act0.npy").astype(np.int64)
    np.testing.assert_array_equal(_xyc(result.spikes[0][0].numpy().astype(np.int64)), act0)
    assert int(np.count_nonzero(act0)) == 9656
    for index in (1, 2):
        recorded = np.load(SDNN / f"sigma{index}.npy").astype(np.int64)
        np.testing.assert_array_equal(_xyc(result.voltages[index][0].numpy()), recorded, err_msg=f"sigma{index}")
        assert np.count_nonzero(recorded) > 100000


def test_square_pilotnet_sdnn_sigma_states_equal_ours_with_act0_into_its_first_conv():
    """As lava-dl's square test drives it (``skip_layers=1``): ``act0.npy`` cropped to 33
    columns goes straight into the first conv; ``sigma{1..4}_square.npy`` are the four convs'
    sigma states over 20 steps."""
    square = netx.read(SDNN / "square_network.net")
    bare = Network([InputLayer(shape=square.input_shape), *square.layers[1:]])  # the input layer skipped
    act0 = np.load(SDNN / "act0.npy")[:33, :33].astype(np.int64)  # (W, H, C, T)
    result = run_fixed(bare, np.transpose(act0, (2, 1, 0, 3))[None], record_voltage=True)
    for index in (1, 2, 3, 4):
        recorded = np.load(SDNN / f"sigma{index}_square.npy").astype(np.int64)
        np.testing.assert_array_equal(_xyc(result.voltages[index][0].numpy()), recorded, err_msg=f"sigma{index}")
        assert np.count_nonzero(recorded) > 4000


TINY = GTS.parent / "tiny.net"
TINY_GTS = GTS / "tinynet"


def _tiny_input(steps: int) -> np.ndarray:
    """``input_bias.npy`` ``(W, H, C)`` (lava-dl's test sets it as the input neuron's bias;
    the input layer's ``iDecay`` is 4096) as the input mantissa of every step."""
    return np.repeat(np.load(TINY_GTS / "input_bias.npy").astype(np.int64)[..., None], steps, axis=-1)


def test_tinynet_every_recorded_layer_equals_ours_from_its_first_reset():
    """tiny.net's arrays were recorded with a reset every 17 steps (lava-dl's test resets
    block ``i`` after step ``i - 1``, which is netx's phase ``i``); each layer's record
    starts at its own first reset: ``input.npy`` one step late (column ``t + 1`` is step
    ``t``), ``layer1.npy`` from step 1, ``output.npy`` one step early (column ``t`` is step
    ``t + 1``, from step 2: what lava-dl's test compares); ``current.npy`` is layer 1's
    ``u >> 6`` at every step."""
    network = netx.read(TINY)
    assert [layer.kind for layer in network.layers] == ["input", "conv", "conv"] and network[0].neuron.i_decay == 4096
    x = np.transpose(_tiny_input(17), (2, 1, 0, 3))[None]
    result = run_fixed(network, x, record_current=True, reset_interval=17)
    ours = {i: result.spikes[i][0].numpy().astype(np.int64) for i in (0, 1, 2)}  # (C, H, W, 17)

    def recorded(name: str) -> np.ndarray:
        return np.load(TINY_GTS / f"{name}.npy")[0].astype(np.int64)  # (C, H, W, 16)

    assert not recorded("input")[..., 0].any()
    np.testing.assert_array_equal(recorded("input")[..., 1:], ours[0][..., :15])
    np.testing.assert_array_equal(recorded("layer1")[..., 1:], ours[1][..., 1:16])
    np.testing.assert_array_equal(recorded("output")[..., 1:], ours[2][..., 2:17])
    np.testing.assert_array_equal(recorded("current") << 6, result.currents[1][0].numpy()[..., :16])
    assert [int(recorded(n)[..., 1:].sum()) for n in ("input", "layer1", "output")] == [6783, 1633, 92]
    # before its first reset a layer runs on its bias alone: layer 1 spikes at step 0, unrecorded
    assert ours[1][..., 0].any() and not recorded("layer1")[..., 0].any()


# ------------------------------------------------------------------ the periodic reset itself


def test_reset_phases_follow_netx_block_order():
    rng = np.random.default_rng(0)
    lif = Neuron(i_decay=1024, v_decay=512, v_th_mant=40)
    network = Network([InputLayer(shape=(4,), neuron=lif),
                       DenseLayer(weight=rng.integers(-60, 90, size=(5, 4)).astype(np.int32), neuron=lif),
                       DenseLayer(weight=rng.integers(-60, 90, size=(3, 5)).astype(np.int32), neuron=lif)])
    assert reset_phases(network, 16) == {0: 0, 1: 1, 2: 2}
    assert reset_phases(network, 2, 1) == {0: 1, 1: 0, 2: 1}
    pooled = Network([InputLayer(shape=(1, 4, 4)), PoolLayer(kernel=2, neuron=lif)])
    with pytest.raises(UnsupportedLayerError, match=r"^layer 1: layer type 'pool' has no periodic reset in lava-dl's netx"):
        reset_phases(pooled, 8)


def test_reset_makes_every_layer_periodic_from_its_phase():
    """A periodic input and a reset with the same period: layer ``k`` restarts at step
    ``k + n * period`` from what it received since, so its output repeats from step ``k``."""
    rng = np.random.default_rng(1)
    lif = Neuron(i_decay=700, v_decay=300, v_th_mant=300)
    network = Network([InputLayer(shape=(6,), neuron=Neuron(i_decay=4096, v_decay=300, v_th_mant=100)),
                       DenseLayer(weight=rng.integers(-80, 100, size=(8, 6)).astype(np.int32), neuron=lif,
                                  bias=rng.integers(0, 10, size=8).astype(np.int32)),
                       DenseLayer(weight=rng.integers(-60, 120, size=(4, 8)).astype(np.int32),
                                  neuron=Neuron(i_decay=700, v_decay=300, v_th_mant=100),
                                  delay=rng.integers(0, 2, size=(4, 8)))])
    period, steps = 7, 35
    x = np.tile(rng.integers(0, 60, size=(1, 6, period)), steps // period)
    reset = run_fixed(network, x, reset_interval=period).spikes
    plain = run_fixed(network, x).spikes
    for k in (0, 1, 2):
        out = reset[k][0].numpy()
        assert out.sum() > 0
        np.testing.assert_array_equal(out[:, k + period:], out[:, k:steps - period])
    assert all(not np.array_equal(reset[k].numpy(), plain[k].numpy()) for k in (0, 1, 2))


def test_reset_with_an_offset_verifies_in_lava_on_a_net_we_write(tmp_path, capsys):
    """netx's reset phases with a non-zero offset, biases, delays and a recurrent layer:
    Lava (``hdf5.Network(reset_interval=5, reset_offset=3)``) against ours."""
    from neuroprune.ir import RecurrentDenseLayer

    rng = np.random.default_rng(2)
    lif = Neuron(i_decay=900, v_decay=400, v_th_mant=60)
    network = Network([
        InputLayer(shape=(10,), neuron=Neuron(i_decay=4096, v_decay=500, v_th_mant=40)),
        DenseLayer(weight=rng.integers(-50, 110, size=(12, 10)).astype(np.int32), neuron=lif,
                   bias=rng.integers(0, 30, size=12).astype(np.int32), delay=rng.integers(0, 3, size=(12, 10))),
        RecurrentDenseLayer(weight=rng.integers(-60, 110, size=(6, 12)).astype(np.int32),
                            weight_rec=rng.integers(-60, 60, size=(6, 6)).astype(np.int32), neuron=lif),
    ], name="reset")
    path = netx.write(network, tmp_path / "reset.net")
    x = rng.integers(0, 80, size=(1, 10, 16))
    np.save(tmp_path / "x.npy", x)
    result = _cli_verify(path, capsys, "--input", str(tmp_path / "x.npy"), "--reset-interval", "5",
                         "--reset-offset", "3")
    assert result["steps"] == 16 and all(layer["lava_spikes"] > 5 for layer in result["layers"]), result
    reset, plain = (run_fixed(netx.read(path), x, reset_interval=r, reset_offset=3).spikes for r in (5, None))
    assert all(not np.array_equal(reset[i].numpy(), plain[i].numpy()) for i in (0, 1, 2))


def test_verify_refuses_a_reset_offset_without_interval(capsys):
    assert main(["verify", str(NTIDIGITS / "ntidigits.net"), "--reset-offset", "2"]) == 2
    assert "--reset-offset needs --reset-interval" in capsys.readouterr().err


# ------------------------------------------------------------------ Lava: neuroprune verify on the whole files


def _cli_verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code = main(["verify", str(path), "--json", *extra])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["exact"], result
    return result


def test_tinynet_whole_file_verifies_in_lava_with_recorded_input_and_reset(tmp_path, capsys):
    """As lava-dl's test runs it: 17 + 3 steps, the recorded input bias, a reset every 17."""
    path = tmp_path / "input.npy"
    np.save(path, _tiny_input(20))  # (W, H, C, T): lava-dl's order
    result = _cli_verify(TINY, capsys, "--input", str(path), "--reset-interval", "17")
    assert result["steps"] == 20 and [layer["index"] for layer in result["layers"]] == [0, 1, 2]
    assert all(layer["lava_spikes"] > 50 for layer in result["layers"]), result


NTIDIGITS_LAVA_STEPS = 600


@pytest.mark.slow
def test_ntidigits_whole_file_verifies_in_lava_with_recorded_input(tmp_path, capsys):
    """Every chip layer of the whole file (the host-side average is not Lava's) on the
    first steps of the recorded input: Lava's spikes equal ours, which equal output.npy."""
    recorded = tmp_path / "input.npy"
    np.save(recorded, np.load(NTIDIGITS / "input.npy")[:, :NTIDIGITS_LAVA_STEPS])
    result = _cli_verify(NTIDIGITS / "ntidigits.net", capsys, "--input", str(recorded))
    assert result["steps"] == NTIDIGITS_LAVA_STEPS
    assert [(layer["index"], layer["shape"]) for layer in result["layers"]] == [(2, [256]), (3, [256]), (4, [242])]
    assert all(layer["lava_spikes"] > 1000 for layer in result["layers"]), result
    # output.npy's column t + 1 is step t: Lava's spike count is the recorded one
    assert result["layers"][2]["lava_spikes"] == int(np.load(NTIDIGITS / "output.npy")[:, 1:NTIDIGITS_LAVA_STEPS + 1].sum())


PILOTNET_LAVA_STEPS = 10


@pytest.mark.slow
def test_pilotnet_lif_whole_file_verifies_in_lava_with_recorded_image_and_reset(tmp_path, capsys):
    """All eleven layers, the recorded image as input and the recorded arrays' reset
    (every 17 steps): each of the ten neuron layers resets within the first 10 steps."""
    path = tmp_path / "image.npy"
    np.save(path, _pilotnet_image(PILOTNET_LAVA_STEPS))  # (W, H, C, T): lava-dl's order
    result = _cli_verify(PILOTNET / "network.net", capsys, "--input", str(path),
                         "--reset-interval", str(PILOTNET_RESET))
    assert result["steps"] == PILOTNET_LAVA_STEPS
    counts = {layer["index"]: layer["lava_spikes"] for layer in result["layers"]}
    assert set(counts) == set(PILOTNET_LAYERS)
    for index, name in PILOTNET_LAYERS.items():  # Lava's counts are the recorded ones
        assert counts[index] == int(np.load(PILOTNET / f"{name}.npy")[..., :PILOTNET_LAVA_STEPS].sum()), name
    assert min(counts[i] for i in (0, 1, 2, 3, 4, 5, 7, 8, 9)) > 0
