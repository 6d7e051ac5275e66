"""`edgepack verify`: a bundle passes only when it is exactly what edgepack wrote."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from helpers import run_cli


@pytest.fixture
def bundle(built, tmp_path):
    """A private copy of the CLI-built rpi4 bundle, free to damage."""
    src, _ = built
    dst = tmp_path / "rpi4"
    shutil.copytree(src, dst)
    return dst


def test_a_good_bundle_verifies(bundle):
    proc = run_cli("verify", str(bundle), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["valid"] and r["target"] == "rpi4" and r["schema_version"] == 2
    text = " ".join(r["checks"])
    assert "sizes and sha256 match" in text and "model.tflite's inputs and outputs match" in text
    assert "model.pte loads in ExecuTorch" in text and "measurements.json matches" in text


def _edit_manifest(bundle, change) -> None:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m, indent=2) + "\n")
    (bundle / "measurements.json").unlink()  # it names the manifest's sha256; keep this to the manifest's damage


def _flip_byte(path, offset=1000):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "tampered artifact": (lambda b: _flip_byte(b / "model.tflite"), r"model.tflite: sha256 differs from the manifest's"),
    "truncated program": (lambda b: (b / "model.pte").write_bytes((b / "model.pte").read_bytes()[:5000]),
                          r"model.pte: 5,000 bytes but the manifest says [\d,]+; the file is truncated"),
    "missing file": (lambda b: (b / "report.md").unlink(), r"report.md: missing \(the manifest lists it\)"),
    "added file": (lambda b: (b / "extra.bin").write_bytes(b"x"), r"extra.bin: not listed in the manifest"),
    "truncated manifest": (lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text()[:300]),
                           r"manifest.json: not valid JSON"),
    "manifest off its schema": (lambda b: _edit_manifest(b, lambda m: m.pop("accuracy")),
                                r"manifest.json: does not match the manifest schema v2 at \(top level\): 'accuracy' is a required"),
    "manifest tensors wrong": (lambda b: _edit_manifest(b, lambda m: m["tensors"]["inputs"][0].update(scale=0.5)),
                               r"model.tflite: input '.*' has scale [\d.e-]+ but the manifest says 0.5"),
    "measurements of another build": (lambda b: (b / "measurements.json").write_text(json.dumps(
        {**json.loads((b / "measurements.json").read_text()), "manifest_sha256": "0" * 64})),
        r"measurements.json: refers to another manifest"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_found_and_the_file_named(bundle, kind):
    damage, message = DAMAGE[kind]
    damage(bundle)
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 7, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepack: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert str(bundle) in lines[0]  # the file is named with its path


def test_not_a_bundle_is_bad_input(tmp_path):
    proc = run_cli("verify", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    proc = run_cli("verify", str(tmp_path))
    assert proc.returncode == 7 and "manifest.json: missing" in proc.stderr


def test_schema_is_shipped_and_documented():
    from edgepack.paths import shipped_dir
    from helpers import ROOT

    schema = json.loads((shipped_dir("schemas") / "manifest-v2.schema.json").read_text())
    assert schema["properties"]["schema_version"] == {"const": 2}
    assert "task" in schema["required"]
    docs = (ROOT / "docs" / "ci.md").read_text()
    assert "manifest-v2.schema.json" in docs and "schema_version" in docs


def test_a_schema_1_bundle_still_verifies(bundle):
    """Bundles written before task kinds (schema 1: no task, scores in top-1 %) stay valid."""
    import hashlib

    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    m["schema_version"] = 1
    m.pop("task")
    m.pop("outputs")  # schema 2's record of the model's outputs
    m.pop("training")  # and of where training ran
    m["accuracy"].pop("higher_is_better")
    text = json.dumps(m, indent=2) + "\n"
    path.write_text(text)
    meas = json.loads((bundle / "measurements.json").read_text())
    meas["schema_version"] = 1
    meas.pop("stage_peak_mb")  # schema 2's per-stage peak memory
    meas["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (bundle / "measurements.json").write_text(json.dumps(meas, indent=2) + "\n")
    proc = run_cli("verify", str(bundle), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema_version"] == 1
    m["schema_version"] = 2  # the same document claiming schema 2 lacks the task
    path.write_text(json.dumps(m, indent=2) + "\n")
    (bundle / "measurements.json").unlink()
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 7 and "'task' is a required property" in proc.stderr
