"""What makes a bundle attestable: a pinned build time, names instead of the building machine's
paths, content hashes of every input, and the stage keys derived from them.

A bundle built twice from the same inputs (profile, model weights, data, calibration set, tool
versions) with ``SOURCE_DATE_EPOCH`` set is byte-identical except ``measurements.json``, which
holds what was measured in that run (latency, stage times).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from .errors import UsageError

#: Version of the manifest's layout; bumped with every incompatible change (schemas/manifest-vN.schema.json).
SCHEMA_VERSION = 2


def build_time() -> str:
    """ISO-8601 UTC build time: ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else now.

    Raises UsageError when ``SOURCE_DATE_EPOCH`` is not a non-negative integer."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        when = _dt.datetime.now(_dt.timezone.utc)
    else:
        if not raw.isdigit():
            raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970; unset it or "
                             "set e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)")
        when = _dt.datetime.fromtimestamp(int(raw), _dt.timezone.utc)
    return when.isoformat(timespec="seconds")


def portable_name(path: str | Path) -> str:
    """How a manifest names a file: a shipped file as ``edgepack:<folder>/<name>`` (a file of the
    package itself as ``edgepack:<module path>``), a file under the working directory by its relative
    path, anything else by its file name (never an absolute path of the building machine)."""
    from .paths import shipped_dir

    p = Path(path).resolve()
    for kind in ("targets", "calibration"):
        try:
            return f"edgepack:{kind}/{p.relative_to(shipped_dir(kind).resolve()).as_posix()}"
        except ValueError:
            pass
    try:
        return f"edgepack:{p.relative_to(Path(__file__).resolve().parent).as_posix()}"
    except ValueError:
        pass
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_file(path: str | Path) -> dict:
    """{"name": portable name, "sha256": content hash} of an input file."""
    return {"name": portable_name(path), "sha256": file_sha256(path)}


def state_sha256(module) -> str:
    """sha256 over a PyTorch module's parameters and buffers (names, shapes, dtypes and bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def key(*parts) -> str:
    """A stage key: sha256 of its inputs rendered as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
