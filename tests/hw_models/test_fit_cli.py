"""``neuroprune fit``: exit codes 0 / 1 / 2, the JSON object, no torch import, and
netx files written by lava-dl itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters import netx
from neuroprune.cli import main
from neuroprune.ir import ConvLayer, InputLayer, Network

from .conftest import NEURON, chip_variant, dense_net, full_weights, small_conv_net


@pytest.fixture()
def small_file(tmp_path) -> Path:
    return netx.write(small_conv_net(), tmp_path / "hw_small.net")  # 5 cores: one per layer with neurons


@pytest.fixture()
def big_file(tmp_path) -> Path:
    net = Network([InputLayer(shape=(1, 64, 64)),
                   ConvLayer(weight=np.ones((64, 1, 3, 3), dtype=np.int32), neuron=NEURON)], name="big")
    return netx.write(net, tmp_path / "hw_big.net")


def test_fits_exit_0_with_tables(small_file, capsys):
    assert main(["fit", str(small_file), "--chip", "loihi1"]) == 0
    out = capsys.readouterr().out
    assert "fits loihi1" in out and "cores 5 / 128 available" in out
    assert "conv" in out and "dense" in out and "SynOps/step" in out


def test_does_not_fit_exit_1_with_fix(small_file, capsys):
    assert main(["fit", str(small_file), "--chip", "loihi1", "--max-cores", "3"]) == 1
    out = capsys.readouterr().out
    assert "does not fit loihi1" in out
    assert "cores (5) exceeded max (3); fix: raise --max-cores to 5" in out


def test_json_object(big_file, capsys):
    assert main(["fit", str(big_file), "--chip", "loihi1", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is False and data["chip"] == "loihi1"
    assert (data["totals"]["cores"], data["totals"]["chips"]) == (241, 2)
    assert data["violations"][0]["limit"] == "max_chips"
    assert data["violations"][0]["actual"] == 2
    assert "raise --max-chips to 2" in data["violations"][0]["fix"]
    assert main(["fit", str(big_file), "--chip", "loihi1", "--max-chips", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True


def test_multi_chip_is_said_in_the_table(big_file, capsys):
    assert main(["fit", str(big_file), "--chip", "loihi1", "--max-chips", "2"]) == 0
    assert "chips 2 / 2 (needs more than one chip)" in capsys.readouterr().out


def test_rate_and_synops_budget(small_file, capsys):
    assert main(["fit", str(small_file), "--chip", "loihi1", "--rate", "0.05", "--max-synops", "1", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["activity_source"] == "assumed 0.05"
    assert data["violations"][0]["limit"] == "max_synops_per_step"


@pytest.mark.parametrize("argv, message", [
    (["--chip", "loihi9"], "unknown chip 'loihi9'"),
    (["--max-cores", "0"], "argument --max-cores: 0 is outside [1, inf]"),
])
def test_bad_options_exit_2(small_file, capsys, argv, message):
    assert main(["fit", str(small_file), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_chip_file_exit_2_names_the_key(small_file, tmp_path, capsys):
    path = chip_variant(tmp_path, max_neurons=-5)
    assert main(["fit", str(small_file), "--chip-file", str(path)]) == 2
    assert "key 'core.max_neurons' = -5 must be a positive integer" in capsys.readouterr().err


def test_bad_network_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "hw_not_a_net.net"
    bad.write_text("hello")
    assert main(["fit", str(bad)]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "hw_missing.net")]) == 2


def test_own_chip_file(small_file, tmp_path, capsys):
    path = chip_variant(tmp_path, max_neurons=64)
    assert main(["fit", str(small_file), "--chip-file", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert all(layer["neurons_per_core"] <= 64 for layer in data["layers"])


def test_process_exit_codes_and_no_torch_import(small_file, tmp_path):
    """The real console process: exit codes, and neither torch nor Lava is imported."""
    code = (
        "import sys; from neuroprune.cli import main; rc = main(sys.argv[1:]); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lava')); "
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
    )
    ok = subprocess.run([sys.executable, "-c", code, "fit", str(small_file), "--chip", "loihi1"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "HEAVY []" in ok.stderr
    over = subprocess.run([sys.executable, "-c", code, "fit", str(small_file), "--max-cores", "1", "--json"],
                          capture_output=True, text=True)
    assert over.returncode == 1 and json.loads(over.stdout)["fits"] is False
    assert "HEAVY []" in over.stderr
    bad = subprocess.run([sys.executable, "-m", "neuroprune.cli", "fit", str(small_file), "--chip", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "error: unknown chip 'nope'" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "neuroprune.cli", "fit"], capture_output=True, text=True)
    assert usage.returncode == 2


@pytest.mark.slow  # imports torch and lava-dl to write the files
def test_lava_dl_dense_file(lava_dl_files, capsys):
    assert main(["fit", str(lava_dl_files["dense"]), "--chip", "loihi1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = data["layers"]
    assert [layer["type"] for layer in layers] == ["input", "dense", "dense"]
    assert layers[1]["neurons"] == 512 and layers[1]["in_axons"] >= 784
    assert layers[1]["synapses"] == int(np.count_nonzero(netx.read(lava_dl_files["dense"]).layers[1].weight))
    assert 1 <= layers[1]["weight_bits"] <= 8 and layers[1]["cores"] >= 1
    assert data["totals"]["cores"] == sum(layer["cores"] for layer in layers)
    assert data["totals"]["synops_per_step"] > 0 and data["totals"]["energy_per_inference_j"] > 0


@pytest.mark.slow
def test_lava_dl_conv_file(lava_dl_files, capsys):
    assert main(["fit", str(lava_dl_files["conv"]), "--chip", "loihi2"]) == 0
    out = capsys.readouterr().out
    assert "fits loihi2" in out
    for kind in ("input", "conv", "flatten", "dense"):
        assert kind in out
    assert main(["fit", str(lava_dl_files["conv"]), "--chip", "loihi2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    conv1 = data["layers"][1]
    assert (conv1["type"], conv1["neurons"]) == ("conv", 8 * 14 * 14)
    assert conv1["in_axons"] == 28 * 28  # stride 2, padding 1, 3x3: every input pixel is used
    assert data["layers"][0]["cores"] == 1  # the input layer has neurons on lava-dl's Input block


def test_dense_helper_file_fits(tmp_path, capsys):
    path = netx.write(dense_net([full_weights(300, 1000)]), tmp_path / "hw_dense.net")
    assert main(["fit", str(path), "--chip", "loihi1", "--max-cores", "2"]) == 1
    out = capsys.readouterr().out
    assert "prune layer 1 to <= 236 output neurons (now 300)" in out


def test_fit_and_energy_share_one_default_chip_and_time_steps(capsys):
    from hw_models.report import DEFAULT_CHIP, DEFAULT_TIME_STEPS
    from neuroprune.cli import build_parser

    parser = build_parser()
    fit_args = parser.parse_args(["fit", "x.net"])
    energy_args = parser.parse_args(["energy", "x.net"])
    assert fit_args.chip == energy_args.chip == DEFAULT_CHIP
    assert fit_args.time_steps == DEFAULT_TIME_STEPS
    for command in ("fit", "energy"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"default: {DEFAULT_CHIP}" in text or f"default {DEFAULT_CHIP}" in text
        assert f"{DEFAULT_TIME_STEPS}" in text
