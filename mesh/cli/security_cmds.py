"""meshctl init / join-token: create, import, rotate and hand out a mesh's credentials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.cli.main import common_parser
from mesh.cli.output import print_json
from mesh.errors import ConfigError

if TYPE_CHECKING:
    from mesh.security import MeshCA


def register(sub: Any) -> None:
    """Add `init` and `join-token` to meshctl."""
    init = sub.add_parser(
        "init",
        parents=[common_parser()],
        help="create (or import, or rotate) this mesh's credentials",
        description=(
            "Create the mesh's CA under HOME/meshes/MESH/credentials (nothing happens if it exists). "
            "With --from, install another machine's credentials from its join token. With --rotate, "
            "replace the CA: this revokes every other member until it gets the new token; restart all nodes."
        ),
    )
    init.add_argument(
        "--from",
        dest="source",
        metavar="TOKEN-or-FILE",
        default=None,
        help="join token from 'meshctl join-token' on a member machine, or a file holding it ('-' = stdin)",
    )
    init.add_argument("--rotate", action="store_true", help="replace the mesh CA with a new one (revocation)")
    init.add_argument("--force", action="store_true", help="replace existing, different credentials")
    init.set_defaults(func=cmd_init)

    tok = sub.add_parser(
        "join-token",
        parents=[common_parser()],
        help="print the token another machine needs to join this mesh (it is the mesh secret)",
        description=(
            "Print this mesh's join token. Anyone holding it is a member: pass it like a password "
            "(ssh, a password manager), then run 'meshctl init --from TOKEN' on the other machine."
        ),
    )
    tok.add_argument("--out", type=Path, default=None, help="write the token to this file (mode 0600)")
    tok.set_defaults(func=cmd_join_token)


def _report(args: argparse.Namespace, ca: MeshCA, action: str, message: str) -> int:
    from mesh import security

    cdir = security.credentials_dir(Path(args.home), ca.mesh)
    if getattr(args, "json", False):
        print_json({"mesh": ca.mesh, "fingerprint": ca.fingerprint, "action": action, "path": str(cdir)})
    else:
        print(message)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """meshctl init [--from TOKEN-or-FILE] [--rotate] [--force]."""
    from mesh import security

    home = Path(args.home)
    if args.source is not None:
        if args.rotate:
            raise ConfigError("--from and --rotate do not go together: rotate on one machine, then import")
        source = sys.stdin.read() if args.source == "-" else args.source
        # Without an explicit --mesh the token names the mesh; an explicit, different one is a mistake.
        mesh = args.mesh if getattr(args, "mesh_explicit", True) else None
        ca, changed = security.import_token(home, source, mesh, force=args.force)
        hint = "" if ca.mesh == args.mesh else f" (use --mesh {ca.mesh} or MESH_MESH={ca.mesh})"
        if not changed:
            return _report(args, ca, "unchanged", f"mesh {ca.mesh!r} already has these credentials{hint}")
        return _report(args, ca, "imported", f"joined mesh {ca.mesh!r}: CA {ca.fingerprint}{hint}")
    if args.rotate or args.force:
        existed = security.has_credentials(home, args.mesh)
        ca = security.rotate(home, args.mesh)
        if not existed:
            return _report(
                args, ca, "created", f"created credentials for mesh {args.mesh!r}: CA {ca.fingerprint}"
            )
        return _report(
            args,
            ca,
            "rotated",
            f"rotated mesh {args.mesh!r} to a new CA {ca.fingerprint}. Restart this machine's nodes, "
            f"and give other machines the new token ('meshctl join-token --mesh {args.mesh}', then "
            "'meshctl init --from TOKEN --force' there); until then they cannot talk to restarted nodes.",
        )
    ca, created = security.ensure_ca(home, args.mesh)
    if created:
        return _report(
            args,
            ca,
            "created",
            f"created credentials for mesh {args.mesh!r}: CA {ca.fingerprint} in "
            f"{security.credentials_dir(home, args.mesh)}\n"
            f"to add another machine: run 'meshctl join-token --mesh {args.mesh}' here, then "
            "'meshctl init --from TOKEN' there",
        )
    return _report(args, ca, "exists", f"mesh {args.mesh!r} already has credentials: CA {ca.fingerprint}")


def cmd_join_token(args: argparse.Namespace) -> int:
    """meshctl join-token [--out FILE]."""
    from mesh import security

    token = security.join_token(Path(args.home), args.mesh)
    if args.out is None:
        if getattr(args, "json", False):
            print_json({"mesh": args.mesh, "token": token})
        else:
            print(token)
        return 0
    from mesh.storage import write_file

    path: Path = args.out
    write_file(path, token + "\n", mode=0o600)
    print(f"wrote the join token of mesh {args.mesh!r} to {path} (keep it secret; delete it after use)")
    return 0
