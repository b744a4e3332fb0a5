"""meshctl: the command line for sessions and people. One module per verb group; this file wires them.

Exit codes: 0 success, 2 error (one line on stderr), 3 claim held by another session, 130 interrupted.
"""

import os
import sys

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine, Sequence
    from typing import Any, NoReturn, TypeVar

    from mesh._nodefile import RunningNode
    from mesh.wireclient import WireClient

    T = TypeVar("T")
    Handler = Callable[[argparse.Namespace], int]


# gRPC's C core otherwise prints a line per failed TLS handshake (a rogue peer would flood the log).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def common_parser() -> "argparse.ArgumentParser":
    """Options every verb takes (mesh.cli.parsing; argparse loads only when a parser is built)."""
    from mesh.cli import parsing

    return parsing.common_parser()


def build_parser(verb: str | None = None) -> "argparse.ArgumentParser":
    """The parser for every verb, or — when `verb` is known — only for that one (mesh.cli.parsing)."""
    from mesh.cli import parsing

    return parsing.build_parser(verb)


def bad_value(message: str) -> "argparse.ArgumentTypeError":
    """The error an option's converter raises for argparse to report (argparse loaded the lean way)."""
    from mesh.cli import parsing

    return parsing.bad_value(message)


def resolve_common(args: "argparse.Namespace") -> None:
    """Fill defaults from the environment: MESH_HOME, MESH_MESH, MESH_NODE. `args.home` is a `str` (spelled
    as `Path` would: mesh._nodefile), so that the hot verbs never load pathlib."""
    from mesh._nodefile import DEFAULT_MESH, default_home

    if getattr(args, "home", None) is None:
        args.home = default_home()
    args.mesh_explicit = getattr(args, "mesh", None) is not None or "MESH_MESH" in os.environ
    if getattr(args, "mesh", None) is None:
        args.mesh = os.environ.get("MESH_MESH", DEFAULT_MESH)
    if getattr(args, "node", None) is None:
        args.node = os.environ.get("MESH_NODE") or None


def target(args: "argparse.Namespace") -> "RunningNode":
    """The running node a verb talks to: --node / $MESH_NODE, else the only one (in --mesh, if given)."""
    found: RunningNode | None = getattr(args, "_target", None)
    if found is None:
        from mesh._nodefile import find_node

        found = args._target = find_node(args.home, args.mesh if args.mesh_explicit else None, args.node)
    return found


def connect(args: "argparse.Namespace") -> "WireClient":
    """A MeshAPI client of that node (`async with connect(args) as api:`): its hot verbs speak the node's
    wire when the verb runs under `run_light`, everything else is gRPC (see mesh.wireclient)."""
    from mesh.wireclient import WireClient

    return WireClient(target(args))


def run(coro: "Coroutine[Any, Any, int]") -> int:
    """Run a verb's coroutine; its result is the exit code."""
    import asyncio

    return asyncio.run(coro)


def run_light(args: "argparse.Namespace", verb: "Callable[[], Coroutine[Any, Any, int]]") -> int:
    """Run a verb that calls only the wire's hot verbs (mesh.wireclient): without asyncio, grpc or
    protobuf when the node serves the wire. An older node, with no hook wire or one without the `api` op
    (it refuses the verb's first call, so nothing was done yet), is asked over gRPC: `run`, afresh."""
    global _light
    if target(args).hook_socket is None:
        return run(verb())
    from mesh._transport.wirecodec import older_node
    from mesh.core.errors import NodeUnavailable

    _light = True
    try:
        return drive(verb())
    except NodeUnavailable as e:
        if not older_node(e):
            raise
    _light = False  # grpc and asyncio come in now: the normal exit
    return run(verb())


_light = False
"""Whether this process ran a light verb: then it holds nothing that needs the interpreter's shutdown."""


