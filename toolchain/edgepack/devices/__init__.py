"""Devices that run an artifact: one interface (``base.Runner``) for every kind of device.

:func:`connect` turns a ``--device`` value (or a profile's ``[connection]``) into a runner:

- ``host``: this machine, with this Python and its runtimes (figures labelled "host");
- ``ssh://[user@]host[:port]``: a Linux board over SSH (key, known_hosts and the rest from the profile);
- ``adb`` or ``adb:SERIAL``: an Android device over adb;
- ``qemu-arm64``: an emulated arm64 board on this machine (correctness only; timings labelled emulated);
- ``serial:PORT[:BAUD]``: a microcontroller board running edgepack's harness (``serial_board.py``);
- ``profile``: whatever the profile's ``[connection]`` says.
"""

from __future__ import annotations

import re
import sys

from ..errors import UsageError

DEVICE_FORMS = "host, profile, ssh://[user@]host[:port], adb, adb:SERIAL, serial:PORT[:BAUD] or qemu-arm64"


def is_serial(profile, device: str) -> bool:
    """Whether ``device`` (or the profile's connection, for "profile") is a board on a serial port:
    the only way a microcontroller's latency is measured rather than estimated."""
    return device.startswith("serial:") or (device == "profile" and profile.connection.kind == "serial")


def connect(profile, device: str = "profile"):
    """A runner for ``device`` (see the module docstring). Raises UsageError for a malformed value."""
    from .device import ShellRunner
    from .shell import LocalShell, quote

    c = profile.connection
    if device == "profile":
        device = {"local": "host", "adb": f"adb:{c.serial}" if c.serial else "adb", "qemu-arm64": "qemu-arm64",
                  "ssh": f"ssh://{c.user + '@' if c.user else ''}{c.host}:{c.port or 22}"}.get(c.kind, c.kind)
        if device == "serial":
            if not c.device:
                raise UsageError(f"the {profile.name} profile's [connection] is a serial port but names none; set "
                                 f"device = \"/dev/ttyACM0\" there or pass --device serial:PORT")
            device = f"serial:{c.device}"
    common = {"retries": c.retries, "timeout_s": c.timeout_s}
    if device.startswith("serial:"):
        from .serial_board import SerialBoard, parse_device

        port, baud = parse_device(device)
        return SerialBoard(port, baud, timeout_s=min(c.timeout_s, 30.0))
    if device in ("host", "local"):
        return ShellRunner(LocalShell(), kind="host", python=quote(sys.executable), cpu_affinity=c.cpu_affinity
                           if c.kind == "local" else None, label="host", **common)
    if device == "qemu-arm64":
        from .qemu import qemu_runner

        return qemu_runner(**common)
    m = re.fullmatch(r"ssh://(?:([^@/:]+)@)?([^@/:]+)(?::(\d+))?/?", device)
    if m:
        from .ssh import SSHShell

        user, host, port = m.group(1) or c.user, m.group(2), int(m.group(3) or c.port or 22)
        ssh = c if c.kind == "ssh" else type(c)(kind="ssh")
        shell = SSHShell(host, user=user, port=port, key=ssh.key, known_hosts=ssh.known_hosts,
                         accept_new_host_key=ssh.accept_new_host_key)
        return ShellRunner(shell, kind="ssh", python=ssh.python or "python3", benchmark_model=ssh.benchmark_model,
                           cpu_affinity=ssh.cpu_affinity, label="ssh", **common)
    m = re.fullmatch(r"adb(?::(.+))?", device)
    if m:
        from .adb import ADB_TMP, AdbShell

        a = c if c.kind == "adb" else type(c)(kind="adb")
        return ShellRunner(AdbShell(m.group(1) or a.serial), kind="adb", python=a.python, benchmark_model=a.benchmark_model,
                           cpu_affinity=a.cpu_affinity, tmp_root=ADB_TMP, label="adb", **common)
    raise UsageError(f"unknown device {device!r}; use {DEVICE_FORMS}")

