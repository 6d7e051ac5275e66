"""The bundle is written atomically and never overwrites what edgepack did not write."""

from __future__ import annotations

import json

import pytest
from edgepack.errors import UsageError
from edgepack.ship.bundle import write_bundle


def _files(tag: str) -> dict[str, bytes]:
    return {"model.tflite": tag.encode() * 10, "manifest.json": json.dumps({"tag": tag}).encode(), "report.md": b"# r\n"}


def test_writes_and_replaces_whole_bundle(tmp_path):
    out = tmp_path / "dist" / "rpi4"
    write_bundle(out, _files("one"))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.tflite", "report.md"]
    write_bundle(out, _files("two"))
    assert json.loads((out / "manifest.json").read_text()) == {"tag": "two"}
    # no temporary folders are left next to the bundle
    assert [p.name for p in out.parent.iterdir()] == ["rpi4"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)


def test_a_bundle_with_programs_can_be_rebuilt(tmp_path):
    """A bundle holding .pte programs is edgepack's own: the next build replaces it."""
    from edgepack.convert.executorch import FILES

    out = tmp_path / "rpi4"
    write_bundle(out, {**_files("one"), **{name: b"pte" for name in FILES.values()}})
    write_bundle(out, _files("two"))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.tflite", "report.md"]


def test_every_file_a_build_writes_is_known_as_the_bundles_own(tmp_path):
    """A detection bundle (its decoders) and a microcontroller bundle (its C sources) are replaced
    by the next build into the same folder, not refused as someone else's files."""
    from edgepack.convert.executorch import FILES as PTE
    from edgepack.convert.mcu_bundle import FILES as MCU
    from edgepack.mcu.cprog_run import KERNELS
    from edgepack.ship.bundle import BUNDLE_FILES
    from edgepack.tasks.detect_judge import decoder_files

    from edgepack.stages.program import FILES as PROGRAM

    written = {*decoder_files(), *MCU, *PTE.values(), *KERNELS, *PROGRAM}
    assert written <= set(BUNDLE_FILES), written - set(BUNDLE_FILES)
    out = tmp_path / "rpi4"
    write_bundle(out, {**_files("one"), **decoder_files()})
    write_bundle(out, _files("two"))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.tflite", "report.md"]


def test_failure_mid_write_keeps_previous_bundle(tmp_path):
    out = tmp_path / "rpi4"
    write_bundle(out, _files("good"))
    broken = {"model.tflite": b"partial", "manifest.json": None}  # the second file cannot be written
    with pytest.raises(TypeError):
        write_bundle(out, broken)
    assert json.loads((out / "manifest.json").read_text()) == {"tag": "good"}
    assert (out / "model.tflite").read_bytes() == b"good" * 10
    assert [p.name for p in tmp_path.iterdir()] == ["rpi4"]


def test_failure_leaves_nothing_when_there_was_nothing(tmp_path):
    out = tmp_path / "rpi4"
    with pytest.raises(TypeError):
        write_bundle(out, {"model.tflite": b"x", "manifest.json": None})
    assert list(tmp_path.iterdir()) == []


def test_refuses_folders_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match=r"output folder '.*mine' holds files edgepack did not write \(thesis.tex\)"):
        write_bundle(out, _files("x"))
    assert (out / "thesis.tex").read_text() == "precious"
    f = tmp_path / "afile"
    f.write_text("keep")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        write_bundle(f, _files("x"))
    assert f.read_text() == "keep"
