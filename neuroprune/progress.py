"""Progress reporting for long runs (searches, sampling): rich bars on a terminal,
plain log lines otherwise, nothing when disabled."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

__all__ = ["ProgressBoard", "task_progress"]


class ProgressBoard:
    """Named progress bars with a status text, plus log lines above them."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"), console=console, transient=False,
                disable=not console.is_terminal,
            )
            self._plain = not console.is_terminal

    def add(self, name: str, total: int, completed: int = 0) -> Any:
        if self._progress is None:
            return None
        return self._progress.add_task(name, total=total, completed=completed, status="")

    def advance(self, task: Any, status: str = "") -> None:
        if self._progress is None:
            return
        self._progress.update(task, advance=1, status=status)
        if self._plain:
            current = self._progress.tasks[task]
            print(f"{current.description} {int(current.completed)}/{int(current.total or 0)} {status}",
                  file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self._plain:
            print(message, file=sys.stderr, flush=True)
        else:
            self._progress.console.log(message)


@contextlib.contextmanager
def task_progress(enabled: bool = True) -> Iterator[ProgressBoard]:
    board = ProgressBoard(enabled)
    if board._progress is None:
        yield board
        return
    with board._progress:
        yield board
