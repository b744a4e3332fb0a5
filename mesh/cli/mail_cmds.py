"""meshctl send / inbox / read / outbox: messages between sessions, never lost, honest about delivery."""

from __future__ import annotations

import sys
import time
from operator import add, itemgetter

from mesh.cli.main import bad_value, common_parser, connect, run, run_following, run_light
from mesh.core.errors import InvalidInput, MeshError

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from typing import Any

PAGE_MAX = 10_000


def page(text: str) -> int:
    """--limit: a whole number from 1 to 10000."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= PAGE_MAX:
        raise bad_value(f"must be 1-{PAGE_MAX}, not {text[:20]!r}")
    return n


def _more(shown: int, what: str) -> None:
    """Say (on stderr: stdout stays one JSON document) that older entries exist beyond the page shown."""
    print(
        f"meshctl: newest {shown} {what} shown; older ones exist (--limit up to {PAGE_MAX})",
        file=sys.stderr,
    )


if TYPE_CHECKING:
    from mesh.core.mailbox import InboxMessage, SendColumns
    from mesh.views import Sent


def register(sub: Any) -> None:
    s = sub.add_parser(
        "send",
        parents=[common_parser()],
        help="send a message to a session (or --all)",
        description="Queue a message durably in this node's outbox and return its id. It is "
        "delivered when the recipient's node is reachable (an offline session gets it when it "
        "returns, within 7 days). `meshctl outbox` shows queued / delivered / read.",
    )
    s.add_argument(
        "args",
        nargs="+",
        metavar="TO SUBJECT BODY",
        help="recipient session, subject, body ('-' reads the body from stdin); with --all: SUBJECT BODY; "
        "a lone '-' sends many: one JSON object per stdin line, "
        '{"to": NAME or "all": true, "subject": S, "body": B, optional "reply_to": ID, "key": K}',
    )
    s.add_argument(
        "--all", action="store_true", help="broadcast to every member of the mesh (offline ones too)"
    )
    s.add_argument("--reply-to", default=None, metavar="ID", help="the id of the message this answers")
    s.set_defaults(func=cmd_send)

    i = sub.add_parser("inbox", parents=[common_parser()], help="read messages (newest last)")
    i.add_argument("--unread", action="store_true", help="only unread messages")
    i.add_argument("--from", dest="from_name", default=None, metavar="NAME", help="only from this session")
    i.add_argument("--follow", "-f", action="store_true", help="keep streaming new messages (Ctrl-C to stop)")
    i.add_argument("--mark-read", action="store_true", help="mark the listed messages read")
    i.add_argument("--limit", type=page, default=100, help="at most this many (newest), default 100")
    i.set_defaults(func=cmd_inbox)

    r = sub.add_parser("read", parents=[common_parser()], help="show one message and mark it read")
    r.add_argument("id", help="message id (from `meshctl inbox`)")
    r.set_defaults(func=cmd_read)

    o = sub.add_parser(
        "outbox", parents=[common_parser()], help="what this session sent, and its delivery state"
    )
    o.add_argument("--state", choices=("queued", "delivered", "read", "expired"), default=None)
    o.add_argument("--to", default=None, metavar="NAME")
    o.add_argument("--limit", type=page, default=100, help="at most this many (newest), default 100")
    o.set_defaults(func=cmd_outbox)


def cmd_send(args: argparse.Namespace) -> int:
    if args.args == ["-"]:
        if args.all or args.reply_to:
            raise InvalidInput('`send -` takes "all" and "reply_to" from each line, not as options')
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the lines read from stdin are not UTF-8 text (binary data?)") from None
        return run(_send_many(args, parse_send_lines(text)))
    want = 2 if args.all else 3
    if len(args.args) != want:
        shape = "SUBJECT BODY" if args.all else "TO SUBJECT BODY"
        raise InvalidInput(f"send takes {shape}, got {len(args.args)} argument(s)")
    *head, body = args.args
    if body == "-":
        try:
            body = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the body read from stdin is not UTF-8 text (binary data?)") from None
    return run_light(args, lambda: _send(args, head, body))


async def _send(args: argparse.Namespace, head: list[str], body: str) -> int:
    from mesh.cli.output import print_json

    async with connect(args) as api:
        if args.all:
            sent = await api.broadcast(head[0], body, args.reply_to)
        else:
            sent = await api.send(head[0], head[1], body, args.reply_to)
    if args.json:
        print_json(sent.to_json())
    else:
        who = ", ".join(sent.recipients) or "nobody yet (no other member known)"
        print(f"queued {sent.id} for {who}")
    return 0


SEND_LINE_KEYS = frozenset({"to", "all", "subject", "body", "reply_to", "key"})
_PLAIN_FIELDS = ("to", "subject", "body")
# Characters `str.splitlines` breaks a line at besides "\n" that may stand in valid JSON (the others are
# control characters, refused by the decoder wherever they stand): input holding any is read line by line,
# as splitlines cuts it (a line break inside a string there is a bad line), never by the one-array parse.
_OTHER_BREAKS = ("\r", "\x85", "\u2028", "\u2029")


def parse_send_lines(text: str) -> SendColumns:
    """`meshctl send -`'s input, every line checked before anything is sent (a bad line: nothing sent).

    One JSON object per line (blank lines skipped): "to" a session name, or "all": true; "subject" and
    "body" strings; optional "reply_to" (a message id) and "key" (an idempotency key: the same key again,
    in this run or a later one, answers the first send's id and queues nothing more).

    The lines as columns (no object per line: the client cuts them into SendBatches as they are)."""
    plain = _plain_lines(text)
    if plain is not None:
        return plain
    items = _each_line(text)
    from mesh.core.mailbox import SendColumns

    return SendColumns(
        [None if it.get("all") else it["to"] for it in items],
        [it["subject"] for it in items],
        [it["body"] for it in items],
        [it.get("reply_to") or "" for it in items],
        [it.get("key") or "" for it in items],
    )


def _plain_lines(text: str) -> SendColumns | None:
    """The common input (every line exactly `{"to", "subject", "body"}`, strings, nothing around the object,
    no blank line) in ONE parse of all lines as a JSON array: the C decoder's loop instead of a decode and a
    Python turn per line (most of this process's CPU per line, and the nodes wait for it). None for any
    other input, or any line a check might refuse: `_each_line` then reads it line by line and names the
    line that is wrong.

    Exact, not a guess: the lines are joined with ",\n", and JSON forbids a raw newline inside a string, so
    no string spans two lines. Every element must be an object of three string values (nothing nested), so
    the only braces outside strings are the elements' own; a line that begins with "{" and ends with "}"
    thus holds whole elements, and as many elements as lines means one each: element i IS line i."""
    import json

    body = text[:-1] if text.endswith("\n") else text  # the last line's newline
    lines = body.count("\n") + 1
    if not (  # every line starts with "{" and ends with "}" (so none is blank), counted by C scans
        body.startswith("{")
        and body.endswith("}")
        and body.count("\n{") == lines - 1
        and body.count("}\n") == lines - 1
    ) or any(c in body for c in _OTHER_BREAKS):
        return None
    try:
        items = json.loads("[" + body.replace("\n", ",\n") + "]")
        if (
            len(items) != lines
            or set(map(type, items)) != {dict}
            or set(map(len, items)) != {3}  # with the three fields below: those and no other
        ):
            return None
        to, subjects, bodies = (list(map(itemgetter(field), items)) for field in _PLAIN_FIELDS)
    except (ValueError, KeyError, RecursionError):  # not JSON, a field missing
        return None
    # Values decoded from ASCII text without \u escapes are ASCII: their lengths are their UTF-8 sizes, and
    # none holds a NUL (a raw one is not JSON; an escaped one is "\u0000").
    ascii = "\\u" not in body and body.isascii()
    strs = {str}
    if (
        set(map(type, to)) != strs
        or set(map(type, subjects)) != strs
        or set(map(type, bodies)) != strs
        or not _texts_plain(subjects, bodies, ascii)
    ):
        return None
    from mesh.core import validate

    try:
        for name in set(to):
            validate.name(name, "recipient")
    except MeshError:
        return None
    from mesh.core.mailbox import SendColumns

    none = [""] * lines
    return SendColumns(to, subjects, bodies, none, none)


def _texts_plain(subjects: list[str], bodies: list[str], ascii: bool) -> bool:
    """Every (subject, body) passes `check_text`, checked a column at a time (C loops: map, join, set), as
    the node's `outgoing_many` does; False when any might not (then `check_text` says which, and why).
    `ascii`: every text is ASCII without a NUL (its length is its size)."""
    from mesh.core.mailbox.limits import BODY_MAX, SUBJECT_MAX
    from mesh.core.mailbox.text import CONTROL_CHARS

    if not (
        max(map(len, subjects)) <= SUBJECT_MAX
        and all(map(str.strip, subjects))
        and CONTROL_CHARS.isdisjoint("".join(subjects))
    ):
        return False
    if ascii:
        return bool(max(map(add, map(len, subjects), map(len, bodies))) <= BODY_MAX)
    encode = str.encode
    try:
        return (
            "\x00" not in "".join(bodies)
            and max(map(add, map(len, map(encode, subjects)), map(len, map(encode, bodies)))) <= BODY_MAX
        )
    except UnicodeEncodeError:  # a lone surrogate: check_text's words for it
        return False


def _each_line(text: str) -> list[dict[str, Any]]:
    """Every line decoded and checked on its own: what `parse_send_lines` does with input `_plain_lines`
    declines, naming the first line that is wrong."""
    import json

    from mesh.core import validate
    from mesh.core.mailbox.text import check_text

    out: list[dict[str, Any]] = []
    names: set[str] = set()  # recipient names checked already (the lines are mostly to one)
    decoder = json.JSONDecoder()
    # scan_once: the decoder's C scanner, without decode's two regex matches per line
    decode, scan = decoder.decode, decoder.scan_once  # type: ignore[attr-defined]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            try:
                item, end = scan(line, 0)
            except (StopIteration, ValueError):  # decode says what is wrong (or skips leading space)
                end = -1
            try:
                if end != len(line):
                    item = decode(line)
            except ValueError as e:
                raise InvalidInput(f"not a JSON object ({e})") from None
            if item.__class__ is dict and len(item) == 3:  # the common line: {"to", "subject", "body"}
                to, subject, body = item.get("to"), item.get("subject"), item.get("body")
                if to.__class__ is str and to in names and subject.__class__ is str and body.__class__ is str:
                    check_text(subject, body)  # `to` is a name checked on an earlier line
                    out.append(item)
                    continue
            if not isinstance(item, dict):
                raise InvalidInput("not a JSON object")
            if not SEND_LINE_KEYS.issuperset(item):
                unknown = sorted(set(item) - SEND_LINE_KEYS)
                raise InvalidInput(f"unknown field {validate.shown(unknown[0])} (fields: to or all, subject,"
                                   " body, reply_to, key)")  # fmt: skip
            for field in ("to", "subject", "body", "reply_to", "key"):
                if field in item and not isinstance(item[field], str):
                    raise InvalidInput(f'"{field}" must be a string')
            if "subject" not in item or "body" not in item:
                raise InvalidInput('"subject" and "body" are needed')
            everyone = item.get("all", False)
            if not isinstance(everyone, bool):
                raise InvalidInput('"all" must be true or false')
            if everyone == bool(item.get("to")):
                raise InvalidInput('give "to" (a session name) or "all": true, not both')
            if not everyone and item["to"] not in names:
                names.add(validate.name(item["to"], "recipient"))
            check_text(item["subject"], item["body"])
            if item.get("reply_to"):
                validate.ident(item["reply_to"], "reply_to")
            if item.get("key"):
                validate.ident(item["key"], "key")
        except MeshError as e:
            raise InvalidInput(f"stdin line {n}: {e}") from None
        out.append(item)
    if not out:
        raise InvalidInput("no messages on stdin (one JSON object per line)")
    return out


async def _send_many(args: argparse.Namespace, sends: SendColumns) -> int:
    """Every line's message pipelined over one stream (the node group-commits them); one answer per line,
    in line order. A send that fails (an unknown recipient) does not stop the others."""
    import json

    async with connect(args) as api:
        # One call: the client builds SendBatches of SEND_MAX straight from the columns (no task or future
        # per line) and answers each line in order.
        results: list[Sent | MeshError] = await api.send_many(sends, checked=True)  # parse_send_lines did
    code = 0
    out: list[str] = []  # stdout's lines, written at once (a write per line was a tenth of the process)
    for n, r in enumerate(results, 1):
        if isinstance(r, MeshError):
            if out:  # in order with stderr's lines
                sys.stdout.write("".join(out))
                sys.stdout.flush()
                out = []
            print(f"meshctl: message {n}: " + " ".join(str(r).splitlines()), file=sys.stderr)
            code = code or r.exit_code
            if args.json:
                out.append(json.dumps({"error": type(r).__name__, "message": str(r)}) + "\n")
        elif args.json:
            out.append(json.dumps(r.to_json()) + "\n")
        else:
            out.append(
                f"queued {r.id} for {', '.join(r.recipients) or 'nobody yet (no other member known)'}\n"
            )
    sys.stdout.write("".join(out))
    return code


def cmd_inbox(args: argparse.Namespace) -> int:
    try:
        return (run_following if getattr(args, "follow", True) else run)(_inbox(args))
    except KeyboardInterrupt:
        return 0


async def _inbox(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json

    # One more than asked tells whether older ones exist (with --follow the page runs into new ones).
    ask = args.limit if args.follow or args.limit >= PAGE_MAX else args.limit + 1
    async with connect(args) as api:
        items = []
        stream = api.messages(unread=args.unread, follow=args.follow, from_name=args.from_name, limit=ask)
        async for m in stream:
            if args.follow:
                _show(m, args.json)
                if args.mark_read:
                    await api.mark_read([m.id])
            else:
                items.append(m)
        if args.follow:
            return 0
        if len(items) > args.limit:
            items = items[1:]
            _more(args.limit, "messages")
        if args.mark_read and items:
            await api.mark_read([m.id for m in items if not m.read])
    if args.json:
        print_json([m.to_json() for m in items])
    elif not items:
        print("no messages" + (" unread" if args.unread else ""))
    else:
        for m in items:
            _show(m, False)
    return 0


def _show(m: InboxMessage, as_json: bool) -> None:
    from mesh.cli.output import print_json

    if as_json:
        print_json(m.to_json())
        return
    when = time.strftime("%m-%d %H:%M", time.localtime(m.sent_at))
    flag = " " if m.read else "*"
    scope = " (all)" if m.broadcast else ""
    reply = f" re:{m.in_reply_to}" if m.in_reply_to else ""
    print(f"{flag} {when}  {m.from_name}{scope} — {m.subject}{reply}   [{m.id}]")
    for line in m.body.splitlines() or [""]:
        print(f"      {line}")
    sys.stdout.flush()


def cmd_read(args: argparse.Namespace) -> int:
    return run(_read(args))


async def _read(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json
    from mesh.core.errors import MessageError
    from mesh.core.validate import shown

    async with connect(args) as api:
        found = None
        async for m in api.messages(limit=10_000):
            if m.id == args.id:
                found = m
        if found is None:
            raise MessageError(f"no message {shown(args.id)} in this inbox")
        if not found.read:
            await api.mark_read([found.id])
    if args.json:
        print_json(found.to_json() | {"read": True})
    else:
        print(f"From: {found.from_name}\nSubject: {found.subject}\nId: {found.id}\n")
        print(found.body)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    return run(_outbox(args))


async def _outbox(args: argparse.Namespace) -> int:
    from mesh.cli.output import print_json

    ask = args.limit + 1 if args.limit < PAGE_MAX else args.limit
    async with connect(args) as api:
        items = await api.outbox(args.state, args.to, ask)
    if len(items) > args.limit:
        items = items[1:]
        _more(args.limit, "entries")
    if args.json:
        print_json([e.to_json() for e in items])
    elif not items:
        print("outbox empty")
    else:
        for e in items:
            when = time.strftime("%m-%d %H:%M", time.localtime(e.sent_at))
            print(f"{e.state.value:<9} {when}  to {e.to_name} — {e.subject}   [{e.id}]")
    return 0
