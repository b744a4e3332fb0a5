"""Path-claim patterns: validation, normal forms, matching, and exact overlap against brute force.

The brute-force tests rest on a bound. Take two single-alternative patterns whose literals and classes
mention only `a` and `b`. Every other character behaves alike under every token, so any common path can be
rewritten over {a, b, c}. A shortest common path, read through the product search, never repeats a state:
each path segment it reads advances past at least one non-`**` segment of a pattern, so it has at most
max(1, Sa + Sb) segments (Sa, Sb: non-`**` segments); inside a segment each character advances past at
least one non-star token, so a segment has at most max(1, na + nb) characters (na, nb: non-star tokens of
the two segment patterns it is matched against, 0 for `**`). Within that bound "no path in the set
matches both" is a proof of disjointness, so the generators below keep to it and the tests compare
`overlaps` with brute force exactly; outside it (braces, longer patterns) a True answer is still checked
through its witness.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from mesh.core import globs
from mesh.core.errors import InvalidField, PatternError
from mesh.core.globs import (
    conflicts,
    matches,
    normalise,
    normalise_path,
    overlap_witness,
    overlaps,
    parse,
    project_path,
)

# ---------------------------------------------------------------- tables

OVERLAPPING = [
    ("src/a*.py", "src/*b.py"),  # src/ab.py: neither read as a literal matches the other
    ("src/**/*.py", "src/app/**"),  # src/app/x.py
    ("**", "anything/at/all"),
    ("**/x", "x"),  # ** takes zero segments
    ("src/**", "src"),  # ... at the end too
    ("a/**/b", "a/b"),  # ... and in the middle
    ("a/**/b", "a/x/y/b"),
    ("**/*.py", "src/**"),
    ("**/test_*.py", "tests/**/test_globs.py"),
    ("*.py", "?.py"),
    ("*.py", "a.*"),
    ("*", "?"),
    ("[abc]", "[c-e]"),  # shares c
    ("[!a]", "b"),
    ("[^a]", "[a-c]"),
    ("file[0-9].txt", "file7.txt"),
    ("*a*", "*b*"),  # ab
    ("a*b*c", "*c"),
    ("{src,lib}/*.py", "lib/x.py"),
    ("src/{a,b{c,d}}/x", "src/bd/*"),
    ("docs/**", "{docs,site}/index.md"),
    ("x/**/**/y", "x/y"),
    ("**/a/**", "**/a"),
    ("a,b", "a?b"),  # a literal comma
    ("[*]", "*"),  # the file literally named "*"
    ("src/[[]x]", "src/?x]"),  # "[x]"
    (".hidden/*", "*/conf"),  # a star matches a leading dot
    ("[!a]", "-"),  # a negated class keeps everything else, punctuation included
    ("[!a-z]", "[!0-9a-z]"),
    ("[ -0]x", ".x"),  # a range across '/' keeps its other characters
]

DISJOINT = [
    ("lib/*/x", "lib/y/z/x"),  # a star never crosses '/'
    ("src/*.py", "src/*.rs"),
    ("src/a*", "src/b*"),
    ("a/**", "b/**"),
    ("*/x", "x"),  # '*' is one segment, never zero
    ("?", "??"),
    ("[abc]", "[d-f]"),
    ("[!a]", "a"),
    ("[!a-z]", "[a-z]"),
    ("a/**/b", "a/**/c"),
    ("**/*.py", "**/*.pyc"),
    ("*.py", "*.txt"),
    ("{src,lib}/*.py", "{docs,site}/**"),
    ("a*b", "*c"),
    ("x/?/y", "x/??/y"),
    ("[*]", "a"),
    ("src/**/tests", "src/**/test"),
    ("[!-]", "-"),
    ("[!.]x", ".x"),
    ("[.-0]", "[!.0]"),
]


@pytest.mark.parametrize(("a", "b"), OVERLAPPING)
def test_overlapping_pairs(a: str, b: str) -> None:
    assert overlaps(a, b) and overlaps(b, a)
    witness = overlap_witness(a, b)
    assert witness is not None and matches(a, witness) and matches(b, witness)
    assert conflicts(True, a, False, b) and conflicts(False, a, True, b) and conflicts(True, a, True, b)
    assert not conflicts(False, a, False, b)  # two shared claims never conflict


@pytest.mark.parametrize(("a", "b"), DISJOINT)
def test_disjoint_pairs(a: str, b: str) -> None:
    assert not overlaps(a, b) and not overlaps(b, a)
    assert overlap_witness(a, b) is None
    assert not conflicts(True, a, True, b)


def test_witnesses_are_short_and_readable() -> None:
    assert overlap_witness("src/a*.py", "src/*b.py") == "src/ab.py"
    assert overlap_witness("src/**/*.py", "src/app/**") == "src/app/.py"
    assert overlap_witness("**", "**") == "a"


MATCHING = [
    ("src/**/*.py", "src/a.py", True),
    ("src/**/*.py", "src/a/b/c.py", True),
    ("src/**/*.py", "src/a.pyc", False),
    ("src/**", "src", True),
    ("src/**", "srcx/a", False),
    ("*.py", "a/b.py", False),
    ("**/*.py", "b.py", True),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a?c", "a/c", False),
    ("[!a-c]x", "dx", True),
    ("[!a-c]x", "bx", False),
    ("[]]", "]", True),
    ("[a-]", "-", True),
    ("{a,b}/x", "b/x", True),
    ("{a,b}/x", "c/x", False),
    ("src/./a", "src/a", True),
    ("a", "./a/", True),  # the path is normalised too
    ("a/b", "a/x/../b", True),
    ("é*", "été", True),  # code points, not bytes
    ("x", "X", False),  # case-sensitive
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCHING)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


NORMAL_FORMS = [
    ("./src/**/**/x.py", "src/**/x.py"),
    ("src/./a", "src/a"),
    ("{b,a}/x", "{a/x,b/x}"),
    ("{a,a,./a}", "a"),
    ("[^a]", "[!a]"),
    ("a,b", "a[,]b"),
    ("a/{x,y}", "{a/x,a/y}"),
    ("**/**", "**"),
]


@pytest.mark.parametrize(("pattern", "normal"), NORMAL_FORMS)
def test_normal_forms(pattern: str, normal: str) -> None:
    assert normalise(pattern) == normal
    assert normalise(normal) == normal  # a normal form is a fixed point
    assert parse(normal).alternatives == parse(pattern).alternatives


INVALID = [
    ("", "empty"),
    ("!src/**", "negations"),
    ("{!a,b}", "negations"),
    ("/etc/passwd", "relative to the project root"),
    ("a//b", "empty segment"),
    ("src/", "trailing '/'"),
    ("../x", "'..'"),
    ("a/../b", "'..'"),
    (".", "project root"),
    ("a\x00b", "control character"),
    ("a\nb", "control character"),
    ("a\x7fb", "control character"),
    ("a\\*", "backslash"),
    ("a**", "whole segment"),
    ("**b/c", "whole segment"),
    ("[abc", "never closed"),
    ("[a/b]", "cannot contain '/'"),
    ("[z-a]", "backwards"),
    ("x[[:alpha:]]", "POSIX"),
    ("{a,b", "never closed"),
    ("a}", "no matching"),
    ("x" * 257, "limit is 256"),
    ("{a,b}" * 6, "more than 32 patterns"),
    ("{" * 9 + "a" + "}" * 9, "nested deeper"),
    ("/".join(["a"] * 65), "limit is 64"),
    ("a" * 256, "limit is 255"),
]


@pytest.mark.parametrize(("pattern", "fragment"), INVALID)
def test_invalid_patterns_name_the_problem(pattern: str, fragment: str) -> None:
    with pytest.raises(PatternError) as raised:
        parse(pattern)
    assert fragment in str(raised.value)
    assert isinstance(raised.value, ValueError) and raised.value.field == "pattern"
    assert "\n" not in str(raised.value) and "\x00" not in str(raised.value)  # one clean line


def test_non_string_pattern() -> None:
    with pytest.raises(PatternError):
        parse(5)  # type: ignore[arg-type]


def test_expansion_is_bounded_by_total_size() -> None:
    with pytest.raises(PatternError, match="512 characters"):
        parse("{a,b}" * 5 + "x" * 200)  # 225 characters, 32 alternatives of 205


@pytest.mark.parametrize(
    ("path", "normal"),
    [("a/b", "a/b"), ("./a//b/", "a/b"), ("a/./b/../c", "a/c")],
)
def test_normalise_path(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize("path", ["", ".", "/abs", "..", "a/../..", "a\x00"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidField):
        normalise_path(path)


def test_project_path() -> None:
    assert project_path("/home/u/proj/src/a.py", "/home/u/proj") == "src/a.py"
    assert project_path("/home/u/proj/../proj/src/a.py", "/home/u/proj/") == "src/a.py"
    assert project_path("src/a.py", "/home/u/proj") == "src/a.py"
    with pytest.raises(InvalidField, match="outside the project"):
        project_path("/home/u/project2/a.py", "/home/u/proj")
    with pytest.raises(InvalidField, match="project root"):
        project_path("/home/u/proj", "/home/u/proj")
    with pytest.raises(InvalidField, match="absolute"):
        project_path("a", "relative/root")


def test_pathological_patterns_stay_cheap() -> None:
    # The worst shapes the limits allow: many stars against many stars, deep ** chains.
    a = "/".join(["*a*b*c*d*e*f*g*h*"] * 14)
    b = "/".join(["**", "*h*g*f*e*d*c*b*a*"] * 7)
    assert overlaps(a, b) == overlaps(b, a)
    assert not overlaps("*a" * 100, "*b" * 100)


# ---------------------------------------------------------------- an independent reference matcher


def ref_regex(pattern: str) -> str:
    """Pattern text (no braces) -> regex over 'path/' lines, written independently of the module."""
    out = []
    for segment in pattern.split("/"):
        if segment == "**":
            out.append("(?:[^/\n]+/)*")
            continue
        i = 0
        while i < len(segment):
            c = segment[i]
            if c == "*":
                out.append("[^/\n]*")
            elif c == "?":
                out.append("[^/\n]")
            elif c == "[":
                end = segment.index("]", i + 2)
                body = segment[i + 1 : end]
                if body[0] in "!^":
                    out.append("[^/\n" + body[1:] + "]")
                else:
                    out.append("[" + body + "]")
                i = end
            else:
                out.append(re.escape(c))
            i += 1
        out.append("/")
    return "".join(out)


def ref_matches(pattern: str, path: str) -> bool:
    return re.fullmatch(ref_regex(pattern), path + "/") is not None


WORDS_2 = ["".join(p) for n in (1, 2) for p in itertools.product("abc", repeat=n)]
WORDS_4 = ["".join(p) for n in range(1, 5) for p in itertools.product("abc", repeat=n)]
PATHS_4x2 = ["/".join(p) for n in range(1, 5) for p in itertools.product(WORDS_2, repeat=n)]
PATHS_2x4 = ["/".join(p) for n in (1, 2) for p in itertools.product(WORDS_4, repeat=n)]


class PathSet:
    """All paths of a bounded shape as one text: matching a pattern against all of them is one regex scan."""

    def __init__(self, paths: list[str]) -> None:
        self.text = "".join(p + "/\n" for p in paths)
        self.seen: dict[str, frozenset[int]] = {}

    def matching(self, pattern: str) -> frozenset[int]:
        if pattern not in self.seen:
            rx = re.compile("^" + ref_regex(pattern) + "$", re.MULTILINE)
            self.seen[pattern] = frozenset(m.start() for m in rx.finditer(self.text))
        return self.seen[pattern]


SET_4x2 = PathSet(PATHS_4x2)
SET_2x4 = PathSet(PATHS_2x4)

# Literals weigh double and stars come one time in three: otherwise nearly every pair overlaps.
ONE_CHAR = ["a", "b", "a", "b", "?", "[ab]", "[!a]", "[a-b]", "[^b]"]


def segment_of(max_fixed: int) -> st.SearchStrategy[str]:
    """A segment pattern with at most `max_fixed` one-character tokens and stars between them."""
    star = st.sampled_from([False, False, True])
    return (
        st.lists(st.sampled_from(ONE_CHAR), max_size=max_fixed)
        .flatmap(
            lambda fixed: st.lists(star, min_size=len(fixed) + 1, max_size=len(fixed) + 1).map(
                lambda stars: "".join(
                    ("*" if s else "") + f for s, f in zip(stars, [*fixed, ""], strict=True)
                )
            )
        )
        .filter(bool)
    )


def pattern_of(max_fixed: int, max_segments: int) -> st.SearchStrategy[str]:
    segment = segment_of(max_fixed)
    return st.lists(st.one_of(segment, segment, st.just("**")), min_size=1, max_size=max_segments).map(
        "/".join
    )


# Small edits of a pattern: a near miss is where an overlap decision is most likely to go wrong.
EDITS = [("a", "b"), ("b", "a"), ("?", "a"), ("*", ""), ("[ab]", "b"), ("[!a]", "a"), ("**", "a")]


@st.composite
def pattern_pairs(draw: st.DrawFn, max_fixed: int, max_segments: int) -> tuple[str, str]:
    """Two patterns: independent, or the second a small edit of the first."""
    a = draw(pattern_of(max_fixed, max_segments))
    if draw(st.booleans()):
        return a, draw(pattern_of(max_fixed, max_segments))
    b = a
    for _ in range(draw(st.integers(1, 2))):
        old, new = draw(st.sampled_from(EDITS))
        spots = [m.start() for m in re.finditer(re.escape(old), b)]
        if spots:
            k = draw(st.sampled_from(spots))
            b = b[:k] + new + b[k + len(old) :]
    try:
        parse(b)
    except PatternError:
        assume(False)
    return a, b


def plain_segments(pattern: str) -> int:
    return sum(1 for s in parse(pattern)._alts[0].segments if s != globs.GLOBSTAR)


def check_against(paths: PathSet, a: str, b: str) -> None:
    common = paths.matching(a) & paths.matching(b)
    witness = overlap_witness(a, b)
    event("overlap" if common else "disjoint")
    assert overlaps(a, b) == (witness is not None) == bool(common), (a, b, witness)
    if witness is not None:
        assert ref_matches(a, witness) and ref_matches(b, witness)
        assert matches(a, witness) and matches(b, witness)


@settings(max_examples=200)
@given(pattern_pairs(max_fixed=1, max_segments=4))
def test_overlap_is_exact_many_segments(pair: tuple[str, str]) -> None:
    # Bound: at most 4 segments of at most 1 + 1 characters each, over {a, b, c}.
    a, b = pair
    assume(plain_segments(a) + plain_segments(b) <= 4)
    check_against(SET_4x2, a, b)


@settings(max_examples=200)
@given(pattern_pairs(max_fixed=2, max_segments=2))
def test_overlap_is_exact_long_segments(pair: tuple[str, str]) -> None:
    # Bound: at most 2 segments of at most 2 + 2 characters each, over {a, b, c}.
    a, b = pair
    assume(plain_segments(a) + plain_segments(b) <= 2)
    check_against(SET_2x4, a, b)


ANY_PATTERN = pattern_of(max_fixed=3, max_segments=5)


@given(ANY_PATTERN, ANY_PATTERN)
def test_overlap_is_symmetric_and_witnessed(a: str, b: str) -> None:
    assert overlaps(a, b) == overlaps(b, a)
    witness = overlap_witness(a, b)
    if witness is not None:
        assert ref_matches(a, witness) and ref_matches(b, witness)


@given(ANY_PATTERN)
def test_a_pattern_overlaps_itself(p: str) -> None:
    assert overlaps(p, p)
    assert overlaps(p, "**")


@given(ANY_PATTERN, st.sampled_from(PATHS_4x2[:: len(PATHS_4x2) // 3000]))
def test_matches_agrees_with_reference(p: str, path: str) -> None:
    assert matches(p, path) == ref_matches(p, path)


BRACED = st.lists(st.one_of(segment_of(2), st.just("**")), min_size=1, max_size=3).flatmap(
    lambda segs: st.lists(st.sampled_from(segs), min_size=1, max_size=3).map(
        lambda alts: "{" + ",".join(alts) + "}/" + segs[0]
    )
)


@given(BRACED, ANY_PATTERN)
def test_braces_are_the_union_of_their_alternatives(a: str, b: str) -> None:
    g = parse(a)
    assert overlaps(a, b) == any(overlaps(alt, b) for alt in g.alternatives)
    assert normalise(g.text) == g.text
