"""Claim safety with real node processes under SIGKILL/restart, SIGSTOP/SIGCONT and partitions.

MESH_NEMESIS_SECONDS sets how long the faults run (default 20 s: a short run for `make test`; `make soak`
runs the same machinery for minutes); MESH_NEMESIS_SEED replays a nemesis schedule.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.integration.nemesis import KINDS, NemesisConfig, run_nemesis


def test_no_two_holders_and_tokens_increase_under_the_nemesis(tmp_path: Path) -> None:
    seed = int(os.environ.get("MESH_NEMESIS_SEED") or random.randrange(2**31))
    seconds = float(os.environ.get("MESH_NEMESIS_SECONDS", "20"))
    res = run_nemesis(tmp_path, NemesisConfig(seconds=seconds, seed=seed))
    rep = res.report
    where = f"seed {seed} (MESH_NEMESIS_SEED={seed} replays the schedule); history {res.history_dir}\n"
    detail = where + f"actions {dict(res.actions)} outcomes {dict(res.outcomes)}\n" + rep.summary()
    assert rep.ok, detail
    assert rep.max_concurrent == 1, detail
    # Not vacuous: every fault kind ran, claims were granted and changed hands, some from a holder that
    # never released (killed, paused or cut off), which is the case the protocol exists for.
    assert all(res.actions[k] >= 1 for k in KINDS), detail
    assert rep.acquisitions >= 10 and rep.handovers >= 5, detail
    assert rep.takeovers >= 1, detail
