"""Opening the node's hook wire socket, checked to be ours: shared by the blocking `WireClient` (meshctl) and
the asyncio `Client` (its lone sends and inbox follows). Standard library only (`_socket`, not `socket`: the
latter's Python layer costs meshctl a few ms). Also `small_reads`, for every asyncio unix stream of the mesh.

Trust, as for the control socket: the socket must be ours (owner uid) in a directory only we can use (mode
0700), and the process answering on it must run as our uid (SO_PEERCRED); otherwise NodeUnavailable.
"""

from __future__ import annotations

import os
import sys

from mesh.core.errors import NodeUnavailable

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the import below
if TYPE_CHECKING:
    from typing import Any


RECV_BYTES = 1 << 16
"""Bytes an asyncio unix stream asks of one recv (see `small_reads`)."""


def small_reads(transport: Any) -> None:
    """Make an asyncio socket transport read at most RECV_BYTES per recv (CPython's asks for 256 KiB).

    CPython's selector transport reads with `sock.recv(max_size)`, which allocates a bytes object of that size
    and shrinks it to what came. At 256 KiB that allocation is above glibc's mmap threshold: an mmap, an
    mremap and an munmap per read (~25-35 us of CPU here, where a 64 KiB read costs ~5 us). Every hop of a
    message is such a read (a send on the hook wire, its frame on a local link, the follower's line, the
    ack), on 2 cores a dozen nodes share. A larger frame or line still arrives whole, in more reads. A
    transport without the attribute (another event loop's) is left as it is."""
    if getattr(transport, "max_size", 0) > RECV_BYTES:
        transport.max_size = RECV_BYTES


def open_wire(path: str, timeout: float) -> Any:
    """A connected (blocking, `timeout`) `_socket.socket` to the hook wire at `path`, or NodeUnavailable."""
    import _socket
    import stat

    uid = os.getuid()
    try:
        st = os.lstat(path)
        dst = os.lstat(os.path.dirname(path) or ".")
    except OSError as e:
        raise NodeUnavailable(f"cannot reach the node: {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid:
        raise NodeUnavailable(f"refusing {path}: not a socket of this user (uid {uid}; it is {st.st_uid})")
    if not stat.S_ISDIR(dst.st_mode) or dst.st_uid != uid or dst.st_mode & 0o077:
        raise NodeUnavailable(f"refusing {path}: its directory is not private to this user")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if hasattr(_socket, "SO_PEERCRED"):
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # pid, uid, gid
            peer_uid = int.from_bytes(creds[4:8], sys.byteorder, signed=True)
            if peer_uid != uid:
                raise NodeUnavailable(f"refusing {path}: the process serving it runs as uid {peer_uid}")
    except OSError as e:
        sock.close()
        raise NodeUnavailable(f"cannot reach the node: {e.strerror or e.__class__.__name__}") from None
    except BaseException:
        sock.close()
        raise
    return sock
