"""Values and errors of the hook wire's `api` op (JSON), both directions. Standard library and mesh value
types only: `mesh.wireclient` imports it in a `meshctl` process that must not load gRPC or asyncio.

A value travels as the JSON object of its fields (floats as Python writes them, so they come back
bit-exact); a MeshError as {"error": message, "class": its class name}, a denied claim with its holder and
expiry, and is rebuilt as that same class, as `mesh._transport.errors` does for gRPC.
"""

from __future__ import annotations

from mesh import _json
from mesh.core.errors import ClaimDenied, InvalidInput, MeshError, NodeUnavailable, error_classes

TYPE_CHECKING = False  # no `typing` at run time: meshctl's hot verbs import this module
if TYPE_CHECKING:
    from typing import Any

NO_API_OP = "the node's hook wire has no api op (a node older than this client): ask it over gRPC"
"""The NodeUnavailable message when the node's wire refuses the `api` op: the node did nothing with the
call; ask it over gRPC (`mesh.cli.main.run_light`, the Client's lanes), and not this wire again."""


def older_node(e: BaseException) -> bool:
    """Whether `e` is `answer`'s word that the node's wire has no `api` op (a node older than this client)."""
    return e.args == (NO_API_OP,)


REUSE_IDLE = 5.0
"""Seconds a client keeps an idle wire connection: the node closes one idle for HOOK_IDLE_TIMEOUT (10 s)."""

_STR = (str,)
_OPT_STR = (str, type(None))
_NUM = (int, float)
_OPT_INT = (int, type(None))
_BOOL = (bool,)

# verb → {argument: (accepted types, required)}: what the wire hands to the node's MeshAPI.
API_ARGS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "info": {},
    "members": {},
    "held": {},
    "heartbeat": {
        "action": (_OPT_STR, False),
        "target": (_OPT_STR, False),
        "phase": (_OPT_STR, False),
        "progress": (_OPT_INT, False),
        "note": (_OPT_STR, False),
        "role": (_OPT_STR, False),
    },
    "claim_once": {
        "resource": (_STR, True),
        "ttl": (_NUM, False),
        "wait": (_NUM, False),
        "handle": (_BOOL, False),
    },
    "release": {"type": (_STR, True), "name": (_STR, True), "handle": (_BOOL, False)},
    "send": {
        "to": (_STR, True),
        "subject": (_STR, True),
        "body": (_STR, True),
        "reply_to": (_OPT_STR, False),
        "key": (_OPT_STR, False),
    },
    "broadcast": {
        "subject": (_STR, True),
        "body": (_STR, True),
        "reply_to": (_OPT_STR, False),
        "key": (_OPT_STR, False),
    },
    # A stream: one {"ok": true, "item": …} line per message, then {"ok": true, "end": true} (with follow
    # none: it ends when the client closes the connection or the node stops).
    "messages": {
        "unread": (_BOOL, False),
        "follow": (_BOOL, False),
        "from_name": (_OPT_STR, False),
        "limit": (_OPT_INT, False),
        "after": (_OPT_INT, False),
    },
}
API_VERBS = frozenset(API_ARGS)
STREAM_VERBS = frozenset({"messages"})
"""Verbs answered with a stream of lines, on a connection of their own."""


def request_line(verb: str, args: dict[str, Any]) -> bytes:
    """One `api` request as the wire carries it: a JSON object on one line."""
    line = _json.dumps({"op": "api", "verb": verb, "args": args}, ensure_ascii=False, separators=(",", ":"))
    return line.encode() + b"\n"


def check_args(verb: str, args: dict[str, Any]) -> None:
    """InvalidInput unless `args` are keyword arguments `verb` takes, of the types the API declares."""
    spec = API_ARGS[verb]
    for k, v in args.items():
        if k not in spec:
            raise InvalidInput(f"{verb} takes no argument {k[:40]!r}")
        types, _ = spec[k]
        # bool is an int to Python, never a number or a progress to the API
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise InvalidInput(f"{verb}: {k} must be {' or '.join(t.__name__ for t in types)}")
    for k, (_, required) in spec.items():
        if required and k not in args:
            raise InvalidInput(f"{verb} needs {k}")


# ---------------------------------------------------------------------- values


_PLAIN = frozenset((bool, int, float, str, type(None)))
"""Classes `encode` hands back as they are (a subclass, such as a str enum, takes the long way there)."""


