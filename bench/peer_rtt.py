"""Peer round trip between two processes, over the transports a peer link could ride (issue 15, claims).

    python -m bench.peer_rtt [--n 3000] [--fanout 1]

One claim-sized PeerFrame (a ClaimPropose) goes from a client process to `--fanout` echo processes, each of
which decodes it and answers a ClaimAccepted, as a steward does; a round ends when every answer is in. Same
mutual TLS (a mesh CA, one leaf per process) on every variant:

- grpc-queue:  the link as it is: a grpc.aio bidi stream; every frame is queued and written by the link's
               writer task on both sides (mesh._transport.peer.Link).
- grpc-inline: the same stream, but the echo writes its answer from the reader, straight after handling the
               frame (no hop to the writer task).
- tls-stream:  a raw asyncio TLS stream carrying 4-byte length-prefixed PeerFrames; writes are synchronous
               (transport.write), reads are one readexactly per frame.
- unix-stream: the same framing on an abstract unix-domain stream socket (no TLS: a same-host local link,
               mesh._transport.local); synchronous writes.
- unix-link:   the local link as the node runs it: the claimant sends through mesh's `Link` (its writer task
               and `local.StreamSide` writes), the echo answers through one too.

The reference is grpc-queue measured in the same run: every other row prints its ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MESH = "bench-rtt"
MODES = ("grpc-queue", "grpc-inline", "tls-stream", "unix-stream", "unix-link")
_LEN = struct.Struct(">I")


def _frame(i: int) -> Any:
    from mesh._proto import mesh_pb2 as pb

    prop = pb.ClaimPropose(
        resource="service/i-match", epoch=3, round=i, proposer="n" * 22 + "/inc", owner_name="claimant",
        lease=10.0, claim_left=3600.0, fast=True,
    )  # fmt: skip
    return pb.PeerFrame(claims=[pb.ClaimMsg(propose=prop)])


def _answer(f: Any) -> Any:
    from mesh._proto import mesh_pb2 as pb

    p = f.claims[0].propose
    acc = pb.ClaimAccepted(resource=p.resource, epoch=p.epoch, round=p.round, proposer=p.proposer)
    return pb.PeerFrame(claims=[pb.ClaimMsg(accepted=acc)])


def _certs(d: Path) -> None:
    from mesh import security

    ca = security.create_ca(MESH)
    for who in ("srv", "cli"):
        c = ca.issue(who)
        (d / f"{who}.crt").write_bytes(c.cert_pem)
        (d / f"{who}.key").write_bytes(c.key_pem)
    (d / "ca.crt").write_bytes(ca.cert_pem)


def _creds(d: Path, who: str) -> Any:
    from mesh._tls import Credentials

    return Credentials(
        mesh=MESH, node_id=who, ca_pem=(d / "ca.crt").read_bytes(), cert_pem=(d / f"{who}.crt").read_bytes(),
        key_pem=(d / f"{who}.key").read_bytes(), fingerprint="", not_after=None, not_before=None,  # type: ignore[arg-type]
    )  # fmt: skip


def _ssl(d: Path, who: str, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(d / f"{who}.crt", d / f"{who}.key")
    ctx.load_verify_locations(cafile=str(d / "ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# ---------------------------------------------------------------------- the echo (a steward)


async def _serve(mode: str, d: Path) -> None:
    from mesh._proto import mesh_pb2 as pb
    from mesh._proto import mesh_pb2_grpc as pbg

    if mode in ("unix-stream", "unix-link"):
        from mesh._transport import local
        from mesh._transport.peer import Link
        from mesh.core.membership import PeerInfo

        async def on_unix(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            side = local.StreamSide(writer)
            link = None
            if mode == "unix-link":
                link = Link(
                    PeerInfo("cli", "cli", "", "i"), "cli", False, side.write, side.finish, batches=True
                )
                task = asyncio.ensure_future(link.run_writer())
            while (f := await local.read_frame(reader)) is not None:
                if link is not None:
                    link.send(_answer(f))
                else:
                    side.write_nowait(_answer(f))
            if link is not None:
                link.close()
                await task

        name = f"\0session-mesh-bench/{os.getpid()}"
        await asyncio.start_unix_server(on_unix, name, limit=local.READ_LIMIT)
        print(name[1:], flush=True)
        await asyncio.Event().wait()
        return

    if mode == "tls-stream":

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    (n,) = _LEN.unpack(await reader.readexactly(4))
                    f = pb.PeerFrame.FromString(await reader.readexactly(n))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                out = _answer(f).SerializeToString()
                writer.write(_LEN.pack(len(out)) + out)

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=_ssl(d, "srv", True))
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()
        return

    import grpc

    from mesh._transport.peer import EOF, SERVER_OPTIONS

    inline = mode == "grpc-inline"

    class Echo(pbg.PeerServicer):
        async def Link(self, request_iterator: Any, context: Any) -> None:
            q: asyncio.Queue[Any] = asyncio.Queue()

            async def writer() -> None:
                while (f := await q.get()) is not None:
                    await context.write(f)

            w = None if inline else asyncio.ensure_future(writer())
            while True:
                f = await context.read()
                if f is EOF:
                    break
                if inline:
                    await context.write(_answer(f))
                else:
                    q.put_nowait(_answer(f))
            if w is not None:
                q.put_nowait(None)
                await w

    server = grpc.aio.server(options=SERVER_OPTIONS)
    pbg.add_PeerServicer_to_server(Echo(), server)
    port = server.add_secure_port("127.0.0.1:0", _creds(d, "srv").server_credentials())
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


# ---------------------------------------------------------------------- the claimant


class _Peer:
    """One link from the claimant: send (never blocks) and a reader task that counts answers in."""

    def __init__(self, on_answer: Any) -> None:
        self.on_answer = on_answer

    async def open(self, mode: str, where: str, d: Path) -> None:
        from mesh._proto import mesh_pb2 as pb
        from mesh._proto import mesh_pb2_grpc as pbg

        self.mode = mode
        if mode in ("unix-stream", "unix-link"):
            from mesh._transport import local
            from mesh._transport.peer import Link
            from mesh.core.membership import PeerInfo

            r, w = await asyncio.open_unix_connection("\0" + where, limit=local.READ_LIMIT)
            self._w = w
            self._side = local.StreamSide(w)
            if mode == "unix-link":
                info = PeerInfo("srv", "srv", "", "i")
                self._link = Link(info, "cli", True, self._side.write, self._side.finish, batches=True)
                self._writer = asyncio.ensure_future(self._link.run_writer())

            async def read_unix() -> None:
                while (f := await local.read_frame(r)) is not None:
                    self.on_answer(f)

            self._reader = asyncio.ensure_future(read_unix())
            return
        port = int(where)
        if mode == "tls-stream":
            from mesh._tls import server_name

            r, w = await asyncio.open_connection(
                "127.0.0.1", port, ssl=_ssl(d, "cli", False), server_hostname=server_name(MESH)
            )
            self._w = w

            async def read_tls() -> None:
                while True:
                    (n,) = _LEN.unpack(await r.readexactly(4))
                    self.on_answer(pb.PeerFrame.FromString(await r.readexactly(n)))

            self._reader = asyncio.ensure_future(read_tls())
            return
        import grpc

        from mesh._transport.peer import CHANNEL_OPTIONS, Link

        creds = _creds(d, "cli")
        options = CHANNEL_OPTIONS + creds.channel_options()
        target = f"127.0.0.1:{port}"
        self._channel = grpc.aio.secure_channel(target, creds.channel_credentials(), options=options)
        call = pbg.PeerStub(self._channel).Link()
        self._call = call

        async def finish() -> None:
            await call.done_writing()

        from mesh.core.membership import PeerInfo

        self._link = Link(PeerInfo("srv", "srv", "", "i"), "cli", True, call.write, finish, batches=False)
        self._writer = asyncio.ensure_future(self._link.run_writer())

        async def read_grpc() -> None:
            from mesh._transport.peer import EOF

            while (f := await call.read()) is not EOF:
                self.on_answer(f)

        self._reader = asyncio.ensure_future(read_grpc())

    def send(self, f: Any) -> None:
        if self.mode == "unix-stream":
            self._side.write_nowait(f)
        elif self.mode == "tls-stream":
            out = f.SerializeToString()
            self._w.write(_LEN.pack(len(out)) + out)
        else:
            self._link.send(f)

    async def close(self) -> None:
        self._reader.cancel()
        if self.mode == "unix-link":
            self._link.close()
            await asyncio.wait_for(self._writer, 2)
            self._w.close()
        elif self.mode in ("tls-stream", "unix-stream"):
            self._w.close()
        else:
            self._link.close()
            await asyncio.wait_for(self._writer, 2)
            await self._channel.close(None)


async def _rounds(mode: str, ports: list[str], d: Path, n: int, warm: int) -> list[float]:
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"left": 0, "done": None}

    def on_answer(f: Any) -> None:
        state["left"] -= 1
        if state["left"] == 0:
            state["done"].set_result(None)

    peers = [_Peer(on_answer) for _ in ports]
    for p, port in zip(peers, ports, strict=True):
        await p.open(mode, port, d)
    out: list[float] = []
    try:
        for i in range(warm + n):
            state["left"], state["done"] = len(peers), loop.create_future()
            t0 = time.perf_counter()
            f = _frame(i)
            for p in peers:
                p.send(f)
            await state["done"]
            if i >= warm:
                out.append(time.perf_counter() - t0)
    finally:
        for p in peers:
            await p.close()
    return out


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(n: int = 3000, fanout: int = 1, modes: tuple[str, ...] = MODES) -> dict[str, tuple[float, float]]:
    """{mode: (p50 ms, p99 ms)} of `n` rounds to `fanout` echo processes, all modes in one sitting."""
    return asyncio.run(_run(n, fanout, modes))


def _echoes(mode: str, tmp: str, fanout: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """`fanout` echo processes serving `mode`, and where they listen (each prints its port, or its abstract
    socket name, once it listens)."""
    argv = [sys.executable, "-m", "bench.peer_rtt", "--serve", mode, "--dir", tmp]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(fanout)]
    return procs, [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]


async def _run(n: int, fanout: int, modes: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    # One event loop for every mode: grpc.aio's poller does not survive a second asyncio.run in one process.
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _certs(d)
        for mode in modes:
            procs, ports = _echoes(mode, tmp, fanout)
            try:
                xs = await _rounds(mode, ports, d, n, warm=min(300, n // 5))
                results[mode] = (statistics.median(xs) * 1e3, _pct(xs, 0.99) * 1e3)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--fanout", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--serve", choices=MODES)
    ap.add_argument("--dir")
    a = ap.parse_args(argv)
    if a.serve:
        asyncio.run(_serve(a.serve, Path(a.dir)))
        return 0
    res = run(a.n, a.fanout, tuple(a.modes.split(",")))
    ref = res.get("grpc-queue")
    print(f"peer round trip, {a.n} rounds to {a.fanout} echo process(es), mutual TLS, a claim frame each way")
    for mode, (p50, p99) in res.items():
        ratio = f"  {p50 / ref[0]:.2f}x / {p99 / ref[1]:.2f}x grpc-queue" if ref else ""
        print(f"  {mode:12s} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
