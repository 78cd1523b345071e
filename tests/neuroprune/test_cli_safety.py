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
