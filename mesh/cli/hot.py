"""meshctl's hot verbs in ONE module: `status`, `claim`, `release`, `heartbeat` and `send`, their plain
command lines, against a node serving its hook wire (issue 15: each within 1.2x `python -c pass`).

    argv ─▶ read (this module) ─▶ node.json ─▶ hook wire ("api" op, JSON lines) ─▶ one answer, printed
      └──▶ anything else: None, and mesh.cli.main does it all (argparse, mesh.wireclient, gRPC, rich)

A `meshctl` process that imports the full client (mesh.cli.quick, mesh._nodefile, mesh.wireclient, the
wire codec and socket modules, the values, mesh.core.errors, the verb's module, mesh.cli.output: ~20 files)
spends ~3 ms of a ~9 ms floor on them: each file is found, read and run (~55 us), and the error tree alone
builds 25 classes (~0.7 ms). Here it is one file, functions only, no class, and nothing of the standard
library that `python -c pass` does not load but `_socket` and `_json` (`fcntl` too is spared: the node's
answer on its wire proves it runs; a node that does not answer is mesh.cli.main's to report).

`run(argv)` is all or nothing, and says which BEFORE it asks the node anything: it declines (None, having
done nothing) every line it cannot answer exactly as mesh.cli.main would — anything argparse or a client-
side check would refuse or treat specially (help, an unknown option, a value not certainly valid, text that
is not ASCII, path claims, several items, `send -`, `status --by-role`, a terminal for `status`'s table), a
node it does not find in exactly one node.json (none, or several: mesh._nodefile tells them apart by their
locks), or cannot reach (not running, no hook wire, a wire without the `api` op: an older node; a socket
that is not ours). Once asked, it answers:
the node's verdict is printed as mesh.cli.main prints it; an error class (rare) is rebuilt by
mesh._transport.wirecodec, imported then. What is printed is the documented shape, built from the wire's
JSON as the value classes build it (tests/cli/test_hot.py holds every field list, converter, check and
output equal to theirs, and whole processes equal to mesh.cli.main's over a real node).
"""

import os
import sys
import time

TYPE_CHECKING = False  # no `typing` (nor `from __future__`: it is a module too) at run time
if TYPE_CHECKING:
    from typing import Any

# ---------------------------------------------------------------------- the command line

FLAG, TEXT, DURATION, PROGRESS, HOME = range(5)
"""An option's converter: store_true, the string itself, mesh.cli.claim_cmds.duration, mesh.cli.status_cmds.
_progress, mesh._nodefile.home_arg. A value it does not take for certain declines the line."""

COMMON = {
    "--home": ("home", HOME),
    "--mesh": ("mesh", TEXT),
    "--node": ("node", TEXT),
    "--json": ("json", FLAG),
}

VERBS: "dict[str, tuple[int, dict[str, tuple[str, int]]]]" = {
    # verb: (positionals taken: exactly this many; -1: one or more), its options beyond COMMON
    "status": (0, {}),
    "heartbeat": (
        0,
        {
            "--action": ("action", TEXT),
            "--target": ("target", TEXT),
            "--phase": ("phase", TEXT),
            "--progress": ("progress", PROGRESS),
            "--note": ("note", TEXT),
        },
    ),
    "claim": (2, {"--ttl": ("ttl", DURATION), "--wait": ("wait", DURATION)}),
    "release": (2, {}),
    "send": (-1, {"--all": ("all", FLAG), "--reply-to": ("reply_to", TEXT)}),
}
"""What this module reads of each hot verb: a subset of mesh.cli.quick.VERBS (`--by-role`, `--shared` and
several claim or release items are declined: mesh.cli.main does those)."""

DEFAULTS = {"ttl": 3600.0, "wait": 0.0}
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = 7 * 24 * 3600.0


