"""`@value`: a frozen, slotted value class like `@dataclass(frozen=True, slots=True)`, built without
`dataclasses` (and so without `inspect` or `typing`, and with no `exec` at import).

Why: `meshctl status` is a new process each time, and `dataclasses` costs it ~1 ms of imports plus ~1 ms
per class (it compiles each generated method with `exec`), and pulls in `inspect` (~10 ms). The values the
hot verbs hand out (mesh._values, mesh.paths.RunningNode, StatusRecord, …) use this instead. A class starts
with one generic `__init__`; once it has been constructed COMPILE_AFTER times (a node's message records,
several per message) it gets an `__init__` compiled for its fields, as a dataclass's, at twice the speed.
Both say the same on bad arguments (Python's own words).

What a class gets, the same as from the dataclass: `__init__` taking the annotated fields in order,
positionally or by keyword (class attributes are defaults; immutable ones only), `__repr__`, `__eq__` (same
class only) and `__hash__` over the fields, `__match_args__`, `__slots__`, assignment refused
(`FrozenInstanceError`, an AttributeError), pickling and copying. `fields(cls)` names the fields and
`replace(obj, **changes)` copies with changes. mypy sees the decorator as a frozen dataclass transform
(PEP 681), so it checks constructor calls and refuses assignments just as for the dataclass.

`@value(order=True)` adds the orderings (over the fields as a tuple, same class only); `@value(frozen=False)`
is a mutable record (assignable, unhashable, a `__dict__` unless `slots=True`), as `@dataclass` without
`frozen`. A default may be `field(default_factory=f)` (a new `f()` for each instance), and a class's
`__post_init__` runs after `__init__` has set every field. So the node's start-up needs no `dataclasses`.

Not supported (not needed by any value here): other `field(...)` options, `ClassVar`/`InitVar`
annotations, inheritance between value classes.
"""

from __future__ import annotations

from _operator import attrgetter  # the C module: `operator` is its Python copy (defined, then replaced)

TYPE_CHECKING = False  # typing itself is ~3 ms of meshctl's start-up: only mypy reads these imports
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")

__all__ = ["FrozenInstanceError", "asdict", "field", "fields", "is_value", "replace", "value"]


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a value (as `dataclasses.FrozenInstanceError`)."""


_MISSING: Any = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field's default made anew for each instance (as `dataclasses.field(default_factory=...)`)."""
    return _Factory(default_factory)  # type: ignore[return-value]  # the class turns it into the value


