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
import threading
import time
from typing import Iterator

from rich.console import Console
from rich.markup import escape
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
        self._said = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._reporter is None:
            return
        if self._reporter._progress is not None:
            self._reporter._progress.advance(self._id, n)
        elif self._total and ((self._done * 4 // self._total) != ((self._done - n) * 4 // self._total)
                              or time.monotonic() - self._said >= self._reporter.heartbeat_seconds):
            # not a terminal (CI logs): a plain line at each quarter (and when a slow step has kept
            # the log silent for a heartbeat) instead of a live bar
            self._reporter.info(f"{self._label}: {self._done}/{self._total}")
            self._said = time.monotonic()

    def close(self) -> None:
        if self._reporter is not None and self._id is not None:
            self._reporter._end_task(self._id)


class CeilingReached(Exception):
    """A stage ran past its time ceiling (``pipeline.build`` raises it as errors.StageCeilingError)."""


class _Watch:
    """The thread beside a running stage: the heartbeat line, and the stage's time ceiling."""

    def __init__(self, reporter: "Reporter", stage: str, ceiling: float, how: str):
        self.reporter, self.stage, self.ceiling, self.how = reporter, stage, ceiling, how
        self.fired = False
        self.start = time.monotonic()
        self._stop = threading.Event()
        main = threading.current_thread() is threading.main_thread()
        self._armed = bool(ceiling) and main  # only the main thread can be interrupted
        self._ignored = None
        if self._armed:
            import signal

            # a process started with SIGINT ignored (a background job of a shell, or a parent that
            # ignores it) would never see the ceiling's interrupt: take it for the stage's length
            if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                self._ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
        if self._armed or not reporter.quiet:
            self._thread = threading.Thread(target=self._run, name=f"watch {stage}", daemon=True)
            self._thread.start()
        else:
            self._thread = None

    def _run(self) -> None:
        import signal

        r = self.reporter
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if not r.quiet and now - r._last_line >= r.heartbeat_seconds:
                r.info(f"still working on '{self.stage}': {now - self.start:.0f} s so far")
            if self._armed and now - self.start > self.ceiling:
                self.fired = True  # a real SIGINT to the main thread: it also ends a blocking wait there
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return

    def message(self) -> str:
        return (f"stage '{self.stage}' ran past its ceiling of {self.ceiling:.0f} s ({self.how}); raise "
                f"[limits] ceiling_scale (e.g. --set limits.ceiling_scale=3, or 0 for no ceiling) if the work is "
                f"expected to take this long, or give the stage less work")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._ignored is not None:
            import signal

            signal.signal(signal.SIGINT, self._ignored)
            self._ignored = None


def peak_rss_mb() -> float | None:
    """This process's peak resident set size over its life, MB (Linux VmHWM, else ``getrusage``);
    None where neither is available. Never reset here: tools that read the peak from outside
    (``/usr/bin/time``, a parent's ``RUSAGE_CHILDREN``) keep seeing the true one."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round((kb / 1024 if sys.platform != "darwin" else kb / 2**20), 1)
    except (ImportError, OSError):
        return None


def rss_mb() -> float | None:
    """This process's resident set size now, MB (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


class _PeakWatch:
    """A stage's peak memory: the process's resident set sampled every ``period`` seconds beside
    the stage, or exactly its lifetime peak when that rose during the stage."""

    def __init__(self, period: float = 0.2):
        self.start_peak = peak_rss_mb()
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = None
        if self.peak is not None:
            self._thread = threading.Thread(target=self._run, args=(period,), name="peak memory", daemon=True)
            self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            now = rss_mb()
            if now is not None and now > (self.peak or 0):
                self.peak = now

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        end_peak = peak_rss_mb()
        if end_peak is not None and self.start_peak is not None and end_peak > self.start_peak:
            return end_peak  # the process's highest point so far was reached in this stage: exact
        sampled = max((v for v in (self.peak, rss_mb()) if v is not None), default=None)
        return sampled if sampled is not None else end_peak


class Reporter:
    """Shows progress of a run of ``total`` stages and records how long each took and its peak memory."""

    def __init__(self, *, total: int, quiet: bool = False, console: Console | None = None):
        self.total = total
        self.quiet = quiet
        self.console = console or (None if quiet else _stderr_console())
        self.stage_seconds: dict[str, float] = {}
        self.stage_peak_mb: dict[str, float] = {}  # peak resident memory of this process during each stage
        self.heartbeat_seconds = 30.0  # a stage silent this long says it is still working
        self.ceilings: dict[str, tuple[float, str]] = {}  # stage -> (seconds, how the ceiling was set)
        self._index = 0
        self._progress: Progress | None = None
        self._last_line = time.monotonic()

    def info(self, message: str) -> None:
        """A line under the current stage."""
        self._last_line = time.monotonic()
        if not self.quiet:
            self.console.print(f"      {message}", markup=False)

    def warn(self, message: str) -> None:
        self._last_line = time.monotonic()
        if not self.quiet:
            self.console.print(f"      [yellow]warning:[/yellow] {escape(message)}")  # "[data]" is text

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run one stage: number it, record its wall time (also on failure), say how long it took.

        While it runs, a stage that prints nothing for ``heartbeat_seconds`` gets a line saying it
        is still working, and one that runs past its entry in ``ceilings`` is stopped (in the main
        thread) with CeilingReached naming the stage, its ceiling and what to set."""
        self._index += 1
        memory = _PeakWatch()
        start = time.perf_counter()
        self._last_line = time.monotonic()
        if not self.quiet:
            self.console.print(f"[bold]\\[{self._index}/{self.total}] {escape(name)}[/bold]")
        watch = _Watch(self, name, *self.ceilings.get(name, (0.0, "")))
        ok = False
        try:
            yield
            ok = True
        except KeyboardInterrupt:
            if watch.fired:
                raise CeilingReached(watch.message()) from None
            raise
        finally:
            watch.stop()
            seconds = time.perf_counter() - start
            self.stage_seconds[name] = round(seconds, 3)
            peak = memory.stop()
            if peak is not None:
                self.stage_peak_mb[name] = peak
            self._end_task(None)
            if not self.quiet:
                mark = "[green]done[/green]" if ok else "[red]failed[/red]"
                mem = f", peak memory {peak:,.0f} MB" if peak is not None and seconds >= 1 else ""
                self.console.print(f"      {mark} in {seconds:.1f} s{mem}")

    def slowest(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` stages that took longest, slowest first."""
        return sorted(self.stage_seconds.items(), key=lambda kv: -kv[1])[:n]

    def summary(self, *, long_s: float = 60.0) -> None:
        """After a run longer than ``long_s``: one line naming where the time went."""
        total = sum(self.stage_seconds.values())
        if self.quiet or total < long_s:
            return
        parts = [f"{name} {s:.0f} s ({100 * s / total:.0f}%)" for name, s in self.slowest()]
        peak = max(self.stage_peak_mb.values(), default=None)
        self.console.print(f"      {total:.0f} s in all; slowest: " + "; ".join(parts)
                           + (f"; peak memory {peak:,.0f} MB" if peak is not None else ""), markup=False)

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
