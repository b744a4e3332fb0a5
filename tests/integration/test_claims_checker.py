"""The real-process claim checker itself, on hand-made histories: it must catch what it exists to catch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.claims_checker import check_dir, check_records


def ev(
    ev: str, node: str, token: int, t: float, until: float | None = None, res: str = "job/a"
) -> dict[str, Any]:
    return {
        "ev": ev,
        "node": node,
        "id": f"{node}-id/inc",
        "resource": res,
        "token": token,
        "t": t,
        "until": until,
    }


def test_overlapping_holders_are_caught() -> None:
    h = [ev("acquired", "a", 1, 0.0, 2.0), ev("acquired", "b", 2, 1.5, 3.5), ev("released", "b", 2, 3.0)]
    rep = check_records(h)
    assert [v.kind for v in rep.violations] == ["overlap"]
    assert rep.max_concurrent == 2
    assert "overlap of 500.0 ms" in str(rep.violations[0])


def test_renewal_extends_belief_into_the_next_grant() -> None:
    h = [ev("acquired", "a", 1, 0.0, 2.0), ev("renewed", "a", 1, 0.7, 2.7), ev("acquired", "b", 2, 2.5, 4.5)]
    assert [v.kind for v in check_records(h).violations] == ["overlap"]


def test_adjacent_and_released_holders_pass() -> None:
    h = [
        ev("acquired", "a", 1, 0.0, 2.0),
        ev("released", "a", 1, 0.5),
        ev("acquired", "b", 2, 0.5, 2.5),  # starts exactly when a's belief ended: adjacent, not overlapping
        ev("lost", "b", 2, 2.6),  # lost after its deadline: belief ended at the deadline
        ev("acquired", "a", 3, 2.5, 4.5),
    ]
    rep = check_records(h)
    assert rep.ok, rep.summary()
    assert (rep.acquisitions, rep.handovers, rep.max_concurrent) == (3, 2, 1)
    assert rep.max_gap == 0.0


def test_killed_holder_ends_at_its_deadline() -> None:
    # a was SIGKILLed (no release): its belief ends at its last `until`, so b at 2.0 is fine, at 1.9 not.
    ok = [ev("acquired", "a", 1, 0.0, 1.0), ev("renewed", "a", 1, 0.3, 2.0), ev("acquired", "b", 2, 2.0, 4.0)]
    assert check_records(ok).ok
    bad = [
        ev("acquired", "a", 1, 0.0, 1.0),
        ev("renewed", "a", 1, 0.3, 2.0),
        ev("acquired", "b", 2, 1.9, 4.0),
    ]
    assert not check_records(bad).ok


def test_token_regression_is_caught_even_without_overlap() -> None:
    h = [ev("acquired", "a", 5, 0.0, 1.0), ev("released", "a", 5, 0.5), ev("acquired", "b", 5, 1.0, 2.0)]
    rep = check_records(h)
    assert [v.kind for v in rep.violations] == ["token"]
    h2 = [ev("acquired", "a", 5, 0.0, 1.0), ev("acquired", "b", 4, 1.0, 2.0)]
    assert [v.kind for v in check_records(h2).violations] == ["token"]


def test_resources_are_independent_and_same_identity_is_not_an_overlap() -> None:
    h = [ev("acquired", "a", 1, 0.0, 2.0, res="job/a"), ev("acquired", "b", 1, 0.5, 2.5, res="job/b")]
    rep = check_records(h)
    assert rep.ok and rep.handovers == 0 and rep.per_resource == {"job/a": 1, "job/b": 1}


def test_grant_recorded_after_its_own_deadline_is_empty() -> None:
    # a paused between quorum and recording: it never believed, so b's lower-start grant is no conflict.
    h = [ev("acquired", "b", 2, 1.0, 3.0), ev("acquired", "a", 1, 1.5, 1.2)]
    rep = check_records(h)
    assert rep.ok and rep.empty_grants == 1


def test_reads_files_and_tolerates_a_cut_last_line(tmp_path: Path) -> None:
    (tmp_path / "a-1.jsonl").write_text(json.dumps(ev("acquired", "a", 1, 0.0, 2.0)) + "\n" + '{"ev": "ren')
    (tmp_path / "b-1.jsonl").write_text(json.dumps(ev("acquired", "b", 2, 1.0, 3.0)) + "\n")
    rep = check_dir(tmp_path)
    assert rep.bad_lines == 1 and rep.records == 2
    assert [v.kind for v in rep.violations] == ["overlap"]


def test_overlapping_path_claims_of_two_holders_are_caught_naming_a_common_path() -> None:
    h = [
        ev("acquired", "a", 1, 0.0, 2.0, res="path/src/a*.py"),
        ev("acquired", "b", 1, 1.0, 3.0, res="path/src/*b.py"),
    ]
    rep = check_records(h)
    assert [v.kind for v in rep.violations] == ["paths"]
    assert "both match src/ab.py" in str(rep.violations[0])
    # A shared claim also conflicts with an exclusive one.
    h2 = [
        ev("acquired", "a", 1, 0.0, 2.0, res="path-shared/src/**"),
        ev("acquired", "b", 1, 1.0, 3.0, res="path/src/app/x.py"),
    ]
    assert [v.kind for v in check_records(h2).violations] == ["paths"]


def test_disjoint_shared_and_successive_path_claims_pass() -> None:
    h = [
        ev("acquired", "a", 1, 0.0, 2.0, res="path/lib/*/x"),
        ev("acquired", "b", 1, 0.5, 2.5, res="path/lib/y/z/x"),  # disjoint, though a prefix rule says not
        ev("acquired", "a", 2, 0.0, 2.0, res="path-shared/docs/**"),
        ev("acquired", "b", 3, 0.5, 2.5, res="path-shared/docs/**"),  # shared with shared: together
        ev("acquired", "c", 4, 0.0, 2.0, res="path/src/**"),
        ev("acquired", "d", 5, 2.0, 4.0, res="path/src/app/**"),  # after c's belief ended: adjacent
    ]
    rep = check_records(h)
    assert rep.ok, [str(v) for v in rep.violations]


def test_shared_holders_at_once_are_not_counted_as_concurrent_holders() -> None:
    h = [
        ev("acquired", "a", 1, 0.0, 2.0, res="path-shared/docs/**"),
        ev("acquired", "b", 2, 0.5, 2.5, res="path-shared/docs/**"),
    ]
    rep = check_records(h)
    assert rep.ok and rep.max_concurrent <= 1


def test_a_shared_claims_tokens_count_per_holder_identity() -> None:
    h = [
        {**ev("acquired", "a", 7, 0.0, 1.0, res="path-shared/docs/**"), "id": "a-id/1"},
        {
            **ev("acquired", "a", 7, 2.0, 3.0, res="path-shared/docs/**"),
            "id": "a-id/2",
        },  # restarted: new holder
    ]
    assert check_records(h).ok
    again = [h[0], {**h[0], "token": 6, "t": 2.0, "until": 3.0}]  # the same holder, a smaller token: caught
    assert [v.kind for v in check_records(again).violations] == ["token"]
