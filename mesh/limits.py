"""Every bound on what a peer or a control client can make a node hold or do, in one place.

A peer is authenticated (mutual TLS with the mesh CA) before any of these apply, so they do not stop an
attacker outside the mesh (the handshake does); they stop a buggy or runaway member, or a stolen leaf, from
taking a node down: memory, CPU, log volume and store writes all stay bounded. Exceeding one gets the
gRPC status in the comment and one log line; the node carries on. Per-field rules (name syntax, text
lengths, progress range, finite times) live in `mesh.core.validate`.
"""

from __future__ import annotations

# ---------------------------------------------------------------- both servers

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest gRPC message either API accepts or sends (RESOURCE_EXHAUSTED, from gRPC itself).

gRPC buffers and parses a whole message before our code sees it, so this is the memory one message can
force. Real frames are far smaller: a hello or status < 2 KiB, a full gossip list (MAX_GOSSIP_PEERS refs)
~60 KiB. gRPC's default is 4 MiB; 1 MiB still leaves a wide margin for batched traffic while cutting what
MAX_LINKS_PER_PEER streams x peers can pin at once by four."""

# ---------------------------------------------------------------- peer API (per authenticated identity)

HELLO_TIMEOUT = 3.0
"""Seconds an accepted Link may wait for its Hello (and a dialer for the answer); then it is closed."""

MAX_LINKS_PER_PEER = 4
"""Concurrent Link streams one node id (the certificate's CN) may hold open (RESOURCE_EXHAUSTED).

A pair needs one link; a simultaneous dial from both ends briefly makes two, and a reconnect overlaps the
old stream while it drains. More than four is a loop gone wrong or a slow-loris."""

PEER_ACCEPT_RATE = 2.0
PEER_ACCEPT_BURST = 20
"""New Link streams per second one node id may open, sustained / in a burst (RESOURCE_EXHAUSTED).

Each accepted link may rejoin the member under a new incarnation (a log line, events, a store write).
Legitimate redials back off from 0.2 s to 5 s, so twenty in a row is already a reconnect storm."""

LINK_FRAME_RATE = 2000.0
LINK_FRAME_BURST = 4000
"""Frames per second one link may deliver, sustained / in a burst (token bucket; RESOURCE_EXHAUSTED and the
link is closed). Membership needs a few per second (heartbeats, status, gossip); claims and messages ride
the same stream and batch into frames. An unbatched stream tops out near 9k frames/s here, so a peer that
saturates a link trips it, and normal traffic is hundreds of times below it."""

LINK_BYTE_RATE = 32 * 1024 * 1024
LINK_BYTE_BURST = 64 * 1024 * 1024
"""Bytes per second one link may deliver (serialized frame sizes), sustained / in a burst (token bucket;
RESOURCE_EXHAUSTED and the link is closed): bounds parse work when frames are large. A 200-byte message is
~270 bytes on the wire, so 32 MiB/s leaves room for >100k messages/s — far above what a node parses."""

MAX_FRAME_BATCH = 64
"""Frames in one PeerFrame.batch (a writer packs what was queued in one loop turn; more is a protocol
violation). The link's frame budget charges every frame of a batch."""
FRAME_BATCH_BYTES = 256 * 1024
"""Encoded bytes a writer packs into one batch (a frame larger than this goes alone): well under the
message limit, so a batch never fails where its frames one by one would not."""

MAX_GOSSIP_PEERS = 256
"""Node refs in one Gossip frame (RESOURCE_EXHAUSTED). A mesh is tens of nodes; the list is a hint."""

MAX_VERDICTS = 256
"""Liveness verdicts in one frame (RESOURCE_EXHAUSTED): one per member changing state, a mesh is tens."""

MAX_GOSSIP_DIALS = 32
"""Dials started from gossip that may be under way at once; further hints are dropped (they come again
with the next gossip). Stops one frame of fake addresses from making the node dial hundreds of hosts."""

REJECT_DETAIL_MAX = 256
"""Characters of a peer's Reject detail kept (the rest is cut) before it reaches an error or the log."""

PEER_MAX_CONCURRENT_RPCS = 1024
"""RPCs the peer server runs at once over all peers (RESOURCE_EXHAUSTED from gRPC): a backstop for
identities minted with a stolen CA key, which MAX_LINKS_PER_PEER alone cannot bound."""

PEER_MAX_STREAMS_PER_CONNECTION = 32

PEER_MAX_CONNECTIONS = 512
"""TCP connections the peer server holds at once (a pair of nodes needs one; the rest is headroom)."""

HANDSHAKE_TIMEOUT_MS = 5_000
"""How long a TLS handshake may take before the connection is dropped. gRPC's default, 120 s, let rounds of
half-open connections (a scanner, a node without our CA) grow a node's memory from 52 to 115 MB."""

IDLE_CONNECTION_MS = 30_000
"""A connection with no RPC on it this long is closed (a peer link always has its stream open)."""
"""HTTP/2 concurrent streams per TCP connection (further streams wait at the client). A node opens one
channel per peer and one Link on it."""

# ---------------------------------------------------------------- the board (peer API, per link)

BOARD_OPS_PER_FRAME = 1000
"""Board operations in one frame (RESOURCE_EXHAUSTED and the link is closed). A node sends at most
`mesh.core.boardsync.BATCH_OPS` (500) per frame."""

BOARD_OP_BODY_MAX = 64 * 1024
"""UTF-8 bytes of one operation's body (INVALID_ARGUMENT: a protocol error). The largest valid one, a
milestone with 50 steps of 200 four-byte characters and a 2 KiB note, is ~42 KiB."""

BOARD_CONTEXT_MAX = 20_000
"""Entries (replicas plus out-of-order dots) in one board context (RESOURCE_EXHAUSTED). A replica is one
node's store: a mesh that has seen thousands of sessions still has far fewer."""

BOARD_OP_RATE = 20_000.0
BOARD_OP_BURST = 400_000
"""Board operations per second one link may deliver, sustained / in a burst (RESOURCE_EXHAUSTED and the
link is closed). A late joiner's catch-up brings every retained operation at once (a full 100,000-task
board is a few hundred thousand), hence the burst; live editing is a few per second. Remote operations are
always applied (refusing some would break convergence), so this is what bounds a runaway peer's writes."""

BOARD_SYNC_RATE = 2.0
BOARD_SYNC_BURST = 30
"""Sync requests per second one link may send, sustained / in a burst (RESOURCE_EXHAUSTED and the link is
closed): each makes this node scan its operations. A peer asks on link up, when it sees us come back, and
when digests (every 5 s) differ."""

# ---------------------------------------------------------------- control API (unix socket, same uid)

CONTROL_MAX_CONCURRENT_RPCS = 256
"""RPCs the control server runs at once (RESOURCE_EXHAUSTED from gRPC); meshctl uses one at a time."""
UNARY_AT_ONCE = 64
"""Unary Sends one `Client` has in flight at once (its fallback when the SendStream breaks or is not
offered; further sends wait at the client): well under CONTROL_MAX_CONCURRENT_RPCS, since a burst of
thousands asked at once was cut off by the node (CANCELLED) instead of queued."""
SEND_STREAM_AHEAD = 16
"""SendBatches of one SendStream being queued at once (read ahead of the answers); a client waits beyond."""
SEND_BATCH_BYTES = 768 * 1024
"""A client's SendBatch stays under this many encoded bytes (the control socket takes 1 MiB per message)."""

MAX_WATCHERS = 64
"""Concurrent Watch streams (RESOURCE_EXHAUSTED): each holds a queue and gets every event."""

WATCH_QUEUE_MAX = 10_000
"""Events queued for one watcher that is not reading; beyond it the watch ends (RESOURCE_EXHAUSTED) instead
of growing without bound. A reader that keeps up never holds more than a handful."""

# ---------------------------------------------------------------- hook wire (local, 0600, JSON lines)

HOOK_LINE_MAX = 512 * 1024
"""Longest request line on the hook wire; a longer one gets `{"error": …}` and the connection closes.

Hook requests are a few hundred bytes (an op, a path or two, a heartbeat); `meshctl send` over the wire
carries a body of up to 64 KiB of UTF-8, which JSON may grow up to 6x (control characters as \\u00XX):
512 KiB holds any valid message while bounding what one local client can make the node buffer."""

HOOK_MAX_CONNECTIONS = 64
"""Concurrent hook-wire connections; more are closed at once (hooks fail open, so nothing breaks).

Hooks are short-lived processes, a few per tool call; agents run tool calls in parallel, but rarely more
than a handful at a time."""

HOOK_IDLE_TIMEOUT = 10.0
"""Seconds a hook-wire connection may sit without sending a request before it is closed."""

HOOK_MAX_PATHS = 32
"""Paths in one hook-wire claim, release or check (InvalidInput beyond)."""

HOOK_PATH_MAX = 1024
"""Characters in one path on the hook wire (InvalidInput beyond)."""

HOOK_HEARTBEAT_EVERY = 3.0
"""Seconds between status updates published for hook heartbeats (one per tool call would fan out to
every peer each time); a newer one within the interval replaces the pending one and goes out at its end."""
