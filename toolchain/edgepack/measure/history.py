"""The local bench history: every completed bench, in SQLite.

One row per bench: when, the artifact (sha256, name, format, size), the target, the device (kind,
address, description, emulated or not), the settings, the latency figures, peak memory, energy
with its basis ("measured", "estimated" or "refused") and how, and the conditions (device state,
runtime, warnings) as JSON. A row is written in one transaction after the bench finished: a bench
that failed part-way leaves nothing behind.

The file is ``$EDGEPACK_HOME/bench.sqlite`` (default ``~/.local/share/edgepack/bench.sqlite``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from ..errors import UsageError

HOME_ENV = "EDGEPACK_HOME"
COLUMNS = [
    ("recorded_at", "TEXT NOT NULL"), ("artifact_sha256", "TEXT NOT NULL"), ("artifact", "TEXT NOT NULL"),
    ("format", "TEXT NOT NULL"), ("size_bytes", "INTEGER NOT NULL"), ("target", "TEXT NOT NULL"),
    ("device_kind", "TEXT NOT NULL"), ("device_id", "TEXT NOT NULL"), ("device", "TEXT NOT NULL"),
    ("emulated", "INTEGER NOT NULL"), ("threads", "INTEGER NOT NULL"), ("warmup", "INTEGER NOT NULL"),
    ("runs", "INTEGER NOT NULL"), ("repeats", "INTEGER NOT NULL"), ("median_ms", "REAL NOT NULL"),
    ("p90_ms", "REAL"), ("p95_ms", "REAL"), ("mean_ms", "REAL NOT NULL"), ("stdev_ms", "REAL NOT NULL"),
    ("cv", "REAL NOT NULL"), ("min_ms", "REAL NOT NULL"), ("peak_memory_kb", "REAL"), ("energy_mj", "REAL"),
    ("energy_basis", "TEXT NOT NULL"), ("energy_how", "TEXT NOT NULL"), ("trusted", "INTEGER NOT NULL"),
    ("source", "TEXT NOT NULL"), ("conditions", "TEXT NOT NULL"),
]


def default_path() -> Path:
    home = os.environ.get(HOME_ENV)
    return (Path(home) if home else Path.home() / ".local" / "share" / "edgepack") / "bench.sqlite"


class BenchStore:
    """The bench history at ``path`` (created on first use)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS benches (id INTEGER PRIMARY KEY, "
                             + ", ".join(f"{c} {t}" for c, t in COLUMNS) + ")")
            self._db.commit()
        except (OSError, sqlite3.DatabaseError) as e:
            raise UsageError(f"cannot open the bench history {self.path}: {e}; set {HOME_ENV} or --store to a writable file") from e

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "BenchStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, row: dict) -> int:
        """Insert one completed bench; returns its id. ``conditions`` may be a dict (stored as JSON)."""
        row = {**row, "recorded_at": row.get("recorded_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if not isinstance(row.get("conditions"), str):
            row["conditions"] = json.dumps(row.get("conditions") or {}, sort_keys=True)
        missing = [c for c, t in COLUMNS if "NOT NULL" in t and row.get(c) is None]
        if missing:
            raise ValueError(f"bench row lacks {', '.join(missing)}")
        names = [c for c, _ in COLUMNS]
        with self._db:  # one transaction
            cur = self._db.execute(f"INSERT INTO benches ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                   [row.get(c) for c in names])
        return int(cur.lastrowid)

    def query(self, *, target: str | None = None, device: str | None = None, sha256: str | None = None,
              artifact: str | None = None, limit: int = 50) -> list[dict]:
        """Rows newest first. ``device`` matches kind or address; ``sha256`` is a prefix; ``artifact`` a file-name substring."""
        where, args = [], []
        if target:
            where.append("target = ?")
            args.append(target)
        if device:
            where.append("(device_kind = ? OR device_id = ?)")
            args += [device, device]
        if sha256:
            where.append("artifact_sha256 LIKE ?")
            args.append(sha256.lower() + "%")
        if artifact:
            where.append("artifact LIKE ?")
            args.append(f"%{artifact}%")
        sql = "SELECT * FROM benches" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        cur = self._db.execute(sql, [*args, limit])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        for r in rows:
            r["conditions"] = json.loads(r["conditions"])
        return rows
