"""``edgepack verify BUNDLE``: is this bundle exactly what edgepack wrote?

Checks, in order, each failure one line naming the file:
1. ``manifest.json`` is JSON and validates against the JSON Schema of its ``schema_version``
   (shipped in ``edgepack/schemas/``, documented in docs/ci.md);
2. the folder holds exactly the files the manifest lists (nothing missing, nothing extra), each
   with its recorded size and sha256, and every artifact entry agrees with that list;
3. the artifacts' tensors are what the manifest says: the TFLite model's inputs and outputs
   (shape, dtype, scale, zero-point) read back with LiteRT; each ``.pte`` is an ExecuTorch program
   and, where the host runtime can load it, has the recorded input shape; the C source holds the
   model's bytes;
4. ``measurements.json``, when present, validates against its schema and refers to this manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BundleError, UsageError
from ..fingerprint import file_sha256

#: files a bundle holds besides those its manifest lists
UNLISTED = ("manifest.json", "measurements.json")


@dataclass
class Verified:
    """A bundle that passed: its folder, manifest and what was checked."""

    bundle: Path
    manifest: dict
    checks: list[str] = field(default_factory=list)


def load_schema(kind: str, version: int) -> dict:
    """The shipped JSON Schema ``kind`` ("manifest" or "measurements") of ``version``."""
    from ..paths import shipped_dir

    path = shipped_dir("schemas") / f"{kind}-v{version}.schema.json"
    if not path.is_file():
        known = sorted(p.name for p in shipped_dir("schemas").glob(f"{kind}-v*.schema.json"))
        raise BundleError(f"{kind}.json has schema_version {version}, which this edgepack does not know "
                          f"(it knows {', '.join(known)}); use the edgepack version that built the bundle or newer")
    return json.loads(path.read_text())


def _validate(doc: dict, kind: str, where: str) -> None:
    import jsonschema

    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where}: no integer schema_version; not an edgepack {kind} (or one older than version 1)")
    schema = load_schema(kind, version)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        at = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"{where}: does not match the {kind} schema v{version} at {at}: {e.message}"
                          + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def check_documents(manifest: dict, measurements: dict) -> None:
    """A build's own manifest and measurements against their schemas, before anything is written, so a
    bundle edgepack writes is always one `edgepack verify` accepts. Raises BundleError (a bug)."""
    _validate(json.loads(json.dumps(manifest)), "manifest", "the manifest this build made (an edgepack bug: report it)")
    _validate(json.loads(json.dumps(measurements)), "measurements",
              "the measurements this build made (an edgepack bug: report it)")


def read_manifest(bundle: str | Path) -> tuple[Path, dict]:
    """The bundle folder and its parsed manifest. Raises UsageError / BundleError."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"bundle '{bundle}' is not a folder; give the folder a build wrote (e.g. dist/rpi4)")
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{path}: missing; this folder is not a complete edgepack bundle")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e}); the file is damaged or truncated") from e
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a JSON object")
    return bundle, manifest


