"""How commands and files reach a device: a POSIX shell on the other end of some transport.

Every transport (this machine, SSH, adb) takes a shell command *string*, evaluated by the
device's ``sh``; anything we put into one is quoted with :func:`shlex.quote`, so a file name with
spaces, quotes or ``$(...)`` in it stays a file name.
"""

from __future__ import annotations

import abc
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceTimeout

quote = shlex.quote


@dataclass(frozen=True)
class Completed:
    rc: int
    out: str
    err: str


class Shell(abc.ABC):
    """A shell on a device. Methods raise :class:`~edgepack.errors.DeviceError` subclasses on transport faults."""

    #: Short name of the transport ("local", "ssh", "adb").
    kind: str

    @abc.abstractmethod
    def run(self, command: str, *, timeout: float) -> Completed:
        """Run ``command`` in the device's shell; returns its exit status and output (any status)."""

    @abc.abstractmethod
    def put(self, data: bytes, path: str, *, timeout: float) -> None:
        """Write ``data`` to ``path`` on the device."""

    @abc.abstractmethod
    def get(self, path: str, *, timeout: float) -> bytes:
        """The bytes of ``path`` on the device."""

    @abc.abstractmethod
    def spawn(self, command: str) -> subprocess.Popen:
        """Start ``command`` in the background (e.g. a power sampler); its stdout is a pipe of text lines."""

    @abc.abstractmethod
    def address(self) -> str:
        """Where the device is, e.g. ``pi@192.168.1.20:22`` or ``adb:R58M12345``."""


class LocalShell(Shell):
    """This machine's ``/bin/sh``. ``env`` adds environment variables to every command."""

    kind = "local"

    def __init__(self, *, env: dict[str, str] | None = None):
        self.env = {**os.environ, **(env or {})}

    def run(self, command: str, *, timeout: float) -> Completed:
        try:
            p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as e:
            raise DeviceTimeout(f"a command on this machine ran longer than {timeout:.0f} s; "
                                f"raise [measure] timeout_s or lower runs") from e
        return Completed(p.returncode, p.stdout, p.stderr)

    def put(self, data: bytes, path: str, *, timeout: float) -> None:
        Path(path).write_bytes(data)

    def get(self, path: str, *, timeout: float) -> bytes:
        return Path(path).read_bytes()

    def spawn(self, command: str) -> subprocess.Popen:
        return subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=self.env)

    def address(self) -> str:
        return "localhost"
