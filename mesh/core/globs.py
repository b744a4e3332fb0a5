"""Path-claim patterns: parse and normalise them, match paths, and decide EXACTLY whether two overlap.

Syntax (a pattern is anchored at the project root; `/` separates segments):

* ``**`` as a whole segment matches zero or more segments (``src/**`` matches ``src``, ``src/a``,
  ``src/a/b``; ``**/x`` matches ``x`` and ``a/b/x``). Anywhere else two stars are an error.
* ``*`` matches any run of characters within one segment (including none, and a leading dot: claims are
  about files, not shell listings); ``?`` matches exactly one character.
* ``[abc]``, ``[a-z]``, ``[!a-c]`` / ``[^a-c]`` match one character of (not of) a class; a ``]`` right
  after the opening (or after the ``!``) is literal, as is a ``-`` first or last. A class never matches
  ``/``. POSIX classes (``[[:alpha:]]``) are not supported. A literal ``*``, ``?`` or ``[`` is written as a
  class: ``[*]``, ``[?]``, ``[[]``; there is no backslash escape.
* ``{a,b}`` alternatives are expanded first (nested ones too; a comma outside braces is literal) into at
  most `MAX_ALTERNATIVES` patterns; ``src/{app,lib}/**`` claims two trees.
* Rejected, each with a message naming the problem: a leading ``!`` (negations: claim what you want, not
  what you do not), absolute paths, ``..`` segments, empty segments (``a//b``, a trailing ``/``), NUL and
  other control characters, a backslash, unbalanced brackets or braces, and anything longer than the
  limits below. ``.`` segments are dropped and runs of ``**`` collapse, so equivalent spellings normalise
  to one text (`Glob.text`), the form a claim should be stored and compared under.

Semantics: a *path* is a non-empty sequence of non-empty segments (characters other than ``/`` and NUL)
compared code point by code point (case-sensitive, no Unicode normalisation). Two patterns *overlap* when
some path matches both. `overlaps` decides that exactly by a product search, memoised, quadratic in the
patterns' lengths: an outer search over pairs of segment positions (``**`` may consume zero or more
segments of the other side) whose steps need an inner search over pairs of token positions of two
segment patterns (``*`` may consume zero or more characters; a character step needs the two token
classes to intersect, decided on code-point intervals). Both searches can return a witness, so a
"conflicts" answer can say which path is contested (`overlap_witness`). `matches` is an independent
implementation (a compiled regular expression), which the tests play against the search.

How a runtime uses it: parse (and so validate) a pattern where it enters the mesh (CLI, MCP, control API,
and again on a peer's message), store and compare claims by `Glob.text`; an acceptor refuses a path lease
when `conflicts(...)` is true against any unexpired lease it has accepted; the pre-edit hook turns the
edited file into a project-relative path with `project_path` and tests it with `matches`. Everything
here is pure and cached; nothing does I/O.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from functools import lru_cache

from mesh.core.errors import InvalidField, PatternError, shown
from mesh.core.values import value

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_BRACE_DEPTH",
    "MAX_EXPANDED_CHARS",
    "MAX_PATH_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_CHARS",
    "Glob",
    "conflicts",
    "matches",
    "normalise",
    "normalise_path",
    "overlap_witness",
    "overlaps",
    "parse",
    "project_path",
]


MAX_PATTERN_CHARS = 256
"""Characters in a pattern as given. Real claims are tens of characters."""
MAX_ALTERNATIVES = 32
"""Patterns a brace expansion may produce."""
MAX_EXPANDED_CHARS = 512
"""Characters over all alternatives after expansion: with two such patterns one `overlaps` call takes at
most ~512 x 512 x 2 search states (~0.5 s in CPython, the adversarial worst case; real claims take µs)."""
MAX_SEGMENTS = 64
"""Segments in one alternative."""
MAX_SEGMENT_CHARS = 255
"""Characters in one segment (a file name is at most 255 bytes on every common file system)."""
MAX_BRACE_DEPTH = 8
"""Nesting depth of braces."""
MAX_PATH_CHARS = 4096
"""Characters in a path given to `matches` / `project_path` (PATH_MAX)."""

# ---------------------------------------------------------------- character classes as code-point intervals

Intervals = tuple[tuple[int, int], ...]
"""Sorted, disjoint, non-adjacent closed ranges of code points."""

_SLASH = ord("/")
_UNIVERSE: Intervals = ((1, _SLASH - 1), (_SLASH + 1, 0x10FFFF))
"""What may stand in a path segment: every code point but NUL and `/`."""


def _merge(ranges: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


@lru_cache(maxsize=4096)
def _meet(a: Intervals, b: Intervals) -> Intervals:
    """Intersection of two interval sets."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _complement(a: Intervals) -> Intervals:
    """Everything in the universe that is not in `a`."""
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= 0x10FFFF:
        out.append((nxt, 0x10FFFF))
    return _meet(tuple(out), _UNIVERSE)


