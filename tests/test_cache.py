"""The stage cache: checked reads, atomic writes, corruption detected, LRU cap, info and clear."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time

import pytest

from edgepack.errors import UsageError
from edgepack.progress import Reporter
from edgepack.stages.cache import StageCache, remembered
from edgepack.stages.runner import Stages


def _cache(tmp_path, **kw):
    warnings = []
    return StageCache(tmp_path / "c", warn=warnings.append, **kw), warnings


def test_round_trip_and_disabled(tmp_path):
    c, _ = _cache(tmp_path)
    assert c.get("quantize", "ab12") is None
    c.put("quantize", "ab12", {"model.tflite": b"\x00\x01" * 100, "result.json": b"{}"})
    assert c.get("quantize", "ab12") == {"model.tflite": b"\x00\x01" * 100, "result.json": b"{}"}
    off = StageCache(tmp_path / "c", enabled=False)
    assert off.get("quantize", "ab12") is None
    off.put("quantize", "cd34", {"x": b"1"})
    assert c.get("quantize", "cd34") is None
    assert not list((tmp_path / "c").glob("tmp/*"))  # nothing left behind


def test_truncated_or_flipped_entries_are_reported_removed_and_missed(tmp_path):
    c, warnings = _cache(tmp_path)
    for key, damage in (("aa01", "truncate"), ("aa02", "flip"), ("aa03", "delete")):
        c.put("convert", key, {"model.tflite": bytes(range(256)) * 4})
        f = c.root / "stages" / "convert" / key / "model.tflite"
        data = f.read_bytes()
        if damage == "truncate":
            f.write_bytes(data[:100])
        elif damage == "flip":
            f.write_bytes(data[:10] + bytes([data[10] ^ 0x40]) + data[11:])
        else:
            f.unlink()
        assert c.get("convert", key) is None, damage
        assert not (c.root / "stages" / "convert" / key).exists()
    assert len(warnings) == 3 and all("corrupted" in w and "runs again" in w for w in warnings)
    assert all("\n" not in w for w in warnings)
    c.put("convert", "aa01", {"model.tflite": b"rebuilt"})
    assert c.get("convert", "aa01") == {"model.tflite": b"rebuilt"}


def test_least_recently_used_entries_go_first_under_the_cap(tmp_path):
    c, _ = _cache(tmp_path, cap_bytes=10_000)
    for i in range(3):
        c.put("prune", f"k{i}", {"m": bytes(3000)})
        os.utime(c.root / "stages" / "prune" / f"k{i}" / "entry.json", (time.time() - 100 + i, time.time() - 100 + i))
    c.get("prune", "k0")  # k0 is now the most recently used
    c.put("prune", "k3", {"m": bytes(3000)})  # over the cap: k1 (least recently used) goes
    keys = {e.key for e in c.entries()}
    assert keys == {"k0", "k2", "k3"}, keys
    assert c.info()["size_bytes"] <= 10_000


def test_info_and_clear(tmp_path):
    c, _ = _cache(tmp_path)
    c.put("prune", "p1", {"m": bytes(1000)})
    c.put("quantize", "q1", {"m": bytes(500)})
    c.put("quantize", "q2", {"m": bytes(500)})
    info = c.info()
    assert info["entries"] == 3 and info["stages"]["quantize"]["entries"] == 2
    assert info["stages"]["prune"]["size_bytes"] > 1000  # the file and its entry record
    old = c.root / "stages" / "quantize" / "q1" / "entry.json"
    os.utime(old, (time.time() - 10 * 86400, time.time() - 10 * 86400))
    assert c.clear(older_than_days=5)[0] == 1
    assert {e.key for e in c.entries()} == {"p1", "q2"}
    assert c.clear()[0] == 2 and c.info()["entries"] == 0


def _keys(profile, macs: int = 10_800_000):  # the demo's MACs
    from edgepack.compress.prune.budgeted import required_saving
    from edgepack.stages.keys import stage_keys

    return stage_keys(profile=profile.to_dict(), model={"zoo": "demo"}, data="d", calibration="c", input_shape=(1, 1, 8, 8),
                      device="host", versions={"edgepack": "0+abc"}, required_saving=required_saving(profile, macs))


def test_a_key_changes_with_what_its_stage_reads_and_nothing_else():
    from edgepack.profiles.loader import load_profile

    base = _keys(load_profile("cortex-m4"))
    # memory limits: read by the budget check and the bench, never by pruning or conversion
    roomy = _keys(load_profile("cortex-m4", ("hardware.ram_kb=64", "budgets.max_peak_memory_kb=50")))
    assert roomy["prune"] == base["prune"] and roomy["quantize"] == base["quantize"] and roomy["bench"] != base["bench"]
    # a slower clock the model no longer fits in its latency budget: pruning and all after it change
    slow = _keys(load_profile("cortex-m4", ("hardware.clock_mhz=40",)))
    assert slow["load"] == base["load"] and slow["prune"] != base["prune"] and slow["measure"] != base["measure"]
    # a faster one changes nothing pruning reads while the model fits either way
    small, fast = _keys(load_profile("cortex-m4"), 1_000_000), _keys(load_profile("cortex-m4", ("hardware.clock_mhz=400",)), 1_000_000)
    assert fast["prune"] == small["prune"] and fast["bench"] != small["bench"]
    # calibration changes conversion onwards, not pruning
    q = _keys(load_profile("cortex-m4", ("quantization.calibration=percentile",)))
    assert (q["prune"], q["convert"]) == (base["prune"], base["convert"]) and q["quantize"] != base["quantize"]


def test_the_code_fingerprint_changes_with_any_source_file(tmp_path):
    from edgepack.pipeline import code_fingerprint

    (tmp_path / "stages").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "stages" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = code_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("changed, still not code")
    assert code_fingerprint(tmp_path) == first
    (tmp_path / "stages" / "b.py").write_text("y = 3\n")
    assert code_fingerprint(tmp_path) != first
    assert len(code_fingerprint()) == 16


def test_remembered_computes_once_per_key_and_keeps_only_what_it_may(tmp_path):
    from edgepack.stages.cache import remembered

    c, _ = _cache(tmp_path)
    calls = []

    def compute(v=41):
        calls.append(v)
        return {"value": v}

    assert remembered(c, "bench", "k1", compute) == {"value": 41}
    assert remembered(c, "bench", "k1", lambda: compute(99)) == {"value": 41} and calls == [41]  # read back
    assert remembered(c, "bench", "k2", compute, keep=lambda v: False) == {"value": 41}
    assert c.get("bench", "k2") is None  # computed, not kept
    off = StageCache(tmp_path / "c", enabled=False)
    remembered(off, "bench", "k1", compute)
    assert calls == [41, 41, 41]  # a disabled cache always computes
    assert remembered(c, "bench", None, compute) and len(calls) == 4  # no key: nothing to look up


def test_the_float_models_held_out_outputs_are_computed_once_per_model_data_and_code(tmp_path, monkeypatch):
    import numpy as np
    from edgepack.models import training
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter
    from edgepack.stages.inputs import load_inputs

    calls = []
    real = training.predict
    monkeypatch.setattr(training, "predict", lambda m, x, **kw: calls.append(len(x)) or real(m, x, **kw))
    c, _ = _cache(tmp_path)
    profile, rep = load_profile("rpi4"), Reporter(total=1, quiet=True)

    def load(code="v1", cache=c):
        return load_inputs(profile, model="demo", weights=None, input_shape=None, data="digits", calibration=None,
                           rep=rep, cache=cache, code_version=code)

    first = load()
    n_eval = len(first.splits.x_eval)
    assert calls.count(n_eval) == 1
    again = load()
    assert calls.count(n_eval) == 1  # read back, not recomputed
    np.testing.assert_array_equal(again.loaded.eval_outputs, first.loaded.eval_outputs)
    assert again.loaded.float_accuracy == first.loaded.float_accuracy and again.identity == first.identity
    load(code="v2")  # edgepack's code changed: computed again
    assert calls.count(n_eval) == 2
    load(cache=None)  # no cache: computed
    assert calls.count(n_eval) == 3


class _Payload:
    """What an attacker puts in a cache entry: unpickling it runs ``Path.touch`` on a marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def _plant(cache: StageCache, stage: str, key: str, name: str, data: bytes, mac: str | None = None) -> None:
    """An entry written by someone who can write the cache folder but lacks the signing key: the
    checksums right (anyone can compute them), the signature missing or made with another key."""
    entry = cache.root / "stages" / stage / key
    entry.mkdir(parents=True)
    (entry / name).write_bytes(data)
    meta = {"stage": stage, "key": key, "created": 0.0,
            "files": {name: {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}
    if mac is not None:
        meta["mac"] = mac
    (entry / "entry.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("mac", [None, "0" * 64])
def test_an_entry_someone_else_wrote_is_never_unpickled(tmp_path, mac):
    marker = tmp_path / "code-ran"
    c, warnings = _cache(tmp_path)
    _plant(c, "quantize", "ab12", "output.pickle", pickle.dumps(_Payload(marker)), mac)
    _plant(c, "bench", "cd34", "value.pickle", pickle.dumps(_Payload(marker)), mac)
    out = Stages(c, Reporter(total=1, quiet=True)).run("quantize", "ab12", lambda: "computed")
    assert out == "computed" and not marker.exists()
    assert remembered(c, "bench", "cd34", lambda: "computed too") == "computed too" and not marker.exists()
    assert any("quantize/ab12" in w and "not signed" in w and "runs again" in w for w in warnings), warnings
    assert all("\n" not in w for w in warnings)
    # the stage's own output replaced the planted entry, and reads back
    assert Stages(c, Reporter(total=1, quiet=True)).run("quantize", "ab12", lambda: "again") == "computed"


def test_an_entry_signed_with_another_key_is_never_read(tmp_path, monkeypatch):
    c, _ = _cache(tmp_path)
    c.put("convert", "ee01", {"model.tflite": b"theirs"})
    monkeypatch.setenv("EDGEPACK_CACHE_KEY_FILE", str(tmp_path / "other.key"))
    other, warnings = _cache(tmp_path)
    assert other.get("convert", "ee01") is None and "not signed" in warnings[0]
    assert (tmp_path / "other.key").stat().st_mode & 0o077 == 0  # made readable by its owner only


def test_the_signing_key_must_live_outside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_CACHE_KEY_FILE", str(tmp_path / "c" / "cache.key"))
    c, _ = _cache(tmp_path)
    with pytest.raises(UsageError, match="inside the stage cache"):
        c.put("convert", "ee02", {"x": b"1"})
