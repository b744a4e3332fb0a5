"""`mesh.core.values.value` classes behave as the frozen dataclasses they replaced: same constructor (order,
defaults, keywords), repr, equality, hash, frozen-ness, match args, pickling and copying. Each value class
the API hands out is checked against a real `@dataclass(frozen=True)` built from its own fields."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from mesh._values import ClaimView, MemberView, NodeInfo, Sent
from mesh._views_more import LeaseEvent
from mesh.briefing import ClaimNote, Note
from mesh.core.board.ops import EditTask
from mesh.core.claim_types import Granted
from mesh.core.globs import Glob
from mesh.core.mailbox import InboxMessage, MailBatch, OutboxEntry
from mesh.core.resources import PathClaim, path_claim
from mesh.core.stats import Summary
from mesh.core.status import StatusRecord
from mesh.core.values import (
    COMPILE_AFTER,
    FrozenInstanceError,
    asdict,
    field,
    fields,
    is_value,
    replace,
    value,
)
from mesh.paths import RunningNode

SAMPLES: list[Any] = [
    ClaimView("service/x", "s1", "n1", 7, 1.5),
    ClaimView("service/x", "s1", "n1", 7, 1.5, valid_until=2.0, node_now=1.0),
    MemberView("s1", "n1", "dev", "alive", "build", "x", "tests", 40, "hi", 3.0, claims=(("a/b", 1, 2.0),)),
    NodeInfo("s1", "n1", "inc", "default", "127.0.0.1:1", 42, "/tmp/x", "0.1", stewards=("s1",)),
    Sent("m-1", ("s2", "s3")),
    StatusRecord("n1", "inc", "s1", progress=5, claims=(("a/b", 1, 2.0),)),
    RunningNode("s1", "default", "n1", 42, Path("/tmp/c.sock"), "127.0.0.1:1", Path("/tmp")),
    ClaimNote("service/x", "s1", "n1", 3, 9.0, action="build"),
    Note("m-1", "s1", "hello", "body"),
    # the node's own values (start-up cost: each dataclass is ~0.6 ms of every node's start)
    Granted("service/x", 3, 9.0),
    Summary(3, 1.0, 2.0, 3.0, 3.0, 2.0),
    LeaseEvent("held", "service/x", 3, 9.0),
    EditTask("t-1", title="x"),
]


def reference(cls: type[Any]) -> type[Any]:
    """The frozen dataclass with the same fields (and the same name, for repr); defaults are checked apart."""
    ns: dict[str, Any] = {"__annotations__": dict.fromkeys(fields(cls), Any)}
    return dataclasses.dataclass(frozen=True)(type(cls.__name__, (), ns))


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_a_value_is_its_dataclass(obj: Any) -> None:
    cls = type(obj)
    names = fields(cls)
    ref_cls = reference(cls)
    ref = ref_cls(*[getattr(obj, n) for n in names])
    assert repr(obj) == repr(ref)
    assert hash(obj) == hash(ref)
    assert names == tuple(f.name for f in dataclasses.fields(ref_cls))
    assert cls.__match_args__ == ref_cls.__match_args__
    # equal to a copy built by keywords, to pickled and copied ones; not to a changed one or another class
    again = cls(**{n: getattr(obj, n) for n in names})
    assert again == obj and hash(again) == hash(obj) and not again != obj  # noqa: SIM202 (__ne__ is derived)
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj
    assert obj != ref and obj != tuple(getattr(obj, n) for n in names)
    changed = replace(obj, **{names[0]: "other"})
    assert changed != obj and getattr(changed, names[0]) == "other"
    assert all(getattr(changed, n) == getattr(obj, n) for n in names[1:])
    # frozen and slotted
    with pytest.raises(FrozenInstanceError):
        setattr(obj, names[0], "x")
    with pytest.raises(AttributeError):
        delattr(obj, names[0])
    with pytest.raises(AttributeError):
        obj.not_a_field = 1
    assert not hasattr(obj, "__dict__")
    assert isinstance(FrozenInstanceError(), AttributeError)


def test_constructor_errors_are_type_errors() -> None:
    with pytest.raises(
        TypeError,
        match="missing 4 required positional arguments: 'holder', 'holder_node', 'token', and 'expires_at'",
    ):
        ClaimView("service/x")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Sent("m", (), colour=1)
    with pytest.raises(TypeError, match="multiple values for argument 'id'"):
        Sent("m", (), id="n")
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4 were given"):
        Sent("m", (), 3)
    with pytest.raises(TypeError, match="no field 'colour'"):
        replace(Sent("m", ()), colour=1)


def test_value_classes_keep_methods_properties_and_docs() -> None:
    c = ClaimView("service/x", "s1", "n1", 7, 0.0)
    assert (c.type, c.name) == ("service", "x")
    assert str(Sent("m-1", ())) == "m-1"
    assert ClaimView.__doc__ and ClaimView.__doc__.startswith("A live claim")
    assert ClaimView.__qualname__ == "ClaimView" and ClaimView.__module__ == "mesh._values"
    pc = path_claim("path/src/**")
    assert isinstance(pc, PathClaim) and isinstance(pc.glob, Glob) and pc.exclusive
    assert str(pc.glob) == "src/**"


def test_a_default_is_shared_not_copied_and_order_is_checked() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        @value
        class Bad:
            a: int = 0
            b: int

    @value
    class Point:
        x: int
        y: int = 2

    assert Point(1) == Point(1, 2) == Point(x=1) and Point(1) != Point(1, 3)
    assert repr(Point(1)).endswith(".<locals>.Point(x=1, y=2)")  # the qualified name, as a dataclass's


def test_mail_records_are_values_too() -> None:
    # the send path's records (a meshctl send imports them): values, equal by fields
    assert fields(MailBatch)[:3] and fields(InboxMessage) and fields(OutboxEntry)


def test_asdict_fields_and_replace_treat_values_and_dataclasses_alike() -> None:
    @dataclasses.dataclass(frozen=True)
    class Old:
        a: int
        b: tuple[Any, ...] = ()

    ev = LeaseEvent("held", "service/x", 3, 9.0)
    nested = Old(1, (ev, Old(2), [ev], {"k": ev}))
    want = {"kind": "held", "resource": "service/x", "token": 3, "valid_until": 9.0, "node_now": 0.0}
    assert asdict(ev) == dataclasses.asdict(reference(LeaseEvent)(*[getattr(ev, n) for n in fields(ev)]))
    assert asdict(nested) == {"a": 1, "b": (want, {"a": 2, "b": ()}, [want], {"k": want})}
    assert fields(Old) == ("a", "b") and fields(ev) == fields(LeaseEvent)
    assert replace(Old(1), b=(2,)) == Old(1, (2,)) and replace(ev, token=4).token == 4
    assert is_value(ev) and is_value(Old(1)) and not is_value(LeaseEvent) and not is_value((1,))


# ---- the options the node's own classes need (order, mutable records, default factories, __post_init__)


@value(order=True)
class _Ordered:
    a: int
    b: str


@value(frozen=False)
class _Record:
    name: str
    seen: list[str] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self.count += 1  # runs once per construction, whichever path built it


@value(frozen=False, slots=True)
class _Slotted:
    x: int


@value
class _Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


def test_order_is_the_dataclass_order() -> None:
    ref = dataclasses.dataclass(frozen=True, order=True)(
        type("_Ordered", (), {"__annotations__": {"a": int, "b": str}})
    )
    pairs = [(1, "b"), (1, "a"), (0, "z"), (2, "")]
    assert [(v.a, v.b) for v in sorted(_Ordered(*p) for p in pairs)] == [
        (r.a, r.b) for r in sorted(ref(*p) for p in pairs)
    ]
    assert _Ordered(1, "a") <= _Ordered(1, "a") < _Ordered(1, "b") and _Ordered(2, "") > _Ordered(1, "z")
    with pytest.raises(TypeError):
        _ = _Ordered(1, "a") < (1, "a")  # type: ignore[operator]


def test_a_mutable_value_is_a_plain_dataclass_record() -> None:
    r, s = _Record("x"), _Record(name="x")
    assert r == s and r.seen is not s.seen  # a new list each time, not one shared default
    r.seen.append("m")
    r.name = "y"
    assert (r.name, r.seen, r.count) == ("y", ["m"], 1) and r != s
    assert _Record("z", [], 0).count == 1 and _Record(name="z", seen=[], count=5).count == 6  # fast paths too
    r.extra = 1  # type: ignore[attr-defined]  # a __dict__, as a dataclass without slots
    with pytest.raises(TypeError):
        hash(r)
    assert replace(r, name="q").seen == ["m"] and fields(r) == ("name", "seen", "count")
    assert asdict(r) == {"name": "y", "seen": ["m"], "count": 1}
    p = _Slotted(1)
    p.x = 2
    assert p.x == 2 and not hasattr(p, "__dict__")


def test_post_init_checks_every_construction() -> None:
    with pytest.raises(ValueError, match="negative"):
        _Checked(-1)
    with pytest.raises(ValueError, match="negative"):
        _Checked(n=-1)
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), n=-1)


def _errors(cls: type[Any]) -> list[str]:
    """What each bad call of `cls` (fields a, b, c=3, d=[]) raises."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((1,), {}),
        ((), {"b": 2}),
        ((1, 2, 3, [], 5), {}),
        ((1,), {"a": 1, "b": 2}),
        ((1, 2), {"e": 1}),
        ((), {"c": 1, "e": 2}),
    ]
    said = []
    for args, kwargs in calls:
        with pytest.raises(TypeError) as got:
            cls(*args, **kwargs)
        said.append(str(got.value))
    return said


