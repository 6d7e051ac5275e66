"""What the device doubles share: a raw pseudo-terminal whose far end (``port``) edgepack opens as
a serial device, threads that play the device on the near end, and a read that gives up when the
double is stopped."""

from __future__ import annotations

import os
import select
import threading
import tty


class PtyDevice:
    """Subclasses name their thread bodies in ``__init__`` through ``_start_threads`` targets."""

    def __init__(self, *targets):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self, n: int) -> bytes | None:
        """``n`` bytes from edgepack, or None once the double is stopped or the port is gone."""
        buf = b""
        while len(buf) < n:
            if self._stop.is_set():
                return None
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    buf += os.read(self.master, n - len(buf))
                except OSError:
                    return None
        return buf