_NICE = [ord(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789_-."]


def _pick(chars: Intervals) -> str:
    """A readable member of a non-empty class, for witnesses shown to people."""
    for c in _NICE:
        for lo, hi in chars:
            if lo <= c <= hi:
                return chr(c)
    for lo, hi in chars:
        if hi >= 0x21:
            return chr(max(lo, 0x21))
    return chr(chars[0][0])


# ---------------------------------------------------------------- tokens and segments

Token = tuple[bool, Intervals]
"""(is_star, characters): a star takes any number of characters from its class, otherwise exactly one."""
Segment = tuple[Token, ...]
"""One segment pattern; the empty tuple stands for ``**`` (a real segment pattern is never empty)."""

GLOBSTAR: Segment = ()
_STAR: Token = (True, _UNIVERSE)
_ANY_SEGMENT: Segment = (_STAR,)


@value
class _Alt:
    """One brace alternative of a pattern: its normal form and its compiled segments."""

    text: str
    segments: tuple[Segment, ...]


@value
class Glob:
    """A validated pattern: `text` is its normal form, `alternatives` its brace expansion (normal forms)."""

    text: str
    alternatives: tuple[str, ...]
    _alts: tuple[_Alt, ...]

    def __str__(self) -> str:
        return self.text


def _fail(pattern: str, problem: str) -> PatternError:
    shown = repr(pattern) if len(pattern) <= 80 else repr(pattern[:77]) + "..."
    return PatternError(pattern, f"invalid path pattern {shown}: {problem}")


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o < 0xA0


def _class_end(pattern: str, text: str, i: int) -> int:
    """Index just past the class that opens at text[i] == '['."""
    j = i + 1
    if j < len(text) and text[j] in "!^":
        j += 1
    if j < len(text) and text[j] == "]":
        j += 1
    while j < len(text) and text[j] != "]":
        if text[j] == "/":
            raise _fail(pattern, "a [...] class cannot contain '/' (it never matches one)")
        j += 1
    if j >= len(text):
        raise _fail(pattern, f"'[' at offset {i} is never closed (write [[] for a literal '[')")
    return j + 1


_POSIX_CLASS = re.compile(r"\[:[a-z]+:")


def _parse_class(pattern: str, body: str) -> tuple[Intervals, str]:
    """A class body (between the brackets) -> (its characters, its normal text)."""
    negated = bool(body) and body[0] in "!^"
    if negated:
        body = body[1:]
    if _POSIX_CLASS.search(body):
        raise _fail(pattern, "POSIX classes like [:alpha:] are not supported; write ranges, e.g. [a-zA-Z]")
    ranges: list[tuple[int, int]] = []
    k = 0
    while k < len(body):
        lo = body[k]
        if k + 2 < len(body) and body[k + 1] == "-":
            hi = body[k + 2]
            if ord(hi) < ord(lo):
                raise _fail(pattern, f"range {lo}-{hi} in [...] runs backwards")
            ranges.append((ord(lo), ord(hi)))
            k += 3
        else:
            ranges.append((ord(lo), ord(lo)))
            k += 1
    chars = _meet(_merge(ranges), _UNIVERSE)
    if negated:
        chars = _complement(chars)
    if not chars:
        raise _fail(pattern, f"class [{'!' if negated else ''}{body}] matches no character")
    return chars, f"[{'!' if negated else ''}{body}]"


def _literal_text(c: str) -> str:
    # Metacharacters (and the comma, which would split a brace group of the normal form) as classes.
    return f"[{c}]" if c in "*?[{}," else c


def _parse_segment(pattern: str, part: str) -> tuple[Segment, str]:
    if len(part) > MAX_SEGMENT_CHARS:
        raise _fail(pattern, f"a segment is {len(part)} characters; the limit is {MAX_SEGMENT_CHARS}")
    tokens: list[Token] = []
    texts: list[str] = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "*":
            if i + 1 < len(part) and part[i + 1] == "*":
                bad = shown(part)
                raise _fail(pattern, f"'**' must be a whole segment (in {bad}); use '*' within a segment")
            tokens.append(_STAR)
            texts.append("*")
            i += 1
        elif c == "?":
            tokens.append((False, _UNIVERSE))
            texts.append("?")
            i += 1
        elif c == "[":
            end = _class_end(pattern, part, i)
            chars, text = _parse_class(pattern, part[i + 1 : end - 1])
            tokens.append((False, chars))
            texts.append(text)
            i = end
        else:
            tokens.append((False, ((ord(c), ord(c)),)))
            texts.append(_literal_text(c))
            i += 1
    return tuple(tokens), "".join(texts)


def _parse_alternative(pattern: str, alt: str) -> _Alt:
    if alt.startswith("/"):
        raise _fail(pattern, "patterns are relative to the project root; drop the leading '/'")
    parts = alt.split("/")
    segments: list[Segment] = []
    texts: list[str] = []
    for k, part in enumerate(parts):
        if part == "":
            if k == len(parts) - 1 and k > 0:
                raise _fail(pattern, f"trailing '/' (to claim a directory's contents write {alt}**)")
            raise _fail(pattern, "empty segment ('//' or a pattern that is empty)")
        if part == ".":
            continue
        if part == "..":
            raise _fail(pattern, "'..' segments are not allowed (a pattern cannot leave the project)")
        if part == "**":
            if segments and segments[-1] == GLOBSTAR:
                continue
            segments.append(GLOBSTAR)
            texts.append("**")
            continue
        segment, text = _parse_segment(pattern, part)
        segments.append(segment)
        texts.append(text)
    if not segments:
        raise _fail(pattern, "it names the project root itself; use '**' to claim everything")
    if len(segments) > MAX_SEGMENTS:
        raise _fail(pattern, f"{len(segments)} segments; the limit is {MAX_SEGMENTS}")
    return _Alt("/".join(texts), tuple(segments))


def _expand(pattern: str) -> list[str]:
    """Brace expansion (nested groups; brackets protect their contents; a comma outside braces is literal)."""
    n = len(pattern)
    pos = 0

    def sequence(depth: int) -> list[str]:
        nonlocal pos
        results = [""]
        while pos < n:
            c = pattern[pos]
            if c == "[":
                end = _class_end(pattern, pattern, pos)
                chunk = pattern[pos:end]
                pos = end
                results = [r + chunk for r in results]
            elif c == "{":
                if depth >= MAX_BRACE_DEPTH:
                    raise _fail(pattern, f"braces nested deeper than {MAX_BRACE_DEPTH}")
                opened = pos
                pos += 1
                options: list[str] = []
                while True:
                    options.extend(sequence(depth + 1))
                    if len(options) > MAX_ALTERNATIVES:
                        raise _fail(pattern, f"braces expand to more than {MAX_ALTERNATIVES} patterns")
                    if pos >= n:
                        raise _fail(pattern, f"'{{' at offset {opened} is never closed")
                    pos += 1
                    if pattern[pos - 1] == "}":
                        break
                if len(results) * len(options) > MAX_ALTERNATIVES:
                    raise _fail(pattern, f"braces expand to more than {MAX_ALTERNATIVES} patterns")
                results = [r + o for r in results for o in options]
            elif c in ",}" and depth > 0:
                return results
            elif c == "}":
                raise _fail(pattern, f"'}}' at offset {pos} has no matching '{{'")
            else:
                pos += 1
                results = [r + c for r in results]
        return results

    return sequence(0)


def parse(pattern: str) -> Glob:
    """Validate and normalise a pattern (raises `PatternError` naming what is wrong)."""
    if not isinstance(pattern, str):
        raise PatternError(repr(pattern), f"a path pattern must be a string, not {type(pattern).__name__}")
    return _parse(pattern)


@lru_cache(maxsize=4096)
def _parse(pattern: str) -> Glob:
    if not pattern:
        raise _fail(pattern, "it is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise _fail(pattern, f"it is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}")
    if any(_is_control(c) for c in pattern):
        raise _fail(pattern, "it contains a control character")
    if pattern.startswith("!"):
        raise _fail(pattern, "negations ('!...') are not supported; claim the paths you want instead")
    if "\\" in pattern:
        raise _fail(pattern, "backslashes are not allowed: '/' separates segments, [*] is a literal '*'")
    expanded = _expand(pattern)
    if sum(len(a) for a in expanded) > MAX_EXPANDED_CHARS:
        raise _fail(pattern, f"braces expand to more than {MAX_EXPANDED_CHARS} characters")
    alts: dict[str, _Alt] = {}
    for alt in expanded:
        parsed = _parse_alternative(pattern, alt)
        if parsed.text.startswith("!"):
            # Its normal form would read as a negation; '?name' claims a file whose name starts with '!'.
            raise _fail(pattern, "negations ('!...') are not supported; claim the paths you want instead")
        alts.setdefault(parsed.text, parsed)
    ordered = tuple(alts[k] for k in sorted(alts))
    texts = tuple(a.text for a in ordered)
    text = texts[0] if len(texts) == 1 else "{" + ",".join(texts) + "}"
    return Glob(text, texts, ordered)


def normalise(pattern: str) -> str:
    """The normal form of a pattern (validated): equal normal forms mean equal patterns."""
    return parse(pattern).text


def _glob(p: str | Glob) -> Glob:
    return p if isinstance(p, Glob) else parse(p)


# ---------------------------------------------------------------- the product searches


def _shortest(
    start: tuple[int, int, bool],
    done: Callable[[tuple[int, int, bool]], bool],
    steps: Callable[[tuple[int, int, bool]], list[tuple[tuple[int, int, bool], str | None]]],
) -> list[str] | None:
    """0-1 breadth-first search: fewest labelled steps (None labels are free) from start to a done state."""
    dist = {start: 0}
    back: dict[tuple[int, int, bool], tuple[tuple[int, int, bool], str | None]] = {}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if done(state):
            labels: list[str] = []
            while state != start:
                state, label = back[state]
                if label is not None:
                    labels.append(label)
            labels.reverse()
            return labels
        d = dist[state]
        for nxt, label in steps(state):
            cost = d + (label is not None)
            if nxt not in dist or cost < dist[nxt]:
                dist[nxt] = cost
                back[nxt] = (state, label)
                if label is None:
                    queue.appendleft(nxt)
                else:
                    queue.append(nxt)
    return None


@lru_cache(maxsize=1 << 15)
def _segment_witness(s: Segment, t: Segment) -> str | None:
    """A shortest non-empty segment matched by both segment patterns, or None when there is none.

    State (i, j, nonempty): tokens s[:i] and t[:j] are consumed. A star may be left (it took its last
    character) without reading; one character read together advances each side past a one-character token
    and keeps a star where it is. The classes must intersect for the character to exist.
    """
    n, m = len(s), len(t)

    def steps(state: tuple[int, int, bool]) -> list[tuple[tuple[int, int, bool], str | None]]:
        i, j, nonempty = state
        out: list[tuple[tuple[int, int, bool], str | None]] = []
        if i < n and s[i][0]:
            out.append(((i + 1, j, nonempty), None))
        if j < m and t[j][0]:
            out.append(((i, j + 1, nonempty), None))
        if i < n and j < m:
            chars = _meet(s[i][1], t[j][1])
            if chars:
                out.append(((i if s[i][0] else i + 1, j if t[j][0] else j + 1, True), _pick(chars)))
        return out

    found = _shortest((0, 0, False), lambda st: st == (n, m, True), steps)
    return None if found is None else "".join(found)


@lru_cache(maxsize=1 << 14)
def _path_witness(a: tuple[Segment, ...], b: tuple[Segment, ...]) -> str | None:
    """A shortest path matched by both alternatives, or None.

    State (i, j, nonempty) over segment positions. ``**`` may be left without reading (zero segments) or
    read one segment (and stay); a read segment must be matched by both sides, which the inner search
    decides (against ``*`` when one side is ``**``).
    """
    n, m = len(a), len(b)

    def steps(state: tuple[int, int, bool]) -> list[tuple[tuple[int, int, bool], str | None]]:
        i, j, nonempty = state
        out: list[tuple[tuple[int, int, bool], str | None]] = []
        a_star = i < n and a[i] == GLOBSTAR
        b_star = j < m and b[j] == GLOBSTAR
        if a_star:
            out.append(((i + 1, j, nonempty), None))
        if b_star:
            out.append(((i, j + 1, nonempty), None))
        if i < n and j < m:
            seg = _segment_witness(_ANY_SEGMENT if a_star else a[i], _ANY_SEGMENT if b_star else b[j])
            if seg is not None:
                out.append(((i if a_star else i + 1, j if b_star else j + 1, True), seg))
        return out

    found = _shortest((0, 0, False), lambda st: st == (n, m, True), steps)
    return None if found is None else "/".join(found)


def overlap_witness(a: str | Glob, b: str | Glob) -> str | None:
    """A path both patterns match (short, readable), or None when they are disjoint."""
    ga, gb = _glob(a), _glob(b)
    for x in ga._alts:
        for y in gb._alts:
            found = _path_witness(x.segments, y.segments)
            if found is not None:
                return found
    return None


def overlaps(a: str | Glob, b: str | Glob) -> bool:
    """Do the two patterns match at least one common path? (Exact; symmetric; raises PatternError.)"""
    return overlap_witness(a, b) is not None


def conflicts(a_exclusive: bool, a: str | Glob, b_exclusive: bool, b: str | Glob) -> bool:
    """Two path claims conflict iff at least one is exclusive and their patterns overlap."""
    return (a_exclusive or b_exclusive) and overlaps(a, b)


# ---------------------------------------------------------------- matching (an independent implementation)


def _class_regex(chars: Intervals) -> str:
    return "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in chars) + "]"


def _alt_regex(alt: _Alt) -> str:
    # Matched against "/" + path: every segment is "/name", so "**" is "(?:/[^/]+)*".
    out: list[str] = []
    for segment in alt.segments:
        if segment == GLOBSTAR:
            out.append("(?:/[^/\\x00]+)*")
            continue
        out.append("/")
        for star, chars in segment:
            out.append(_class_regex(chars) + ("*" if star else ""))
    return "".join(out)


@lru_cache(maxsize=4096)
def _regex(text: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_alt_regex(a)})" for a in parse(text)._alts), re.DOTALL)