def _make(cls: type[Any], frozen: bool = True, order: bool = False, slots: bool = False) -> type[Any]:
    # not inspect.get_annotations: importing inspect is what this module avoids (its own, unevaluated)
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    qualname = cls.__qualname__
    first_default = next((i for i, n in enumerate(names) if n in defaults), len(names))
    if any(n not in defaults for n in names[first_default:]):
        raise TypeError(f"{qualname}: a field without a default follows one with a default")
    setfield = object.__setattr__
    many = len(names) > 1
    getter = attrgetter(*names) if names else (lambda _obj: ())

    def values(self: Any) -> tuple[Any, ...]:
        got = getter(self)
        return got if many else (got,)

    setters: list[Any] = []  # the slots' own descriptors' __set__, filled once the class exists
    nfields = len(names)
    post_init = cls.__dict__.get("__post_init__")
    slotted = frozen or slots

    # Python's words for too many positional arguments ("takes from 2 to 3 positional arguments")
    takes = f"{nfields + 1} positional argument{'s' if nfields else ''}"
    if first_default < nfields:
        takes = f"from {first_default + 1} to {nfields + 1} positional arguments"
    calls = 0  # constructions by the generic __init__: the class's own is compiled at COMPILE_AFTER

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == COMPILE_AFTER:
            made.__init__ = _compiled_init(qualname, names, defaults, setters, post_init)
        # Fast paths for every field given, all positionally or all by keyword: the slot descriptors set each
        # field without a name look-up. Anything else (defaults, errors) takes the general path below, which
        # sets every field again or raises.
        if not kwargs:
            if len(args) == nfields:
                for put, v in zip(setters, args, strict=True):
                    put(self, v)
                if post_init is not None:
                    post_init(self)
                return
        elif not args and len(kwargs) == nfields:
            try:
                for name, put in zip(names, setters, strict=True):
                    put(self, kwargs[name])
            except KeyError:
                pass
            else:
                if post_init is not None:
                    post_init(self)
                return
        if len(args) > len(names):
            raise TypeError(f"{qualname}.__init__() takes {takes} but {len(args) + 1} were given")
        for name, v in zip(names, args, strict=False):
            setfield(self, name, v)
        missing: list[str] = []
        for name in names[len(args) :]:
            v = kwargs.pop(name, _MISSING)
            if v is _MISSING:
                v = defaults.get(name, _MISSING)
                if v is _MISSING:
                    missing.append(name)
                    continue
                if v.__class__ is _Factory:
                    v = v.make()
            setfield(self, name, v)
        if kwargs:
            name = next(iter(kwargs))
            if name in names:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {name!r}")
        if missing:
            raise TypeError(f"{qualname}.__init__() {_missing(missing)}")
        if post_init is not None:
            post_init(self)

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values(self), strict=True))
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __setattr__(self: Any, name: str, v: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return (type(self), values(self))

    def __lt__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) < values(other)
        return NotImplemented

    def __le__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) <= values(other)
        return NotImplemented

    def __gt__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) > values(other)
        return NotImplemented

    def __ge__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) >= values(other)
        return NotImplemented

    ns = {k: v for k, v in cls.__dict__.items() if k not in defaults and k not in ("__dict__", "__weakref__")}
    methods: list[Any] = [__init__, __repr__, __eq__]
    ns.update(__qualname__=qualname, __match_args__=names, __value_fields__=names)
    if slotted:
        ns["__slots__"] = names
    if frozen:
        methods += [__hash__, __setattr__, __delattr__, __reduce__]
    else:
        ns["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass
    if order:
        methods += [__lt__, __le__, __gt__, __ge__]
    for fn in methods:
        ns[fn.__name__] = fn
        fn.__qualname__ = f"{qualname}.{fn.__name__}"
    made: type[Any] = type(cls.__name__, cls.__bases__, ns)  # with __slots__: a new class, as dataclass's
    if slotted:
        setters.extend(made.__dict__[n].__set__ for n in names)
    else:
        setters.extend(_setter(n) for n in names)
    return made


COMPILE_AFTER = 64
"""Constructions of a value class after which it gets a compiled `__init__` (see _compiled_init)."""


def _missing(names: list[str]) -> str:
    """Python's own words for missing arguments ("missing 2 required positional arguments: 'a' and 'b'")."""
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        listed = quoted[0]
    elif len(quoted) == 2:
        listed = f"{quoted[0]} and {quoted[1]}"
    else:
        listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    s = "" if len(names) == 1 else "s"
    return f"missing {len(names)} required positional argument{s}: {listed}"


def _compiled_init(
    qualname: str,
    names: tuple[str, ...],
    defaults: dict[str, Any],
    setters: list[Any],
    post_init: Callable[[Any], None] | None,
) -> Callable[..., None]:
    """An `__init__` made for one class, as dataclasses makes it: the fields as its parameters (Python binds
    them and words the errors, as the generic `__init__` does), each set by its slot's descriptor.

    Built only for classes constructed often (COMPILE_AFTER): compiling costs ~0.2 ms a class, which a
    one-shot `meshctl` would pay for every class it imports; a message's records are built four times per
    message, and this halves their cost or better (Envelope 2.0 -> 0.9 us on the shared 2-core box).
    """
    # Helpers under names no field takes (as dataclasses' __dataclass_ prefix); the fields are the parameters.
    ns: dict[str, Any] = {"__value_missing": _MISSING, "__value_post": post_init}
    me = "__value_self" if "self" in names else "self"
    params = []
    body = []
    for i, name in enumerate(names):
        ns[f"__value_set{i}"] = setters[i]
        d = defaults.get(name, _MISSING)
        if d is _MISSING:
            params.append(name)
        elif d.__class__ is _Factory:
            ns[f"__value_make{i}"] = d.make
            params.append(f"{name}=__value_missing")
            body.append(f"    if {name} is __value_missing:\n        {name} = __value_make{i}()")
        else:
            ns[f"__value_default{i}"] = d
            params.append(f"{name}=__value_default{i}")
        body.append(f"    __value_set{i}({me}, {name})")
    if post_init is not None:
        body.append(f"    __value_post({me})")
    src = f"def __init__({', '.join([me, *params])}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(src, ns)  # the source names only the class's fields (identifiers) and the helpers above
    fn: Callable[..., None] = ns["__init__"]
    fn.__qualname__ = f"{qualname}.__init__"
    return fn


def _setter(name: str) -> Callable[[Any, Any], None]:
    def put(obj: Any, v: Any) -> None:
        obj.__dict__[name] = v

    return put


if TYPE_CHECKING:

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def value(
        cls: type[T] | None = None, /, *, frozen: bool = True, order: bool = False, slots: bool = False
    ) -> Any: ...

else:

    def value(cls=None, /, *, frozen=True, order=False, slots=False):
        if cls is None:
            return lambda c: _make(c, frozen, order, slots)
        return _make(cls)


def fields(cls_or_obj: Any) -> tuple[str, ...]:
    """The field names of a value class (or of a value), in order; of a dataclass or a named tuple too (code
    that walks either, like the wire codec, need not know which a class is)."""
    names: tuple[str, ...] | None = getattr(cls_or_obj, "__value_fields__", None)
    if names is None and _named_tuple(cls_or_obj):
        names = cls_or_obj._fields
    if names is None:
        import dataclasses

        names = tuple(f.name for f in dataclasses.fields(cls_or_obj))
    return names


def replace(obj: T, **changes: Any) -> T:
    """A copy of value `obj` with the given fields changed (as `dataclasses.replace`, which it calls for a
    dataclass; a named tuple's `_replace`)."""
    if _named_tuple(obj) and not isinstance(obj, type):
        return obj._replace(**changes)  # type: ignore[attr-defined, no-any-return]
    if not hasattr(obj, "__value_fields__"):
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    current = {n: getattr(obj, n) for n in fields(obj)}
    unknown = changes.keys() - current.keys()
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field {min(unknown)!r}")
    return type(obj)(**(current | changes))


def _named_tuple(cls_or_obj: Any) -> bool:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def is_value(obj: Any) -> bool:
    """Whether `obj` is a value or a dataclass instance (as `dataclasses.is_dataclass` for an instance)."""
    return not isinstance(obj, type) and (
        hasattr(obj, "__value_fields__") or hasattr(obj, "__dataclass_fields__")
    )


def asdict(obj: Any) -> Any:
    """As `dataclasses.asdict`, for values and dataclasses alike: a dict of the fields, values inside
    lists, tuples and dicts converted too (the other objects are not copied: values are immutable)."""
    if is_value(obj):
        return {n: asdict(getattr(obj, n)) for n in fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(asdict(x) for x in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(asdict(x) for x in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj
