"""Converter failures in edgepack's terms: which operator of which layer failed, at which stage, and
what the user can do, instead of a converter's own log (ANSI colours, advice about command-line
flags an edgepack user cannot pass)."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: onnx2tf advice that names its own command-line flags: never shown to edgepack users
_FLAG_ADVICE = re.compile(r"(use|with) the `?-{1,2}[a-z_]+`? (or `?-{1,2}[a-z_]+`? )?option|try the -[a-z]+ option|"
                          r"convert again with", re.I)


def clean(text: str) -> str:
    """Converter output without colour codes, flag advice or blank lines, one space between words."""
    lines = []
    for line in _ANSI.sub("", text).splitlines():
        line = re.sub(r"^\s*(ERROR|WARNING|INFO):\s*", "", line).strip()
        if line and not _FLAG_ADVICE.search(line):
            lines.append(line)
    return " | ".join(lines)


def layer_of(onnx_name: str) -> str | None:
    """"/blocks/blocks.0/conv2/Conv" -> "blocks.0.conv2": the PyTorch module an exported node came
    from (torch.onnx names nodes by module path, repeating each parent's name)."""
    parts = [p for p in onnx_name.strip("/").split("/")[:-1] if p]
    kept = []
    for p in parts:
        if kept and p.startswith(kept[-1] + "."):
            kept[-1] = p  # "blocks" then "blocks.0" is one level
        elif not kept or p != kept[-1]:
            kept.append(p)
    name = kept[-1] if kept else None
    if name and len(kept) > 1 and not name.startswith(kept[0]):
        name = ".".join(kept)
    return name


def explain_onnx2tf(exc: BaseException, log: str) -> str:
    """One line for an onnx2tf failure: the operator and layer, what went wrong, what to do."""
    text = clean(f"{exc} {log}")
    node = re.search(r"name='(/[^']+)'", text) or re.search(r"onnx_op_name: (\S+)", text)
    op = re.search(r"onnx_op_type: (\w+)", text)
    where = ""
    if node:
        layer = layer_of(node.group(1))
        op_type = op.group(1) if op else node.group(1).rsplit("/", 1)[-1].split("_")[0]
        where = f" at the {op_type} of layer {layer}" if layer else f" at {node.group(1)}"
    shapes = re.search(r"Dimensions must be equal, but are (\d+) and (\d+).*?input shapes: (\[[^\]]*\]), (\[[^\]]*\])", text)
    if shapes:
        return (f"conversion to TFLite failed{where}: its inputs have shapes {shapes.group(3)} and {shapes.group(4)} "
                "after onnx2tf moved channels last (it lost track of the channel axis, typically after slicing or "
                "reshaping channels); rewrite that slice/reshape in the model (e.g. slice before the concatenation) "
                "or report the model")
    depth = re.search(r"Depth of input \((\d+)\) is not a multiple of input depth of filter \((\d+)\)", text)
    if depth:
        return (f"conversion to TFLite failed{where}: it receives {depth.group(1)} channels where its weights expect "
                f"{depth.group(2)}, because onnx2tf lost track of the channel axis upstream (a reshape, transpose or "
                "slice of channels it could not follow when moving channels last); report the model")
    if "does not match the following pattern" in text:
        bad = re.search(r"pattern\. \S+ \| (\S+)", text)
        return (f"conversion to TFLite failed: a tensor name{' (' + bad.group(1) + ')' if bad else ''} is not valid in "
                "TensorFlow; this is edgepack's to fix, please report the model")
    first = re.sub(r"\s+", " ", text)[:300]
    return f"conversion to TFLite (onnx2tf) failed{where}: {first}"
