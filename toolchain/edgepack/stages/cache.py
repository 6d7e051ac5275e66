"""Content-addressed store of build stages' outputs.

An entry is one stage's output under its key (a hash of everything that can change that output,
see ``fingerprint.key``): a folder ``<root>/stages/<stage>/<key>/`` holding the output's files and
``entry.json`` with each file's size and sha256. Entries are written into a private temporary
folder and renamed into place, so a reader sees a whole entry or none; every read checks the
checksums, and an entry that does not match (truncated, a flipped byte, a file missing) is
reported in one line, removed and treated as absent, never used. The store keeps under a size cap
by removing the least recently used entries; ``info`` and ``clear`` back ``edgepack cache``.

Entries hold pickles, and reading a pickle can run code, so every entry is signed: ``entry.json``
carries an HMAC-SHA256 over the stage, the key and every file's size and sha256, made with a secret
kept outside the cache folder (``key_file()``: ``$EDGEPACK_CACHE_KEY_FILE``, default
``~/.config/edgepack/cache.key``, created on first use, readable by its owner only). An entry whose
signature does not verify (written by someone without the secret, or by an edgepack before entries
were signed) is never deserialised: it is reported in one line and the stage runs again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError

DEFAULT_CAP_BYTES = 5 * 1024**3
_META = "entry.json"


STAGE_CACHE_ENV = "EDGEPACK_STAGE_CACHE_DIR"
#: the file holding the secret that signs this user's cache entries (never inside the cache folder)
KEY_FILE_ENV = "EDGEPACK_CACHE_KEY_FILE"
_SECRET_BYTES = 32


def default_root() -> Path:
    """``$EDGEPACK_STAGE_CACHE_DIR`` when set, else the cache folder the trained zoo weights use
    (``$EDGEPACK_CACHE_DIR`` or ``~/.cache/edgepack``)."""
    from ..paths import cache_dir

    own = os.environ.get(STAGE_CACHE_ENV)
    return Path(own) if own else cache_dir()


def key_file() -> Path:
    """Where the secret that signs cache entries is kept: ``$EDGEPACK_CACHE_KEY_FILE``, else
    ``$XDG_CONFIG_HOME/edgepack/cache.key`` (``~/.config/edgepack/cache.key``)."""
    own = os.environ.get(KEY_FILE_ENV)
    if own:
        return Path(own)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edgepack" / "cache.key"


def _secret(root: Path) -> bytes:
    """The signing secret, made (owner-only) on first use. Raises UsageError for a key file inside
    the cache folder (anyone who can write the cache could then sign entries) or a damaged one."""
    path = key_file()
    if path.resolve().is_relative_to(root.resolve()):
        raise UsageError(f"the cache key file {path} is inside the stage cache {root}: anyone who can write the cache "
                         f"could sign entries with it; set {KEY_FILE_ENV} to a file outside {root}")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(_SECRET_BYTES))
        try:
            os.link(tmp, path)  # never replaces a key another build made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the cache key {path} ({e.strerror}); fix its permissions or set "
                         f"{KEY_FILE_ENV}") from e
    if len(data) < _SECRET_BYTES:
        raise UsageError(f"{path} is not an edgepack cache key ({len(data)} bytes, {_SECRET_BYTES} expected); "
                         "delete it (a new one is made, and older entries are then rebuilt)")
    return data


def _signature(secret: bytes, stage: str, key: str, files: dict) -> str:
    body = json.dumps({"stage": stage, "key": key, "files": files}, sort_keys=True).encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class EntryInfo:
    stage: str
    key: str
    path: Path
    size_bytes: int
    last_used: float


class StageCache:
    """Stage outputs by (stage, key). ``enabled=False`` (``--no-cache``) makes every lookup a miss
    and stores nothing. ``warn`` receives the one-line notice of a corrupted entry."""

    def __init__(self, root: str | Path | None = None, *, enabled: bool = True, cap_bytes: int = DEFAULT_CAP_BYTES,
                 warn: Callable[[str], None] | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.enabled = enabled
        self.cap_bytes = cap_bytes
        self.warn = warn or (lambda _msg: None)
        self._key: bytes | None = None

    @property
    def _secret(self) -> bytes:
        if self._key is None:
            self._key = _secret(self.root)
        return self._key

    @property
    def _stages(self) -> Path:
        return self.root / "stages"

    def _entry(self, stage: str, key: str) -> Path:
        if not stage.replace("-", "").isalnum() or not key.isalnum():
            raise ValueError(f"bad cache address {stage}/{key}")
        return self._stages / stage / key

    def get(self, stage: str, key: str) -> dict[str, bytes] | None:
        """The entry's files, checked against their checksums, or None (absent, disabled or corrupt)."""
        if not self.enabled:
            return None
        path = self._entry(stage, key)
        meta_file = path / _META
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
            want_mac = _signature(self._secret, stage, key, meta["files"])
            if not isinstance(meta.get("mac"), str) or not hmac.compare_digest(meta["mac"], want_mac):
                self.warn(f"cache entry {stage}/{key[:12]} is not signed with this user's cache key ({key_file()}): "
                          "it is never read (written by someone else, or before entries were signed); the stage "
                          "runs again")
                return None
            files = {}
            for name, want in meta["files"].items():
                data = (path / name).read_bytes()
                if len(data) != want["size_bytes"] or _sha256(data) != want["sha256"]:
                    raise ValueError(f"{name} is {len(data):,} bytes with another checksum than the "
                                     f"{want['size_bytes']:,} bytes recorded")
                files[name] = data
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.warn(f"cache entry {stage}/{key[:12]} is corrupted ({e}); it is removed and the stage runs again")
            shutil.rmtree(path, ignore_errors=True)
            return None
        now = time.time()
        try:
            os.utime(meta_file, (now, now))  # least-recently-used order
        except OSError:
            pass
        return files

    def put(self, stage: str, key: str, files: dict[str, bytes]) -> None:
        """Store ``files`` as the entry (stage, key), atomically; then keep the store under its cap."""
        if not self.enabled:
            return
        final = self._entry(stage, key)
        tmp = self.root / "tmp" / f"{stage}-{key[:12]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            listed = {n: {"size_bytes": len(d), "sha256": _sha256(d)} for n, d in sorted(files.items())}
            meta = {"stage": stage, "key": key, "created": time.time(), "files": listed,
                    "mac": _signature(self._secret, stage, key, listed)}
            for name, data in files.items():
                if "/" in name or name in (_META, "", ".", ".."):
                    raise ValueError(f"bad cache file name {name!r}")
                with open(tmp / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            (tmp / _META).write_text(json.dumps(meta, indent=1))
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # a corrupt leftover, or another build stored the same output first
                if self.get(stage, key) is not None:
                    return
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:  # another build renamed its copy in between: theirs is as good
                return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.evict()

    def entries(self) -> list[EntryInfo]:
        out = []
        if not self._stages.is_dir():
            return out
        for stage_dir in sorted(p for p in self._stages.iterdir() if p.is_dir()):
            for path in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
                meta = path / _META
                used = meta.stat().st_mtime if meta.exists() else path.stat().st_mtime
                out.append(EntryInfo(stage_dir.name, path.name, path, size, used))
        return out

    def info(self) -> dict:
        """Entries and bytes, in all and per stage."""
        per: dict[str, dict] = {}
        for e in self.entries():
            s = per.setdefault(e.stage, {"entries": 0, "size_bytes": 0})
            s["entries"] += 1
            s["size_bytes"] += e.size_bytes
        return {"root": str(self.root), "entries": sum(s["entries"] for s in per.values()),
                "size_bytes": sum(s["size_bytes"] for s in per.values()), "cap_bytes": self.cap_bytes,
                "stages": dict(sorted(per.items()))}

    def clear(self, older_than_days: float | None = None) -> tuple[int, int]:
        """Remove every entry, or those not used for ``older_than_days``. Returns (entries, bytes) removed."""
        cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
        n = size = 0
        for e in self.entries():
            if cutoff is None or e.last_used < cutoff:
                shutil.rmtree(e.path, ignore_errors=True)
                n, size = n + 1, size + e.size_bytes
        if cutoff is None:
            shutil.rmtree(self.root / "tmp", ignore_errors=True)
        return n, size

    def evict(self) -> int:
        """Remove least recently used entries until the store is under its cap; returns how many."""
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        removed = 0
        for e in sorted(entries, key=lambda e: e.last_used):
            if total <= self.cap_bytes:
                break
            shutil.rmtree(e.path, ignore_errors=True)
            total -= e.size_bytes
            removed += 1
        return removed


def remembered(cache: "StageCache | None", stage: str, key: str | None, compute: Callable[[], Any], *,
               keep: Callable[[Any], bool] = lambda _v: True, stored: Callable[[Any], Any] = lambda v: v) -> Any:
    """``compute()`` through ``cache`` under (``stage``, ``key``): a stored value is read back
    (one another version wrote and that cannot be read is computed again); a computed one is kept
    when ``keep(value)``, as ``stored(value)`` (e.g. without parts that cannot be pickled), unless
    it cannot be serialised. Without a cache or a key, or with the cache off, just computes."""
    import pickle

    if cache is None or key is None or not cache.enabled:
        return compute()
    hit = cache.get(stage, key)
    if hit is not None:
        try:
            return pickle.loads(hit["value.pickle"])
        except Exception:  # noqa: BLE001  written by another version, or classes that moved
            pass
    value = compute()
    if keep(value):
        try:
            cache.put(stage, key, {"value.pickle": pickle.dumps(stored(value), protocol=pickle.HIGHEST_PROTOCOL)})
        except (pickle.PicklingError, TypeError, AttributeError):
            pass  # computed, just not kept
    return value
