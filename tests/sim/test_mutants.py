"""Each deliberately broken variant must be caught by the simulator within a stated seed budget.

Measured (seeds 0..799, this core): the first violating seed and how many of 800 seeds violate —
see BUDGET comments. Budgets leave headroom over the first hit so harmless changes to the core do not
make the test flaky, while staying small enough for CI.
"""

from __future__ import annotations

import pytest

from mesh.core.mutants import Mutants
from mesh.testing.sim import first_violation

# mutant -> seed budget (first violating seed observed, in the comment)
BUDGET = {
    "deadline_at_quorum": 600,  # first hit: seed 264
    "quorum_by_messages": 400,  # first hit: seed 145
    "release_unmatched": 700,  # first hit: seed 334
    "no_config_gap": 200,  # first hit: seed 62
    "majority_of_seen": 50,  # first hit: seed 3
}

NOT_OBSERVABLE = (
    "no_renewal_qualifier cannot cause two holders here: acceptors never forget a live lease or a "
    "promise while they live, and a restarted steward is a new identity that only joins through a "
    "one-change reconfiguration, so every promise majority intersects the current holder's accept "
    "majority and sees its lease; the qualifier is defence in depth (see tests/core/test_lease.py)"
)


@pytest.mark.parametrize("name", sorted(BUDGET))
def test_simulator_catches_mutant(name: str) -> None:
    found = first_violation(range(BUDGET[name]), Mutants.only(name))
    assert found is not None, f"mutant {name} survived {BUDGET[name]} seeds"
    assert found.violation is not None
    print(f"{name}: caught at seed {found.seed}: {found.violation.detail}")


@pytest.mark.skip(reason=NOT_OBSERVABLE)
def test_simulator_catches_no_renewal_qualifier() -> None:
    assert first_violation(range(600), Mutants.only("no_renewal_qualifier")) is not None


def test_every_mutant_is_accounted_for() -> None:
    assert set(BUDGET) | {"no_renewal_qualifier"} == set(Mutants.names())


def test_mutants_default_off() -> None:
    assert not Mutants().any()
    assert Mutants.only("no_config_gap").no_config_gap
    with pytest.raises(ValueError):
        Mutants.only("nope")
