"""An emulated adb server with one emulated Android device, for tests on a machine with no phone.

It listens on a local TCP port and speaks the adb server's "smart socket" protocol to the real adb
client (Debian's ``adb``): ``host:version``, ``host:devices``, ``host[-serial]:...:features``,
``host:tport:...`` / ``host:transport:...`` to pick the device, then the device services
``shell,v2,...:`` (the shell protocol v2: stdout, stderr and exit status in framed packets) and
``sync:`` (STAT/SEND/DATA/DONE/RECV/QUIT) for push and pull.

The "device" runs what it is given with this machine's ``/bin/sh``. Absolute paths under
``/data/``, ``/sys/`` and ``/system/`` are mapped into ``root`` (so /data/local/tmp, a fake
/sys/class/power_supply and /sys/class/thermal live in a test folder); ``getprop`` answers from
``props``. ``drop_when`` makes the device vanish (connection closed, then offline) as soon as a
shell command containing that text starts: a cable pulled mid-run.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import threading
from pathlib import Path

MAPPED = ("/data/", "/sys/", "/system/")
_DEVICE_PATH = re.compile(r"(?<![\w./-])(?:" + "|".join(re.escape(m) for m in MAPPED) + ")")
FEATURES = "shell_v2,cmd"


class EmulatedAdbServer:
    def __init__(self, root: Path, *, serial: str = "EMU0001", props: dict[str, str] | None = None,
                 adb_version: int = 41):
        self.root, self.serial, self.version = Path(root), serial, adb_version
        self.props = {"ro.product.model": "edgepack emulated phone", "ro.build.version.release": "14",
                      "ro.serialno": serial, **(props or {})}
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        bindir = self.root / "system/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        getprop = bindir / "getprop"
        lines = "\n".join(f'  {k}) echo "{v}";;' for k, v in self.props.items())
        getprop.write_text(f'#!/bin/sh\ncase "$1" in\n{lines}\n  *) echo "";;\nesac\n')
        getprop.chmod(0o755)
        self.online = True
        self.drop_when: str | None = None
        self.requests: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._sock.close()

    def env(self) -> dict[str, str]:
        """Environment for the adb client so that it talks to this server."""
        return {"ANDROID_ADB_SERVER_PORT": str(self.port), "ANDROID_SERIAL": self.serial}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def map(self, text: str) -> str:
        """A device path (or a command naming some) -> the host path inside ``root``."""
        return _DEVICE_PATH.sub(lambda m: str(self.root) + m.group(0), text)

    def unmap(self, data: bytes) -> bytes:
        """Host paths inside ``root`` in a command's output -> the device paths the client expects."""
        return data.replace(str(self.root).encode(), b"")

    @staticmethod
    def _recv(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _request(self, conn) -> str:
        n = int(self._recv(conn, 4), 16)
        return self._recv(conn, n).decode()

    @staticmethod
    def _okay(conn, payload: str | None = None) -> None:
        conn.sendall(b"OKAY" + (b"" if payload is None else f"{len(payload):04x}{payload}".encode()))

    @staticmethod
    def _fail(conn, message: str) -> None:
        conn.sendall(b"FAIL" + f"{len(message):04x}{message}".encode())

    # -- the server -------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                req = self._request(conn)
                self.requests.append(req)
                if not self._host(conn, req):
                    return
        except (ConnectionError, OSError):
            return
        finally:  # shutdown first: a thread still blocked in recv() would keep a plain close() from reaching the client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _device_ok(self, conn, serial: str | None) -> bool:
        if serial not in (None, self.serial):
            self._fail(conn, f"device '{serial}' not found")
            return False
        if not self.online:
            self._fail(conn, "device offline" if serial else "no devices/emulators found")
            return False
        return True

    def _host(self, conn, req: str) -> bool:
        """Answer one host request; True to keep reading requests on this connection."""
        if req == "host:version":
            self._okay(conn, f"{self.version:04x}")
            return False
        if req in ("host:devices", "host:devices-l"):
            state = "device" if self.online else "offline"
            extra = f" product:emu model:{self.props['ro.product.model'].replace(' ', '_')} device:emu transport_id:1" \
                if req.endswith("-l") else ""
            self._okay(conn, f"{self.serial}\t{state}{extra}\n")
            return False
        if req.endswith(":features") or req.endswith(":host-features"):
            serial = req.split(":")[1] if req.startswith("host-serial:") else None
            if self._device_ok(conn, serial):
                self._okay(conn, FEATURES)
            return False
        if req.endswith(":get-state"):
            serial = req.split(":")[1] if req.startswith("host-serial:") else None
            if self._device_ok(conn, serial):
                self._okay(conn, "device")
            return False
        if req.startswith("host:tport:") or req.startswith("host:transport"):
            serial = req.rsplit(":", 1)[1] if ":serial:" in req or req.startswith("host:transport:") else None
            if not self._device_ok(conn, serial):
                return False
            conn.sendall(b"OKAY" + (struct.pack("<Q", 1) if req.startswith("host:tport:") else b""))
            service = self._request(conn)
            self.requests.append(service)
            self._service(conn, service)
            return False
        if req == "host:kill":
            self._okay(conn)
            return False
        self._fail(conn, f"unsupported request '{req}' (edgepack's emulated adb server)")
        return False

    def _service(self, conn, service: str) -> None:
        if service.startswith("shell,v2,") or service.startswith("shell:"):
            command = service.split(":", 1)[1]
            self._okay(conn)
            self._shell_v2(conn, command) if service.startswith("shell,v2,") else self._shell_raw(conn, command)
        elif service == "sync:":
            self._okay(conn)
            self._sync(conn)
        else:
            self._fail(conn, f"unsupported service '{service}'")

    # -- shell ------------------------------------------------------------------------------
    def _spawn(self, command: str) -> subprocess.Popen:
        env = {**os.environ, "PATH": f"{self.root / 'system/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        return subprocess.Popen(["sh", "-c", self.map(command)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=self.root / "data/local/tmp")

    def _shell_raw(self, conn, command: str) -> None:
        p = self._spawn(command)
        out, err = p.communicate()
        conn.sendall(self.unmap(out + err))

    def _shell_v2(self, conn, command: str) -> None:
        def packet(kind: int, data: bytes) -> bytes:
            return struct.pack("<BI", kind, len(data)) + data

        def drain_stdin():  # the client sends stdin packets (at least "close stdin"); this device ignores them
            try:
                while True:
                    _, n = struct.unpack("<BI", self._recv(conn, 5))
                    self._recv(conn, n)
            except (ConnectionError, OSError):
                pass

        threading.Thread(target=drain_stdin, daemon=True).start()
        p = self._spawn(command)
        if self.drop_when and self.drop_when in command:
            threading.Event().wait(1.0)  # let the run get going, then pull the cable
            self.online = False
            p.kill()
            conn.shutdown(socket.SHUT_RDWR)
            return
        lock = threading.Lock()

        def pump(stream, kind):
            for chunk in iter(lambda: stream.read1(65536), b""):
                with lock:
                    try:
                        conn.sendall(packet(kind, self.unmap(chunk)))
                    except OSError:  # the client went away: so does the command
                        p.kill()
                        return

        threads = [threading.Thread(target=pump, args=(p.stdout, 1)), threading.Thread(target=pump, args=(p.stderr, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            conn.sendall(packet(3, bytes([p.wait() & 0xFF])))
        except OSError:
            pass

    # -- sync (push / pull) -----------------------------------------------------------------
    def _sync(self, conn) -> None:
        while True:
            ident, n = struct.unpack("<4sI", self._recv(conn, 8))
            ident = ident.decode()
            if ident == "QUIT":
                return
            path = self._recv(conn, n).decode()
            if ident == "STAT":
                local = Path(self.map(path))
                if local.exists():
                    st = local.stat()
                    conn.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
                else:
                    conn.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif ident == "SEND":
                remote, _, mode = path.rpartition(",")
                data = bytearray()
                while True:
                    kind, size = struct.unpack("<4sI", self._recv(conn, 8))
                    if kind == b"DATA":
                        data += self._recv(conn, size)
                    elif kind == b"DONE":
                        break
                    else:
                        raise ConnectionError(f"unexpected sync packet {kind!r}")
                local = Path(self.map(remote))
                try:
                    local.write_bytes(bytes(data))
                    local.chmod(int(mode) & 0o777)
                    conn.sendall(b"OKAY" + struct.pack("<I", 0))
                except OSError as e:
                    msg = f"couldn't create file: {e.strerror}".encode()
                    conn.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
            elif ident == "RECV":
                local = Path(self.map(path))
                if not local.is_file():
                    msg = b"No such file or directory"
                    conn.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                data = local.read_bytes()
                for i in range(0, len(data), 64 * 1024):
                    chunk = data[i : i + 64 * 1024]
                    conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                conn.sendall(b"DONE" + struct.pack("<I", 0))
            else:
                msg = f"unsupported sync request {ident}".encode()
                conn.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return
