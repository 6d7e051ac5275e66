"""Stage: the pruned model to a float TFLite (PyTorch -> ONNX -> onnx2tf), checked against PyTorch."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..progress import Reporter


@dataclass
class ConvertOut:
    tflite: bytes  # the float TFLite
    layout: str  # "NHWC" or "as-is"
    saved_model: bytes  # the SavedModel folder as a tar (calibration converts from it)
    check: object  # validate.FloatCheck: float TFLite vs PyTorch
    notes: tuple[str, ...] = ()  # where the TFLite computes something other than the model (for the runtime)

    def saved_model_dir(self, work: Path) -> Path:
        """The SavedModel unpacked under ``work``."""
        dest = work / "saved_model"
        if not dest.exists():
            with tarfile.open(fileobj=io.BytesIO(self.saved_model)) as tar:
                tar.extractall(dest, filter="data")
        return dest


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def run(inp, pruned, work: Path, runner, rep: Reporter) -> ConvertOut:
    from ..convert.tflite import convert_float
    from ..measure.accuracy import check_float

    conv = convert_float(pruned.result.model, inp.example, work / "convert", samples=inp.calibration["x"],
                         runtime=inp.profile.runtime.name, flex=inp.profile.runtime.flex)
    for note in conv.notes:
        rep.warn(note)
    check = check_float(pruned.result.model, conv.tflite, inp.splits.x_eval, conv.layout, runner)
    rep.info(f"float TFLite {len(conv.tflite):,} bytes, input layout {conv.layout}; vs PyTorch max |diff| "
             f"{check.max_abs_diff:.2e}")
    return ConvertOut(conv.tflite, conv.layout, _tar(conv.saved_model_dir), check, conv.notes)
