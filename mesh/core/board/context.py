"""Which operation ids a replica has incorporated (`Context`), and the deltas anti-entropy sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mesh.core.board.fields import MAX_SEQ, REPLICA_ID, check_id
from mesh.core.errors import InvalidField, shown
from mesh.core.values import value

if TYPE_CHECKING:
    from mesh.core.board.ops import Op

# ---------------------------------------------------------------- context: which op ids a replica has


@value
class Context:
    """Operation ids incorporated: all of ``1..n`` per replica in `vv`, plus `dots` beyond a gap."""

    vv: tuple[tuple[str, int], ...] = ()
    dots: tuple[tuple[str, int], ...] = ()

    def covers(self, origin: str, seq: int) -> bool:
        """Has this context incorporated operation ``origin-seq``?"""
        return seq <= dict(self.vv).get(origin, 0) or (origin, seq) in self.dots


def check_context(ctx: Context) -> None:
    if not isinstance(ctx, Context):
        raise InvalidField("context", f"expected a Context, not {type(ctx).__name__}")
    for origin, seq in (*ctx.vv, *ctx.dots):
        check_id(origin, "replica", REPLICA_ID)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise InvalidField("context", f"context seq out of range: {shown(seq)}")


class MutableContext:
    """The mutable form: `vv[o] = n` means 1..n all in; `dots[o]` holds ids past the gap."""

    __slots__ = ("dots", "vv")

    def __init__(self) -> None:
        self.vv: dict[str, int] = {}
        self.dots: dict[str, set[int]] = {}

    def has(self, origin: str, seq: int) -> bool:
        if seq <= self.vv.get(origin, 0):
            return True
        d = self.dots.get(origin)
        return d is not None and seq in d

    def add(self, origin: str, seq: int) -> None:
        top = self.vv.get(origin, 0)
        if seq <= top:
            return
        if seq != top + 1:
            self.dots.setdefault(origin, set()).add(seq)
            return
        top = seq
        d = self.dots.get(origin)
        if d:
            while top + 1 in d:
                top += 1
                d.discard(top)
            if not d:
                del self.dots[origin]
        self.vv[origin] = top

    def merge(self, other: Context) -> None:
        for origin, n in other.vv:
            if n > self.vv.get(origin, 0):
                self.vv[origin] = n
                # Dots inside the new prefix are redundant; re-adding the rest lets them extend it.
                for seq in sorted(self.dots.pop(origin, ())):
                    self.add(origin, seq)
        for origin, seq in other.dots:
            self.add(origin, seq)

    def frozen(self) -> Context:
        dots = sorted((o, s) for o, ss in self.dots.items() for s in ss)
        return Context(tuple(sorted(self.vv.items())), tuple(dots))

    def top(self, origin: str) -> int:
        d = self.dots.get(origin)
        return max(self.vv.get(origin, 0), max(d) if d else 0)


@value
class Delta:
    """What one replica sends another: operations the other lacks, then (last batch only) its context."""

    ops: tuple[Op, ...]
    context: Context | None


def split_delta(delta: Delta, max_ops: int) -> list[Delta]:
    """Cut a delta into batches of at most `max_ops`; only the last carries the context (merge it only
    when every batch before it was applied: send them in order on one stream)."""
    if max_ops < 1:
        raise InvalidField("max_ops", "a batch holds at least one operation")
    chunks = [delta.ops[k : k + max_ops] for k in range(0, len(delta.ops), max_ops)] or [()]
    return [Delta(chunk, delta.context if k == len(chunks) - 1 else None) for k, chunk in enumerate(chunks)]


def context_to_dict(ctx: Context) -> dict[str, Any]:
    """A context as JSON types."""
    return {"vv": [list(p) for p in ctx.vv], "dots": [list(p) for p in ctx.dots]}


def context_from_dict(data: Mapping[str, Any]) -> Context:
    """The inverse of `context_to_dict`, validated."""
    pairs: dict[str, list[tuple[str, int]]] = {"vv": [], "dots": []}
    for name in pairs:
        items = data.get(name, []) if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise InvalidField("context", f"context {name} must be a list")
        for item in items:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                raise InvalidField("context", f"context {name} holds [replica, seq] pairs")
            pairs[name].append((item[0], item[1]))
    ctx = Context(tuple(pairs["vv"]), tuple(pairs["dots"]))
    check_context(ctx)
    return Context(tuple(sorted(ctx.vv)), tuple(sorted(ctx.dots)))
