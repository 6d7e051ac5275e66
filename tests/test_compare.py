"""`edgepack compare`: real builds of a few methods on the demo (short epochs), what each artifact
holds (zeros kept through export, at most K codes per layer, int8 after QAT, float activations
for dynamic-range, a student with fewer MACs), a failing method reported while the rest go on,
the results' schema, and the CLI's errors and exit statuses."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import run_cli

SHORT = ("sparsity.epochs=1", "student.epochs=3", "quantization.levels_epochs=1", "pruning.recovery_epochs=1")
METHODS = "float32,int8,dynamic-range,float16,qat,kmeans-16,magnitude,sparse-float,student-kd"


@pytest.fixture(scope="module")
def compared(tmp_path_factory, monkeypatch_module):
    """One comparison with a method whose setting is invalid (its build fails) among real ones."""
    from edgepack import api
    from edgepack.compare import methods

    bad = methods.Method("broken", "test", ("quantization.clusters=999",), "a setting out of range")
    monkeypatch_module.setitem(methods.BY_NAME, "broken", bad)
    out = tmp_path_factory.mktemp("compare")
    doc = api.compare("rpi4", methods=METHODS + ",broken", out=out, sets=SHORT, rebench_rounds=1)
    return doc, out / "rpi4"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def rows(doc):
    return {r["method"]: r for r in doc["rows"]}


def weights_of(folder, method):
    from edgepack.compress.quantize.tflite_graph import weight_tensors

    return weight_tensors((folder / "bundles" / method / "model.tflite").read_bytes())


def test_a_failing_method_is_a_row_with_its_reason_and_the_rest_go_on(compared):
    doc, _ = compared
    r = rows(doc)
    assert r["broken"]["status"] == "failed" and "clusters" in r["broken"]["reason"] and "\n" not in r["broken"]["reason"]
    assert all(r[m]["status"] == "ok" for m in METHODS.split(",")), {m: r[m]["reason"] for m in r}


def test_results_follow_the_schema_and_the_report_is_complete(compared):
    from edgepack.compare.report import COLUMNS, SCHEMA, TOP_KEYS

    doc, folder = compared
    saved = json.loads((folder / "results.json").read_text())
    assert saved["schema"] == SCHEMA and tuple(saved) == TOP_KEYS
    assert all(set(COLUMNS) <= set(row) for row in saved["rows"])
    with open(folder / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == COLUMNS and len(table) == len(doc["rows"])
    md = (folder / "report.md").read_text()
    assert "Recommendation" in md and "broken" in md and "accuracy_vs_latency.png" in md
    assert (folder / "accuracy_vs_latency.png").stat().st_size > 5000 and (folder / "accuracy_vs_size.png").is_file()
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    ok = [x for x in saved["rows"] if x["status"] == "ok"]
    assert any(x["pareto_latency"] for x in ok) and any(x["pareto_size"] for x in ok)
    assert all("host" in x["latency_label"] and x["latency_ms"] > 0 for x in ok)
    assert all(x["energy_label"].startswith(("estimated", "measured")) for x in ok)
    assert all(0.0 < x["activation_zeros"] < 1.0 for x in ok)  # every row's artifact measured alike (ReLU zeros)
    assert saved["recommendation"]["reason"]


def test_unstructured_zeros_survive_the_int8_export(compared):
    doc, folder = compared
    r = rows(doc)["magnitude"]
    assert r["weight_sparsity"] == pytest.approx(0.7, abs=0.03)
    codes = np.concatenate([t["values"] for t in weights_of(folder, "magnitude")])
    assert (codes == 0).mean() > 0.6
    assert r["gzip_bytes"] < rows(doc)["int8"]["gzip_bytes"] * 0.85
    assert r["effective_macs"] < 0.45 * r["macs"]


def test_clustered_weights_have_at_most_k_codes_per_layer_in_the_artifact(compared):
    _, folder = compared
    tensors = weights_of(folder, "kmeans-16")
    assert tensors and all(t["dtype"] == "int8" for t in tensors)
    assert max(len(np.unique(t["values"])) for t in tensors) <= 16
    # the int8 baseline has many more
    assert max(len(np.unique(t["values"])) for t in weights_of(folder, "int8")) > 64


def test_qat_exports_to_full_integer_int8(compared):
    from edgepack.devices.host import interpreter

    doc, folder = compared
    r = rows(doc)["qat"]
    assert r["quantization"]["activations"] == "int8" and r["accuracy"] > 90
    it = interpreter((folder / "bundles" / "qat" / "model.tflite").read_bytes())
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert all(t["dtype"] == "int8" for t in weights_of(folder, "qat"))


def test_dynamic_range_keeps_float_activations_and_int8_weights(compared):
    from edgepack.devices.host import interpreter

    doc, folder = compared
    it = interpreter((folder / "bundles" / "dynamic-range" / "model.tflite").read_bytes())
    assert it.get_input_details()[0]["dtype"] == np.float32 and it.get_output_details()[0]["dtype"] == np.float32
    # the converter leaves small tensors (a depthwise 3x3 kernel) float: most weights, not all
    assert share(weights_of(folder, "dynamic-range"), "int8") > 0.8
    assert share(weights_of(folder, "float16"), "float16") > 0.8
    assert rows(doc)["dynamic-range"]["quantization"]["activations"] == "float32"


def share(tensors, dtype: str) -> float:
    """Fraction of the stored weight values held in ``dtype``."""
    return sum(t["values"].size for t in tensors if t["dtype"] == dtype) / sum(t["values"].size for t in tensors)


def test_sparse_float_stores_tflite_sparse_tensors(compared):
    doc, folder = compared
    tensors = weights_of(folder, "sparse-float")
    assert any(t["sparse"] for t in tensors)
    assert rows(doc)["sparse-float"]["size_bytes"] < 0.8 * rows(doc)["float32"]["size_bytes"]


def test_a_student_has_fewer_macs_than_its_teacher(compared):
    doc, _ = compared
    r = rows(doc)
    assert r["student-kd"]["macs"] < 0.45 * r["int8"]["macs"]
    assert r["student-kd"]["weights"]["student"]["distill"] is True


@pytest.mark.parametrize("target", ["rpi4", "cortex-m4"])
def test_every_method_is_a_valid_set_of_overrides(target):
    """Each method's settings load as a profile of the shipped targets (what `compare` builds)."""
    from edgepack.compare.methods import METHODS, select
    from edgepack.profiles.loader import load_profile

    assert len({m.name for m in METHODS}) == len(METHODS) == 26
    for m in METHODS:
        assert all("=" in s and "." in s.split("=")[0] for s in m.sets), m.name
        load_profile(target, m.sets)
    assert [m.name for m in select("structured pruning")] == ["structured-0.3", "structured-0.5", "structured-0.7"]


