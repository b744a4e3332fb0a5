"""meshctl up / down: start this session's node, leave gracefully."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.cli.main import common_parser, connect, run
from mesh.errors import ConfigError, MeshError, NodeUnavailable

if TYPE_CHECKING:
    import argparse  # a node's `up` line is read without it (mesh.cli.quick): only `register` loads it

READY_TIMEOUT = 30.0


def register(sub: Any) -> None:
    import argparse

    up = sub.add_parser(
        "up",
        parents=[common_parser()],
        help="start this session's node",
        description="Start a node for this session (foreground unless --detach).",
    )
    up.add_argument("--name", required=True, help="session name, unique among live nodes of the mesh")
    up.add_argument("--role", default=None, help="what this session works on (label)")
    up.add_argument("--port", type=int, default=None, help="peer API port (0 = any free port)")
    up.add_argument(
        "--bind", default=None, help="peer API listen address (default 127.0.0.1; a LAN address for LAN)"
    )
    up.add_argument("--advertise", default=None, help="HOST:PORT peers should dial, if not the bind address")
    up.add_argument(
        "--peer", action="append", default=[], metavar="HOST:PORT", help="static seed (repeatable)"
    )
    up.add_argument("--no-mdns", action="store_true", help="do not use mDNS (seeds only)")
    up.add_argument(
        "--mdns-interface",
        action="append",
        default=[],
        metavar="IP",
        help="interface address for mDNS (repeatable; default 127.0.0.1)",
    )
    up.add_argument(
        "--preset",
        choices=("local", "fast"),
        default="local",
        help="timing preset: local (suspect 3 s, dead 10 s) or fast (0.6 s / 1.5 s)",
    )
    up.add_argument("--heartbeat-interval", type=float, default=None, metavar="S")
    up.add_argument("--suspect-after", type=float, default=None, metavar="S")
    up.add_argument("--dead-after", type=float, default=None, metavar="S")
    up.add_argument(
        "--lease",
        type=float,
        default=None,
        metavar="S",
        help="claims: the short lease under each claim (default 10 s; a dead holder frees in this)",
    )
    up.add_argument(
        "--bootstrap",
        action="store_true",
        help="create the first steward config here (LAN: name exactly one node; one host: automatic)",
    )
    up.add_argument("--join-window", type=float, default=None, metavar="S", help=argparse.SUPPRESS)
    up.add_argument("--insecure", action="store_true", help=argparse.SUPPRESS)  # benchmarks: TLS off
    up.add_argument("--no-local-links", action="store_true",
                    help="link same-host peers over gRPC+TLS too, not unix streams")  # fmt: skip
    up.add_argument(
        "--watch-pid", type=int, default=None, metavar="PID", help="leave when this process exits"
    )
    up.add_argument("--detach", action="store_true", help="run in the background; return once ready")
    up.add_argument("--web", nargs="?", const=0, type=int, default=None, metavar="PORT",
                    help="also serve the live page from the node (URL printed first)")  # fmt: skip
    up.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    up.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", parents=[common_parser()], help="leave gracefully and stop the node")
    down.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node to exit")
    down.set_defaults(func=cmd_down)


def build_config(args: argparse.Namespace) -> Any:
    """NodeConfig from the preset, then MESH_* variables, then flags given on the command line (flags win)."""
    from mesh.config import NodeConfig

    if not args.name:
        raise ConfigError("--name must not be empty")
    kw: dict[str, Any] = NodeConfig.env_options()
    kw.update(mesh=args.mesh, home=Path(args.home))
    given = {
        "role": args.role,
        "port": args.port,
        "bind": args.bind,
        "advertise": args.advertise,
        "watch_pid": args.watch_pid,
        "heartbeat_interval": args.heartbeat_interval,
        "suspect_after": args.suspect_after,
        "dead_after": args.dead_after,
        "join_window": args.join_window,
        "lease": args.lease,
    }
    kw.update({k: v for k, v in given.items() if v is not None})
    if args.peer:
        kw["peers"] = tuple(args.peer)
    if args.mdns_interface:
        kw["mdns_interfaces"] = tuple(args.mdns_interface)
    if args.no_mdns:
        kw["mdns"] = False
    if args.insecure:
        kw["tls"] = False
    if args.no_local_links:
        kw["local_links"] = False
    if args.bootstrap:
        kw["bootstrap"] = True
    preset = NodeConfig.fast if args.preset == "fast" else NodeConfig.local
    return preset(args.name, **kw)


GC_YOUNG = 10_000
"""Net allocations of container objects between two young-generation collections in a node (Python: 700)."""


def cmd_up(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.detach:
        return _detach(args, config)
    return run(_foreground(args, config))


async def _foreground(args: argparse.Namespace, config: Any) -> int:
    from mesh.node import Node

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    node = Node(config=config)
    loop = asyncio.get_running_loop()
    try:
        web = None
        if args.web is not None:  # the page's modules only in a node that serves it
            from mesh.web import serve_node

            web = await serve_node(node, args.web)  # binds first: a busy port fails before the node joins
        await node.start()
    except MeshError as e:
        _report_ready(
            args.ready_fd, {"ok": False, "error": str(e), "exit": e.exit_code, "class": type(e).__name__}
        )
        raise
    except Exception as e:
        # A fault not yet mapped at its source: still the real reason, in the one line `up` prints (the
        # traceback goes to the log, where a bug report needs it).
        why = f"start-up failed: {type(e).__name__}: {str(e)[:300]} (traceback in node.log)"
        _report_ready(args.ready_fd, {"ok": False, "error": why, "exit": 2})
        raise
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, node.request_stop, f"signal {signal.Signals(sig).name}")
    # The node owns this process, so it tunes the cyclic collector (bench/messages.py, 20,000 sends: its
    # collections were 10-15 % of a sending node's time, at a pass every 700 net allocations while a
    # thousand sends are in flight). What start-up made (modules, gRPC, protobuf: most of the heap) lives
    # as long as the node: frozen, no collection walks it again; and the young generation is collected
    # every 10,000 net allocations (cyclic garbage stays bounded by that; refcounting frees the rest).
    # The console entry turned collection off for start-up (mesh.cli.main._quiet_start): on again here.
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 10, 10)
    gc.enable()
    info = {
        "ok": True,
        "name": node.name,
        "node_id": node.node_id,
        "mesh": config.mesh,
        "address": node.address,
        "pid": os.getpid(),
        "state_dir": node.state_dir,
        "created_credentials": node.created_credentials,
        "web": web.url if web else None,
    }
    _report_ready(args.ready_fd, info)
    if args.ready_fd is None:
        if web:
            print(web.url, flush=True)
        print(
            f"node {node.name} ready — mesh {config.mesh}, peer API {node.address}, state {node.state_dir}",
            file=sys.stderr,
            flush=True,
        )
    reason = await node.wait_closed()
    if web:
        await web.close()
    await node.stop(reason)
    return 0


def _report_ready(fd: int | None, info: dict[str, Any]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def _detach(args: argparse.Namespace, config: Any) -> int:
    from mesh.paths import ensure_private_dir, node_dir
    from mesh.storage import translating

    state_dir = ensure_private_dir(node_dir(config.home_dir, config.mesh, config.name))
    log_path = state_dir / "node.log"
    argv = [a for a in (args._argv if args._argv is not None else sys.argv[1:]) if a != "--detach"]
    r, w = os.pipe()
    cmd = [sys.executable, "-m", _entry_module(), *argv, "--ready-fd", str(w)]
    env = dict(os.environ)
    env["MESH_HOME"] = str(config.home_dir)
    with translating(log_path, "open the log"):
        log = open(log_path, "ab")  # noqa: SIM115 - closed right after the child has it
    with log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(w,),
            start_new_session=True,
            env=env,
        )
    os.close(w)
    data = b""
    deadline = time.monotonic() + READY_TIMEOUT
    with os.fdopen(r, "rb") as reader:
        while time.monotonic() < deadline:
            chunk = reader.readline()
            data += chunk
            if not chunk or chunk.endswith(b"\n"):
                break
    if not data:
        code = proc.poll()
        raise NodeUnavailable(f"node exited during start-up (code {code}): {_last_line(log_path)}")
    info = json.loads(data)
    if not info.get("ok"):
        proc.wait(timeout=5)
        from mesh.core.errors import error_classes

        cls = error_classes().get(str(info.get("class")), MeshError)
        err = cls.__new__(cls)
        MeshError.__init__(err, str(info.get("error", "start-up failed")))
        err.exit_code = int(info.get("exit", 2))
        raise err
    if info.get("web") and not args.json:
        print(info["web"], flush=True)
    if info.get("created_credentials"):
        print(f"created credentials for mesh {info['mesh']!r} (first node here); other machines join with "
              f"'meshctl join-token' and 'meshctl init --from TOKEN'", file=sys.stderr)  # fmt: skip
    if args.json:
        from mesh.cli.output import print_json

        print_json(info | {"log": str(log_path)})
    else:
        print(
            f"node {info['name']} ready (pid {info['pid']}) — mesh {info['mesh']}, "
            f"peer API {info['address']}, log {log_path}"
        )
    return 0


def _last_line(log_path: Path) -> str:
    """The last line the node logged (for a start-up that ended before it could say why), with where."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = lines[-1].strip()[:300] if lines else "it logged nothing"
    return f"{last} (see {log_path})"


def _entry_module() -> str:
    """The module the detached node runs: this meshctl's own entry if it says it is one (a test entry that
    installs taps before the real main), else mesh.cli.main."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(main, "MESHCTL_ENTRY", False):
        return str(spec.name)
    return "mesh.cli.main"


def cmd_down(args: argparse.Namespace) -> int:
    return run(_down(args))


async def _down(args: argparse.Namespace) -> int:
    async with connect(args) as api:
        await api.shutdown("meshctl down")
    node = api.node
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _pid_alive(node.pid, node.state_dir):
            break
        await asyncio.sleep(0.05)
    else:
        raise NodeUnavailable(f"node {node.name} (pid {node.pid}) did not exit within {args.timeout:g}s")
    if args.json:
        from mesh.cli.output import print_json

        print_json({"name": node.name, "left": True})
    else:
        print(f"node {node.name} left the mesh")
    return 0


def _pid_alive(pid: int, state_dir: str) -> bool:
    from mesh.paths import is_locked

    return is_locked(state_dir)
