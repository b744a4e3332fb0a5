"""Failure detection with k watchers, on real node processes: a node is timed only by its 3 ring successors,
everyone else learns from their verdicts, from its own links, and from the member's refutation."""

from __future__ import annotations

import signal

from mesh.core.watch import DEFAULT_WATCHERS, watchers_of
from tests.integration.harness import NO_TIMED_DEATH, Mesh, until

# Beats every 0.2 s, suspect after 1 s of silence, dead only after 20 s: room to resume in between.
SLOW_DEATH = ["--heartbeat-interval", "0.2", "--suspect-after", "1.0", "--dead-after", "20.0"]
NAMES = [f"w{i}" for i in range(6)]


def start(mesh: Mesh, *timing: str) -> None:
    first = mesh.up(NAMES[0], "--no-mdns", *timing)
    for name in NAMES[1:]:
        mesh.up(name, "--no-mdns", "--peer", first.address, *timing)
    until(
        lambda: all(set(mesh.states(n).values()) == {"alive"} and len(mesh.states(n)) == 6 for n in NAMES),
        timeout=30,
        what="6 nodes all alive everywhere",
    )


def not_a_watcher_of(mesh: Mesh, victim: str) -> str:
    ids = {mesh.nodes[n].node_id: n for n in NAMES}
    watchers = {ids[w] for w in watchers_of(mesh.nodes[victim].node_id, list(ids), DEFAULT_WATCHERS)}
    others = [n for n in NAMES if n != victim and n not in watchers]
    assert len(watchers) == DEFAULT_WATCHERS and others, (watchers, others)
    return others[0]


def test_a_killed_node_is_dead_at_once_on_a_node_that_does_not_watch_it(mesh: Mesh) -> None:
    start(mesh, *NO_TIMED_DEATH)  # only the refused reconnect can make it dead at all
    victim = NAMES[2]
    bystander = not_a_watcher_of(mesh, victim)
    mesh.signal(victim, signal.SIGKILL)
    until(lambda: mesh.states(bystander)[victim] == "dead", timeout=60, what="the bystander sees it dead")
    until(
        lambda: all(mesh.states(n)[victim] == "dead" for n in NAMES if n != victim),
        timeout=60,
        what="dead everywhere",
    )
    assert mesh.status(bystander)[victim]["state"] == "dead"


def test_a_paused_node_is_suspected_everywhere_and_refutes_when_it_resumes(mesh: Mesh) -> None:
    start(mesh, *SLOW_DEATH)
    victim = NAMES[3]
    bystander = not_a_watcher_of(mesh, victim)
    mesh.signal(victim, signal.SIGSTOP)
    try:
        # The bystander hears nothing from the victim either way: only the watchers' verdict tells it.
        # (Well within the 20 s of dead_after, so it resumes suspect, not dead.)
        until(lambda: mesh.states(bystander)[victim] == "suspect", timeout=15, what="suspect via a verdict")
    finally:
        mesh.signal(victim, signal.SIGCONT)
    until(lambda: mesh.states(bystander)[victim] == "alive", timeout=30, what="alive again: refuted")
    until(
        lambda: all(mesh.states(n)[victim] == "alive" for n in NAMES if n != victim),
        timeout=30,
        what="alive everywhere",
    )
    assert set(mesh.states(victim).values()) == {"alive"}  # and it blames nobody for its own stall


def test_twenty_four_nodes_form(mesh: Mesh) -> None:
    names = [f"m{i:02d}" for i in range(24)]
    first = mesh.up(names[0], "--no-mdns")
    for name in names[1:]:
        mesh.up(name, "--no-mdns", "--peer", first.address)
    for viewer in (names[0], names[11], names[-1]):
        until(
            lambda v=viewer: sorted(n for n, s in mesh.states(v).items() if s == "alive") == names,
            timeout=30,
            what=f"{viewer} sees all 24 alive",
        )
