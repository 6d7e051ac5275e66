"""An emulated arm64 board: an arm64 Debian sysroot with the aarch64 LiteRT wheel, run under qemu-user.

The artifact runs on LiteRT's real arm64 kernels (XNNPACK's NEON paths), so its outputs check
that the arm64 build computes what the host computes. Its timings are an emulator's: every figure
is labelled "emulated arm64" and never used as device latency.

The sysroot is made without root-only tools (no chroot, no binfmt_misc): Debian's arm64 packages
of Python 3.11 and its libraries are unpacked with ``dpkg -x``, and aarch64 wheels of numpy and
ai-edge-litert are unzipped next to them. :func:`build_sysroot` does it (``make arm64-sysroot``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from ..errors import RuntimeMissing
from .shell import LocalShell, quote

SYSROOT_ENV = "EDGEPACK_ARM64_SYSROOT"
#: Debian packages (arm64) that make a Python 3.11 able to import numpy and LiteRT.
PACKAGES = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
            "libffi8", "libssl3", "libstdc++6", "libgcc-s1", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1"]
#: aarch64 wheels. ai-edge-litert 2.1.0: 2.3.0's aarch64 build crashes under qemu 7.2 (../shared/NOTES.md).
WHEELS = ["ai-edge-litert==2.1.0", "numpy==2.2.6"]
QEMU = "qemu-aarch64-static"


def default_sysroot() -> Path:
    return Path(os.environ.get(SYSROOT_ENV) or Path.home() / ".cache" / "edgepack" / "arm64-sysroot")


def unavailable_reason(sysroot: Path | None = None) -> str | None:
    """Why the emulated board cannot run here (None when it can)."""
    sysroot = sysroot or default_sysroot()
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-user-static)"
    if not (sysroot / "usr/bin/python3.11").exists() or not (sysroot / ".complete").exists():
        return f"no arm64 sysroot at {sysroot} (make arm64-sysroot builds it)"
    return None


def qemu_runner(*, sysroot: Path | None = None, **kw):
    """A ShellRunner whose Python is the arm64 one under qemu-user; RuntimeMissing if it cannot run here."""
    from .device import ShellRunner

    sysroot = sysroot or default_sysroot()
    why = unavailable_reason(sysroot)
    if why:
        raise RuntimeMissing(f"the emulated arm64 board cannot run: {why}")
    python = (f"env PYTHONPATH={quote(str(sysroot / 'site'))} PYTHONHOME={quote(str(sysroot / 'usr'))} "
              f"{QEMU} -L {quote(str(sysroot))} {quote(str(sysroot / 'usr/bin/python3.11'))}")
    return ShellRunner(LocalShell(), kind="emulated arm64", python=python, emulated=True, label="emulated arm64 (qemu-user on this machine, host kernel)", **kw)


def build_sysroot(dest: Path, *, log=print) -> Path:
    """Download and unpack the arm64 sysroot into ``dest``. Needs apt (arm64 added as a foreign
    architecture: root) and pip; raises RuntimeMissing saying which step failed."""
    def sh(*argv, cwd=None):
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeMissing(f"building the arm64 sysroot failed at '{' '.join(argv[:4])} ...': "
                                 f"{(p.stderr or p.stdout).strip()[-300:]}")
        return p.stdout

    dest.mkdir(parents=True, exist_ok=True)
    if "arm64" not in sh("dpkg", "--print-foreign-architectures").split():
        log("adding arm64 as a foreign dpkg architecture and updating apt's lists")
        sh("dpkg", "--add-architecture", "arm64")
        sh("apt-get", "update", "-q")
    with tempfile.TemporaryDirectory(prefix="edgepack-arm64-") as tmp:
        log(f"downloading {len(PACKAGES)} arm64 Debian packages")
        sh("apt-get", "download", "-q", *[f"{p}:arm64" for p in PACKAGES], cwd=tmp)
        for deb in sorted(Path(tmp).glob("*.deb")):
            sh("dpkg", "-x", str(deb), str(dest))
        log(f"downloading aarch64 wheels: {', '.join(WHEELS)}")
        wheels = Path(tmp) / "wheels"
        sh(os.environ.get("PYTHON", "python3"), "-m", "pip", "download", "-q", "--platform", "manylinux_2_27_aarch64",
           "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--only-binary=:all:", "--no-deps",
           "-d", str(wheels), *WHEELS)
        site = dest / "site"
        site.mkdir(exist_ok=True)
        for whl in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(site)
    (dest / ".complete").write_text("\n".join(PACKAGES + WHEELS) + "\n")
    return dest


if __name__ == "__main__":  # python -m edgepack.devices.qemu [DEST]
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_sysroot()
    try:
        print(f"arm64 sysroot ready at {build_sysroot(target)}")
    except RuntimeMissing as e:
        print(f"edgepack: {e}", file=sys.stderr)
        sys.exit(1)