def verify(bundle: str | Path) -> Verified:
    """Check a bundle as described in the module docstring. Returns what passed.

    Raises UsageError when ``bundle`` is not a folder and BundleError (one line, naming the file)
    for the first problem found."""
    bundle, manifest = read_manifest(bundle)
    out = Verified(bundle, manifest)
    _validate(manifest, "manifest", str(bundle / "manifest.json"))
    out.checks.append(f"manifest.json matches schema v{manifest['schema_version']}")

    listed = manifest["files"]
    present = {p.name for p in bundle.iterdir() if p.is_file()}
    others = sorted(p.name for p in bundle.iterdir() if not p.is_file())
    if others:
        raise BundleError(f"{bundle / others[0]}: not a file; a bundle holds files only")
    for name in sorted(listed):
        if name not in present:
            raise BundleError(f"{bundle / name}: missing (the manifest lists it); the bundle is incomplete")
    extra = sorted(present - set(listed) - set(UNLISTED))
    if extra:
        raise BundleError(f"{bundle / extra[0]}: not listed in the manifest; a file was added to the bundle")
    for name, rec in sorted(listed.items()):
        path = bundle / name
        size = path.stat().st_size
        if size != rec["size_bytes"]:
            raise BundleError(f"{path}: {size:,} bytes but the manifest says {rec['size_bytes']:,}; the file is "
                              f"{'truncated' if size < rec['size_bytes'] else 'altered'}")
        if file_sha256(path) != rec["sha256"]:
            raise BundleError(f"{path}: sha256 differs from the manifest's; the file was altered")
    for art in manifest["artifacts"]:
        rec = listed.get(art["file"])
        if rec is None or (rec["sha256"], rec["size_bytes"]) != (art["sha256"], art["size_bytes"]):
            raise BundleError(f"{bundle / 'manifest.json'}: artifact {art['file']} disagrees with the file list")
    out.checks.append(f"{len(listed)} file(s): sizes and sha256 match, nothing missing or extra")

    _check_tflite(bundle, manifest)
    out.checks.append("model.tflite's inputs and outputs match the manifest")
    for art in manifest["artifacts"]:
        if art["format"] == "pte":
            out.checks.append(_check_pte(bundle / art["file"], art))
    if "model_data.cc" in listed:
        _check_c_source(bundle, manifest)
        out.checks.append("model_data.cc holds model.tflite's bytes")

    mpath = bundle / "measurements.json"
    if mpath.is_file():
        try:
            meas = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{mpath}: not valid JSON ({e}); the file is damaged or truncated") from e
        _validate(meas, "measurements", str(mpath))
        if meas["manifest_sha256"] != file_sha256(bundle / "manifest.json"):
            raise BundleError(f"{mpath}: refers to another manifest (its manifest_sha256 differs); it does not belong "
                              "to this bundle")
        out.checks.append("measurements.json matches its schema and this manifest")
    return out


def _check_tflite(bundle: Path, manifest: dict) -> None:
    """The model's tensors, read back the way the build described them (convert.tflite.describe_io)."""
    from ..convert.tflite import describe_io
    from ..errors import ValidationError

    path = bundle / manifest["artifact"]["file"]
    try:
        got = describe_io(path.read_bytes())
    except (ValidationError, ValueError, RuntimeError) as e:
        raise BundleError(f"{path}: LiteRT cannot read it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    for side in ("inputs", "outputs"):
        want = manifest["tensors"][side]
        if not all(isinstance(w, dict) and {"name", "shape", "dtype", "scale", "zero_point"} <= set(w) for w in want):
            raise BundleError(f"{bundle / 'manifest.json'}: a tensor of tensors.{side} lacks its name, shape, dtype, "
                              f"scale or zero_point; the file was altered")
        if len(want) != len(got[side]):
            raise BundleError(f"{path}: {len(got[side])} {side} but the manifest lists {len(want)}")
        for w, g in zip(want, got[side]):
            for k in ("shape", "dtype", "scale", "zero_point"):
                ok = abs(g[k] - w[k]) <= 1e-6 * max(1.0, abs(g[k])) if k == "scale" else g[k] == w[k]
                if not ok:
                    raise BundleError(f"{path}: {side[:-1]} '{w['name']}' has {k} {g[k]} but the manifest says {w[k]}")


def _check_pte(path: Path, art: dict) -> str:
    data = path.read_bytes()
    if len(data) < 8 or not re.fullmatch(rb"ET\d\d", data[4:8]):
        raise BundleError(f"{path}: not an ExecuTorch program (no ETxx file identifier)")
    if not art["runs_on_host"]:
        return f"{path.name} is an ExecuTorch program ({art['backend']}: the host runtime cannot load it to read shapes)"
    from ..devices.executorch import input_shape_isolated
    from ..errors import ValidationError

    try:
        shape = input_shape_isolated(path)
    except ValidationError as e:
        raise BundleError(f"{path}: ExecuTorch cannot load it ({e})") from e
    want = art["tensors"]["inputs"][0]["shape"]
    if shape != want:
        raise BundleError(f"{path}: input shape {shape} but the manifest says {want}")
    return f"{path.name} loads in ExecuTorch with the recorded input shape"


def _check_c_source(bundle: Path, manifest: dict) -> None:
    path = bundle / "model_data.cc"
    text = path.read_text(encoding="utf-8", errors="replace")
    body = text[text.find("{") + 1 : text.find("}")]
    values = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]{2})", body))
    if values != (bundle / manifest["artifact"]["file"]).read_bytes():
        raise BundleError(f"{path}: its model array is not model.tflite's bytes")
