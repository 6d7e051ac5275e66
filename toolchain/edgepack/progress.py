"""Progress and stage timing for long work, shown with rich on stderr.

:class:`Reporter` numbers the stages, shows a progress bar for long loops inside a stage, and
records each stage's wall time for the manifest. ``quiet=True`` records the times and prints
nothing. The console writes to a duplicate of the process's stderr, so it keeps working while
native libraries' own output is captured (see ``_stdio``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def _stderr_console() -> Console:
    try:
        stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, closefd=True)
    except (AttributeError, OSError, io.UnsupportedOperation):  # stderr replaced (e.g. under pytest)
        stream = sys.stderr
    return Console(file=stream, highlight=False, soft_wrap=True)


class _Task:
    def __init__(self, reporter: "Reporter | None", task_id: int | None, label: str = "", total: int = 0):
        self._reporter, self._id = reporter, task_id
        self._label, self._total, self._done = label, total, 0

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._reporter is None:
            return
        if self._reporter._progress is not None:
            self._reporter._progress.advance(self._id, n)
        elif self._total and (self._done * 4 // self._total) != ((self._done - n) * 4 // self._total):
            # not a terminal (CI logs): a plain line at each quarter instead of a live bar
            self._reporter.info(f"{self._label}: {self._done}/{self._total}")

    def close(self) -> None:
        if self._reporter is not None and self._id is not None:
            self._reporter._end_task(self._id)


class Reporter:
    """Shows progress of a run of ``total`` stages and records how long each took."""

    def __init__(self, *, total: int, quiet: bool = False, console: Console | None = None):
        self.total = total
        self.quiet = quiet
        self.console = console or (None if quiet else _stderr_console())
        self.stage_seconds: dict[str, float] = {}
        self._index = 0
        self._progress: Progress | None = None

    def info(self, message: str) -> None:
        """A line under the current stage."""
        if not self.quiet:
            self.console.print(f"      {message}", markup=False)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"      [yellow]warning:[/yellow] {message}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run one stage: number it, record its wall time (also on failure), say how long it took."""
        self._index += 1
        start = time.perf_counter()
        if not self.quiet:
            self.console.print(f"[bold][{self._index}/{self.total}] {name}[/bold]")
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.perf_counter() - start
            self.stage_seconds[name] = round(seconds, 3)
            self._end_task(None)
            if not self.quiet:
                mark = "[green]done[/green]" if ok else "[red]failed[/red]"
                self.console.print(f"      {mark} in {seconds:.1f} s")

    def task(self, label: str, *, total: int) -> _Task:
        """A progress bar inside the current stage (epochs, timed runs); close it when done."""
        if self.quiet:
            return _Task(None, None)
        if not self.console.is_terminal:
            return _Task(self, None, label, total)
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("      {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._progress.start()
        return _Task(self, self._progress.add_task(label, total=total))

    def _end_task(self, task_id: int | None) -> None:
        if self._progress is None:
            return
        if task_id is not None:
            self._progress.remove_task(task_id)
        if task_id is None or not self._progress.tasks:
            self._progress.stop()
            self._progress = None
