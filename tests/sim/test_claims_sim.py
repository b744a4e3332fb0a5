"""Deterministic simulation of the claims protocol: many seeds, each checked after every step.

``MESH_SIM_SEEDS`` sets how many seeds the big run uses (default 1100 ≈ 75 s on this 2-core box;
nightly can run far more). A failure message names the seed: replay it with
``python -m mesh.testing.sim --seeds 1 --seed S --trace``.
"""

from __future__ import annotations

import os

import pytest

from mesh.core.claims import LeaseConfig
from mesh.testing.sim import SafetyViolation, SimParams, SimStats, Simulation, main, run_seed

DEFAULT_SEEDS = 1100
# A config whose containment holds with almost no slack: safe within rho, broken when clocks go beyond it.
TIGHT = LeaseConfig(lease=2.0, rho=0.02, acceptor_lease=2.1)


def seeds() -> int:
    return int(os.environ.get("MESH_SIM_SEEDS", DEFAULT_SEEDS))


def test_many_seeds_hold_safety() -> None:
    total = SimStats(seed=-1)
    for s in range(seeds()):
        st = run_seed(s)
        if st.violation is not None:
            pytest.fail(
                f"safety violated: {st.violation} (replay: python -m mesh.testing.sim --seed {s} --trace)"
            )
        total.grants += st.grants
        total.renewals += st.renewals
        total.denied += st.denied
        total.configs += st.configs
        total.crashes += st.crashes
        total.lost += st.lost
    # The runs must actually exercise the protocol, or "no violation" means nothing.
    n = seeds()
    assert total.grants > 5 * n and total.renewals > 5 * n and total.denied > 5 * n
    assert total.configs > n and total.crashes > 0 and total.lost > 0


def test_tight_containment_is_safe_within_rho() -> None:
    for s in range(60):
        Simulation(s, lease=TIGHT).run()


def test_clocks_beyond_rho_are_caught() -> None:
    """Not a requirement of the protocol — evidence that the checker sees clock-rate trouble."""
    for s in range(300):
        try:
            Simulation(s, lease=TIGHT, beyond_rho=True).run()
        except SafetyViolation as v:
            assert v.seed == s and "two holders" in v.detail
            return
    pytest.fail("no violation with clocks beyond rho in 300 seeds")


def test_run_is_replayable_from_its_seed() -> None:
    a, b = Simulation(7), Simulation(7)
    a.trace, b.trace = [], []
    assert a.run() == b.run()
    assert a.trace == b.trace and len(a.trace) > 10
    assert Simulation(8).run() != Simulation(7).run()


def _quiet(**kw: float) -> SimParams:
    base: dict[str, float] = dict(
        nodes=5, resources=2, duration=40.0, drop=0.0, dup=0.0, long_delay=0.0, crash_rate=0.0,
        pause_rate=0.0, partition_rate=0.0, reconfig_rate=0.0, double_reconfig=0.0, claim_rate=3.0,
        persistence=0.0, reclaim=0.0,
    )  # fmt: skip
    base.update(kw)
    return SimParams(**base)  # type: ignore[arg-type]


def test_benign_network_is_live() -> None:
    st = Simulation(3, params=_quiet()).run()
    assert st.grants > 10 and st.denied > 10
    assert st.unavailable == 0 and st.lost == 0


def test_contention_settles_mostly() -> None:
    """Persistent claimants duel for two resources; randomised backoff keeps give-ups rare."""
    outcomes = unavailable = 0
    for seed in range(5):
        st = Simulation(seed, params=_quiet(persistence=0.8, reclaim=0.5, claim_rate=5.0, drop=0.02)).run()
        assert st.lost == 0
        outcomes += st.grants + st.denied + st.unavailable
        unavailable += st.unavailable
    assert unavailable <= 0.05 * outcomes


def test_reconfiguration_under_faults_makes_progress() -> None:
    epochs = [run_seed(s).epoch for s in range(20)]
    assert max(epochs) >= 4 and sum(e > 1 for e in epochs) >= 10


def test_cli_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "seeds=3" in out and "violations=0" in out
    assert main(["--seeds", "40", "--mutant", "majority_of_seen"]) == 1
    assert "VIOLATION seed=" in capsys.readouterr().out
