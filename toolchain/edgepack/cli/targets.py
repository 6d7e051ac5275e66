"""``edgepack targets list|show``: the known profiles, one resolved."""

from __future__ import annotations

import argparse

from ..errors import EdgepackError, ExitStatus


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    t = sub.add_parser("targets", help="list target profiles, or show one resolved",
                       description="Target profiles live in targets/ (and in folders listed in EDGEPACK_TARGET_PATH).")
    tsub = t.add_subparsers(dest="targets_command", metavar="SUBCOMMAND")
    tsub.required = True
    tl = tsub.add_parser("list", help="the known targets with their descriptions",
                         description="List the known target profiles: name, runtime, formats, description, file.")
    tl.set_defaults(func=_cmd_targets_list)
    ts = tsub.add_parser("show", help="a profile's resolved values and where each came from",
                         description="Show every value of a profile after `extends` is applied, and the file each "
                                     "value came from (the profile itself, a parent, or 'default').")
    ts.add_argument("target", metavar="NAME|PATH", help="a target name or a path to a .toml profile")
    ts.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                    help="show the profile as `edgepack build --set` would resolve it (repeatable)")
    ts.set_defaults(func=_cmd_targets_show)


def _cmd_targets_list(args: argparse.Namespace) -> int:
    from ..profiles.loader import known_targets, load_profile, resolve_target

    rows = []
    for name in known_targets():
        try:
            p = load_profile(name)
            rows.append((p.name, p.runtime.name, ",".join(p.runtime.formats), p.description, str(resolve_target(name))))
        except EdgepackError as e:  # one broken profile must not hide the others
            rows.append((name, "-", "-", f"INVALID: {e}", str(resolve_target(name))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}  [{r[4]}]")
    return ExitStatus.OK


def _cmd_targets_show(args: argparse.Namespace) -> int:
    import dataclasses

    from ..profiles.loader import load_profile

    p = load_profile(args.target, args.overrides)
    print(f"# {p.name}: {p.description}")
    print(f"# file: {p.source}{'  (extends ' + p.extends + ')' if p.extends else ''}")
    for top in dataclasses.fields(p):
        if top.metadata.get("internal") or not dataclasses.is_dataclass(getattr(p, top.name)):
            continue
        print(f"\n[{top.name}]")
        section = getattr(p, top.name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if value is None:
                continue
            shown = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, tuple) else (
                f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value)
            print(f"{f.name} = {shown}  # from {p.origin_of(top.name + '.' + f.name)}")
    return ExitStatus.OK
