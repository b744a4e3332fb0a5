"""Claim safety measured at the API holders (separate claimant processes) under the nemesis, which also
pauses the claimant processes themselves. MESH_NEMESIS_SECONDS / MESH_NEMESIS_SEED as in test_nemesis."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.integration.api_nemesis import API_KINDS, ApiGoals, run_api_nemesis
from tests.integration.nemesis import NemesisConfig


def test_no_two_api_holders_believe_at_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("MESH_NEMESIS_SEED") or random.randrange(2**31))
    seconds = float(os.environ.get("MESH_NEMESIS_SECONDS", "20"))
    goals = ApiGoals()  # runs over `seconds` until the holders' records show these: never vacuous by luck
    res = run_api_nemesis(tmp_path, NemesisConfig(seconds=seconds, seed=seed, kinds=API_KINDS), goals)
    api, nodes = res.api, res.nodes.report
    over = f"ran {res.nodes.extra_seconds:.1f} s past its seconds" + (
        f", still missing at the cap: {'; '.join(res.unmet)}" if res.unmet else ""
    )
    detail = (
        f"seed {seed} (MESH_NEMESIS_SEED={seed} replays the schedule); history {res.nodes.history_dir}\n"
        f"actions {dict(res.nodes.actions)} api events {res.api_events}; {over}\n"
        f"API holders: {api.summary()}\nnodes: {nodes.summary()}"
    )
    print(detail)
    assert api.ok and nodes.ok, detail
    assert api.max_concurrent == 1, detail
    # Not vacuous: every fault ran (the claimant pause included), and leases changed hands at the API.
    assert all(res.nodes.actions[k] >= 1 for k in API_KINDS), detail
    assert not goals.missing(res.api_events, api), detail
    assert res.api_events.get("acquired", 0) >= 5 and api.handovers >= 3, detail
