"""meshctl claim / release / claims / stewards: work items and paths only one session may hold at a time."""

from __future__ import annotations

import os
import sys
import time

from mesh.cli.main import bad_value, common_parser, connect, run, run_light
from mesh.core.errors import InvalidInput
from mesh.core.validate import shown

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from typing import Any

_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    r"""'90m', '2h', '30s', '1d', '45' (seconds) -> seconds.

    A number (digits, optionally `.` and digits; any decimal digits, as the regular expression `\d`)
    and an optional unit, spelled by hand: `re` is ~3 ms of a `meshctl claim` (tests/cli/test_duration.py
    holds it equal to `(\d+(?:\.\d+)?)([smhd]?)`)."""
    t = text.strip().lower()
    unit = t[-1:] if t[-1:] in ("s", "m", "h", "d") else ""
    number = t[: len(t) - len(unit)]
    whole, dot, fraction = number.partition(".")
    if not whole.isdecimal() or (dot and not fraction.isdecimal()):
        raise bad_value(f"{shown(text)} is not a duration (like 30s, 90m, 2h, 1d)")
    return float(number) * _UNIT[unit]


def register(sub: Any) -> None:
    c = sub.add_parser(
        "claim",
        parents=[common_parser()],
        help="claim a work item or paths (exit 3 if another holds it)",
        description="Claim TYPE NAME (e.g. `service i-match`), or paths: `claim path 'src/app/**' "
        "'docs/*.md'` (glob patterns from the project root; `**` crosses directories). Several names "
        "are granted all or none. Exit 0 with the fencing token when granted; exit 3 printing the "
        "holder and when its claim ends if another session holds it (or, for paths, an overlapping one).",
    )
    c.add_argument("type", help="kind of item, e.g. service, task; `path` for path patterns")
    c.add_argument("name", nargs="+", help="the item(s), e.g. i-match; or path patterns, e.g. 'src/app/**'")
    c.add_argument(
        "--ttl", type=duration, default=3600.0, help="the claim's maximum life (default 1h; max 7d)"
    )
    c.add_argument("--wait", type=duration, default=0.0, help="keep trying this long while another holds it")
    c.add_argument(
        "--shared", action="store_true", help="paths only: others may hold shared claims on them too"
    )
    c.set_defaults(func=cmd_claim)

    r = sub.add_parser(
        "release", parents=[common_parser()], help="release work items or paths this session holds"
    )
    r.add_argument("type")
    r.add_argument("name", nargs="+")
    r.set_defaults(func=cmd_release)

    ls = sub.add_parser("claims", parents=[common_parser()], help="every live claim in the mesh")
    ls.set_defaults(func=cmd_claims)

    st = sub.add_parser(
        "stewards",
        parents=[common_parser()],
        help="show the steward set (claim voters)",
        description="Show the stewards: the nodes whose votes grant claims. --recover makes "
        "this node the only steward of a new epoch: a last resort when a steward majority is "
        "gone for good. It waits one acceptor lease first, but if old stewards are in fact "
        "alive (partitioned, paused) two sessions could hold one item: only use it when "
        "they are really gone.",
    )
    st.add_argument("--recover", action="store_true", help="last resort: see the description")
    st.add_argument("--yes", action="store_true", help="confirm --recover without asking")
    st.set_defaults(func=cmd_stewards)


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "unknown"


def cmd_claim(args: argparse.Namespace) -> int:
    return run_light(args, lambda: _claim(args))


def _resources(args: argparse.Namespace) -> list[str]:
    """What the arguments claim: one claim on the union of path patterns, or each item."""
    from mesh.core.resources import PATH_TYPES, SHARED_PATH, path_resource
    from mesh.core.validate import resource_name

    if args.type in PATH_TYPES:
        return [path_resource(args.name, shared=args.shared or args.type == SHARED_PATH)]
    if args.shared:
        raise InvalidInput("--shared is for path claims (meshctl claim path PATTERN... --shared)")
    return [resource_name(args.type, n) for n in args.name]


