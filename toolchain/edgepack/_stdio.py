"""Capture what native libraries (TensorFlow, LiteRT) write straight to file descriptor 2.

Their C++ logging bypasses Python's ``sys.stderr``; left alone it floods the progress display.
What they wrote is kept so that an error can quote it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    text: str = ""

    def tail(self, lines: int = 3) -> str:
        return " | ".join(l for l in self.text.strip().splitlines()[-lines:])


def _flush_c_stdio() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def native_stderr() -> Iterator[Captured]:
    """Redirect fd 2 (and fd 1) to a temporary file for the duration; yields the captured text holder."""
    cap = Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            yield cap
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            _flush_c_stdio()  # C code printing to a redirected stdout is fully buffered
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            cap.text = tmp.read().decode(errors="replace")
