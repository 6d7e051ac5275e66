"""The comparison's outputs: results.json (schema ``edgepack-compare/1``), results.csv, report.md,
report.html and two plots (accuracy vs latency, accuracy vs size, the Pareto fronts marked), all
written to a scratch folder and moved into place together; and the recommendation."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

SCHEMA = "edgepack-compare/1"
#: the columns of results.csv, in order (results.json holds the same per row)
COLUMNS = ("method", "family", "status", "metric", "higher_is_better", "float_accuracy", "accuracy", "accuracy_drop", "size_bytes", "gzip_bytes",
           "xz_bytes", "params", "nonzero_params", "weight_sparsity", "activation_zeros", "macs", "effective_macs",
           "latency_ms", "latency_label", "peak_memory_kb", "memory_basis", "energy_mj", "energy_label",
           "method_seconds", "build_seconds", "budgets_met", "reason")
#: keys every results.json has (tests hold the schema to these)
TOP_KEYS = ("schema", "target", "description", "model", "data", "device", "sets", "runtime", "threads", "rebenched",
            "budgets", "seconds", "rows", "recommendation")


def _metric(rows: list[dict]) -> tuple[str, bool]:
    """The comparison's metric as rows name it ("top-1 %", "MAE degrees") and its direction."""
    r = next((r for r in rows if r.get("metric")), {})
    return r.get("metric", "top-1 %"), r.get("higher_is_better", True)


def score_text(r: dict) -> str:
    """A row's deployed score with its unit: '91.20%' (a classifier's top-1), 'mAP@0.5 83.53%',
    'MAE 3.214 degrees'."""
    metric = r.get("metric", "top-1 %")
    unit = metric.rsplit(" ", 1)[1] if " " in metric else ""
    name = metric.rsplit(" ", 1)[0] if unit else metric
    if unit == "%":
        return f"{r['accuracy']:.2f}%" if name == "top-1" else f"{name} {r['accuracy']:.2f}%"
    return f"{name} {r['accuracy']:.4g}{' ' + unit if unit else ''}"


def _q(r: dict) -> float:
    """A row's task quality: its deployed score, negated for an error metric (lower is better)."""
    return r["accuracy"] if r.get("higher_is_better", True) else -r["accuracy"]


def pareto(rows: list[dict], cost: str) -> set[str]:
    """Methods no other successful method beats on both the task's quality and ``cost`` (lower)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(cost) is not None]
    front = set()
    for r in ok:
        dominated = any(o is not r and _q(o) >= _q(r) and o[cost] <= r[cost]
                        and (_q(o) > _q(r) or o[cost] < r[cost]) for o in ok)
        if not dominated:
            front.add(r["method"])
    return front


def recommend(rows: list[dict], profile) -> dict:
    """The method that meets every budget of the profile with the best deployed accuracy (ties:
    the faster, then the smaller), with the reason; when none meets them all, says so and names
    the most accurate method and what it breaks."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return {"method": None, "reason": "no method produced an artifact; see each row's reason"}
    key = lambda r: (-_q(r), r["latency_ms"] if r["latency_ms"] is not None else float("inf"), r["size_bytes"])  # noqa: E731
    meeting = sorted((r for r in ok if r.get("budgets_met")), key=key)
    if meeting:
        best = meeting[0]
        others = ", ".join(r["method"] for r in meeting[1:4])
        return {"method": best["method"], "meets_budgets": True,
                "reason": f"{best['method']} meets every budget of {profile.name} with the best deployed accuracy "
                          f"({score_text(best)}, {best['latency_ms']} ms, {best['size_bytes']:,} bytes) of the "
                          f"{len(meeting)} method(s) that do" + (f"; next: {others}" if others else "")}
    best = sorted(ok, key=key)[0]
    return {"method": None, "meets_budgets": False,
            "reason": f"no method meets every budget of {profile.name}; the most accurate, {best['method']} "
                      f"({score_text(best)}), breaks: {', '.join(best.get('broken') or ['?'])}"}


def write(doc: dict, dest: Path, *, bundles: Path | None = None) -> Path:
    """Write results.json, results.csv, report.md, report.html and the plots to ``dest``, with the
    methods' bundles moved from ``bundles`` to ``dest/bundles`` (``dest`` replaced as a whole: a
    half-written report never appears). Returns ``dest``."""

    doc = {"schema": SCHEMA, **doc}
    for cost, flag in (("latency_ms", "pareto_latency"), ("gzip_bytes", "pareto_size")):
        front = pareto(doc["rows"], cost)
        for r in doc["rows"]:
            r[flag] = r["method"] in front
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if bundles is not None and bundles.is_dir():
            shutil.move(str(bundles), tmp / "bundles")
        for r in doc["rows"]:
            if r.get("artifact"):
                r["artifact"] = f"bundles/{r['method']}/model.tflite"
        (tmp / "results.json").write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(doc["rows"])
        (tmp / "results.csv").write_text(buf.getvalue())
        plots = _plots(doc, tmp)
        (tmp / "report.md").write_text(markdown(doc, plots))
        (tmp / "report.html").write_text(html(doc, tmp, plots))
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def table(doc: dict) -> str:
    """The comparison as a Markdown table (failed methods with their reason)."""
    metric, _ = _metric(doc["rows"])
    head = ("method", "family", f"float ({metric})", f"deployed ({metric})", "size B", "gzip B", "non-zero params", "sparsity",
            "MACs", "eff. MACs", "latency ms", "arena KB", "energy mJ", "method s", "budgets", "Pareto")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | {r['family']} | failed: {r['reason']} |" + " |" * (len(head) - 3))
            continue
        marks = "".join(m for m, k in (("L", "pareto_latency"), ("S", "pareto_size")) if r.get(k))
        lines.append("| " + " | ".join([
            r["method"], r["family"], _fmt(r["float_accuracy"], ".2f"), _fmt(r["accuracy"], ".2f"),
            _fmt(r["size_bytes"], ","), _fmt(r["gzip_bytes"], ","), _fmt(r["nonzero_params"], ","),
            _fmt(r["weight_sparsity"], ".0%"), _fmt(r["macs"], ","), _fmt(r["effective_macs"], ","),
            _fmt(r["latency_ms"], ".4f"), _fmt(r["peak_memory_kb"]), _fmt(r["energy_mj"], ".4f"),
            _fmt(r["method_seconds"], ".0f"), "met" if r.get("budgets_met") else "broken: " + ", ".join(r.get("broken") or []),
            marks]) + " |")
    return "\n".join(lines)