def parse(argv: "list[str]") -> "dict[str, Any] | None":
    """The values argparse would give `argv` (dest -> value, with "verb" and "words", the positionals), or
    None if this module does not take the line for certain (mesh.cli.quick's rules, or stricter)."""
    spec = VERBS.get(argv[0]) if argv else None
    if spec is None or not all(w.isascii() for w in argv):
        return None  # text that is not ASCII: mesh.cli.main checks it is UTF-8 and names the argument
    npos, extra = spec
    options = COMMON | extra
    values: dict[str, Any] = {"verb": argv[0]}
    for dest, kind in options.values():
        values[dest] = False if kind == FLAG else DEFAULTS.get(dest)
    words: list[str] = []
    block = 0  # 0: no positional yet, 1: in the one block of positionals, 2: after it
    i = 1
    while i < len(argv):
        word = argv[i]
        i += 1
        if word[:1] != "-" or word == "-":
            if block == 2:
                return None
            block = 1
            words.append(word)
            continue
        block = 2 if block else 0
        name, eq, given = word.partition("=")
        if name not in options:
            return None
        dest, kind = options[name]
        if kind == FLAG:
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            if i == len(argv) or (argv[i][:1] == "-" and argv[i] != "-"):
                return None
            given = argv[i]
            i += 1
        value = _convert(kind, given)
        if value is None:
            return None
        values[dest] = value
    if len(words) != npos and not (npos < 0 and words):
        return None
    values["words"] = words
    return values


def _convert(kind: int, text: str) -> "Any":
    """An option's value as its converter makes it; None where the converter might refuse it."""
    if kind == TEXT:
        return text
    if kind == HOME:
        return normpath(text)
    if kind == PROGRESS:
        try:
            n = int(text)
        except ValueError:
            return None
        return n if 0 <= n <= 100 else None
    t = text.strip().lower()  # DURATION
    unit = t[-1:] if t[-1:] in ("s", "m", "h", "d") else ""
    number = t[: len(t) - len(unit)]
    whole, dot, fraction = number.partition(".")
    if not whole.isdecimal() or (dot and not fraction.isdecimal()):
        return None
    return float(number) * _UNIT[unit]


def normpath(path: str) -> str:
    """mesh._nodefile.normpath: `str(PurePosixPath(path))`."""
    root = ""
    if path[:1] == "/":
        root = "//" if path[:2] == "//" and path[:3] != "///" else "/"
    return root + "/".join(p for p in path.split("/") if p and p != ".") or "."


# ---------------------------------------------------------------------- checks the client makes first

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("._-")
_ID_CHARS = _ALNUM | frozenset("_-")
_TYPE_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_TYPE_CHARS = _TYPE_FIRST | frozenset("0123456789_-")
_CLAIM_NAME_CHARS = _ALNUM | frozenset("._/@:+-")
_CONTROL = frozenset(map(chr, [*range(0x20), 0x7F]))
PATH_TYPES = ("path", "path-shared")
SUBJECT_MAX = 200
BODY_MAX = 64 * 1024


def _spelled(value: str, first: "frozenset[str]", rest: "frozenset[str]", most: int) -> bool:
    return 0 < len(value) <= most and value[0] in first and rest.issuperset(value)


def is_name(value: str) -> bool:
    """mesh.core.validate.is_name."""
    return _spelled(value, _ALNUM, _NAME_CHARS, 64)


def is_item(type_: str, name: str) -> bool:
    """Whether mesh.core.validate.resource_name takes TYPE/NAME as an item (never a path claim)."""
    return (
        type_ not in PATH_TYPES
        and _spelled(type_, _TYPE_FIRST, _TYPE_CHARS, 32)
        and _spelled(name, _ALNUM, _CLAIM_NAME_CHARS, 200)
        and "//" not in name
        and not name.endswith("/")
    )


def is_message(subject: str, body: str, reply_to: "str | None") -> bool:
    """Whether mesh.core.mailbox.text.check_outgoing takes the message (ASCII text: a byte a character)."""
    return (
        len(subject) <= SUBJECT_MAX
        and _CONTROL.isdisjoint(subject)
        and bool(subject.strip())
        and "\x00" not in body
        and len(body) <= BODY_MAX
        and (not reply_to or _spelled(reply_to, _ID_CHARS, _ID_CHARS, 64))
    )


