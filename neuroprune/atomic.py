"""Atomic file output: write to a temporary file in the target folder, then rename.

An interrupted write (crash, Ctrl-C, error half-way) leaves the old file or no file,
never a half-written one. Temporary files are named ``.NAME.tmp-PID-XXXX`` beside
``NAME``; one left by a killed process (its PID no longer runs) is removed the next
time ``NAME`` is written. :func:`atomic_paths` writes several files that belong
together and renames them one after the other, in the order given, only once all of
them are complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Iterator, Sequence

from neuroprune.errors import FormatError

__all__ = ["atomic_path", "atomic_paths", "temp_name_of", "remove_stale_temps"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


def temp_name_of(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.tmp-PID-XXXX``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files of ``path`` left by processes that no longer run; return them."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or match["name"] != path.name or _running(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(entry)
    return removed


def _folder_of(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FormatError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    return folder


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path per entry of ``paths``; when the block ends without an
    error, each replaces its target, in the order given (put the file readers load
    first, e.g. a model that names its companions, last). On error none is renamed and
    the temporary files are removed."""
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            _folder_of(target)
            remove_stale_temps(target)
            temp = temp_name_of(target)
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            temps.append(temp)
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    except BaseException:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    with atomic_paths([path]) as (temp,):
        yield temp
