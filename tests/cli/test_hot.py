"""mesh.cli.hot answers a hot verb's plain line exactly as mesh.cli.main would, or declines it: its reading of
the line against mesh.cli.quick's (itself held to argparse's), its checks against the client's, its field
lists against the value classes', its output against theirs and mesh.cli.output's, and whole processes
against main()'s over real nodes."""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh._transport import wirecodec
from mesh._values import ClaimView, MemberView, NodeInfo
from mesh.cli import hot, output, quick
from mesh.core import validate
from mesh.core.errors import MeshError
from mesh.core.mailbox.text import check_outgoing
from mesh.core.status import StatusRecord
from mesh.core.times import iso
from mesh.core.values import fields
from tests.cli.test_quick import WORDS
from tests.integration.harness import Mesh, wait_pid_gone

# ---------------------------------------------------------------------- the line


def hot_as_quick(v: dict[str, Any]) -> dict[str, Any]:
    """hot.parse's values as quick.parse names them (the positionals under their dests)."""
    out = {k: x for k, x in v.items() if k != "words"}
    words = v["words"]
    if v["verb"] in ("claim", "release"):
        out |= {"type": words[0], "name": words[1:]}
    elif v["verb"] == "send":
        out["args"] = words
    return out


def same_as_quick(v: dict[str, Any], argv: list[str]) -> None:
    """hot.parse's values are quick.parse's, and what hot does not read (--by-role, --shared) is off."""
    q = quick.parse(argv)
    assert q is not None, argv
    mine, theirs = hot_as_quick(v), {k: x for k, x in vars(q).items() if k != "func"}
    assert mine == {k: theirs[k] for k in mine}, argv
    assert all(theirs[k] is False for k in theirs.keys() - mine.keys()), argv


@pytest.mark.parametrize("verb", sorted(hot.VERBS))
def test_the_table_is_a_part_of_quicks(verb: str) -> None:
    """Every option hot reads is quick's (itself held to the parsers'), under the same dest and default."""
    spec = quick.VERBS[verb]
    for option, (dest, _) in (hot.COMMON | hot.VERBS[verb][1]).items():
        assert spec.options[option][0] == dest, option
        assert hot.DEFAULTS.get(dest) == spec.defaults.get(dest), option
    arity = tuple(n for _, n in spec.positionals)  # TYPE NAME...: one NAME here; WORDS...: one or more
    assert hot.VERBS[verb][0] == {(): 0, (quick.ONE, quick.MANY): 2, (quick.MANY,): -1}[arity]


HOT_LINES = [
    ["status"],
    ["status", "--json", "--node", "a", "--mesh", "m", "--home", "/tmp//h/"],
    ["heartbeat", "--action=build", "--target", "x", "--phase", "tests", "--note", "", "--progress=40"],
    ["claim", "service", "bench-item", "--ttl", "10m"],
    ["claim", "--ttl", "2h", "--wait", "30s", "service", "a", "--json"],
    ["release", "service", "bench-item"],
    ["send", "n1", "bench", "a body"],
    ["send", "all", "body", "--all", "--reply-to", "m-1"],
]


@pytest.mark.parametrize("argv", HOT_LINES, ids=" ".join)
def test_plain_lines_are_read_and_asked(argv: list[str]) -> None:
    v = hot.parse(argv)
    assert v is not None and hot.requests(v) is not None
    same_as_quick(v, argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--by-role"],
        ["claim", "service", "a", "b"],  # several items: all or none (mesh.claimset)
        ["claim", "path", "src/**"],
        ["claim", "service", "x", "--shared"],
        ["claim", "service", "bad name!"],
        ["claim", "service", "x", "--ttl", "8d"],
        ["claim", "service", "x", "--ttl", "0"],
        ["release", "path", "src/**"],
        ["release", "service", "a", "b"],
        ["send", "-"],
        ["send", "n1", "subject", "-"],
        ["send", "n1", "two\nlines", "body"],
        ["send", "n1", " ", "body"],
        ["send", "bad name", "s", "body"],
        ["send", "n1", "s", "b", "--reply-to", "not an id"],
        ["send", "n1", "s"],
        ["heartbeat", "--note", "é"],  # not ASCII: main() checks it is UTF-8
        ["heartbeat", "--progress", "101"],
        ["status", "--help"],
        ["status", "--js"],
    ],
    ids=" ".join,
)
def test_lines_it_cannot_answer_as_main_are_declined(argv: list[str]) -> None:
    v = hot.parse(argv)
    assert v is None or hot.requests(v) is None


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(hot.VERBS)), st.lists(st.sampled_from(WORDS), max_size=7))
def test_hot_never_reads_a_line_otherwise_than_quick(verb: str, rest: list[str]) -> None:
    """For any line: hot declines it, or quick (argparse's equal) reads the very same values."""
    argv = [verb, *rest]
    v = hot.parse(argv)
    if v is not None:
        same_as_quick(v, argv)