def requests(v: "dict[str, Any]") -> "list[tuple[str, dict[str, Any]]] | None":
    """The wire requests of the parsed line, as mesh.wireclient makes them; None where a check of the client
    (or mesh.cli.main's handler) might refuse it, or it is not this module's to do."""
    verb, words = v["verb"], v["words"]
    if verb == "status":
        return [("members", {}), ("info", {})]
    if verb == "heartbeat":
        keys = ("action", "target", "phase", "progress", "note")
        return [("heartbeat", {k: v[k] for k in keys} | {"role": None})]
    if verb == "claim":
        ttl, wait = v["ttl"], v["wait"]
        if not (is_item(*words) and 0 < ttl <= MAX_TTL and 0 <= wait <= MAX_TTL):
            return None
        args = {"resource": "/".join(words), "ttl": ttl, "wait": wait, "handle": False}
        return [("claim_once", args)]
    if verb == "release":
        if words[0] in PATH_TYPES:
            return None
        return [("release", {"type": words[0], "name": words[1], "handle": False})]
    # send
    want = 2 if v["all"] else 3
    if len(words) != want or words[-1] == "-" or words == ["-"]:
        return None
    reply_to, body = v["reply_to"], words[-1]
    if v["all"]:
        if not is_message(words[0], body, reply_to):
            return None
        return [("broadcast", {"subject": words[0], "body": body, "reply_to": reply_to, "key": None})]
    if not (is_name(words[0]) and is_message(words[1], body, reply_to)):
        return None
    return [("send", {"to": words[0], "subject": words[1], "body": body, "reply_to": reply_to, "key": None})]


# ---------------------------------------------------------------------- JSON (json's own C functions)

_json: "Any" = None
_scan: "Any" = None
_encoders: "dict[tuple[bool, str, str], Any]" = {}


def _load_json() -> "Any":
    global _json, _scan
    import _json as c

    _json = c
    constants = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
    namespace: Any = type(sys.implementation)  # types.SimpleNamespace, without importing `types`
    context = namespace(  # what json.loads hands its scanner
        strict=True, object_hook=None, object_pairs_hook=None, parse_float=float, parse_int=int,
        parse_constant=constants.__getitem__,
    )  # fmt: skip
    _scan = c.make_scanner(context)
    return c


def dumps(obj: "Any", ensure_ascii: bool = True, separators: "tuple[str, str]" = (", ", ": ")) -> str:
    """mesh._json.dumps."""
    c = _json or _load_json()
    key = (ensure_ascii, *separators)
    enc = _encoders.get(key)
    if enc is None:
        escape = c.encode_basestring_ascii if ensure_ascii else c.encode_basestring
        enc = _encoders[key] = c.make_encoder(
            None, _not_serializable, escape, None, separators[1], separators[0], False, False, True
        )
    return "".join(enc(obj, 0))