def normalise_path(path: str) -> str:
    """A project-relative path in normal form: '.' and empty segments dropped, '..' resolved lexically.

    Raises InvalidField for an absolute path, one that climbs out of the project, one that is empty or
    names the project root, or one with NUL.
    """
    if not isinstance(path, str):
        raise InvalidField("path", f"a path must be a string, not {type(path).__name__}")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidField("path", f"path is {len(path)} characters; the limit is {MAX_PATH_CHARS}")
    if "\x00" in path:
        raise InvalidField("path", "path contains NUL")
    if path.startswith("/"):
        raise InvalidField("path", f"path {shown(path)} is absolute; make it relative to the project root")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise InvalidField("path", f"path {shown(path)} leaves the project")
            out.pop()
        else:
            out.append(part)
    if not out:
        raise InvalidField("path", f"path {shown(path)} names the project root, not a file in it")
    return "/".join(out)


def project_path(path: str, root: str) -> str:
    """`path` relative to the project `root` (an absolute directory), normalised; a relative `path` is
    taken as relative to the root already. Raises InvalidField when it lies outside the project."""
    if not isinstance(root, str) or not root.startswith("/"):
        raise InvalidField("root", f"project root {shown(root)} must be an absolute path")
    if isinstance(path, str) and path.startswith("/"):
        base = _lexical_absolute(root)
        full = _lexical_absolute(path)
        if base and not (full == base or full.startswith(base + "/")):
            raise InvalidField("path", f"path {shown(path)} is outside the project {shown(root)}")
        path = full[len(base) :].lstrip("/")
    return normalise_path(path)


def _lexical_absolute(path: str) -> str:
    """An absolute path with '.', '..' and repeated '/' resolved lexically, without the leading '/'."""
    if "\x00" in path or len(path) > MAX_PATH_CHARS:
        raise InvalidField("path", f"invalid path {shown(path)}")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/".join(out)


def matches(pattern: str | Glob, path: str) -> bool:
    """Does the pattern match this project-relative path? (The path is normalised first.)"""
    g = _glob(pattern)
    return _regex(g.text).fullmatch("/" + normalise_path(path)) is not None
