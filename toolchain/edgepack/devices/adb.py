"""An Android device over adb, with the adb client (Debian's ``adb``, or the SDK's platform-tools).

Files go to a fresh folder under /data/local/tmp (``adb push`` / ``adb pull``); commands run with
``adb shell`` (the shell protocol v2 returns the command's exit status). The adb server the
client talks to is chosen the usual way (``ANDROID_ADB_SERVER_PORT``, default 5037), the device by
serial (``[connection] serial``, ``--device adb:SERIAL`` or ``ANDROID_SERIAL``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import DeviceAuthError, DeviceDisconnected, DeviceError, DeviceTimeout, DeviceUnreachable
from .shell import Completed, Shell

ADB_TMP = "/data/local/tmp"
_MARK = "EDGEPACK-STATUS="


class AdbShell(Shell):
    kind = "adb"

    def __init__(self, serial: str | None = None, *, adb: str = "adb"):
        self.adb = shutil.which(adb)
        if self.adb is None:
            raise DeviceError(f"the adb client ('{adb}') is not installed; install Debian's 'adb' package or the SDK's platform-tools")
        self.serial = serial or os.environ.get("ANDROID_SERIAL")
        self._argv = [self.adb, *(["-s", self.serial] if self.serial else [])]

    def address(self) -> str:
        return f"adb:{self.serial or 'default device'}"

    def _fault(self, err: str, during: str) -> DeviceError | None:
        """The DeviceError adb's own error message stands for (None when the message is the command's)."""
        lines = [s.strip() for s in err.splitlines() if s.strip().startswith(("error:", "adb: error:"))]
        if not lines:
            return None
        msg = lines[0]
        if "unauthorized" in msg:
            return DeviceAuthError(f"{self.address()}: the device has not authorised this computer; unlock it and "
                                   f"accept the 'Allow USB debugging' prompt")
        if "not found" in msg or "no devices" in msg or "offline" in msg or "cannot connect to daemon" in msg:
            return DeviceUnreachable(f"{self.address()}: {msg.removeprefix('adb: ').removeprefix('error: ')}; "
                                     f"check the cable and 'adb devices'")
        if "more than one device" in msg:
            return DeviceError(f"{msg.removeprefix('error: ')}; give the serial: [connection] serial or --device adb:SERIAL")
        if "closed" in msg or "protocol fault" in msg or "connection reset" in msg.lower():
            return DeviceDisconnected(f"{self.address()}: adb failed during {during}: {msg}")
        return None  # an "error:" line of the command's own

    def _call(self, args: list[str], *, timeout: float, during: str, text: bool = True) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run([*self._argv, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceTimeout(f"{self.address()}: {during} took longer than {timeout:.0f} s") from e
        err = p.stderr.decode(errors="replace")
        fault = self._fault(err, during)
        if fault is not None:
            raise fault
        return p

    def _still_there(self) -> bool:
        try:
            p = subprocess.run([*self._argv, "get-state"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0 and p.stdout.strip() == "device"

    def run(self, command: str, *, timeout: float) -> Completed:
        # The device prints the command's status last: when a dropped connection cuts the session
        # short, adb may still exit 0, but the marker is missing.
        during = f"'{command[:60]}'"
        p = self._call(["shell", f"({command}); echo; echo {_MARK}$?"], timeout=timeout, during=during)
        out = p.stdout.decode(errors="replace")
        head, sep, tail = out.rpartition(_MARK)
        if not sep or not tail.strip().isdigit():
            state = "is gone" if not self._still_there() else "closed the session"
            raise DeviceDisconnected(f"{self.address()}: the device {state} during {during}; its output is not used")
        return Completed(int(tail.strip()), head[:-1] if head.endswith("\n") else head, p.stderr.decode(errors="replace"))

    def put(self, data: bytes, path: str, *, timeout: float) -> None:
        with tempfile.TemporaryDirectory(prefix="edgepack-adb-") as d:
            local = Path(d) / "payload"
            local.write_bytes(data)
            p = self._call(["push", str(local), path], timeout=timeout, during=f"the push to {path}")
            if p.returncode != 0:
                raise DeviceError(f"{self.address()}: adb push to {path} failed: {p.stderr.decode(errors='replace').strip()[:200]}")

    def get(self, path: str, *, timeout: float) -> bytes:
        with tempfile.TemporaryDirectory(prefix="edgepack-adb-") as d:
            local = Path(d) / "payload"
            p = self._call(["pull", path, str(local)], timeout=timeout, during=f"the pull of {path}")
            if p.returncode != 0 or not local.exists():
                raise DeviceError(f"{self.address()}: adb pull of {path} failed: {p.stderr.decode(errors='replace').strip()[:200]}")
            return local.read_bytes()

    def spawn(self, command: str) -> subprocess.Popen:
        return subprocess.Popen([*self._argv, "shell", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