def _not_serializable(o: "Any") -> "Any":
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def loads(text: bytes) -> "Any":
    """mesh._json.loads (ValueError for what is not one JSON document)."""
    if _scan is None:
        _load_json()
    s = text.decode()
    start = len(s) - len(s.lstrip(" \t\n\r"))
    try:
        obj, end = _scan(s, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if s[end:].strip(" \t\n\r"):
        raise ValueError("extra data")
    return obj


# ---------------------------------------------------------------------- the node and its wire


def home() -> "str | None":
    """mesh._nodefile.default_home, where it needs no platformdirs (else None)."""
    env = os.environ.get("MESH_HOME")
    if env:
        return normpath(os.path.expanduser(env))
    if sys.platform != "linux" or hasattr(sys, "getandroidapilevel") or "ANDROID_DATA" in os.environ:
        return None
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg:
        return normpath(os.path.join(xdg, "session-mesh")) if os.path.isabs(xdg) else None
    if not os.path.isabs(os.environ.get("HOME", "")):
        return None
    return normpath(os.path.join(os.path.expanduser("~/.local/share"), "session-mesh"))


def node_file(v: "dict[str, Any]") -> "dict[str, Any] | None":
    """node.json of the node the line means, as mesh._nodefile.find_node finds it: --node / $MESH_NODE (in
    --mesh / $MESH_MESH, else in any mesh), else the only node (in --mesh, if given). None where that is
    not one file for certain (none, several: some may be left by a node that was killed; another name, no
    hook wire): mesh.cli.main then looks at the nodes' locks and finds it, or says why. Whether the node
    runs is its answer on the wire."""
    where = v["home"] if v["home"] is not None else home()
    mesh = v["mesh"] if v["mesh"] is not None else os.environ.get("MESH_MESH")
    name = v["node"] if v["node"] is not None else os.environ.get("MESH_NODE")
    if where is None or (mesh is not None and not is_name(mesh)) or (name and not is_name(name)):
        return None
    root = os.path.join(where, "meshes")
    found = []
    try:
        for m in [mesh] if mesh is not None else os.listdir(root):
            nodes = os.path.join(root, m, "nodes")
            try:
                names = [name] if name else os.listdir(nodes)
            except OSError:
                continue
            found += [p for n in names if os.path.exists(p := os.path.join(nodes, n, "node.json"))]
    except OSError:
        return None
    if len(found) != 1:
        return None
    try:
        with open(found[0], "rb") as f:
            d = loads(f.read())
        if (name and d["name"] != name) or not isinstance(d.get("hook_socket"), str) or not d["hook_socket"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return d  # type: ignore[no-any-return]


def connect(path: str, timeout: float) -> "Any":
    """mesh._transport.wiresock.open_wire: a connected socket; None where it would refuse before it connects
    or cannot connect (mesh.cli.main tries and says why); its words (a str) for a peer of another user."""
    import _socket
    from stat import S_ISDIR, S_ISSOCK

    uid = os.getuid()
    try:
        st = os.lstat(path)
        dst = os.lstat(os.path.dirname(path) or ".")
    except OSError:
        return None
    if not S_ISSOCK(st.st_mode) or st.st_uid != uid:
        return None
    if not S_ISDIR(dst.st_mode) or dst.st_uid != uid or dst.st_mode & 0o077:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if hasattr(_socket, "SO_PEERCRED"):
            creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # pid, uid, gid
            peer_uid = int.from_bytes(creds[4:8], sys.byteorder, signed=True)
            if peer_uid != uid:  # the one who answered has seen us: not asked twice
                sock.close()
                return f"refusing {path}: the process serving it runs as uid {peer_uid}"
    except OSError:
        sock.close()
        return None
    return sock


ANSWER_MAX = 64 * 2**20


def ask(sock: "Any", asked: "list[tuple[str, dict[str, Any]]]") -> "list[Any] | str":
    """Every request's answer line, parsed, in order, for one round trip; or the NodeUnavailable message
    mesh.wireclient gives when the wire fails on the way."""
    line = b"".join(
        dumps({"op": "api", "verb": verb, "args": args}, False, (",", ":")).encode() + b"\n"
        for verb, args in asked
    )
    buf = b""
    try:
        sock.sendall(line)
        while buf.count(b"\n") < len(asked):
            chunk = sock.recv(65536)
            if not chunk:
                return "the node closed the connection (is it stopping?)"
            buf += chunk
            if len(buf) > ANSWER_MAX:
                return "the node's answer is too long"
    except TimeoutError:
        return "node did not answer in time"
    except OSError as e:
        return f"node unavailable: {e.strerror or e.__class__.__name__}"
    finally:
        sock.close()
    answers = []
    for raw in buf.split(b"\n")[: len(asked)]:
        try:
            answers.append(loads(raw))
        except ValueError:
            return "the node's answer is not JSON"
    return answers


# ---------------------------------------------------------------------- values, as the API classes give them

CLAIM_FIELDS = ("resource", "holder", "holder_node", "token", "expires_at")
"""mesh._values.ClaimView's fields without a default (the others are left out of its JSON)."""
MEMBER_FIELDS = (
    *("name", "node_id", "role", "state", "action", "target", "phase", "progress", "note", "last_seen"),
    *("is_self", "address", "incarnation", "state_since", "status_version", "status_updated_at", "steward"),
    *("claims", "unread"),
)
MEMBER_REQUIRED = 10
"""mesh._values.MemberView's fields, in order, and how many of them have no default."""
STATUS_FIELDS = (
    *("node_id", "incarnation", "name", "role", "action", "target", "phase", "progress", "note"),
    *("version", "updated_at", "claims", "unread"),
)
STATUS_REQUIRED = 3
"""mesh.core.status.StatusRecord's, as MEMBER_FIELDS."""
INFO_FIELDS = (
    *("name", "node_id", "incarnation", "mesh", "address", "pid", "state_dir", "version", "epoch"),
    *("stewards", "node_now", "steward_note", "local_links", "grpc_links"),
)
INFO_REQUIRED = 8
"""mesh._values.NodeInfo's, as MEMBER_FIELDS."""
MEMBER_DEFAULTS: "dict[str, Any]" = {
    "is_self": False,
    "address": "",
    "state_since": 0.0,
    "status_updated_at": 0.0,
}
MEMBER_DEFAULTS |= {"steward": False, "claims": (), "unread": 0}


def _fits(data: "Any", fields: "tuple[str, ...]", required: int) -> bool:
    """Whether the value class with these fields takes `data` as its keyword arguments."""
    return (
        isinstance(data, dict) and all(f in data for f in fields[:required]) and set(fields).issuperset(data)
    )


def understood(verb: str, result: "Any") -> bool:
    """Whether mesh._transport.wirecodec.decode takes `result` as it is, as far as this module reads it."""
    if verb == "members":
        return isinstance(result, list) and all(_fits(m, MEMBER_FIELDS, MEMBER_REQUIRED) for m in result)
    if verb == "info":
        return _fits(result, INFO_FIELDS, INFO_REQUIRED) and isinstance(result.get("steward_note", ""), str)
    if verb == "heartbeat":
        return _fits(result, STATUS_FIELDS, STATUS_REQUIRED)
    if verb == "claim_once":
        return isinstance(result, dict) and all(f in result for f in CLAIM_FIELDS)
    if verb == "release":
        return isinstance(result, bool)
    return isinstance(result, dict) and "id" in result and isinstance(result.get("recipients"), list)


def decoded(verb: str, result: "Any") -> "tuple[Any, int]":
    """What wirecodec.decode makes of an answer this module does not read as it is, as JSON-ready data, and
    0; or its NodeUnavailable (a node of another version) printed, and the exit code."""
    from mesh._transport import wirecodec
    from mesh.core.errors import MeshError

    try:
        return wirecodec.encode(wirecodec.decode(verb, result)), 0
    except MeshError as e:
        return None, fail(str(e), e.exit_code)


_YEAR_10000 = 253402300800


def iso(t: "float | None") -> "str | None":
    """mesh.core.times.iso."""
    if t is None or t <= 0:
        return None
    if t >= _YEAR_10000:
        from mesh.core.times import iso as full

        return full(t)
    secs = int(t)
    micros = round((t - secs) * 1e6)
    if micros >= 1_000_000:
        secs += 1
        micros -= 1_000_000
    days, rest = divmod(secs, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    z = days + 719468  # H. Hinnant's civil_from_days, as mesh.core.times._civil
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micros // 1000:03d}Z"


def claim_json(c: "dict[str, Any]") -> "dict[str, Any]":
    """ClaimView.to_json of a claim's wire data."""
    type_, _, name = c["resource"].partition("/")
    return {"type": type_, "name": name, "holder": c["holder"], "holder_node": c["holder_node"],
            "token": c["token"], "expires_at": iso(c["expires_at"])}  # fmt: skip


def member_json(m: "dict[str, Any]") -> "dict[str, Any]":
    """MemberView.to_json of a member's wire data."""
    m = MEMBER_DEFAULTS | m
    name, node_id = m["name"], m["node_id"]
    return {
        "name": name,
        "node_id": node_id,
        "role": m["role"],
        "state": m["state"],
        "action": m["action"],
        "target": m["target"],
        "phase": m["phase"],
        "progress": m["progress"],
        "note": m["note"],
        "last_seen": iso(m["last_seen"]),
        "is_self": m["is_self"],
        "address": m["address"],
        "state_since": iso(m["state_since"]),
        "status_updated_at": iso(m["status_updated_at"]),
        "steward": m["steward"],
        "unread": m["unread"],
        "claims": [
            claim_json({"resource": r, "holder": name, "holder_node": node_id, "token": t, "expires_at": x})
            for r, t, x in m["claims"]
        ],
    }


def ago(t: float, now: float) -> str:
    """mesh.cli.output.ago."""
    if t <= 0:
        return "-"
    d = (now or time.time()) - t
    if d < 1.0:
        return "now"
    if d < 90:
        return f"{d:.0f}s ago"
    if d < 5400:
        return f"{d / 60:.0f}m ago"
    return f"{d / 3600:.1f}h ago"


def member_row(m: "dict[str, Any]", now: float) -> str:
    """mesh.cli.output.plain_members' line for a member's wire data."""
    m = MEMBER_DEFAULTS | m
    claims = ",".join(r for r, _, _ in m["claims"])
    row = [m["name"], m["role"], m["state"], m["action"], m["target"], m["phase"], str(m["progress"]),
           m["note"], claims, str(m["unread"]), ago(m["last_seen"], now)]  # fmt: skip
    return "\t".join(row) + "\n"


def clock(t: float) -> str:
    """mesh.cli.claim_cmds._clock."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "unknown"


# ---------------------------------------------------------------------- the verbs


def run(argv: "list[str]") -> "int | None":
    """The exit code of `meshctl ARGV` done here, or None: not this module's line, or no node to ask here,
    and nothing was done (mesh.cli.main does it). Ctrl-C is 130, a closed stdout 0, as mesh.cli.main's."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _run(argv: "list[str]") -> "int | None":
    v = parse(argv)
    if v is None:
        return None
    if v["verb"] == "status" and not v["json"] and sys.stdout.isatty():
        return None  # the rich table
    asked = requests(v)
    if asked is None:
        return None
    node = node_file(v)
    if node is None:
        return None
    timeout = v["wait"] + 60.0 if v["verb"] == "claim" else 10.0  # mesh.wireclient's
    sock = connect(normpath(node["hook_socket"]), timeout)
    if sock is None:
        return None
    if isinstance(sock, str):
        return fail(sock)
    got = ask(sock, asked)  # closes it
    if isinstance(got, str):
        return fail(got)
    results: list[Any] = []
    for (verb, _), answer in zip(asked, got, strict=True):
        if not isinstance(answer, dict):
            return fail("the node's answer is not a JSON object")
        if "error" in answer:
            if answer.get("class"):
                return refused(v, answer)
            said = str(answer["error"])
            if said.startswith("unknown op 'api'") and not results:
                return None  # an older node did nothing: mesh.cli.main asks it over gRPC
            return fail(f"the node's hook wire refused the request: {said[:200]}")
        result = answer.get("result")
        if not understood(verb, result):
            result, code = decoded(verb, result)
            if code:
                return code
        results.append(result)
    return show(v, node, results)


def fail(message: str, code: int = 2) -> int:
    """mesh.cli.main's words for a MeshError that ends the command (NodeUnavailable's code by default)."""
    print("meshctl: " + " ".join(message.splitlines()), file=sys.stderr)
    return code


def refused(v: "dict[str, Any]", answer: "dict[str, Any]") -> int:
    """The node's verdict on the call, as mesh.cli.main and the verb's handler print it."""
    from mesh._transport.wirecodec import error_from_wire
    from mesh.core.errors import ClaimDenied

    e = error_from_wire(answer)
    if v["verb"] != "claim" or not isinstance(e, ClaimDenied):
        return fail(str(e), e.exit_code)
    if v["json"]:
        type_, name = v["words"]
        print_json({"granted": False, "type": type_, "name": name, "holder": e.holder, "token": None,
                    "expires_at": iso(e.expires_at), "reason": str(e)})  # fmt: skip
    else:
        print(str(e), file=sys.stderr)
    return 3


def print_json(data: "Any") -> None:
    """mesh.cli.output.print_json."""
    sys.stdout.write(dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def show(v: "dict[str, Any]", node: "dict[str, Any]", results: "list[Any]") -> int:
    """What the verb's handler prints of the node's answers."""
    verb, words, out = v["verb"], v["words"], sys.stdout
    if verb == "status":
        members, info = results
        note = info.get("steward_note", "")
        if v["json"]:
            print_json([member_json(m) for m in members])
        else:
            now = time.time()
            out.write("".join(member_row(m, now) for m in members))
        if note and not out.isatty():
            print(f"stewards: {note}", file=sys.stderr)  # claims cannot be decided now: say why, off the data
    elif verb == "heartbeat":
        if v["json"]:
            print_json({"ok": True, "node": node["name"]})
    elif verb == "claim":
        (g,) = results
        if v["json"]:
            print_json({"granted": True, **claim_json(g)})
        else:
            print(f"claimed {g['resource']} — token {g['token']}, until {clock(g['expires_at'])}")
    elif verb == "release":
        count = int(results[0])
        what = "/".join(words)
        if v["json"]:
            print_json({"released": count > 0, "count": count, "type": words[0], "name": words[1]})
        elif count:
            print(f"released {what}")
        else:
            print(f"{what} was not held by this session (nothing to release)")
    else:  # send, broadcast
        (sent,) = results
        if v["json"]:
            print_json({"id": sent["id"], "queued": True, "recipients": list(sent["recipients"])})
        else:
            who = ", ".join(sent["recipients"]) or "nobody yet (no other member known)"
            print(f"queued {sent['id']} for {who}")
    return 0