def markdown(doc: dict, plots: list[str]) -> str:
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    lat = next((r["latency_label"] for r in ok if r.get("latency_label")), "-")
    energy = next((r["energy_label"] for r in ok if r.get("energy_label")), "-")
    rec = doc["recommendation"]
    metric, higher = _metric(doc["rows"])
    out = [f"# edgepack compare: {doc['target']} ({doc['model']} on {doc['data']})", "",
           f"{doc['description']}. {len(doc['rows'])} methods, {len(ok)} built, in {doc['seconds']:.0f} s.", "",
           f"**Recommendation:** {rec['method'] or 'none'}: {rec['reason']}", "",
           table(doc), "",
           f"- Latency: {lat}.", f"- Energy: {energy}.",
           f"- Score: {metric} on the held-out split ({'higher' if higher else 'lower'} is better); 'float' is the model "
           "after the method before export, 'deployed' the artifact. Sizes: the .tflite raw and gzip -9 (xz in results.csv).",
           "- Sparsity: zero weights of the conv/linear layers. Effective MACs count non-zero weights only: what a "
           "kernel that skips zeros would do. Dense int8 kernels (XNNPACK, CMSIS-NN) run every weight, so sparsity "
           "shows in the compressed size, not in the latency; the same holds for zero activations (activation_zeros "
           "in results.json).",
           "- Pareto: L on the accuracy-latency front, S on the accuracy-size (gzip) front.", ""]
    out += [f"![{p}]({p})" for p in plots]
    out += ["", "Each row is a normal build: `edgepack build --target " + doc["target"] + " --set ...` with the "
            "method's settings (results.json, `sets`)."]
    return "\n".join(out) + "\n"


def html(doc: dict, folder: Path, plots: list[str]) -> str:
    import base64
    import html as h

    rec = doc["recommendation"]
    head = [k for k in ("method", "family", "status", "metric", "float_accuracy", "accuracy", "size_bytes", "gzip_bytes",
                        "nonzero_params", "weight_sparsity", "macs", "effective_macs", "latency_ms", "peak_memory_kb",
                        "energy_mj", "method_seconds", "budgets_met", "pareto_latency", "pareto_size", "reason")]
    rows = "".join("<tr>" + "".join(f"<td>{h.escape(_fmt(r.get(k)))}</td>" for k in head) + "</tr>" for r in doc["rows"])
    imgs = "".join(f'<p><img alt="{p}" src="data:image/png;base64,{base64.b64encode((folder / p).read_bytes()).decode()}"></p>'
                   for p in plots)
    return (f"<!doctype html><meta charset=utf-8><title>edgepack compare {h.escape(doc['target'])}</title>"
            f"<style>td,th{{border:1px solid #ccc;padding:2px 6px;font:13px sans-serif}}table{{border-collapse:collapse}}</style>"
            f"<h1>edgepack compare: {h.escape(doc['target'])} ({h.escape(doc['model'])} on {h.escape(doc['data'])})</h1>"
            f"<p><b>Recommendation:</b> {h.escape(str(rec['method']))}: {h.escape(rec['reason'])}</p>"
            f"<table><tr>{''.join(f'<th>{k}</th>' for k in head)}</tr>{rows}</table>{imgs}\n")


def _plots(doc: dict, folder: Path) -> list[str]:
    """accuracy_vs_latency.png and accuracy_vs_size.png (Pareto front joined, labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    names = []
    for cost, label, fname, flag in (("latency_ms", "latency, ms", "accuracy_vs_latency.png", "pareto_latency"),
                                     ("gzip_bytes", "artifact size (gzip), bytes", "accuracy_vs_size.png", "pareto_size")):
        pts = [r for r in ok if r.get(cost) is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([r[cost] for r in pts], [r["accuracy"] for r in pts], s=18, color="tab:blue")
        front = sorted((r for r in pts if r.get(flag)), key=lambda r: r[cost])
        ax.plot([r[cost] for r in front], [r["accuracy"] for r in front], color="tab:red", lw=1, label="Pareto front")
        for r in pts:
            ax.annotate(r["method"], (r[cost], r["accuracy"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel(f"deployed {_metric(doc['rows'])[0]}")
        ax.set_title(f"{doc['target']}: {doc['model']} on {doc['data']}", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / fname, dpi=90, metadata={"Software": None})
        plt.close(fig)
        names.append(fname)
    return names