def test_a_class_built_often_gets_a_compiled_init_that_builds_and_refuses_the_same() -> None:
    @value(frozen=False)
    class Made:
        a: int
        b: int
        c: int = 3
        d: list[int] = field(default_factory=list)

        def __post_init__(self) -> None:
            self.b += 1

    ref = dataclasses.dataclass(type("Made", (), {
        "__annotations__": {"a": int, "b": int, "c": int, "d": list},
        "c": 3,
        "d": dataclasses.field(default_factory=list),
        "__post_init__": Made.__post_init__,
        "__qualname__": Made.__qualname__,
    }))  # fmt: skip
    builds = [
        ((1, 2), {}),
        ((1,), {"b": 2, "d": [9]}),
        ((), {"a": 1, "b": 2, "c": 4, "d": []}),
        ((1, 2, 4), {}),
    ]
    generic = Made.__init__
    before = [Made(*a, **k) for a, k in builds]
    errors_before = _errors(Made)
    assert errors_before == _errors(ref)  # Python's own words, as the dataclass's __init__ says them
    for _ in range(COMPILE_AFTER):
        Made(0, 0)
    assert Made.__init__ is not generic  # compiled
    after = [Made(*a, **k) for a, k in builds]
    assert after == before
    assert [vars(x) for x in after] == [vars(ref(*a, **k)) for a, k in builds]
    assert Made(1, 2).d is not Made(1, 2).d  # a new default each time
    assert _errors(Made) == errors_before


def test_compiled_init_of_a_frozen_value_and_of_odd_field_names() -> None:
    @value
    class Odd:
        self: int
        args: str = "x"

    for _ in range(COMPILE_AFTER + 1):
        Odd(1)
    assert (
        Odd(1) == Odd(self=1, args="x")
        and Odd(2, "y").args == "y"
        and Odd.__init__.__qualname__.endswith("Odd.__init__")
    )
    with pytest.raises(FrozenInstanceError):
        Odd(1).self = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"Odd.__init__\(\) missing 1 required positional argument: 'self'"):
        Odd()  # type: ignore[call-arg]
