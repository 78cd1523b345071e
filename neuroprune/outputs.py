"""Plan a command's output files before any work starts.

Every command that writes files calls :func:`plan_outputs` first, so a missing or
read-only folder, an output that is a folder, two outputs with one name, or an output
that is also an input (which would destroy it) is a one-line error at once, not after
minutes of training or pruning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from neuroprune.atomic import remove_stale_temps, temp_name_of
from neuroprune.errors import OutputError

__all__ = ["plan_outputs", "same_file"]

PathLike = str | os.PathLike[str]


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (symbolic links resolved; hard links caught
    with ``os.path.samefile`` when both exist)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(option: str, path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name such as {path / 'out'}{path.suffix}")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"{option} {path}: folder {folder} {what}; create it first (mkdir -p {folder})")
    remove_stale_temps(path)
    probe = temp_name_of(path)
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise OutputError(
            f"{option} {path}: cannot write in folder {folder} ({exc.strerror}); choose a writable folder"
        ) from None
    os.unlink(probe)


def plan_outputs(outputs: Mapping[str, PathLike | None],
                 inputs: Mapping[str, PathLike | None] | None = None) -> dict[str, Path]:
    """Check the files a command will write, before it does any work.

    ``outputs`` and ``inputs`` map an option name (``"--out"``, ``"model"``) to a path
    (``None``: not given; an input that is no existing file, such as ``--data digits``,
    is not compared). Raises :class:`OutputError` naming the option when an output's
    folder is missing or not writable, an output is a folder, two outputs are one file,
    or an output is also an input. Returns the outputs given, as paths.
    """
    planned = {option: Path(path) for option, path in outputs.items() if path is not None}
    given_inputs = {option: Path(path) for option, path in (inputs or {}).items() if path is not None}
    seen: dict[str, Path] = {}
    for option, path in planned.items():
        for in_option, in_path in given_inputs.items():
            if in_path.exists() and same_file(path, in_path):
                raise OutputError(
                    f"{option} {path}: is the input {in_option} {in_path}; writing it would destroy the input; "
                    "choose another output name"
                )
        for other_option, other in seen.items():
            if same_file(path, other):
                raise OutputError(f"{option} {path}: is also {other_option} {other}; give the outputs different names")
        _check_writable(option, path)
        seen[option] = path
    return planned
