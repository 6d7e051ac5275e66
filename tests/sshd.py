"""A real OpenSSH server on 127.0.0.1 for the tests: generated host and user keys, key login only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgepack-test", "-f", str(path)], check=True)
    return path


@dataclass
class Sshd:
    port: int
    user: str
    key: Path  # the client's private key
    known_hosts: Path  # holds the server's real host key
    host_pub: Path
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(folder: Path, port: int | None = None) -> Sshd:
    """Start sshd in the foreground (-D) with its own config, keys and authorized_keys under ``folder``."""
    if not Path(SSHD).exists():
        raise RuntimeError("sshd is not installed: `make setup` installs openssh-server (apt-get)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_ed25519")
    user_key = keygen(folder / "user_ed25519")
    auth = folder / "authorized_keys"
    auth.write_text((folder / "user_ed25519.pub").read_text())
    auth.chmod(0o600)
    port = port or free_port()
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {auth}",
        f"PidFile {folder / 'sshd.pid'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no",
        "LogLevel ERROR", "",
    ]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    kh = folder / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{port} {(folder / 'host_ed25519.pub').read_text().split(' edgepack')[0]}\n")
    return Sshd(port=port, user=user, key=user_key, known_hosts=kh, host_pub=folder / "host_ed25519.pub", proc=proc)
