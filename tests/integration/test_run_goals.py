"""The goals a randomised real-process run must meet to be evidence: each unmet one is named with its figure,
and a run that met them all has nothing missing (the runs go on until then, so no seed makes them vacuous)."""

from __future__ import annotations

from collections import Counter

from tests.integration.api_nemesis import ApiGoals
from tests.integration.churn import ENDINGS, ChurnGoals, ChurnResult
from tests.integration.claims_checker import CheckReport
from tests.integration.nemesis import NemesisGoals


def test_churn_goals_name_what_is_missing_until_all_happened() -> None:
    goals = ChurnGoals()
    res, rep = ChurnResult(seconds=40.0), CheckReport()
    missing = goals.missing(res, rep)
    assert len(missing) == 4 + len(ENDINGS)  # started, steward kills, acquisitions, handovers, each ending
    assert f"started 0 < {goals.started}" in missing and "no sigstop ending" in missing
    res.started, res.steward_kills = goals.started, goals.steward_kills
    res.endings = Counter(dict.fromkeys(ENDINGS, 1))
    rep.acquisitions, rep.handovers = goals.acquisitions, goals.handovers - 1
    assert goals.missing(res, rep) == [f"handovers {goals.handovers - 1} < {goals.handovers}"]
    rep.handovers += 1
    assert goals.missing(res, rep) == []


def test_api_goals_name_what_is_missing_until_all_happened() -> None:
    goals = ApiGoals()
    rep = CheckReport()
    assert goals.missing({}, rep) == [f"acquired 0 < {goals.acquired}", f"handovers 0 < {goals.handovers}"]
    rep.handovers = goals.handovers
    assert goals.missing({"acquired": goals.acquired - 1}, rep) == [
        f"acquired {goals.acquired - 1} < {goals.acquired}"
    ]
    assert goals.missing({"acquired": goals.acquired}, rep) == []


def test_nemesis_goals_name_what_is_missing_until_all_happened() -> None:
    goals = NemesisGoals()
    rep = CheckReport()
    assert goals.missing(rep) == [
        f"acquisitions 0 < {goals.acquisitions}",
        f"handovers 0 < {goals.handovers}",
        f"takeovers 0 < {goals.takeovers}",
        f"path claim intervals 0 < {goals.path_intervals}",
    ]
    rep.acquisitions, rep.handovers, rep.takeovers = goals.acquisitions, goals.handovers, 0
    rep.per_resource = {"path/src/**": goals.path_intervals, "job/r0": 50}
    assert goals.missing(rep) == [f"takeovers 0 < {goals.takeovers}"]
    rep.takeovers = 1
    assert goals.missing(rep) == []
