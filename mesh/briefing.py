"""What an agent is told: the session-start digest, what is new since the last prompt, and edit refusals.

Pure functions over plain views (no I/O, `now` is an argument), so the hook wire, the MCP server and the
tests render the same words. Every text has a byte budget: it lands in the agent's context on every turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from mesh.core.values import value
from mesh.views import MemberView

DIGEST_BUDGET = 1024  # bytes: the "~1 KB" for the session-start digest
NEWS_BUDGET = 1536  # bytes per prompt (messages are the point; still bounded)
BODY_CHARS = 240  # a message body is cut to this in the context (the inbox keeps it whole)


@value
class ClaimNote:
    """A live claim as the agent sees it (with what its holder says it does)."""

    resource: str  # TYPE/NAME
    holder: str
    holder_node: str
    token: int
    expires_at: float  # wall clock
    action: str = ""  # what the holder says it does
    target: str = ""
    phase: str = ""

    @property
    def key(self) -> str:
        """Identity of this grant: the same claim seen again is not news."""
        return f"{self.holder_node}|{self.resource}|{self.token}"


@value
class Note:
    """An inbox message as the agent sees it."""

    id: str
    from_name: str
    subject: str
    body: str
    broadcast: bool = False


def live_claims(members: Iterable[MemberView], *, others_only: bool = False) -> list[ClaimNote]:
    """Claims of live (alive or suspect) members, sorted by resource."""
    out = []
    for m in members:
        if m.state not in ("alive", "suspect") or (others_only and m.is_self):
            continue
        for resource, token, ends in m.claims:
            out.append(ClaimNote(resource, m.name, m.node_id, token, ends, m.action, m.target, m.phase))
    out.sort(key=lambda c: (c.resource, c.holder))
    return out


def until(expires_at: float, now: float) -> str:
    """`until 16:02 (in 1h58m)` in local time; empty when unknown."""
    if not expires_at:
        return ""
    left = max(0, int(expires_at - now))
    h, rem = divmod(left, 3600)
    m, s = divmod(rem, 60)
    span = f"{h}h{m:02d}m" if h else (f"{m}m" if m else f"{s}s")
    return f"until {time.strftime('%H:%M', time.localtime(expires_at))} (in {span})"


def doing(action: str, target: str, phase: str) -> str:
    """`build i-match · tests`, or `no status` when the session said nothing."""
    words = " ".join(w for w in (action, target) if w)
    if phase:
        words = f"{words} · {phase}" if words else phase
    return words or "no status"


def refusal(claim: ClaimNote, path: str, now: float) -> str:
    """Why an edit is refused: who holds the path, what it does, when its claim ends."""
    what = doing(claim.action, claim.target, claim.phase)
    ends = until(claim.expires_at, now)
    return (
        f"session mesh: {path} is claimed by session {claim.holder!r} ({claim.resource}; "
        f"it is doing: {what})"
        + (f", {ends}" if ends else "")
        + f". Do not edit it now: ask {claim.holder} (meshctl send {claim.holder} SUBJECT BODY) "
        "or work elsewhere."
    )


def _fit(lines: list[str], budget: int) -> str:
    """Join lines, dropping from the end (with a marker) so the text stays within `budget` bytes."""
    text = "\n".join(lines)
    if len(text.encode()) <= budget:
        return text
    kept: list[str] = []
    size = 0
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > budget - 40:
            break
        kept.append(line)
        size += n
    kept.append(f"… ({len(lines) - len(kept)} more lines: meshctl state)")
    return "\n".join(kept)


def _note_line(n: Note) -> str:
    body = " ".join(n.body.split())
    if len(body) > BODY_CHARS:
        body = body[: BODY_CHARS - 1] + "…"
    to = " (to all)" if n.broadcast else ""
    return f"- from {n.from_name}{to} [{n.id}] {n.subject}: {body}"


def digest(
    me: str,
    mesh: str,
    members: Sequence[MemberView],
    notes: Sequence[Note],
    unread_total: int,
    now: float,
    budget: int = DIGEST_BUDGET,
) -> str:
    """The session-start digest: who you are, who is alive doing what, live claims, unread messages."""
    lines = [f"[session mesh] You are session {me!r} in mesh {mesh!r} (meshctl … --node {me})."]
    others = [m for m in members if not m.is_self and m.state in ("alive", "suspect")]
    if others:
        lines.append("Other live sessions:")
        for m in others:
            role = f" ({m.role})" if m.role else ""
            extra = f" {m.progress}%" if m.progress else ""
            lines.append(f"- {m.name}{role}: {doing(m.action, m.target, m.phase)}{extra}")
    else:
        lines.append("No other live sessions.")
    claims = live_claims(members)
    if claims:
        lines.append("Claims:")
        for c in claims:
            lines.append(f"- {c.resource} by {c.holder} {until(c.expires_at, now)}".rstrip())
    if notes:
        lines.append(f"Unread messages ({unread_total}):")
        lines.extend(_note_line(n) for n in notes)
        if unread_total > len(notes):
            lines.append(f"- … {unread_total - len(notes)} more: meshctl inbox --unread --node {me}")
    lines.append(
        "Edits under another session's path claim are refused. Claim before big edits "
        f"(meshctl claim path DIR/** --node {me}); message others with meshctl send."
    )
    return _fit(lines, budget)


def news(notes: Sequence[Note], claims: Sequence[ClaimNote], now: float, budget: int = NEWS_BUDGET) -> str:
    """What is new since the last time (messages, claims by others); empty when nothing is."""
    if not notes and not claims:
        return ""
    lines = ["[session mesh] New since your last turn:"]
    lines.extend(_note_line(n) for n in notes)
    for c in claims:
        what = doing(c.action, c.target, c.phase)
        lines.append(f"- {c.holder} claimed {c.resource} {until(c.expires_at, now)} ({what})")
    return _fit(lines, budget)