# ---------------------------------------------------------------------- the client's checks

NAMEISH = st.text(string.ascii_letters + string.digits + "._-/@:+ \t!", max_size=70) | st.sampled_from(
    ["a", "A-1", "x" * 64, "x" * 65, "path", "path-shared", "a//b", "a/", "-a", ".a", "a" * 200, "a" * 201]
)


@settings(max_examples=1000, deadline=None)
@given(NAMEISH)
def test_names_as_the_validators(s: str) -> None:
    assert hot.is_name(s) == validate.is_name(s)


@settings(max_examples=2000, deadline=None)
@given(NAMEISH, NAMEISH)
def test_items_as_resource_name(type_: str, name: str) -> None:
    try:
        ok = validate.resource_name(type_, name) == f"{type_}/{name}" and type_ not in hot.PATH_TYPES
    except MeshError:
        ok = False
    assert hot.is_item(type_, name) == ok


TEXT = st.text(string.printable, max_size=250) | st.sampled_from(["", " ", "x" * 200, "x" * 201, "a\x00b"])


@settings(max_examples=2000, deadline=None)
@given(TEXT, TEXT | st.just("b" * (64 * 1024 - 3)), st.none() | NAMEISH)
def test_messages_as_check_outgoing(subject: str, body: str, reply_to: str | None) -> None:
    try:
        check_outgoing(subject, body, reply_to, None)
        ok = True
    except MeshError:
        ok = False
    assert hot.is_message(subject, body, reply_to) == ok


# ---------------------------------------------------------------------- the values and the output


def test_field_lists_are_the_value_classes() -> None:
    for cls, names, required in (
        (MemberView, hot.MEMBER_FIELDS, hot.MEMBER_REQUIRED),
        (NodeInfo, hot.INFO_FIELDS, hot.INFO_REQUIRED),
        (StatusRecord, hot.STATUS_FIELDS, hot.STATUS_REQUIRED),
        (ClaimView, fields(ClaimView), len(hot.CLAIM_FIELDS)),
    ):
        assert fields(cls) == names, cls
        assert [n for n in names if n not in _defaults(cls)] == list(names[:required]), cls
    assert fields(ClaimView)[: len(hot.CLAIM_FIELDS)] == hot.CLAIM_FIELDS
    assert {k: v for k, v in _defaults(MemberView).items() if k in hot.MEMBER_DEFAULTS} == hot.MEMBER_DEFAULTS
    assert set(hot.MEMBER_FIELDS) - set(hot.MEMBER_DEFAULTS) - set(
        hot.MEMBER_FIELDS[: hot.MEMBER_REQUIRED]
    ) == {
        "incarnation",
        "status_version",
    }  # defaulted fields that no output reads


def _defaults(cls: type) -> dict[str, Any]:
    """The defaults of a value class's fields (a value built with the required fields only)."""
    names = fields(cls)
    required = {}
    for n in names:
        try:
            cls(**required)
            break
        except TypeError:
            required[n] = None
    made = cls(**required)
    return {n: getattr(made, n) for n in names if n not in required}


TIMES = st.sampled_from([0.0, -1.0, 1.0, 1796187817.0049272, 253402300799.9996]) | st.floats(
    -10, 2.5e11, allow_nan=False
)  # from year 10000 on both refuse (datetime's range)


@settings(max_examples=3000, deadline=None)
@given(TIMES)
def test_times_as_iso(t: float) -> None:
    assert hot.iso(t) == iso(t)


WORD = st.text(string.ascii_letters + string.digits + ' -\t"\\é☃', max_size=12)
CLAIMS = st.lists(st.tuples(WORD.map(lambda w: "service/" + w), st.integers(0, 2**62), TIMES), max_size=3)
MEMBERS = st.builds(
    MemberView,
    *(WORD, WORD, WORD, st.sampled_from(["alive", "suspect", "dead", "left"]), WORD, WORD, WORD),
    *(st.integers(0, 100), WORD, TIMES),
    is_self=st.booleans(),
    address=WORD,
    state_since=TIMES,
    status_updated_at=TIMES,
    steward=st.booleans(),
    claims=CLAIMS.map(tuple),
    unread=st.integers(0, 10**6),
)


def wire(value: Any) -> Any:
    """A value as the node's wire carries it (encoded, through JSON text)."""
    return json.loads(json.dumps(wirecodec.encode(value)))


