"""Regenerate the command sections of docs/cli.md from the CLI's own help (the source of truth).

Run: .venv/bin/python docs/generate_cli.py; with --check it only says whether the file is current
(tests/test_workflow.py runs that).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent / "cli.md"
HEAD = "# Command reference\n\nGenerated from the CLI's own help; the help is the source of truth.\n\n"


def _commands(parser: argparse.ArgumentParser, prefix: str = "edgepack") -> list[tuple[str, str]]:
    out = [(prefix, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, f"{prefix} {name}")
    return out


def render() -> str:
    """docs/cli.md as it should be: the help of every command, then the hand-written sections kept."""
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: fix the width
    from edgepack.cli.main import _parser

    parser = _parser()
    parser.prog = "edgepack"
    body = "".join(f"## {name}\n\n```\n{text.rstrip()}\n```\n\n" for name, text in _commands(parser))
    text = DOC.read_text()
    rest = text[text.index("## Errors"):]
    return HEAD + body + rest


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        if DOC.read_text() != text:
            print("docs/cli.md is out of date: run .venv/bin/python docs/generate_cli.py", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    DOC.write_text(text)