def test_cli_lists_methods_and_refuses_unknown_ones(tmp_path):
    p = run_cli("compare", "--list")
    assert p.returncode == 0 and "rigl" in p.stdout and "--set sparsity.method=rigl" in p.stdout
    p = run_cli("compare", "--target", "rpi4", "--methods", "int8,nosuch", "--out", str(tmp_path))
    assert p.returncode == 2 and "unknown method 'nosuch'" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
    p = run_cli("compare", "--target", "rpi4", "--data", "nosuch.npz", "--out", str(tmp_path))
    assert p.returncode == 2 and not any(tmp_path.iterdir())


def test_cli_exits_4_when_no_method_meets_the_budgets(compared, tmp_path):
    p = run_cli("compare", "--target", "rpi4", "--methods", "int8", "--rounds", "0", "--out", str(tmp_path),
                "--set", "budgets.max_model_kb=0.001", *[a for s in SHORT for a in ("--set", s)])
    assert p.returncode == 4, p.stderr[-2000:]
    assert "no method meets every budget" in p.stdout and (tmp_path / "rpi4" / "results.json").is_file()


def test_a_rows_score_is_shown_in_its_tasks_metric():
    from edgepack.compare.report import score_text

    assert score_text({"metric": "top-1 %", "accuracy": 91.2}) == "91.20%"
    assert score_text({"metric": "mAP@0.5 %", "accuracy": 83.529}) == "mAP@0.5 83.53%"
    assert score_text({"metric": "MAE degrees", "accuracy": 3.21449}) == "MAE 3.214 degrees"
