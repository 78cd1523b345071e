"""Sigma-delta (SDNN) and resonate-and-fire neurons: read and written as lava-dl stores
them, checked by ``fit`` (Loihi 2 only), refused with one line where not modelled yet."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from converters import netx
from hw_models import fit
from neuroprune.cli import main
from neuroprune.errors import FormatError, ShapeError, UnsupportedLayerError
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron

SDNN = Neuron(kind="SDNN", v_th_mant=13, activation="relu")
SIGMA = Neuron(kind="SDNN", v_th_mant=6, activation="relu", sigma_output=True)
RF = Neuron(kind="RF_PHASE", v_th_mant=20, sin_decay=300, cos_decay=4000, graded_spike=False)


def _net(first: Neuron, second: Neuron, name: str = "n") -> Network:
    rng = np.random.default_rng(0)
    return Network([
        InputLayer(shape=(6,), neuron=Neuron(kind="SDNN", v_th_mant=0, activation="relu")
                   if first.kind == "SDNN" else None),
        DenseLayer(weight=rng.integers(-8, 8, size=(5, 6), dtype=np.int32), neuron=first),
        DenseLayer(weight=rng.integers(-8, 8, size=(3, 5), dtype=np.int32), neuron=second),
    ], name=name)


def test_sdnn_neuron_round_trips_with_lava_dl_keys(tmp_path):
    net = _net(SDNN, SIGMA)
    path = netx.write(net, tmp_path / "sdnn.net")
    with h5py.File(path) as handle:
        keys = sorted(handle["layer/2/neuron"].keys())
        assert keys == ["activation", "sigma_output", "type", "vThMant"]  # what slayer's sigma_delta block writes
        assert "sigma_output" not in handle["layer/1/neuron"]  # lava-dl's netx tests the key's presence
    back = netx.read(path)
    assert back.same_as(net)
    assert back[1].neuron.sends_graded and back[1].neuron.payload_bits == 16
    assert back[2].neuron.sigma_output and not back[1].neuron.sigma_output


def test_rf_neuron_and_message_bits_round_trip(tmp_path):
    rf_iz = Neuron(kind="RF_IZHIKEVICH", v_th_mant=9, sin_decay=-100, cos_decay=3900, message_bits=8,
                   graded_spike=True)
    net = _net(RF, rf_iz)
    back = netx.read(netx.write(net, tmp_path / "rf.net"))
    assert back.same_as(net)
    assert back[2].neuron.payload_bits == 8 and back[1].neuron.payload_bits == 0


def test_lava_dl_pilotnet_sdnn_file_reads_its_neurons(lava_dl_netx_dir):
    net = netx.read(lava_dl_netx_dir / "gts/pilotnet_sdnn/network.net")
    kinds = {layer.neuron.kind for layer in net if getattr(layer, "neuron", None) is not None}
    assert kinds == {"SDNN"}
    assert net[1].neuron.v_th_mant == 13 and net[1].neuron.activation == "relu"
    assert net[9].neuron.sigma_output and not net[8].neuron.sigma_output


def _rewrite_neuron(path, layer, key, value):
    with h5py.File(path, "r+") as handle:
        group = handle[f"layer/{layer}/neuron"]
        if key in group:
            del group[key]
        if value is not None:
            group.create_dataset(key, data=value)


@pytest.mark.parametrize("key,value,error,match", [
    ("activation", "tanh", UnsupportedLayerError, r"layer 1: SDNN activation 'tanh' is not supported.*ReLU"),
    ("vThMant", None, FormatError, r"layer 1: SDNN neuron has no 'vThMant' entry"),
    ("type", "IZH", UnsupportedLayerError, r"layer 1: neuron type 'IZH' is not supported \(supported: CUBA, LOIHI, SDNN"),
    ("messageBits", 40, FormatError, r"messageBits"),
])
def test_bad_sdnn_neuron_entries_name_the_layer(tmp_path, key, value, error, match):
    path = netx.write(_net(SDNN, SDNN), tmp_path / "bad.net")
    _rewrite_neuron(path, 1, key, value)
    with pytest.raises(error, match=match):
        netx.read(path)


def test_rf_decay_out_of_range_is_refused():
    with pytest.raises(ShapeError, match=r"sin_decay=5000 is outside \[-4096, 4096\]"):
        Neuron(kind="RF_PHASE", sin_decay=5000)


@pytest.mark.parametrize("neuron,limit", [(SDNN, "graded_spikes"), (RF, "programmable_neurons"),
                                          (Neuron(graded_spike=True), "graded_spikes")])
def test_loihi1_names_loihi2_only_neurons_with_their_fix(neuron, limit):
    net = _net(neuron, Neuron())
    on_loihi1 = fit(net, "loihi1")
    found = [(v.layer, v.limit) for v in on_loihi1.violations]
    expected = [(1, limit)] + ([(0, "graded_spikes")] if neuron.kind == "SDNN" else [])
    assert sorted(found) == sorted(expected)
    assert all("--chip loihi2" in v.fix for v in on_loihi1.violations)
    assert fit(net, "loihi2").ok


def test_a_chip_file_without_the_flags_has_neither_feature(tmp_path):
    from hw_models.chip import CHIPS_DIR, load_chip

    text = (CHIPS_DIR / "loihi2.toml").read_text()
    text = "\n".join(line for line in text.splitlines()
                     if not line.startswith(("graded_spikes", "programmable_neurons")))
    (tmp_path / "mine.toml").write_text(text)
    chip = load_chip(tmp_path / "mine.toml")
    assert not chip.graded_spikes and not chip.programmable_neurons
    assert load_chip("loihi2").graded_spikes and not load_chip("loihi1").graded_spikes


def test_commands_without_a_sdnn_model_refuse_in_one_line(tmp_path, capsys):
    """verify runs SDNN nets (tests/converters/test_lava_sdnn.py) and ONNX holds their ReLU ANN; NIR has no node."""
    path = netx.write(_net(SDNN, SIGMA), tmp_path / "sdnn.net")
    for argv, text in ((["convert", str(path), str(tmp_path / "x.nir")], "neuron type SDNN has no NIR node"),):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and text in err, err
    assert not (tmp_path / "x.nir").exists()
    assert main(["convert", str(path), str(tmp_path / "x.onnx")]) == 0  # its ReLU ANN, see test_nir_onnx_kinds.py


def test_verify_runs_a_sdnn_net_in_lava(tmp_path, capsys):
    path = netx.write(_net(SDNN, SIGMA), tmp_path / "sdnn.net")
    assert main(["verify", str(path), "--steps", "6"]) == 0
    assert "spike-exact" in capsys.readouterr().out


@pytest.mark.parametrize("stored,kind", [("RF", "RF_IZHIKEVICH"), ("RF_IZ", "RF_IZHIKEVICH"),
                                         ("RF_PHASE", "RF_PHASE"), ("RF_PHASE_X", "RF_PHASE")])
def test_rf_type_names_are_read_as_lava_dl_netx_reads_them(tmp_path, stored, kind):
    path = netx.write(_net(RF, Neuron()), tmp_path / "rf.net")
    _rewrite_neuron(path, 1, "type", stored)
    assert netx.read(path)[1].neuron.kind == kind
