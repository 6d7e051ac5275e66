"""A Linux board (a Raspberry Pi, or any) over SSH, with the OpenSSH client.

Authentication is by key only (``BatchMode=yes``: never a password prompt). The host key is
checked against known_hosts (``StrictHostKeyChecking=yes``); an unknown host is refused unless
the user opts in with ``accept_new_host_key`` (then OpenSSH's ``accept-new``: a new key is
recorded, a *changed* key is still refused). Every remote path is quoted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import DeviceAuthError, DeviceDisconnected, DeviceError, DeviceTimeout, DeviceUnreachable, HostKeyError
from .shell import Completed, Shell, quote

_UNREACHABLE = ("Connection refused", "No route to host", "Could not resolve hostname", "Network is unreachable",
                "Connection timed out", "Name or service not known", "Temporary failure in name resolution")


class SSHShell(Shell):
    """The shell of ``user@host:port``. ``key`` is a private key file; ``known_hosts`` a known_hosts
    file (default: OpenSSH's own, ~/.ssh/known_hosts)."""

    kind = "ssh"

    def __init__(self, host: str, *, user: str | None = None, port: int = 22, key: str | None = None,
                 known_hosts: str | None = None, accept_new_host_key: bool = False, connect_timeout_s: int = 10):
        if not host:
            raise DeviceError("no SSH host given; set [connection] host or pass --device ssh://user@host")
        self.host, self.user, self.port = host, user, port
        self.key = str(Path(key).expanduser()) if key else None
        if self.key and not Path(self.key).is_file():
            raise DeviceAuthError(f"SSH key {self.key} does not exist; set [connection] key to your private key file")
        self.known_hosts = str(Path(known_hosts).expanduser()) if known_hosts else None
        opts = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={'accept-new' if accept_new_host_key else 'yes'}",
                "-o", f"ConnectTimeout={connect_timeout_s}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "LogLevel=ERROR", "-p", str(port)]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.key:
            opts += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        self._argv = ["ssh", *opts, f"{user}@{host}" if user else host, "--"]

    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def _fault(self, rc: int, err: str, during: str) -> DeviceError | None:
        """The DeviceError an ssh exit status of 255 stands for (None for the remote command's own status)."""
        if rc != 255:
            return None
        text = err.strip()
        first = next((s for s in text.splitlines() if s.strip() and not s.startswith("@")), text)[:200]
        kh = self.known_hosts or "~/.ssh/known_hosts"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key for" in text and "has changed" in text:
            return HostKeyError(f"{self.address()}: its host key does not match the one in {kh}: it may be another "
                                f"machine (or a reinstalled one); check, then remove the old key with "
                                f"'ssh-keygen -R [{self.host}]:{self.port}'")
        if "Host key verification failed" in text or "No ED25519 host key is known" in text or "host key is known" in text:
            return HostKeyError(f"{self.address()}: its host key is not in {kh}; add it after checking its fingerprint "
                                f"(ssh-keyscan -p {self.port} {self.host}) or set [connection] accept_new_host_key = true")
        if "Permission denied" in text or "Too many authentication failures" in text:
            return DeviceAuthError(f"{self.address()}: the device refused our key ({first}); add the public key to "
                                   f"the device's ~/.ssh/authorized_keys or set [connection] key")
        if any(s in text for s in _UNREACHABLE):
            return DeviceUnreachable(f"{self.address()}: cannot connect ({first}); is the device on and sshd running?")
        return DeviceDisconnected(f"{self.address()}: the connection dropped during {during} ({first or 'no message'})")

    def _call(self, command: str, *, timeout: float, data: bytes | None = None, during: str) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run([*self._argv, command], input=data if data is not None else b"", capture_output=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceTimeout(f"{self.address()}: {during} took longer than {timeout:.0f} s; the device may be hung "
                                f"or too slow for [measure] runs") from e
        except FileNotFoundError as e:
            raise DeviceError("the OpenSSH client (ssh) is not installed; install openssh-client") from e
        fault = self._fault(p.returncode, p.stderr.decode(errors="replace"), during)
        if fault is not None:
            raise fault
        return p

    def run(self, command: str, *, timeout: float) -> Completed:
        p = self._call(command, timeout=timeout, during=f"'{command[:60]}'")
        return Completed(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    def put(self, data: bytes, path: str, *, timeout: float) -> None:
        p = self._call(f"cat > {quote(path)}", timeout=timeout, data=data, during=f"the copy to {path}")
        if p.returncode != 0:
            raise DeviceError(f"{self.address()}: cannot write {path}: {p.stderr.decode(errors='replace').strip()[:200]}")

    def get(self, path: str, *, timeout: float) -> bytes:
        p = self._call(f"cat {quote(path)}", timeout=timeout, during=f"the copy from {path}")
        if p.returncode != 0:
            raise DeviceError(f"{self.address()}: cannot read {path}: {p.stderr.decode(errors='replace').strip()[:200]}")
        return p.stdout

    def spawn(self, command: str) -> subprocess.Popen:
        return subprocess.Popen([*self._argv, command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
