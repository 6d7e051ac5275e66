"""Command line: arguments -> ``api`` calls -> exit status. No pipeline logic lives here.

Heavy modules (torch, tensorflow) are imported only inside the command that needs them, so
``edgepack --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import EdgepackError, ExitStatus
from . import bench, board, build, cache, check, history, targets, tune, verify
from . import compare as compare_cmd
from .options import Parser

DESCRIPTION = """\
Compress a PyTorch model, convert it to full-integer TFLite (and ExecuTorch .pte) and measure it, driven by a
target profile (targets/NAME.toml)."""


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="edgepack", description=DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    build.add(sub)
    tune.add(sub)
    compare_cmd.add(sub)
    bench.add(sub)
    board.add(sub)
    history.add(sub)
    verify.add(sub)
    check.add(sub)
    targets.add(sub)
    cache.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgepack`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgepackError as e:
        print(f"edgepack: error: {e}", file=sys.stderr)
        return int(e.exit_status)
    except KeyboardInterrupt:
        print("edgepack: interrupted; nothing was written", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
