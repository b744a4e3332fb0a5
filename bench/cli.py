"""meshctl's hot verbs: wall time of the whole `meshctl` process against the interpreter's floor, same run.

An agent runs `meshctl status` / `claim` as a new process, so its whole life counts: interpreter start,
imports, finding the node, asking it, printing. The yardstick is `python -c pass` with the SAME interpreter
the installed `meshctl` script runs under (and `python3 -c pass` as found on PATH, which may be a pyenv
shim), timed in alternation with each verb so that a drift in the machine's speed hits both alike; each
figure is the median over rounds, and its ratio to the floor is the target (issue 15: at most 1.2x).

`make bench` compiles mesh's bytecode first: with PYTHONDONTWRITEBYTECODE=1 (as in some shells and CI) an
uncompiled tree would be compiled again in every run and timed as such.

The development venv installs mesh editable: its `site` runs setuptools' editable finder, which imports
pathlib, re, enum, collections, functools, … in EVERY process, `python -c pass` included — modules meshctl
needs anyway, so there they cost it nothing. What users run is a wheel (`pip install session-mesh`), where
`python -c pass` loads none of them and meshctl pays for all. So the same verbs are also timed from this
tree built as a wheel and installed into a fresh venv (`installed_*` rows, each against that venv's own
`python -c pass`).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.membership import cluster
from bench.procs import free_ports, meshctl
from bench.sections import Context, section

TARGET = 1.2
ROOT = Path(__file__).resolve().parent.parent
HOT_VERBS = ("status", "claim", "release", "heartbeat", "send")


def installed(tmp: Path) -> tuple[str, str] | None:
    """(python, meshctl) of this tree built as a wheel and installed, without its dependencies (the hot verbs
    need none), into a fresh venv: what `pip install` gives a user. None if it cannot be built here."""
    src = tmp / "src"
    shutil.copytree(ROOT / "mesh", src / "mesh", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    venv, dist, pip = tmp / "venv", tmp / "dist", [sys.executable, "-m", "pip"]
    python = venv / "bin" / "python"
    build = [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), src]
    make_venv = [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)]
    for step in (build, make_venv):
        if subprocess.run(step, capture_output=True).returncode != 0:
            return None
    wheel = [str(w) for w in dist.glob("*.whl")]
    add = [*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", *wheel]
    if len(wheel) != 1 or subprocess.run(add, capture_output=True).returncode != 0:
        return None
    return str(python), str(venv / "bin" / "meshctl")


def _wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def cli_times(rounds: int) -> dict[str, float]:
    """Median wall seconds of each hot verb and of the floors, in alternation over `rounds` rounds."""
    with cluster() as c:
        ports = free_ports(2)
        c.start("n0", "--no-mdns", "--port", str(ports[0]))
        c.start("n1", "--no-mdns", "--port", str(ports[1]), "--peer", f"127.0.0.1:{ports[0]}")
        deadline = time.monotonic() + 30
        while not all(
            (c.home / "meshes" / c.mesh / "nodes" / n / "node.json").exists() for n in ("n0", "n1")
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("nodes did not start")
            time.sleep(0.02)
        env = c.env() | {"MESH_NODE": "n0"}
        ctl = meshctl()
        argv: dict[str, list[str]] = {"python_c_pass": [sys.executable, "-c", "pass"]}
        python3 = shutil.which("python3")
        if python3:
            argv["python3_c_pass"] = [python3, "-c", "pass"]
        argv |= {
            "status": [*ctl, "status", "--json"],
            "claim": [*ctl, "claim", "service", "bench-item", "--ttl", "10m"],
            "release": [*ctl, "release", "service", "bench-item"],
            "heartbeat": [*ctl, "heartbeat", "--action", "bench", "--progress", "1"],
        }
        # n0 must know n1 before it can send to it: poll its status (a send to a name never seen is refused)
        while "n1" not in {m["name"] for m in json.loads(_out([*ctl, "status", "--json"], env))}:
            if time.monotonic() > deadline:
                raise TimeoutError("n0 does not know n1")
            time.sleep(0.05)
        argv["send"] = [*ctl, "send", "n1", "bench", "a body"]
        envs = {k: env for k in argv}
        with tempfile.TemporaryDirectory(prefix="mesh-bench-wheel-") as tmp:
            wheel = installed(Path(tmp))
            if wheel is not None:  # the installed copy, not this tree on PYTHONPATH
                plain = {k: v for k, v in env.items() if k != "PYTHONPATH"}
                argv["installed_python_c_pass"] = [wheel[0], "-c", "pass"]
                for verb in HOT_VERBS:
                    argv[f"installed_{verb}"] = [wheel[1], *argv[verb][len(ctl) :]]
                envs |= {k: plain for k in argv if k.startswith("installed_")}
            samples: dict[str, list[float]] = {k: [] for k in argv}
            for k, a in argv.items():  # warm the page cache once
                _wall(a, envs[k])
            for _ in range(rounds):
                for k, a in argv.items():  # claim then release: each round claims afresh
                    samples[k].append(_wall(a, envs[k]))
        return {k: statistics.median(v) for k, v in samples.items()}


def _out(argv: list[str], env: dict[str, str]) -> str:
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout


@section("cli", timeout_s=300)
def cli(ctx: Context) -> None:
    """meshctl status / claim / release / heartbeat / send wall time vs `python -c pass` (target 1.2x)."""
    t = cli_times(ctx.rounds(30, 6))
    floor = t["python_c_pass"]
    ctx.record(
        "python_c_pass_p50", floor * 1000, "ms", note=f"same interpreter as meshctl ({sys.executable})"
    )
    if "python3_c_pass" in t:
        ctx.record("python3_c_pass_p50", t["python3_c_pass"] * 1000, "ms", note="python3 on PATH")
    for verb in HOT_VERBS:
        ctx.record(f"{verb}_p50", t[verb] * 1000, "ms", ref="cli.python_c_pass_p50",
                   note=f"whole `meshctl {verb}` process, node answering over its wire")  # fmt: skip
        ctx.record(f"{verb}_vs_python_c_pass", t[verb] / floor, "x", target=TARGET)
        if "python3_c_pass" in t:
            ctx.record(f"{verb}_vs_python3_c_pass", t[verb] / t["python3_c_pass"], "x")
    if "installed_python_c_pass" not in t:
        return
    floor = t["installed_python_c_pass"]
    ctx.record("installed_python_c_pass_p50", floor * 1000, "ms", note="a fresh venv: no editable finder")
    for verb in HOT_VERBS:
        ctx.record(f"installed_{verb}_p50", t[f"installed_{verb}"] * 1000, "ms",
                   ref="cli.installed_python_c_pass_p50",
                   note=f"`meshctl {verb}` installed from a wheel, as users run it")  # fmt: skip
        ctx.record(f"installed_{verb}_vs_python_c_pass", t[f"installed_{verb}"] / floor, "x", target=TARGET)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    times = cli_times(rounds)
    for k, v in times.items():
        print(f"{k:16} {v * 1000:7.1f} ms  {v / times['python_c_pass']:5.2f}x")
