"""The study database of ``edgepack tune``: Optuna's storage (a local SQLite file by default, or a
shared PostgreSQL server), the study's identity, the heartbeat that fails a dead worker's trial
(and queues it again), and the device leases that let one worker at a time bench a device."""

from __future__ import annotations

import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError, StudyError

#: seconds between a running trial's heartbeats ($EDGEPACK_TUNE_HEARTBEAT_S); a trial is failed
#: (and queued again) three heartbeats after its worker's last one
HEARTBEAT_ENV = "EDGEPACK_TUNE_HEARTBEAT_S"


def heartbeat_s() -> int:
    try:
        return max(1, int(os.environ.get(HEARTBEAT_ENV, "10")))
    except ValueError:
        return 10
#: the study's identity: a worker joining the study runs exactly these
IDENTITY = ("target", "model", "weights", "data", "calibration", "objectives", "space", "input_shape")


def default_storage(out: Path, study: str) -> str:
    """``sqlite:///<out>/<study>/study.sqlite3`` (the folder is created)."""
    folder = Path(out) / study
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.sqlite3').resolve()}"


def _describe_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


def storage(url: str):
    """Optuna's RDBStorage on ``url`` with heartbeats, the retry of stale trials, and a check that
    the database answers. Raises StorageError (one line) when it cannot be reached."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    elif url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # several processes on one file wait for its lock
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8: documented, relied on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s(),
                              grace_period=3 * heartbeat_s(),
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    except ImportError as e:
        raise StorageError(f"the study storage {_describe_url(url)} needs a database driver that is not installed "
                           f"({e.name}); for PostgreSQL, edgepack's psycopg[binary]") from e
    except Exception as e:  # noqa: BLE001  sqlalchemy / driver errors: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot open the study storage {_describe_url(url)}: {first}; check the URL, that the "
                           "server runs and that this machine may connect") from e


def open_study(store, name: str, identity: dict | None, *, directions: list[str], sampler):
    """Create the study ``name`` (with ``identity``) or load it. ``identity=None`` joins an
    existing study (a worker): StudyError when there is none. A study created for another target,
    model, data or space is refused rather than mixed. Returns (study, identity)."""
    import optuna

    known = {s.study_name: s for s in optuna.get_all_study_summaries(store)}
    if identity is None:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise StudyError(f"unknown study '{name}' in this storage (studies there: {listed}); start it with "
                             "`edgepack tune --target ... --study NAME --storage URL` first")
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
        return study, {k: study.user_attrs.get(k) for k in IDENTITY}
    if name in known:
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
        theirs = {k: study.user_attrs.get(k) for k in IDENTITY}
        differ = [k for k in IDENTITY if theirs.get(k) != identity.get(k)]
        if differ:
            k = differ[0]
            raise StudyError(f"study '{name}' was started with another {k} ({theirs.get(k)!r}, now {identity.get(k)!r}); "
                             "use a new --study name, or the same settings to continue it")
        return study, theirs
    study = optuna.create_study(study_name=name, storage=store, sampler=sampler, directions=directions)
    for k, v in identity.items():
        study.set_user_attr(k, v)
    return study, identity


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_own_orphans(study) -> list[int]:
    """Trials left RUNNING by a process of this machine that no longer exists (killed, power
    lost): failed now, and queued again, instead of waiting for the heartbeat's grace period.
    Returns their numbers."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("worker", "")
        if not _dead_here(who):
            continue
        try:  # the reason first: a finished trial cannot be updated
            study._storage.set_trial_user_attr(t._trial_id, "failed", f"its worker {who} died mid-trial")
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001  another process (its heartbeat check) failed it first
            continue
        RetryHeartbeatStaleTrialCallback(max_retry=2)(study, study._storage.get_trial(t._trial_id))
        failed.append(t.number)
    return failed


def _dead_here(who: str) -> bool:
    """True when ``who`` (a worker_id) is a process of this machine that no longer exists."""
    host, _, pid = who.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- device leases --------------------------------------------------------------------------------

_LEASES = "edgepack_device_leases"


def _engine(store):
    return store.engine


def _ensure_leases(engine) -> None:
    import sqlalchemy as sa

    with engine.begin() as c:
        c.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {_LEASES} (device VARCHAR(512) PRIMARY KEY, "
                          "holder VARCHAR(512) NOT NULL, expires DOUBLE PRECISION NOT NULL)"))


def device_key(device: str, profile) -> str:
    """The lease name of a device: this machine by its name, a board by its address (``profile``:
    the one in the profile's [connection])."""
    import socket

    if device == "host" or (device == "profile" and profile.connection.kind in ("local", "qemu-arm64")):
        return f"host:{socket.gethostname()}"
    if device == "profile":
        c = profile.connection
        return f"adb:{c.serial or 'default'}" if c.kind == "adb" else f"ssh://{c.user or ''}@{c.host}:{c.port or 22}"
    return device


def try_lease(store, device: str, holder: str, *, seconds: float) -> str | None:
    """Take or renew the lease on ``device`` for ``seconds`` if it is free, expired or ours.
    Returns None when taken, else the current holder."""
    import sqlalchemy as sa

    engine = _engine(store)
    _ensure_leases(engine)
    now = time.time()
    with engine.begin() as c:
        c.execute(sa.text(f"INSERT INTO {_LEASES} (device, holder, expires) VALUES (:d, :h, :e) "
                          f"ON CONFLICT (device) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
                          f"WHERE {_LEASES}.expires < :now OR {_LEASES}.holder = :h"),
                  {"d": device, "h": holder, "e": now + seconds, "now": now})
        row = c.execute(sa.text(f"SELECT holder FROM {_LEASES} WHERE device = :d"), {"d": device}).first()
    return None if row and row[0] == holder else (row[0] if row else "?")


def release(store, device: str, holder: str) -> None:
    import sqlalchemy as sa

    with _engine(store).begin() as c:
        c.execute(sa.text(f"DELETE FROM {_LEASES} WHERE device = :d AND holder = :h"), {"d": device, "h": holder})


@contextmanager
def leased(store, device: str, *, holder: str, seconds: float = 900.0, wait_s: float = 3600.0, say=None):
    """Hold the lease on ``device`` for the body (a bench): other workers wait for it. A holder
    that dies loses it after ``seconds``. Raises StorageError after ``wait_s`` without it."""
    start, told = time.monotonic(), False
    while True:
        other = try_lease(store, device, holder, seconds=seconds)
        if other is None:
            break
        if _dead_here(other):  # killed mid-bench on this machine: its lease is void now, not in `seconds`
            release(store, device, other)
            if say:
                say(f"device {device} was leased by worker {other}, which no longer runs; lease released")
            continue
        if not told and say:
            say(f"device {device} is being benched by worker {other}; waiting for it")
            told = True
        if time.monotonic() - start > wait_s:
            raise StorageError(f"device {device} stayed leased by {other} for {wait_s:.0f} s; check that worker")
        time.sleep(1.0)
    try:
        yield
    finally:
        release(store, device, holder)
