"""Flow control of one live link: a window of messages in flight, go-back-N resends (sans-IO, `now` given)."""

from __future__ import annotations

from mesh.core.errors import InvalidInput
from mesh.core.mailbox.limits import BATCH_MAX, RESEND_AFTER, WINDOW
from mesh.core.mailbox.records import MailAck, MailBatch


class SendWindow:
    """Flow control for one live link to one peer (volatile: make a new one on every (re)connect).

    Start it from the store's `floor(peer)`: everything below was acked or expired, so a new link
    resends from the oldest unacked entry (at-least-once on the wire; the recipient dedupes).
    """

    def __init__(
        self, peer: str, floor: int, *, now: float, window: int = WINDOW, resend_after: float = RESEND_AFTER
    ) -> None:
        if window < 1 or resend_after <= 0:
            raise InvalidInput("window must be >= 1 and resend_after > 0")
        self.peer = peer
        self.acked = floor - 1  # highest seq known to be out of the queue
        self.sent = self.acked  # highest seq sent on this link
        self.window = window
        self.resend_after = resend_after
        self._progress_at = now

    @property
    def in_flight(self) -> int:
        """Seqs sent but not acked (an upper bound: expired entries inside count too)."""
        return self.sent - self.acked

    def want(self) -> tuple[int, int] | None:
        """(after_seq, limit) for `store.pending_for`, or None while the window is full."""
        room = self.window - self.in_flight
        if room <= 0:
            return None
        return self.sent, min(BATCH_MAX, room)

    def on_sent(self, batch: MailBatch, now: float) -> None:
        """The runtime wrote `batch` to the link."""
        if not batch.messages:
            return
        if self.sent <= self.acked:
            self._progress_at = now  # the resend clock starts when something is in flight
        self.sent = max(self.sent, batch.messages[-1].seq)

    def on_ack(self, ack: MailAck, now: float) -> bool:
        """An ack arrived (already applied to the store); True if it made progress."""
        if ack.upto <= self.acked:
            return False
        self.acked = ack.upto
        self.sent = max(self.sent, self.acked)
        self._progress_at = now
        return True

    def on_floor(self, floor: int) -> None:
        """The store's floor moved (expiry): skip what is no longer queued."""
        if floor - 1 > self.acked:
            self.acked = floor - 1
            self.sent = max(self.sent, self.acked)

    def next_deadline(self) -> float | None:
        """When `on_timer` may rewind (None while nothing is in flight)."""
        return self._progress_at + self.resend_after if self.sent > self.acked else None

    def on_timer(self, now: float) -> bool:
        """Rewind to the oldest unacked entry if acks stalled; True if the runtime should send again."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return False
        self.sent = self.acked
        self._progress_at = now
        return True