def _hint_directories(args: argparse.Namespace) -> None:
    """`claim path src/app` claims that path only; say so when it is a directory here."""
    if args.type not in ("path", "path-shared"):
        return
    for n in args.name:
        if not any(c in n for c in "*?[{") and os.path.isdir(n):
            print(f"note: '{n}' claims that path only; claim '{n.rstrip('/')}/**' for everything under it",
                  file=sys.stderr)  # fmt: skip


async def _claim(args: argparse.Namespace) -> int:
    from mesh.claimset import claim_all
    from mesh.cli.output import print_json
    from mesh.core.errors import ClaimDenied
    from mesh.core.times import iso
    from mesh.core.validate import MAX_TTL, check_ttl

    resources = _resources(args)
    check_ttl(args.ttl)
    if not 0 <= args.wait <= MAX_TTL:
        raise InvalidInput(f"--wait must be from 0 to 7 days, not {args.wait:g} s")
    _hint_directories(args)
    async with connect(args) as api:
        try:
            granted = await claim_all(api, resources, args.ttl, args.wait)
        except ClaimDenied as e:
            if args.json:
                type_, _, name = resources[0].partition("/") if len(resources) == 1 else (args.type, "", "")
                print_json(
                    {
                        "granted": False,
                        "type": type_,
                        "name": name if len(resources) == 1 else list(args.name),
                        "holder": e.holder,
                        "token": None,
                        "expires_at": iso(e.expires_at),
                        "reason": str(e),
                    }
                )
            else:
                print(str(e), file=sys.stderr)
            return 3
    if args.json:
        if len(granted) == 1:
            print_json({"granted": True, **granted[0].to_json()})
        else:
            print_json({"granted": True, "claims": [g.to_json() for g in granted]})
    else:
        for g in granted:
            print(f"claimed {g.resource} — token {g.token}, until {_clock(g.expires_at)}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    return run_light(args, lambda: _release(args))


async def _release(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json
    from mesh.core.resources import PATH_TYPES

    what = f"{args.type}/{' '.join(args.name)}"
    async with connect(args) as api:
        if args.type in PATH_TYPES:
            from mesh import pathclaims  # path globs and the briefing: only for paths

            count = await pathclaims.release_paths(api, args.name)
        else:
            count = sum([await api.release(args.type, n) for n in args.name])
    if args.json:
        name = args.name[0] if len(args.name) == 1 else list(args.name)
        print_json({"released": count > 0, "count": count, "type": args.type, "name": name})
    elif count:
        print(f"released {what}" + (f" ({count} claims)" if count > 1 else ""))
    else:
        print(f"{what} was not held by this session (nothing to release)")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    return run(_claims(args))


async def _claims(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json

    async with connect(args) as api:
        claims = await api.claims()
    if args.json:
        print_json([c.to_json() for c in claims])
        return 0
    rows = [[c.type, c.name, c.holder, str(c.token), c.to_json()["expires_at"] or ""] for c in claims]
    if sys.stdout.isatty():
        from rich.table import Table

        from mesh.cli.output import console

        t = Table(pad_edge=False)
        for col in ("type", "name", "holder", "token", "ends"):
            t.add_column(col)
        for row in rows:
            t.add_row(*row)
        console().print(t if claims else "no live claims")
    else:
        for row in rows:
            print("\t".join(row))
    return 0


def cmd_stewards(args: argparse.Namespace) -> int:
    if args.recover and not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInput("--recover needs --yes when not run from a terminal")
        answer = input("Only if the old stewards are gone for good. Make this node the only steward? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not recovered")
            return 2
    return run(_stewards(args))


async def _stewards(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json

    async with connect(args) as api:
        info = await (api.recover_stewards() if args.recover else api.info())
    if args.json:
        print_json({"epoch": info.epoch, "stewards": list(info.stewards), "note": info.steward_note})
    else:
        print(f"epoch {info.epoch}: " + (", ".join(info.stewards) or "no steward config yet"))
        if info.steward_note:
            print(info.steward_note)
    return 0
