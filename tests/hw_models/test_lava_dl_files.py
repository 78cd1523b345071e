"""Every netx file lava-dl's own netx tests load: ``info`` reads it, ``fit`` checks it on
Loihi 2 and Loihi 1 (exit 0, or 1 with violations; never 2), and ``fit --json`` keeps its
schema, and ``energy`` reports it. Files with sigma-delta (graded-spike) neurons break
Loihi 1 by name."""

from __future__ import annotations

import contextlib
import io
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.ir import DenseLayer, InputLayer, Network, Neuron

FOLDER = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx"
FILES = sorted(str(path.relative_to(FOLDER)) for path in FOLDER.rglob("*.net"))


def test_lava_dl_ships_the_files_this_module_checks():
    # the list is found, not typed: a lava-dl upgrade that adds a file is checked too
    assert {"mnist.net", "tiny.net", "gts/ntidigits/ntidigits.net", "gts/pilotnet_sdnn/network.net"} <= set(FILES)


def _keys(tree: dict) -> dict[str, set[str]]:
    """The key sets of a fit JSON object: top level, totals, energy, per layer, per violation."""
    keys = {"": set(tree), "totals": set(tree["totals"]), "energy": set(tree["energy"])}
    keys["layer"] = set().union(*(set(row) for row in tree["layers"]))
    keys["violation"] = set().union(set(), *(set(v) for v in tree["violations"]))
    return keys


@pytest.fixture(scope="module")
def reference_schema(tmp_path_factory) -> dict[str, set[str]]:
    """The JSON keys of a plain CUBA network that breaks a limit (so violations are listed)."""
    net = Network([InputLayer(shape=(4,)),
                   DenseLayer(weight=np.tile(np.array([1, 255, -256, 3], dtype=np.int32), (3, 1)),
                              neuron=Neuron())])
    path = netx.write(net, tmp_path_factory.mktemp("schema") / "ref.net")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fit", str(path), "--json"]) == 1  # 255 and -256 need 9 weight bits
    return _keys(json.loads(out.getvalue()))


@pytest.mark.parametrize("name", FILES)
def test_info_and_fit_read_every_lava_dl_test_file(name, reference_schema, capsys):
    path = str(FOLDER / name)
    assert main(["info", path]) == 0
    net = netx.read(path)
    graded = [i for i, layer in enumerate(net)
              if getattr(layer, "neuron", None) is not None and layer.neuron.sends_graded]
    for chip in ("loihi2", "loihi1"):
        capsys.readouterr()
        code = main(["fit", path, "--chip", chip, "--json"])
        captured = capsys.readouterr()
        assert code in (0, 1), captured.err
        report = json.loads(captured.out)
        assert (code == 0) == report["fits"] == (not report["violations"])
        keys = _keys(report)
        for part, expected in reference_schema.items():
            if part != "violation" or report["violations"]:
                assert expected <= keys[part], f"{chip} {name}: {part} lost keys {expected - keys[part]}"
        limits = {(v["layer"], v["limit"]) for v in report["violations"]}
        if chip == "loihi1":
            assert {layer for layer, limit in limits if limit == "graded_spikes"} == set(graded)
        else:
            assert not any(limit in ("graded_spikes", "programmable_neurons") for _, limit in limits)


def test_sigma_delta_files_are_the_graded_ones():
    graded = {name for name in FILES
              if any(getattr(layer, "neuron", None) is not None and layer.neuron.kind == "SDNN"
                     for layer in netx.read(FOLDER / name))}
    assert graded == {"gts/pilotnet_sdnn/network.net", "gts/pilotnet_sdnn/square_network.net"}


@pytest.mark.parametrize("name", FILES)
def test_energy_reports_every_lava_dl_test_file(name, capsys):
    """Sigma-delta files included: their graded messages count when the payload is non-zero."""
    path = str(FOLDER / name)
    code = main(["energy", path, "--samples", "1", "--steps", "4", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (entry,) = json.loads(captured.out)
    assert entry["energy_j"]["total_j"] > 0 and entry["synops"] > 0


# per layer of lava-dl's files: (neuron_type, graded, payload_bits, max_delay); "-": no neurons
_LIF = ("LOIHI", False, 0, 0)
_SDNN = ("SDNN", True, 16, 0)  # lava-dl netx's default messageBits for sigma-delta neurons
_NONE = ("-", False, 0, 0)
NEURON_FACTS = {
    "gts/ntidigits/ntidigits.net": [_NONE, _NONE, ("LOIHI", False, 0, 62), ("LOIHI", False, 0, 62), _LIF, _NONE],
    "gts/pilotnet_lif/network.net": [_LIF] * 6 + [_NONE] + [_LIF] * 4,
    "gts/pilotnet_sdnn/network.net": [_SDNN] * 5 + [_NONE] + [_SDNN] * 4,
    "gts/pilotnet_sdnn/square_network.net": [_SDNN] * 5,
    "mnist.net": [("CUBA", False, 0, 0)] * 3 + [_NONE],
    "tiny.net": [_LIF] * 3,
}


@pytest.mark.parametrize("name", sorted(NEURON_FACTS))
def test_fit_json_names_every_layers_neurons(name, capsys):
    assert main(["fit", str(FOLDER / name), "--json"]) in (0, 1)
    layers = json.loads(capsys.readouterr().out)["layers"]
    facts = [(row["neuron_type"], row["graded"], row["payload_bits"], row["max_delay"]) for row in layers]
    assert facts == NEURON_FACTS[name]
    assert not any(row["recurrent"] for row in layers)


def test_fit_json_names_recurrent_and_resonate_and_fire_layers(tmp_path, capsys, monkeypatch):
    from neuroprune.ir import ComplexDenseLayer, RecurrentDenseLayer

    rf = Neuron(kind="RF_IZHIKEVICH", v_th_mant=8, sin_decay=-700, cos_decay=3950)
    graded = Neuron(graded_spike=True, message_bits=8)
    net = Network([InputLayer(shape=(4,)),
                   RecurrentDenseLayer(weight=np.ones((3, 4), np.int32), weight_rec=np.eye(3, dtype=np.int32),
                                       neuron=graded),
                   ComplexDenseLayer(weight=np.ones((2, 3), np.int32), weight_imag=np.ones((2, 3), np.int32),
                                     neuron=rf),
                   DenseLayer(weight=np.ones((2, 2), np.int32), delay=np.array([3, 9]), neuron=Neuron())])
    path = netx.write(net, tmp_path / "n.net")
    assert main(["fit", str(path), "--json"]) in (0, 1)
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(row["neuron_type"], row["graded"], row["payload_bits"], row["recurrent"], row["max_delay"])
            for row in layers] == [("-", False, 0, False, 0), ("CUBA", True, 8, True, 0),
                                   ("RF_IZHIKEVICH", False, 0, False, 0), ("CUBA", False, 0, False, 9)]
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table to the terminal width
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "graded 8b" in out and "delay <= 9" in out
