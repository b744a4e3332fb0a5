"""`make demo`: three local sessions coordinating, their status, and a live view.

Starts three real node processes (`meshctl up --detach`) under a throwaway home with a mesh of its own,
publishes some status from each, prints `meshctl status`, then runs `meshctl watch` until Ctrl-C (or for
--seconds when not on a terminal), and stops the nodes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid

SESSIONS = [
    (
        "session-1",
        "i-match",
        ["--action", "build", "--target", "i-match", "--phase", "tests", "--progress", "40"],
    ),
    (
        "session-2",
        "docs",
        ["--action", "write", "--target", "README", "--phase", "draft", "--progress", "70"],
    ),
    (
        "session-3",
        "review",
        ["--action", "review", "--target", "PR-12", "--phase", "reading", "--progress", "10"],
    ),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=None, help="stop the live view after this long")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (None if sys.stdout.isatty() else 3.0)
    home = tempfile.mkdtemp(prefix="mesh-demo-")
    env = dict(os.environ, MESH_HOME=home, MESH_MESH="demo-" + uuid.uuid4().hex[:6])
    ctl = [sys.executable, "-m", "mesh.cli.main"]
    started: list[str] = []

    def run(*a: str) -> None:
        subprocess.run([*ctl, *a], env=env, check=True)

    try:
        print(f"$ meshctl up --detach   (three sessions, mesh {env['MESH_MESH']}, home {home})")
        for name, role, _ in SESSIONS:
            run("up", "--name", name, "--role", role, "--detach")
            started.append(name)
        for name, _, hb in SESSIONS:
            run("heartbeat", "--node", name, *hb)
        print("\n$ meshctl claim service i-match --node session-1   (then session-2 tries the same)")
        run("claim", "service", "i-match", "--ttl", "2h", "--node", "session-1")
        subprocess.run([*ctl, "claim", "service", "i-match", "--node", "session-2"], env=env)
        print("\n$ meshctl send session-2 'i-match' 'green: can you update the docs?' --node session-1")
        run("send", "session-2", "i-match", "green: can you update the docs?", "--node", "session-1")
        time.sleep(0.3)  # demo pacing only: let the updates reach every peer before printing
        print("\n$ meshctl inbox --node session-2")
        run("inbox", "--node", "session-2")
        print("\n$ meshctl status --node session-3")
        run("status", "--node", "session-3")
        print("\n$ meshctl watch --node session-1" + ("   (Ctrl-C to stop)" if seconds is None else ""))
        watch = subprocess.Popen([*ctl, "watch", "--node", "session-1"], env=env)
        try:
            time.sleep(0.5)
            run("heartbeat", "--node", "session-2", "--phase", "review", "--progress", "90")
            watch.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            watch.terminate()
            watch.wait()
        except KeyboardInterrupt:
            watch.wait()
    finally:
        for name in started:
            subprocess.run([*ctl, "down", "--node", name], env=env, capture_output=True)
        print("\nstopped the demo nodes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
