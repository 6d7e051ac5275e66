"""A throwaway PostgreSQL server for the tests: a real cluster made with initdb in a temporary
folder, listening only on a Unix socket in that folder, stopped and deleted afterwards.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user Debian's
package creates (or `nobody`)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The folder with initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _as_user() -> tuple[list[str], str | None]:
    """The command prefix that runs the server as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(database: str = "tune"):
    """Start a cluster; yields its SQLAlchemy URL (``postgresql://postgres@/DB?host=SOCKETDIR&port=P``)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql; `make setup` installs it)")
    prefix, user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="edgepack-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user:
        pw = pwd.getpwnam(user)
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}
    run = lambda *cmd, **kw: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, env=env, **kw)  # noqa: E731
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
            f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off", "start")
        deadline = time.time() + 30
        while True:
            try:
                run(str(bin_dir / "createdb"), "-h", str(sock), "-p", str(port), "-U", "postgres", database)
                break
            except subprocess.CalledProcessError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield f"postgresql://postgres@/{database}?host={sock}&port={port}"
    finally:
        if data.exists():
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)
