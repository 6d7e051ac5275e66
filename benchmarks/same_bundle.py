"""Are two bundles of one build the same? Every artifact byte for byte, and manifest.json equal
except the fields that name the code that built them.

    .venv/bin/python benchmarks/same_bundle.py BEFORE/rpi4 AFTER/rpi4

How the restructuring of the package was checked (docs/design.md): the demo built at the commit
before and after, with the build time pinned, e.g.

    SOURCE_DATE_EPOCH=1796000000 edgepack build --target rpi4 --out /tmp/before --quiet   # old checkout
    SOURCE_DATE_EPOCH=1796000000 edgepack build --target rpi4 --out /tmp/after --quiet    # new checkout
    .venv/bin/python benchmarks/same_bundle.py /tmp/before/rpi4 /tmp/after/rpi4

``measurements.json`` holds what the run measured (latency, stage times) and is not compared.
Prints one line per file and exits 1 when anything else differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: manifest fields that hash edgepack's own source (its code fingerprint is part of every stage key)
CODE_FIELDS = ("cache_keys",)
#: files whose text lists those fields (report.md prints the stage keys), compared without them
LISTS_CODE_FIELDS = ("report.md",)


def _without_keys(text: str) -> str:
    """report.md without its stage-key table rows (``| stage | `sha256` |``)."""
    return "\n".join(line for line in text.splitlines() if not (line.startswith("| ") and line.count("`") == 2
                                                                and len(line.split("`")[1]) == 64))


def compare(before: Path, after: Path) -> list[str]:
    """Lines describing each difference beyond the code-naming fields (empty: the same)."""
    problems = []
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    for name in names:
        a, b = before / name, after / name
        if name == "measurements.json":
            print(f"{name:20s} not compared (this run's timings)")
            continue
        if not (a.is_file() and b.is_file()):
            problems.append(f"{name}: only in {'before' if a.is_file() else 'after'}")
            continue
        if a.read_bytes() == b.read_bytes():
            print(f"{name:20s} byte-identical")
            continue
        if name == "manifest.json":
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            for field in CODE_FIELDS:
                ma.pop(field, None), mb.pop(field, None)
            for listed in LISTS_CODE_FIELDS:  # their sha256 follows the keys they print
                for m in (ma, mb):
                    m.get("files", {}).pop(listed, None)
            if ma == mb:
                print(f"{name:20s} identical except {', '.join(CODE_FIELDS)} and the sha256 of {', '.join(LISTS_CODE_FIELDS)}")
                continue
            diff = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
            problems.append(f"{name}: differs in {', '.join(diff)}")
        elif name in LISTS_CODE_FIELDS and _without_keys(a.read_text()) == _without_keys(b.read_text()):
            print(f"{name:20s} identical except its stage-key table")
        else:
            problems.append(f"{name}: differs")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = compare(Path(argv[0]), Path(argv[1]))
    for p in problems:
        print(f"DIFFERENT {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
