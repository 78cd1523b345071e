"""Hostile and broken input through the CLI: no code runs from a file, no input is
overwritten, no option outside its range is accepted, no NaN reaches JSON output."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Tuple

import pytest
import torch

from neuroprune.cli import main
from neuroprune.errors import CheckpointError
from neuroprune.snn.checkpoint import load_checkpoint, save_checkpoint


def _one_error(err: str) -> str:
    """The single ``error: ...`` line of a refused command (libraries may log other lines)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


class _SideEffect(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` creates ``target`` when it is loaded."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.x = torch.zeros(1)
        self.target = target

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool, str]:
        return (self.x, self.training, self.target)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool, str]) -> None:
        self.x = state[0]
        self.training = state[1]
        self.target = state[2]
        written = torch.from_file(self.target, shared=True, size=6, dtype=torch.uint8)
        self.x = written.fill_(65).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> tuple[Path, Path]:
    """A real TorchScript archive (``torch.jit.save``) that writes ``side_effect`` on load."""
    folder = tmp_path_factory.mktemp("evil")
    side_effect = folder / "pwned.txt"
    path = folder / "evil.pt"
    torch.jit.save(torch.jit.script(_SideEffect(str(side_effect))), str(path))
    assert not side_effect.exists()
    return path, side_effect


def test_the_crafted_archive_runs_code_in_plain_torch_load(evil) -> None:
    """The hole is real in this torch: weights_only=True still runs the archive's code."""
    path, side_effect = evil
    with pytest.warns(UserWarning, match="TorchScript"):
        torch.load(path, weights_only=True)
    assert side_effect.exists()
    side_effect.unlink()


def test_load_checkpoint_refuses_torchscript_without_running_it(evil) -> None:
    path, side_effect = evil
    with pytest.raises(CheckpointError, match="evil.pt: a TorchScript archive .*code"):
        load_checkpoint(path)
    assert not side_effect.exists()


@pytest.mark.parametrize("command", [
    ["energy", "{evil}"],
    ["prune", "{evil}", "--method", "uniform", "--synops-target", "0.5", "--out", "{dir}/p.pt"],
    ["convert", "{evil}", "{dir}/c.net"],
    ["train", "--data", "synthetic", "--arch", "f,d8", "--epochs", "1", "--steps", "4", "--quiet",
     "--out", "{dir}/m.pt", "--resume"],
])
def test_cli_refuses_torchscript_and_runs_no_code(evil, tmp_path, capsys, command) -> None:
    path, side_effect = evil
    (tmp_path / "m.pt.train").write_bytes(path.read_bytes())  # train --resume reads OUT.train
    argv = [part.format(evil=path, dir=tmp_path) for part in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "TorchScript archive" in _one_error(err)
    assert not side_effect.exists()


class _Touch:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_legacy_pickle_random_zip_and_foreign_globals_are_refused(tmp_path) -> None:
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy.pt: .*legacy torch pickle"):
        load_checkpoint(legacy)

    random_zip = tmp_path / "random.pt"
    with zipfile.ZipFile(random_zip, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(CheckpointError, match="random.pt: .*unexpected zip entry 'notes/readme.txt'"):
        load_checkpoint(random_zip)

    # a torch.save layout whose pickle calls something else than tensors and containers
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.ones(2)}, {})
    hostile = tmp_path / "hostile.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(hostile, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = pickle.dumps(_Touch(tmp_path / "touched"), protocol=2)  # GLOBAL posix system
            dst.writestr(info, data)
    with pytest.raises(CheckpointError, match=r"hostile.pt: .*its pickle calls \w+\.system"):
        load_checkpoint(hostile)
    assert not (tmp_path / "touched").exists()

    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(CheckpointError, match="compressed"):
        load_checkpoint(deflated)
    assert load_checkpoint(good)[0]["w"].shape == (2,)  # our own files still load


# --------------------------------------------------------------------------- lost data
TRAIN = ["train", "--data", "synthetic", "--arch", "f,d8", "--steps", "4", "--batch-size", "128", "--quiet"]


def _tiny_model_file(path: Path, seed: int = 0) -> Path:
    from neuroprune.snn import model as snn_model

    model = snn_model.build("f,d8", (1, 8, 8), num_classes=4, seed=seed)
    snn_model.save_model(str(path), model, {"dataset": "synthetic", "data_seed": 0})
    return path


def test_interrupted_training_never_replaces_a_finished_model(tmp_path, monkeypatch, capsys) -> None:
    from neuroprune.snn import train_state
    from neuroprune.snn.model import load_model

    out = _tiny_model_file(tmp_path / "m.pt")
    before = out.read_bytes()
    save_state = train_state.save_train_state

    def killed_after_first_epoch(*args, **kwargs):
        save_state(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_state, "save_train_state", killed_after_first_epoch)
    argv = TRAIN + ["--epochs", "2", "--out", str(out)]
    assert main(argv) == 130
    assert out.read_bytes() == before  # the finished model is untouched; the epoch went to OUT.train
    assert (tmp_path / "m.pt.train").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    monkeypatch.setattr(train_state, "save_train_state", save_state)
    assert main(argv + ["--resume"]) == 0
    _, meta = load_model(str(out))
    assert meta["history"]["optimizer_steps"] == 2 * 3 and "test_accuracy" in meta  # 260 samples / 128 = 3 steps


@pytest.mark.parametrize("command, option", [
    (["energy", "{d}/e.pt", "--html", "{d}/e.pt"], "--html"),
    (["energy", "{d}/e.pt", "--html", "{d}/link.html"], "--html"),  # a symbolic link to the input
    (["energy", "{d}/e.pt", "--html", "{d}/hard.html"], "--html"),  # a hard link to the input
    (TRAIN + ["--out", "{d}/t.pt", "--net", "{d}/t.pt"], "--net"),
    (["prune", "{d}/e.pt", "--synops-target", "0.5", "--out", "{d}/p.pt", "--checkpoint", "{d}/e.pt"],
     "--checkpoint"),
    (["prune", "{d}/e.pt", "--synops-target", "0.5", "--out", "{d}/e.pt"], "--out"),
    (["convert", "{d}/e.pt", "{d}/link.pt"], "OUTPUT"),
])
def test_output_that_is_an_input_is_refused(tmp_path, capsys, command, option) -> None:
    model = _tiny_model_file(tmp_path / "e.pt")
    (tmp_path / "link.html").symlink_to(model)
    (tmp_path / "link.pt").symlink_to(model)
    os.link(model, tmp_path / "hard.html")
    before = model.read_bytes()
    assert main([part.format(d=tmp_path) for part in command]) == 2
    line = _one_error(capsys.readouterr().err)
    assert line.startswith(f"error: {option} ") and ("is the input" in line or "is also" in line)
    assert model.read_bytes() == before


@pytest.mark.parametrize("command, message", [
    (TRAIN + ["--out", "{d}"], r"--out .*: is a folder"),
    (TRAIN + ["--out", "{d}/missing/m.pt"], r"--out .*m.pt: folder .*missing does not exist"),
    (TRAIN + ["--out", "{d}/m.pt", "--net", "/missing/dir/t.net"], r"--net /missing/dir/t.net: folder"),
    (["prune", "{d}/e.pt", "--synops-target", "0.5", "--out", "{d}/missing/p.pt"], r"--out .*folder .*missing"),
    (["energy", "{d}/e.pt", "--html", "{d}/missing/r.html"], r"--html .*folder .*missing"),
])
def test_outputs_are_checked_before_any_work(tmp_path, monkeypatch, capsys, command, message) -> None:
    import re

    from neuroprune import data, pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(data, "load", no_work)
    monkeypatch.setattr(pipeline, "load_trained", no_work)
    monkeypatch.setattr(pipeline, "load_net_run", no_work)
    _tiny_model_file(tmp_path / "e.pt")
    assert main([part.format(d=tmp_path) for part in command]) == 2
    assert re.search(message, _one_error(capsys.readouterr().err))


def test_read_only_folder_is_refused_before_work(tmp_path, monkeypatch, capsys) -> None:
    from neuroprune import outputs

    real_open = os.open

    def read_only(path, flags, *args):  # what a read-only folder or mount answers (root ignores chmod)
        if Path(path).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(outputs.os, "open", read_only)
    assert main(TRAIN + ["--out", str(tmp_path / "m.pt")]) == 2
    assert "cannot write in folder" in _one_error(capsys.readouterr().err)


def test_model_files_are_renamed_together_model_last(tmp_path, monkeypatch, capsys) -> None:
    from neuroprune.pipeline import companion_mismatches, write_model_files
    from neuroprune.snn import model as snn_model

    out = tmp_path / "p.pt"
    files = dict(net_path=out.with_suffix(".net"), summary_path=out.with_suffix(".json"))
    first = snn_model.build("f,d8", (1, 8, 8), num_classes=4, seed=0)
    renamed: list[str] = []
    replace = os.replace

    def record(src, dst):
        renamed.append(Path(dst).name)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", record)
    write_model_files(out, first, {}, summary=_summary(), **files)
    assert [name for name in renamed if not name.startswith(".")] == ["p.net", "p.json", "p.pt"]
    assert companion_mismatches(out) == []

    def killed_after_first_rename(src, dst):
        if Path(dst).name == "p.json":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_first_rename)
    second = snn_model.build("f,d8", (1, 8, 8), num_classes=4, seed=1)
    with pytest.raises(KeyboardInterrupt):
        write_model_files(out, second, {}, summary=_summary(acc_pruned=0.25), **files)
    # the kill left a new .net beside the old .pt and .json: detected, and no temp files remain
    problems = companion_mismatches(out)
    assert len(problems) == 1 and "p.net: not the net written with p.pt" in problems[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.net", "p.pt"]
    # and every command that loads the model says so on stderr, naming the fix
    from neuroprune.pipeline import load_trained

    capsys.readouterr()
    load_trained(str(out), data="synthetic")
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and "p.net: not the net written with p.pt" in warning
    assert "neuroprune convert" in warning


def test_temp_files_of_dead_processes_are_removed_on_the_next_write(tmp_path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".m.pt.tmp-{int(dead.stdout)}-0badc0de"
    live = tmp_path / f".m.pt.tmp-{os.getpid()}-00c0ffee"  # a write in progress in a running process
    other = tmp_path / f".n.pt.tmp-{int(dead.stdout)}-0badc0de"  # another file's temp: not ours to judge
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(1)}, {})
    assert not stale.exists() and live.exists() and other.exists()


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("argv, option", [
    (["fit", "x.net", "--rate", "nan"], "--rate"),
    (["fit", "x.net", "--rate", "2"], "--rate"),
    (["fit", "x.net", "--max-synops", "nan"], "--max-synops"),
    (["fit", "x.net", "--max-synops", "-5"], "--max-synops"),
    (["fit", "x.net", "--max-cores", "-1"], "--max-cores"),
    (["fit", "x.net", "--time-steps", "inf"], "--time-steps"),
    (TRAIN + ["--out", "m.pt", "--lr", "inf"], "--lr"),
    (TRAIN + ["--out", "m.pt", "--epochs", "-2"], "--epochs"),
    (["prune", "m.pt", "--out", "p.pt", "--synops-target", "nan"], "--synops-target"),
    (["prune", "m.pt", "--out", "p.pt", "--sparsity", "1.5"], "--sparsity"),
    (["prune", "m.pt", "--out", "p.pt", "--sparsity", "0.5", "--rho", "-1"], "--rho"),
    (["energy", "m.pt", "--samples", "0"], "--samples"),
    (["convert", "a.onnx", "b.net", "--max-rate", "inf"], "--max-rate"),
    (["verify", "a.net", "--steps", "-3"], "--steps"),
])
def test_non_finite_negative_or_out_of_range_options_exit_2(tmp_path, monkeypatch, capsys, argv, option) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and "Traceback" not in err


@pytest.mark.parametrize("arch, message", [
    ("c0,f", r"layer 0 \('c0'\): output channels 0 outside \[1, 16384\]"),
    ("c100000,f", r"layer 0 \('c100000'\): output channels 100000"),
    ("c16k0,f", r"kernel 0 outside"),
    ("f,d16000,d16000", r"layer 3 \(dense\): 256,000,000 weights exceed the limit"),
])
def test_architecture_sizes_are_refused_with_the_layer(tmp_path, capsys, arch, message) -> None:
    import re

    assert main(["train", "--data", "synthetic", "--arch", arch, "--out", str(tmp_path / "m.pt"), "--quiet"]) == 2
    assert re.search(message, _one_error(capsys.readouterr().err))


@pytest.mark.parametrize("extra, message", [
    (["--method", "spear"], "needs --synops-target"),
    (["--method", "gradr"], "needs --sparsity"),
    (["--synops-target", "0.5", "--criterion", "bogus"], "unknown importance criterion 'bogus'"),
    (["--synops-target", "0.5", "--chip", "loihi9"], "unknown chip 'loihi9'"),
    (["--synops-target", "0.5", "--ray-workers", "2"], "--ray-workers 2 needs --ray"),
    (["--method", "admm", "--sparsity", "0.5", "--ternary", "--weight-bits", "4"], "ternary"),
])
def test_bad_prune_options_are_found_before_loading(tmp_path, monkeypatch, capsys, extra, message) -> None:
    from neuroprune import pipeline

    def no_load(*args, **kwargs):
        raise AssertionError("the model and data were loaded before the options were checked")

    monkeypatch.setattr(pipeline, "load_trained", no_load)
    model = _tiny_model_file(tmp_path / "m.pt")
    assert main(["prune", str(model), "--out", str(tmp_path / "p.pt"), *extra]) == 2
    assert message in _one_error(capsys.readouterr().err)


def _summary(**values) -> dict:
    return {"method": "x", "target": 0.5, "synops_dense": 0.0, "synops_pruned": 0.0, "synops_ratio": 0.0,
            "acc_dense": 1.0, "acc_pruned": 0.5, "fits": True, "cores": 1, **values}


def test_json_outputs_hold_no_nan(tmp_path, dense_net) -> None:
    import dataclasses
    import json

    import numpy as np

    from hw_models import fit
    from neuroprune.prune.base import write_summary

    def strict(text: str):
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in JSON output"))

    report = fit(dense_net, "loihi1")
    report = dataclasses.replace(report, totals=dataclasses.replace(report.totals, energy_per_inference_j=np.nan))
    data = strict(report.to_json())
    assert data["totals"]["energy_per_inference_j"] is None
    assert data["non_finite"] == ["totals.energy_per_inference_j = nan"]
    path = write_summary(tmp_path / "s.json", _summary(synops_ratio=float("nan"), acc_dense=float("inf")))
    summary = strict(path.read_text())
    assert summary["synops_ratio"] is None and summary["acc_pruned"] == 0.5
    assert summary["non_finite"] == ["synops_ratio = nan", "acc_dense = inf"]


def test_resume_on_another_data_set_is_refused(tmp_path, capsys) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", x=rng.random((120, 16)).astype(np.float32),
                 y=np.arange(120) % 3)
    out = tmp_path / "m.pt"
    argv = ["train", "--arch", "d8", "--steps", "4", "--epochs", "2", "--quiet", "--out", str(out)]
    assert main(argv + ["--data", str(tmp_path / "a.npz")]) == 0
    capsys.readouterr()
    assert main(argv + ["--data", str(tmp_path / "b.npz"), "--resume"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "m.pt.train: training state was made on data set" in line and "--data" in line


@pytest.mark.parametrize("bad", [float("nan"), 1e24])
def test_corrupted_weights_are_refused_at_load(tmp_path, capsys, bad) -> None:
    from neuroprune.snn.model import load_model

    good = _tiny_model_file(tmp_path / "good.pt")
    state, meta = load_checkpoint(good)
    key = next(k for k in state if k.endswith("synapse.weight"))
    state[key][0, 0] = bad
    corrupt = save_checkpoint(tmp_path / "corrupt.pt", state, meta)
    with pytest.raises(CheckpointError, match=rf"corrupt.pt: {key} .*corrupt"):
        load_model(str(corrupt))
    assert main(["energy", str(corrupt)]) == 2
    assert "corrupt.pt" in _one_error(capsys.readouterr().err)


def test_corrupted_training_state_is_refused_on_resume(tmp_path, capsys) -> None:
    out = tmp_path / "m.pt"
    argv = TRAIN + ["--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    state_path = tmp_path / "m.pt.train"
    tensors, meta = load_checkpoint(state_path, kind="train-state")
    key = next(k for k in tensors["model"] if k.endswith("synapse.weight"))
    tensors["model"][key][0, 0] = float("nan")
    save_checkpoint(state_path, tensors, meta, kind="train-state")
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 2
    assert f"m.pt.train: {key} holds NaN" in _one_error(capsys.readouterr().err)


def test_mutated_checkpoints_load_or_are_refused_cleanly(tmp_path) -> None:
    """Seeded byte flips, cuts and insertions in a real checkpoint: every file either
    loads or raises CheckpointError (never zipfile's, pickle's or torch's own errors)."""
    import random

    from neuroprune.snn.model import load_model

    good = _tiny_model_file(tmp_path / "good.pt").read_bytes()
    rng = random.Random(0)
    outcomes = {"loaded": 0, "refused": 0}
    path = tmp_path / "mutated.pt"
    for _ in range(200):
        data = bytearray(good)
        for _ in range(rng.choice([1, 2, 4, 16])):
            pos, op = rng.randrange(len(data)), rng.random()
            if op < 0.6:
                data[pos] = rng.randrange(256)
            elif op < 0.8:
                del data[pos:pos + rng.randrange(1, 64)]
            else:
                data[pos:pos] = rng.randbytes(rng.randrange(1, 16))
        path.write_bytes(bytes(data))
        try:
            load_model(str(path))
            outcomes["loaded"] += 1
        except CheckpointError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100 and outcomes["loaded"] + outcomes["refused"] == 200


@pytest.mark.parametrize("change, message", [
    ({"out": 10 ** 9}, r"model description is refused: .*output channels 1000000000 outside"),
    ({"out": "x"}, r"model description is broken \(TypeError"),
    ({"bogus": 1}, r"model description is broken \(TypeError"),
])
def test_broken_model_description_is_refused_before_allocation(tmp_path, change, message) -> None:
    from neuroprune.snn.model import load_model

    state, meta = load_checkpoint(_tiny_model_file(tmp_path / "good.pt"))
    meta["model"]["layers"][-1].update(change)
    broken = save_checkpoint(tmp_path / "broken.pt", state, meta)
    with pytest.raises(CheckpointError, match="broken.pt: the " + message):
        load_model(str(broken))
