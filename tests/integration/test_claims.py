"""Claims through meshctl on real node processes: granted, held (exit 3), released, waited for, freed."""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

import pytest

from tests.integration.harness import FAST, MESHCTL, Mesh, until

LEASE = ["--lease", "2"]


def three(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST, *LEASE)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST, *LEASE)
    mesh.up("c", "--no-mdns", "--peer", a.address, *FAST, *LEASE)
    until(lambda: all(len(mesh.status(n)) == 3 for n in "abc"), what="three nodes")


def claim(mesh: Mesh, node: str, *args: str) -> tuple[int, dict[str, Any]]:
    r = mesh.ctl("claim", *args, "--json", node=node, check=False, timeout=60)
    assert r.returncode in (0, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_first_claim_wins_and_the_other_is_told_who_holds_it(mesh: Mesh) -> None:
    three(mesh)
    code, got = claim(mesh, "a", "service", "i-match", "--ttl", "2h")
    assert code == 0 and got["granted"] and got["holder"] == "a" and got["token"] > 0
    code, other = claim(mesh, "b", "service", "i-match")
    assert code == 3 and not other["granted"]
    assert other["holder"] == "a" and other["expires_at"] is not None
    # Without --json: one line naming the holder and when its claim ends; exit 3.
    r = mesh.ctl("claim", "service", "i-match", node="c", check=False)
    assert r.returncode == 3 and "held by a until" in r.stderr
    # Every node lists it; status shows it on the holder.
    for n in "abc":
        listed = json.loads(mesh.ctl("claims", "--json", node=n).stdout)
        entry = until(
            lambda n=n: [
                c for c in json.loads(mesh.ctl("claims", "--json", node=n).stdout) if c["name"] == "i-match"
            ],
            what=f"{n} lists the claim",
        )[0]
        assert (entry["type"], entry["holder"], entry["token"]) == ("service", "a", got["token"])
        assert isinstance(listed, list)
    assert mesh.status("c")["a"]["claims"][0]["token"] == got["token"]
    # The holder claiming again is idempotent.
    code, again = claim(mesh, "a", "service", "i-match")
    assert code == 0 and again["token"] == got["token"]


def test_release_lets_another_claim_with_a_larger_token(mesh: Mesh) -> None:
    three(mesh)
    _, first = claim(mesh, "a", "task", "t1")
    r = mesh.ctl("release", "task", "t1", "--json", node="a")
    assert json.loads(r.stdout)["released"] is True
    code, second = claim(mesh, "b", "task", "t1")
    assert code == 0 and second["token"] > first["token"]
    # Releasing what one does not hold changes nothing.
    r = mesh.ctl("release", "task", "t1", "--json", node="a")
    assert json.loads(r.stdout)["released"] is False
    code, _ = claim(mesh, "c", "task", "t1")
    assert code == 3


def test_wait_gets_it_when_the_holder_releases(mesh: Mesh) -> None:
    three(mesh)
    claim(mesh, "a", "file", "src/app.py")
    waiter = subprocess.Popen(
        [*MESHCTL, "claim", "file", "src/app.py", "--wait", "30s", "--json", "--node", "b"],
        env=mesh.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The waiter is refused until the release: its node must not hold the item yet.
        assert not [
            c for c in json.loads(mesh.ctl("claims", "--json", node="b").stdout) if c["holder"] == "b"
        ]
        mesh.ctl("release", "file", "src/app.py", node="a")
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert json.loads(out)["holder"] == "b"
    finally:
        waiter.kill()


def test_a_killed_holder_frees_its_claim_within_a_lease(mesh: Mesh) -> None:
    three(mesh)
    until(lambda: json.loads(mesh.ctl("stewards", "--json", node="a").stdout)["stewards"], what="stewards")
    _, held = claim(mesh, "c", "service", "db")
    mesh.signal("c", signal.SIGKILL)
    code, got = claim(mesh, "a", "service", "db", "--wait", "20s")
    assert code == 0 and got["token"] > held["token"]


def test_down_releases_claims_first(mesh: Mesh) -> None:
    three(mesh)
    # Three stewards, so one leaving keeps a quorum.
    until(
        lambda: len(json.loads(mesh.ctl("stewards", "--json", node="a").stdout)["stewards"]) == 3, timeout=30
    )
    claim(mesh, "b", "service", "api")
    mesh.ctl("down", node="b")
    code, got = claim(mesh, "a", "service", "api")  # no --wait: released, not expired
    assert code == 0 and got["holder"] == "a"


def test_stewards_are_visible(mesh: Mesh) -> None:
    three(mesh)
    info = until(lambda: (d := json.loads(mesh.ctl("stewards", "--json", node="b").stdout))["epoch"] and d)
    assert info["stewards"] and set(info["stewards"]) <= {"a", "b", "c"}
    st = mesh.status("b")
    assert any(m["steward"] for m in st.values())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["Service", "x"], "invalid claim type"),
        (["service", "bad name"], "invalid claim name"),
        (["service", "x", "--ttl", "-5"], "not a duration"),
        (["service", "x", "--ttl", "30d"], "at most 7 days"),
        (["service", "x", "--ttl", "0s"], "more than 0"),
        (["service", "x" * 201], "invalid claim name"),
    ],
)
def test_bad_claims_are_rejected_and_change_nothing(mesh: Mesh, args: list[str], needle: str) -> None:
    mesh.up("a", "--no-mdns", *FAST, *LEASE)
    r = mesh.ctl("claim", *args, node="a", check=False)
    assert r.returncode == 2, r.stdout
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json.loads(mesh.ctl("claims", "--json", node="a").stdout) == []


def test_recover_when_the_steward_majority_is_gone_for_good(mesh: Mesh) -> None:
    lease = ["--lease", "1"]
    a = mesh.up("a", "--no-mdns", *FAST, *lease)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST, *lease)
    mesh.up("c", "--no-mdns", "--peer", a.address, *FAST, *lease)
    until(
        lambda: len(json.loads(mesh.ctl("stewards", "--json", node="a").stdout)["stewards"]) == 3, timeout=30
    )
    mesh.signal("b", signal.SIGKILL)
    mesh.signal("c", signal.SIGKILL)
    # Two of three stewards gone: claims stall rather than risk two holders.
    r = mesh.ctl("claim", "task", "t9", node="a", check=False, timeout=60)
    assert r.returncode == 2 and "cannot decide" in r.stderr
    # Recovery must be confirmed; then a is the only steward of a new epoch and claims work again.
    assert mesh.ctl("stewards", "--recover", node="a", check=False).returncode == 2
    before = json.loads(mesh.ctl("stewards", "--json", node="a").stdout)["epoch"]
    after = json.loads(mesh.ctl("stewards", "--recover", "--yes", "--json", node="a").stdout)
    assert after["epoch"] > before and after["stewards"] == ["a"]
    code, got = claim(mesh, "a", "task", "t9")
    assert code == 0 and got["holder"] == "a"