def drive(coro: "Coroutine[Any, Any, T]") -> "T":
    """Run a coroutine that never suspends (its awaits are blocking wire calls) to its end, with no loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a light verb waited for an event loop: it called a verb the wire does not carry")


STOP_GRACE = 2.0
"""Seconds a following verb has to wind down after Ctrl-C before the process ends regardless."""


def run_following(coro: "Coroutine[Any, Any, int]") -> int:
    """Run a verb that follows a stream (`watch`, `inbox --follow`) until it ends, Ctrl-C or SIGTERM (exit 0).

    The signal cancels the verb; should the stream read not end (grpc.aio was seen once, on a heavily
    loaded box, to go on reading a server stream after its task was cancelled), the process still ends
    after STOP_GRACE: such a verb only reads, so there is nothing a hard exit could lose but unflushed
    output, which is flushed first."""

    import asyncio
    import signal

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            task.cancel()
            loop.call_later(STOP_GRACE, _hard_exit)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            return await coro
        except asyncio.CancelledError:
            return 0

    return asyncio.run(main())


def _hard_exit() -> "NoReturn":
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(0)


def main(argv: "Sequence[str] | None" = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from mesh.cli import quick
    from mesh.core.errors import MeshError  # here: the hot verbs' processes never load the error tree

    args = quick.parse(argv)  # a hot verb's usual command line, without argparse (None: anything else)
    if args is None:
        verb = next((a for a in argv if not a.startswith("-")), None)
        args = build_parser(verb).parse_args(argv)
    args._argv = list(argv)
    handler: Handler = args.func
    try:
        _check_text(args)
        resolve_common(args)
        return handler(args)
    except MeshError as e:
        print("meshctl: " + " ".join(str(e).splitlines()), file=sys.stderr)  # one line, whatever it says
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _check_text(args: "argparse.Namespace") -> None:
    """Every text argument is UTF-8 (bytes that are not become lone surrogates in Python, which would fail
    deep inside the transport): one line naming it. File paths (`Path` values) may be any bytes."""
    for dest, value in vars(args).items():
        if dest.startswith("_") or dest == "func":
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and not v.isascii():  # ASCII is UTF-8: no need to load the validators
                from mesh.core import validate
                from mesh.core.errors import MeshError

                what = "an argument" if dest == "args" else f"--{dest.replace('_', '-')}"
                try:
                    validate.utf8(v, what)
                except MeshError as e:
                    raise type(e)(f"{e}: {validate.shown(v)}") from None


def entry() -> None:
    """Console-script entry point: a hot verb's plain line in mesh.cli.hot (one module), the rest main()."""
    argv = sys.argv[1:]
    if argv and argv[0] in HOT_VERBS:
        from mesh.cli import hot

        done = hot.run(argv)
        if done is not None:
            _quick_exit(done)
            sys.exit(done)
    if next((a for a in argv if not a.startswith("-")), None) == "up":
        _quiet_start()
        _lean_node()
    code = main()
    if _light:
        _quick_exit(code)
    sys.exit(code)


HOT_VERBS = frozenset({"status", "claim", "release", "heartbeat", "send"})
"""The verbs mesh.cli.hot may do (their plain lines against a node serving its wire; it declines the rest)."""

OPENSSL_MODULES = ("ssl", "_ssl", "_hashlib")


def _quiet_start() -> None:
    """A node process (`meshctl up`) runs no cyclic collection until it is ready: start-up (its imports: gRPC,
    protobuf, asyncio, the node's ~90 modules; its stores; its first links) allocates hundreds of thousands
    of objects that live as long as the node, so the collector's passes over them (one per 700 net
    allocations, each older generation walked again and again) find nothing and cost ~5 % of the imports'
    instructions (callgrind), paid by every node of a mesh that forms at once on a few cores (issue 15).
    Start-up makes little cyclic garbage, and for a few seconds at most. `meshctl up` freezes what start-up
    made and turns collection back on, with the node's own threshold, once the node is ready
    (mesh.cli.node_cmds._foreground). Only the console entry does this, never `main()`."""
    import gc

    gc.disable()


def _lean_node() -> None:
    """A node process (`meshctl up`) without the stdlib's OpenSSL bindings: its TLS is gRPC's own (BoringSSL,
    inside cygrpc), yet asyncio imports `ssl` and hashlib / hmac import `_hashlib` eagerly, and OpenSSL's
    libraries and initialisation then stay in the node for its whole life (~4.5 MB RSS, 1.7 MB PSS per node
    at 12 nodes, for nothing). So those three load while the OpenSSL modules are blocked (None in
    sys.modules, the documented way): asyncio binds no SSL support (a node never hands it an SSL context),
    hashlib and hmac bind CPython's builtin digests (the same results). The block is lifted at once: code
    that really needs `ssl` later (mesh._tls proving an unrecorded CA pair) imports it as usual.
    Only the console entry does this, never `main()`: a program or test calling `main()` keeps its own."""
    blocked = [name for name in OPENSSL_MODULES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
        import hashlib  # noqa: F401
        import hmac  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _quick_exit(code: int) -> None:
    """End a light verb's process without the interpreter's shutdown, which frees every module and object
    one by one (~5 ms, a sixth of `python -c pass`): such a process has no thread, no event loop, no
    logging, no database and its socket closed, so what the OS does at exit is all there is to do; only the
    output is flushed first. (Should flushing fail, the normal exit reports it as it always has.)"""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        return
    os._exit(code)


if __name__ == "__main__":
    entry()
