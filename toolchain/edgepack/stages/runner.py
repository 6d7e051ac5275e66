"""Running stages through the cache, and the lock that keeps two builds out of one folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pickle
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..progress import Reporter
from .cache import StageCache

T = TypeVar("T")
_FILE = "output.pickle"


class Stages:
    """Runs each cached stage once per key; records, per stage, its key and whether it came from
    the cache (``record``)."""

    def __init__(self, cache: StageCache, rep: Reporter):
        self.cache, self.rep = cache, rep
        self.record: dict[str, dict] = {}

    def run(self, stage: str, key: str, compute: Callable[[], T]) -> T:
        hit = self.cache.get(stage, key)
        if hit is not None:
            try:
                out = pickle.loads(hit[_FILE])
            except Exception as e:  # written by another edgepack version, or classes that moved
                self.rep.warn(f"cache entry {stage}/{key[:12]} cannot be read back ({type(e).__name__}: {e}); "
                              "the stage runs again")
            else:
                self.record[stage] = {"key": key, "cached": True}
                self.rep.info(f"from the stage cache ({key[:12]})")
                return out
        out = compute()
        self.record[stage] = {"key": key, "cached": False}
        try:
            payload = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # e.g. a model wrapping a live ONNX session: built, just not kept
            self.rep.info(f"not kept in the stage cache: its output cannot be serialised ({type(e).__name__})")
            return out
        self.cache.put(stage, key, {_FILE: payload})
        return out


@contextlib.contextmanager
def build_lock(folder: Path, lock_dir: Path, rep: Reporter) -> Iterator[None]:
    """Hold ``folder``'s build lock for the build (a file in ``lock_dir`` named by the folder's
    absolute path, so nothing is created beside the output before the bundle is written); a second
    build into the same folder waits for the first, saying so, then finds its stages in the cache."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / (hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24] + ".lock")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            rep.warn(f"another edgepack build is writing {folder} ({holder}); waiting for it to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
