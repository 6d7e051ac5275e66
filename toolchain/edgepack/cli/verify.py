"""``edgepack verify``: is a bundle exactly what edgepack wrote."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    v = sub.add_parser("verify", help="check that a bundle is exactly what edgepack wrote",
                       description="Verify a bundle: manifest.json against the JSON Schema of its schema_version, every "
                                   "file's size and sha256 against the manifest (nothing missing, nothing added), the "
                                   "artifacts' tensors against the manifest, measurements.json against its schema.",
                       epilog="exit status: 0 valid; 2 not a folder; 7 damaged, incomplete or altered (the file is named).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("bundle", metavar="BUNDLE", help="a bundle folder written by `edgepack build` (e.g. dist/rpi4)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from ..ship.verify import verify

    v = verify(args.bundle)
    if args.json:
        print(json.dumps({"bundle": str(v.bundle), "valid": True, "target": v.manifest["target"]["name"],
                          "schema_version": v.manifest["schema_version"], "checks": v.checks}, indent=2))
    else:
        print(f"{v.bundle}: valid edgepack bundle for {v.manifest['target']['name']} (schema v{v.manifest['schema_version']})")
        for line in v.checks:
            print(f"  ok  {line}")
    return ExitStatus.OK
