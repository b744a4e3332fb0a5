"""meshctl claim / release / claims / stewards: work items only one session may hold at a time."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from mesh.cli.main import common_parser, connect, run
from mesh.core.validate import shown
from mesh.errors import InvalidInput

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """'90m', '2h', '30s', '1d', '45' (seconds) -> seconds."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a duration (like 30s, 90m, 2h, 1d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def register(sub: Any) -> None:
    c = sub.add_parser(
        "claim",
        parents=[common_parser()],
        help="claim a work item (exit 3 if another holds it)",
        description="Claim TYPE NAME (e.g. `service i-match`). Exit 0 with the fencing token when "
        "granted; exit 3 printing the holder and when its claim ends if another session holds it.",
    )
    c.add_argument("type", help="kind of item, e.g. service, file, task")
    c.add_argument("name", help="the item, e.g. i-match or src/app.py")
    c.add_argument(
        "--ttl", type=duration, default=3600.0, help="the claim's maximum life (default 1h; max 7d)"
    )
    c.add_argument("--wait", type=duration, default=0.0, help="keep trying this long while another holds it")
    c.set_defaults(func=cmd_claim)

    r = sub.add_parser("release", parents=[common_parser()], help="release a work item this session holds")
    r.add_argument("type")
    r.add_argument("name")
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
    return run(_claim(args))


async def _claim(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json
    from mesh.core.validate import MAX_TTL, check_ttl, resource_name
    from mesh.errors import ClaimDenied
    from mesh.views import iso

    resource = resource_name(args.type, args.name)
    check_ttl(args.ttl)
    if not 0 <= args.wait <= MAX_TTL:
        raise InvalidInput(f"--wait must be from 0 to 7 days, not {args.wait:g} s")
    async with connect(args) as api:
        try:
            granted = await api.claim_once(resource, args.ttl, args.wait)
        except ClaimDenied as e:
            if args.json:
                print_json(
                    {
                        "granted": False,
                        "type": args.type,
                        "name": args.name,
                        "holder": e.holder,
                        "token": None,
                        "expires_at": iso(e.expires_at),
                    }
                )
            else:
                until = f" until {_clock(e.expires_at)}" if e.expires_at else ""
                print(f"{resource} is held by {e.holder}{until}", file=sys.stderr)
            return 3
    if args.json:
        print_json({"granted": True, **granted.to_json()})
    else:
        print(f"claimed {resource} — token {granted.token}, until {_clock(granted.expires_at)}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    return run(_release(args))


async def _release(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json

    async with connect(args) as api:
        released = await api.release(args.type, args.name)
    if args.json:
        print_json({"released": released, "type": args.type, "name": args.name})
    elif released:
        print(f"released {args.type}/{args.name}")
    else:
        print(f"{args.type}/{args.name} was not held by this session (nothing to release)")
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
        print_json({"epoch": info.epoch, "stewards": list(info.stewards)})
    else:
        print(f"epoch {info.epoch}: " + (", ".join(info.stewards) or "no steward config yet"))
    return 0
