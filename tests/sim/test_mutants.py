"""Each deliberately broken variant must be caught by the simulator within a stated seed budget.

Runs stop at the first violating seed, so the cost is small; budgets leave room over the measured
density (comments) so harmless changes to the core or simulator do not make the test flaky.
"""

from __future__ import annotations

import pytest

from mesh.core.mutants import Mutants
from mesh.testing.sim import first_violation

# mutant -> seed budget. Measured over seeds 0..399: first violating seeds, and how many of 400 violate.
BUDGET = {
    "deadline_at_quorum": 300,  # seeds 6, 56, 81, ...; 7/400
    "quorum_by_messages": 250,  # seeds 26, 78, 100, ...; 14/400
    "release_unmatched": 150,  # seeds 0, 7, 9, ...; 21/400
    "no_config_gap": 200,  # seeds 8, 25, 38, ...; 13/400
    "majority_of_seen": 30,  # seeds 1, 2, 3, ...; 197/400
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
