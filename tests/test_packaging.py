"""edgepack outside this repository: a wheel installed in a fresh virtual environment finds its
shipped profiles, calibration manifests and schemas, and builds from any working directory; the
license is declared; bundles record no absolute paths of the building machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import EPOCH, ROOT, SHIPPED


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                           str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("edgepack-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment with the wheel installed; the heavy dependencies are reused from
    the test environment's site-packages through a plain path entry (no .pth of it is processed,
    so the editable install of the source tree is not importable there)."""
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=300)
    site = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "_edgepack_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                           "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env


def _run(venv: Path, *args: str, cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEPACK_TARGET_PATH")}
    return subprocess.run([str(venv / "bin" / "edgepack"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, **(extra_env or {})}, timeout=2400)


def test_wheel_ships_profiles_calibration_schemas_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for t in SHIPPED:
        assert f"edgepack/targets/{t}.toml" in names
    assert {"edgepack/calibration_sets/digits-png.toml", "edgepack/calibration_sets/digits_source.py",
            "edgepack/ship/schemas/manifest-v1.schema.json", "edgepack/ship/schemas/measurements-v1.schema.json"} <= set(names)
    assert sum(n.startswith("edgepack/calibration_sets/digits-png/") and n.endswith(".png") for n in names) >= 100
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_installed_edgepack_runs_from_any_folder(venv, tmp_path, artifacts):
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edgepack; print(edgepack.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), f"edgepack imported from {where}, not the installed wheel"

    listed = _run(venv, "targets", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(SHIPPED)
    assert str(ROOT) not in listed.stdout

    # a build from an unrelated folder, calibrated on a shipped calibration set named by its name
    proc = _run(venv, "build", "--target", "cortex-m4", "--calibration", "digits-png", "--out", "out", "--quiet",
                cwd=tmp_path, extra_env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = tmp_path / "out" / "cortex-m4"
    assert _run(venv, "verify", str(bundle), cwd=tmp_path).returncode == 0
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["calibration"]["manifest"] == "edgepack:calibration/digits-png.toml" and m["calibration"]["samples"] == 160
    assert m["target"]["profile_file"] == "edgepack:targets/cortex-m4.toml"
    # the installed package's profile is the repository's file (targets/ stays the single source)
    ours = artifacts["cortex-m4"].manifest
    assert m["target"]["profile_sha256"] == ours["target"]["profile_sha256"]
    assert m["model"]["state_sha256"] == ours["model"]["state_sha256"]  # the same demo weights


def test_manifests_record_no_machine_paths(artifacts, built):
    """No absolute path of the building machine: the repository, the home folder, the temp folder."""
    forbidden = [str(ROOT), str(Path.home()), "/tmp/", str(Path(os.environ.get("TMPDIR", "/tmp")))]
    bundles = [b.out_dir for b in artifacts.values()] + [built[0]]
    for d in bundles:
        for name in ("manifest.json", "report.md"):
            text = (d / name).read_text()
            hits = [f for f in forbidden if f in text]
            assert not hits, f"{d / name} holds {hits}"
        m = json.loads((d / "manifest.json").read_text())
        assert len(m["target"]["profile_sha256"]) == 64 and not m["target"]["profile_file"].startswith("/")


def test_tests_read_nothing_beside_the_repository_except_through_the_skipping_helper(monkeypatch):
    """A clone with nothing beside it passes: only fixture_models.third_party_dir() looks outside the
    repository, and third_party_model() skips with the reason when the folder is absent."""
    import re

    outside = re.compile(r"\.\./shared|parents?\[\d\]\s*/\s*\"shared\"|\"shared\"\s*/|mlperf-tiny\"|ROOT\.parent")
    offenders = []
    for folder in ("tests", "device_tests"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name in ("fixture_models.py", "test_packaging.py"):
                continue
            offenders += [f"{path.name}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if outside.search(line)]
    assert offenders == []
    import fixture_models

    src = (ROOT / "tests" / "fixture_models.py").read_text()
    assert "pytest.skip(" in src and "return path if path.is_dir() else None" in src
    monkeypatch.setenv(fixture_models.THIRD_PARTY_ENV, "/nonexistent-edgepack-models")
    with pytest.raises(pytest.skip.Exception, match="not present"):
        fixture_models.third_party_model("kws_ref_model.tflite")