@settings(max_examples=500, deadline=None)
@given(st.lists(MEMBERS, max_size=4))
def test_members_print_as_status_prints_them(members: list[MemberView]) -> None:
    data = wire(members)
    assert all(hot.understood("members", [m]) for m in data)
    assert [hot.member_json(m) for m in data] == [m.to_json() for m in members]
    mine, theirs = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(mine):
        hot.print_json([hot.member_json(m) for m in data])
    output.print_json([m.to_json() for m in members], file=theirs)
    assert mine.getvalue() == theirs.getvalue()
    now = time.time()
    for m, d in zip(members, data, strict=True):
        row = hot.member_row(d, now).rstrip("\n").split("\t")
        assert row[:-1] == _plain(m)[:-1] and row[-1] == output.ago(m.last_seen, now)


def _plain(m: MemberView) -> list[str]:
    """mesh.cli.output.plain_members' row of `m`."""
    buf = io.StringIO()
    output.plain_members([m], file=buf)
    return buf.getvalue().rstrip("\n").split("\t")


@settings(max_examples=300, deadline=None)
@given(st.builds(ClaimView, WORD.map(lambda w: "service/" + w), WORD, WORD, st.integers(0, 2**62), TIMES))
def test_claims_print_as_claim_prints_them(c: ClaimView) -> None:
    data = wire(c)
    assert hot.understood("claim_once", data)
    assert hot.claim_json(data) == c.to_json()


def test_answers_of_another_shape_are_decoded_as_the_client_does() -> None:
    """A field the client does not know: wirecodec's verdict (its NodeUnavailable), not a guess."""
    m = wire(MemberView("a", "id", "", "alive", "", "", "", 0, "", 1.0))
    assert hot.understood("members", [m])
    assert not hot.understood("members", [m | {"new_field": 1}])
    assert not hot.understood("members", [{k: v for k, v in m.items() if k != "name"}])
    assert not hot.understood("release", "yes") and not hot.understood("send", {"id": "x"})
    got, code = hot.decoded("members", [m | {"new_field": 1}])
    assert got is None and code == 2


# ---------------------------------------------------------------------- whole processes, against main()

ENTRY = "import sys; from mesh.cli.main import entry; sys.argv[0] = 'meshctl'; entry()"
MAIN = "import sys; from mesh.cli.main import main; sys.exit(main())"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(home=tmp_path_factory.mktemp("hot") / "home")
    try:
        m.up("a", "--no-mdns")
        m.up("b", "--no-mdns", "--peer", m.nodes["a"].address)
        yield m
    finally:
        m.cleanup()