def encode(value: Any) -> Any:
    """A MeshAPI result as JSON-ready data (values and dataclasses as the object of their fields)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    fields = getattr(value, "__value_fields__", None) or getattr(value, "__dataclass_fields__", None)
    if fields is None:
        raise TypeError(f"cannot put a {type(value).__name__} on the wire")
    # A plain field is taken as it is, not through a call of this function: an inbox item (each message a
    # follower is handed) is a dozen of them, on the delivery path.
    return {name: v if (v := getattr(value, name)).__class__ in _PLAIN else encode(v) for name in fields}


def _tuples(rows: Any) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(r) for r in rows)


def _known(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the fields `cls` does not have: a newer node's answer adds fields (claims gained
    holder_id), which a client that does not know them ignores, as protobuf would."""
    fields = cls.__value_fields__
    return {k: v for k, v in data.items() if k in fields}


def decode(verb: str, data: Any) -> Any:
    """The value `verb` returns, rebuilt from what `encode` made of it (an answer that does not fit is
    NodeUnavailable, one line: a node of another version)."""
    if verb == "messages":  # a followed inbox's every line: no other verb's imports on its way
        from mesh.core.mailbox import InboxMessage

        try:
            return InboxMessage(**data)
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            why = f"the node's answer to {verb} is not understood ({e}); is it another version?"
            raise NodeUnavailable(why) from None
    from mesh._values import ClaimView, MemberView, NodeInfo, Sent

    try:
        if verb == "info":
            return NodeInfo(**{**data, "stewards": tuple(data.get("stewards", ()))})
        if verb == "members":
            return [MemberView(**{**m, "claims": _tuples(m.get("claims", ()))}) for m in data]
        if verb == "heartbeat":
            from mesh.core.status import StatusRecord

            return StatusRecord(**{**data, "claims": _tuples(data.get("claims", ()))})
        if verb == "claim_once":
            return ClaimView(**_known(ClaimView, data))
        if verb == "held":
            return [ClaimView(**_known(ClaimView, c)) for c in data]
        if verb in ("send", "broadcast"):
            return Sent(data["id"], tuple(data["recipients"]))
        if verb == "release":
            if not isinstance(data, bool):
                raise TypeError("not a bool")
            return data
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        why = f"the node's answer to {verb} is not understood ({e}); is it another version?"
        raise NodeUnavailable(why) from None
    raise InvalidInput(f"no such verb on the wire: {verb}")


def answer(verb: str, got: Any, key: str = "result") -> Any:
    """What one answer line of the `api` op says (its JSON, parsed): the one rule of every wire client.

    - the value under `key` ("result"; "item" in a stream), decoded as `verb` returns it;
    - an error with its class: that MeshError, the node's verdict on the call;
    - an error without a class is the wire's own refusal, not the API's: NodeUnavailable(NO_API_OP) when it
      says the op is unknown (an older node: ask gRPC, and not this wire again), else NodeUnavailable
      saying why (a request line too long, a fault inside the node): the caller may ask another way;
    - anything but a JSON object: NodeUnavailable.
    """
    if not isinstance(got, dict):
        raise NodeUnavailable("the node's answer is not a JSON object")
    if "error" in got:
        if got.get("class"):
            raise error_from_wire(got)
        said = str(got["error"])
        if said.startswith("unknown op 'api'"):
            raise NodeUnavailable(NO_API_OP)
        raise NodeUnavailable(f"the node's hook wire refused the request: {said[:200]}")
    return decode(verb, got.get(key))


# ---------------------------------------------------------------------- errors


def error_to_wire(e: MeshError) -> dict[str, Any]:
    """A MeshError as a wire answer (the hook reads only "error"; the CLI rebuilds the class)."""
    out: dict[str, Any] = {"error": str(e), "class": type(e).__name__}
    if isinstance(e, ClaimDenied):
        out["holder"] = e.holder
        out["expires_at"] = e.expires_at
        out["holder_id"] = e.holder_id
    return out


def error_from_wire(answer: dict[str, Any]) -> MeshError:
    """The MeshError an `error_to_wire` answer stands for (MeshError itself when it names no class)."""
    message = str(answer.get("error", ""))
    name = answer.get("class")
    if name == "ClaimDenied":
        expires = answer.get("expires_at")
        return ClaimDenied(
            message,
            holder=str(answer.get("holder", "")),
            expires_at=float(expires) if isinstance(expires, (int, float)) else None,
            holder_id=str(answer.get("holder_id", "")),
        )
    cls = error_classes().get(name if isinstance(name, str) else "") or MeshError
    # Built from the message alone, as from gRPC: classes whose constructor takes more keep their defaults.
    err = cls.__new__(cls)
    MeshError.__init__(err, message)
    return err
