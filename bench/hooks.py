"""Agent hooks: wall time of the pre-edit hook process against the interpreter's own floor, same run.

A hook runs as a new process on every tool call, so its whole life counts: interpreter start, reading the
event, asking the node over the hook wire, answering. The yardstick is `python -c pass` with the same
interpreter (and `python3 -c pass` as found on PATH), timed in alternation with the hook so that a drift
in the machine's speed hits both alike; the figure is the median over rounds.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from bench.membership import cluster
from bench.sections import Context, section


def _wall(argv: list[str], stdin: bytes, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        argv, input=stdin, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - t0


def hook_times(rounds: int) -> dict[str, float]:
    """Median wall seconds: the pre-edit hook (node answering "allow"; node missing) and the floors."""
    from mesh.agents import hook_command

    with cluster() as c:
        c.start("n0", "--no-mdns")
        deadline = time.monotonic() + 30
        while not (c.home / "meshes" / c.mesh / "nodes" / "n0" / "node.json").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("node did not start")
            time.sleep(0.02)
        project = c.home / "project"
        (project / "src").mkdir(parents=True)
        event = json.dumps({
            "session_id": "9a1c4e2f-0000-4000-8000-000000000000", "transcript_path": "/tmp/t.jsonl",
            "cwd": str(project), "permission_mode": "default", "hook_event_name": "PreToolUse",
            "tool_name": "Edit", "tool_use_id": "toolu_1",
            "tool_input": {"file_path": str(project / "src" / "app.py"), "old_string": "a",
                           "new_string": "b"},
        }).encode()  # fmt: skip
        env = dict(os.environ, MESH_HOME=str(c.home), MESH_MESH=c.mesh, CLAUDE_PROJECT_DIR=str(project))
        hook = shlex.split(hook_command("claude-code", "PreToolUse"))
        argv = {
            "hook": hook,
            "python_c_pass": [sys.executable, "-c", "pass"],
        }
        python3 = shutil.which("python3")
        if python3:
            argv["python3_c_pass"] = [python3, "-c", "pass"]
        envs = {"hook": env | {"MESH_NODE": "n0"}, "hook_no_node": env | {"MESH_NODE": "absent"}}
        argv["hook_no_node"] = hook
        samples: dict[str, list[float]] = {k: [] for k in argv}
        for k in argv:  # warm the page cache once
            _wall(argv[k], event, envs.get(k, env))
        for _ in range(rounds):
            for k, a in argv.items():
                samples[k].append(_wall(a, event, envs.get(k, env)))
        return {k: statistics.median(v) for k, v in samples.items()}


@section("hooks", timeout_s=300)
def hooks(ctx: Context) -> None:
    """Pre-edit hook process wall time vs `python -c pass` (target at most 1.3 x)."""
    t = hook_times(ctx.rounds(40, 8))
    ctx.record("python_c_pass_p50", t["python_c_pass"] * 1000, "ms", note="same interpreter as the hook")
    if "python3_c_pass" in t:
        ctx.record("python3_c_pass_p50", t["python3_c_pass"] * 1000, "ms", note="python3 on PATH")
    ctx.record("pre_edit_hook_p50", t["hook"] * 1000, "ms", ref="hooks.python_c_pass_p50",
               note="node answers allow over the hook wire")  # fmt: skip
    ctx.record("pre_edit_hook_vs_python_c_pass", t["hook"] / t["python_c_pass"], "x", target=1.3)
    ctx.record("pre_edit_hook_no_node_p50", t["hook_no_node"] * 1000, "ms", ref="hooks.python_c_pass_p50",
               note="fail-open path: no node")  # fmt: skip


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    for k, v in hook_times(rounds).items():
        print(f"{k:16} {v * 1000:7.1f} ms")
