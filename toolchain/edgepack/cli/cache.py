"""``edgepack cache info|clear``: the stage cache."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus, UsageError
from .options import number


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    ca = sub.add_parser("cache", help="show or clear the stage cache",
                        description="The stage cache keeps each build stage's output under a key over everything that "
                                    "can change it ($EDGEPACK_STAGE_CACHE_DIR or $EDGEPACK_CACHE_DIR, default ~/.cache/edgepack), capped at 5 GB "
                                    "(least recently used entries go first).")
    csub = ca.add_subparsers(dest="cache_command", metavar="SUBCOMMAND")
    csub.required = True
    ci = csub.add_parser("info", help="entries and size, per stage", description="Entries and size of the stage cache, per stage.")
    ci.add_argument("--json", action="store_true", help="print the figures as JSON")
    ci.set_defaults(func=_cmd_cache_info)
    cc = csub.add_parser("clear", help="remove entries", description="Remove every stage cache entry, or those not used "
                                                                     "for DAYS days.")
    cc.add_argument("--older-than", type=number(0.0, 36_500.0), metavar="DAYS", help="only entries last used more than DAYS days ago")
    cc.set_defaults(func=_cmd_cache_clear)
 


def _cmd_cache_info(args: argparse.Namespace) -> int:
    import json

    from ..stages.cache import StageCache

    info = StageCache().info()
    if args.json:
        print(json.dumps(info, indent=2))
        return ExitStatus.OK
    print(f"{info['root']}: {info['entries']} entries, {info['size_bytes'] / 1e6:,.1f} MB "
          f"(cap {info['cap_bytes'] / 1e9:g} GB)")
    for stage, s in info["stages"].items():
        print(f"  {stage:<12} {s['entries']:>5} entries  {s['size_bytes'] / 1e6:>10,.1f} MB")
    return ExitStatus.OK


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    from ..stages.cache import StageCache

    if args.older_than is not None and args.older_than < 0:
        raise UsageError(f"--older-than {args.older_than:g}: expected a number of days >= 0")
    n, size = StageCache().clear(args.older_than)
    print(f"removed {n} entries ({size / 1e6:,.1f} MB)")
    return ExitStatus.OK