def meshctl(
    m: Mesh, code: str, *args: str, node: str | None = "a", env: dict[str, str] | None = None
) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr, modules imported) of one `meshctl` process run through `code`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args, *(["--node", node] if node else [])],
        env=m.env() if env is None else env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    mods = {ln.rsplit("|", 1)[1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    err = "".join(ln + "\n" for ln in out.stderr.splitlines() if not ln.startswith("import time:"))
    return out.returncode, out.stdout, err, mods


def both(m: Mesh, *args: str, node: str = "a") -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """The same line through mesh.cli.hot (which must take it) and through main() (which never does)."""
    code, out, err, mods = meshctl(m, ENTRY, *args, node=node)
    assert "mesh.cli.hot" in mods and "mesh.wireclient" not in mods, (args, err)
    code2, out2, err2, mods2 = meshctl(m, MAIN, *args, node=node)
    assert "mesh.cli.hot" not in mods2 and "mesh.wireclient" in mods2
    return (code, out, err), (code2, out2, err2)


@pytest.mark.parametrize("args", [("claim", "service", "held"), ("claim", "service", "held", "--json")])
def test_a_refused_claim_says_the_same(nodes: Mesh, args: tuple[str, ...]) -> None:
    meshctl(nodes, ENTRY, "claim", "service", "held", "--ttl", "1h", node="b")
    hot_run, main_run = both(nodes, *args)
    assert hot_run[0] == main_run[0] == 3
    # The holder's end is the stewards' lease end as each process heard it: the two runs may straddle a
    # second (or a renewal), so that one value is compared for shape, the rest for equality.
    until = re.compile(r" until \d\d:\d\d:\d\d")
    if "--json" in args:
        hot, main = json.loads(hot_run[1]), json.loads(main_run[1])
        assert hot.pop("expires_at") and main.pop("expires_at")
        assert until.search(hot["reason"]) and until.search(main["reason"])
        hot["reason"], main["reason"] = until.sub("", hot["reason"]), until.sub("", main["reason"])
        assert hot == main and hot["holder"] == "b" and hot["granted"] is False
    else:
        assert hot_run[1] == main_run[1] == ""
        assert until.search(hot_run[2]) and until.sub("", hot_run[2]) == until.sub("", main_run[2])


@pytest.mark.parametrize(
    "args, code",
    [
        (("release", "service", "never"), 0),
        (("release", "service", "never", "--json"), 0),
        (("heartbeat", "--note", "x" * 600), 2),  # the node's check
        (("heartbeat", "--note", "x" * 600, "--json"), 2),
        (("send", "nobody", "s", "b"), 2),  # never seen in this mesh
        (("claim", "service", "x", "--wait", "7d", "--ttl", "7d", "--json"), 0),
        (("release", "service", "x", "--json"), 0),
    ],
)
def test_answers_and_errors_say_the_same(nodes: Mesh, args: tuple[str, ...], code: int) -> None:
    hot_run, main_run = both(nodes, *args)
    assert hot_run[0] == main_run[0] == code and hot_run[2] == main_run[2], (hot_run, main_run)
    if args[:3] == ("claim", "service", "x"):  # granted again to the same session: a later end
        hot_out, main_out = json.loads(hot_run[1]), json.loads(main_run[1])
        assert hot_out.pop("expires_at") and main_out.pop("expires_at") and hot_out == main_out
    elif args[:3] == ("release", "service", "x"):  # the first released it, the second found it not held
        assert json.loads(hot_run[1]) == {"released": True, "count": 1, "type": "service", "name": "x"}
        assert json.loads(main_run[1])["released"] is False
    else:
        assert hot_run == main_run
    if code:
        assert hot_run[2].startswith("meshctl: ") and hot_run[2].count("\n") == 1


def test_status_says_the_same(nodes: Mesh) -> None:
    (code, out, err), (code2, out2, err2) = both(nodes, "status", "--json")
    assert code == code2 == 0 and err == err2
    volatile = ("last_seen", "status_updated_at")
    a, b = ([{k: v for k, v in m.items() if k not in volatile} for m in json.loads(o)] for o in (out, out2))
    assert a == b and {m["name"] for m in a} == {"a", "b"}
    (code, out, err), (code2, out2, err2) = both(nodes, "status")
    assert code == code2 == 0 and err == err2
    rows, rows2 = ([r.split("\t")[:-1] for r in o.splitlines()] for o in (out, out2))  # but "last seen"
    assert rows == rows2 and len(rows) == 2


def test_a_node_that_is_not_running_is_mains_to_report(nodes: Mesh, tmp_path: Path) -> None:
    code, _, err, mods = meshctl(nodes, ENTRY, "status", node="zz")
    assert code == 2 and "no node named 'zz' is running" in err and "mesh.wireclient" not in mods
    # a node.json left behind, its socket gone: declined, and main() says the node is not running
    state = nodes.home / "meshes" / nodes.name / "nodes" / "ghost"
    state.mkdir(parents=True)
    (state / "node.json").write_text(json.dumps({"name": "ghost", "hook_socket": str(state / "hooks.sock")}))
    code, _out, err, mods = meshctl(nodes, ENTRY, "status", node="ghost")
    assert code == 2 and "no node named 'ghost' is running" in err


def test_the_node_is_found_in_any_mesh_or_said_to_be_ambiguous(nodes: Mesh) -> None:
    """$MESH_NODE without $MESH_MESH (what the session hook exports): the node in whichever mesh has it. No
    node named, two running: declined, and main() lists them."""
    env = {k: v for k, v in nodes.env().items() if k != "MESH_MESH"}
    code, out, err, mods = meshctl(nodes, ENTRY, "status", "--json", env=env | {"MESH_NODE": "b"}, node=None)
    assert code == 0 and "mesh.cli.hot" in mods and "mesh.wireclient" not in mods, err
    assert {m["name"] for m in json.loads(out) if m["is_self"]} == {"b"}
    code, out, err, mods = meshctl(nodes, ENTRY, "status", env=env, node=None)
    assert (
        code == 2 and err.startswith("meshctl: several nodes are running: a (mesh ") and err.count("\n") == 1
    )


def test_a_node_killed_is_not_asked(nodes: Mesh) -> None:
    """Killed, a node leaves its node.json and socket behind: nobody answers on it, so the line is declined,
    and main() (the node's lock) says it is not running."""
    nodes.up("c", "--no-mdns")
    nodes.signal("c", signal.SIGKILL)
    wait_pid_gone(nodes.nodes["c"].pid)
    state = nodes.home / "meshes" / nodes.name / "nodes" / "c"
    assert (state / "node.json").exists()
    code, _, err, mods = meshctl(nodes, ENTRY, "claim", "service", "y", node="c")
    assert code == 2 and "no node named 'c' is running" in err and "mesh.cli.hot" in mods
