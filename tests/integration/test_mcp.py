"""`meshctl mcp`: the tool set's size, the tools against real nodes (in-process client), and stdio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from mcp import Client, StdioServerParameters

from mesh.mcp_server import INSTRUCTIONS, Session, build_server
from tests.integration.harness import Mesh, until

TOKEN_BUDGET = 2000


def schema_tokens(tools: Any) -> tuple[int, int]:
    """(characters, estimated tokens) of every tool definition as the agent receives it.

    Estimate without a tokenizer: compact JSON of each tool's name, description and input (and output, if
    any) schema, at 4 characters per token — the usual rule of thumb for English and JSON with BPE
    tokenizers; JSON punctuation tends to cost more tokens per character, so this errs low by maybe 20-30 %,
    which the budget's margin covers many times over.
    """
    chars = 0
    for t in tools:
        d = t.model_dump(by_alias=True, exclude_none=True, mode="json")
        shown = {k: d[k] for k in ("name", "description", "inputSchema", "outputSchema") if k in d}
        chars += len(json.dumps(shown, separators=(",", ":")))
    return chars, chars // 4


async def test_tool_set_is_small() -> None:
    async with Client(build_server(Session(name="nobody"))) as c:
        tools = (await c.list_tools()).tools
        chars, tokens = schema_tokens(tools)
        print(
            f"\nMCP tool schemas: {len(tools)} tools, {chars} characters, ~{tokens} tokens "
            f"(budget {TOKEN_BUDGET})"
        )
        assert len(tools) <= 7 and tokens <= TOKEN_BUDGET
        names = {"status", "set_status", "claim", "release", "send", "inbox", "work"}
        assert {t.name for t in tools} == names
        assert all(len(t.description or "") <= 200 for t in tools)
        assert c.instructions == INSTRUCTIONS and len(INSTRUCTIONS.encode()) <= 2048
        # Without a node the tools answer with the reason, they do not crash the server.
        r = await c.call_tool("status", {})
        assert "no node named 'nobody'" in json.loads(r.content[0].text)["error"]


async def call(c: Client, tool: str, **args: Any) -> Any:
    r = await c.call_tool(tool, args)
    assert not r.is_error, r
    return json.loads(r.content[0].text)


def test_tools_on_real_nodes(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns")
    mesh.up("b", "--no-mdns", "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive")
    for n in ("a", "b"):  # a claim before the steward set is known is refused (no quorum yet)
        until(lambda n=n: json.loads(mesh.ctl("stewards", "--json", node=n).stdout)["stewards"])
    asyncio.run(tools_on_real_nodes(mesh))


async def tools_on_real_nodes(mesh: Mesh) -> None:
    sa, sb = Session(mesh.home, mesh.name, "a"), Session(mesh.home, mesh.name, "b")
    try:
        async with Client(build_server(sa)) as ca, Client(build_server(sb)) as cb:
            st = await call(ca, "status")
            assert st["me"] == "a" and {s["name"] for s in st["sessions"]} == {"a", "b"}
            assert await call(ca, "set_status", action="refactor", target="app", progress=30) == {"ok": True}
            got = await call(ca, "claim", items=["task/login"], paths=["src/app/**"], ttl_minutes=90)
            assert got.get("granted"), got
            assert [x["claim"] for x in got["claims"]] == ["task/login", "path/src/app"]
            assert got["claims"][0]["token"] > 0 and got["claims"][0]["until"].endswith("Z")
            until(lambda: len(json.loads(mesh.ctl("claims", "--json", node="b").stdout)) == 2)
            denied = await call(cb, "claim", paths=["src/app/models.py"])
            assert not denied["granted"] and denied["holder"] == "a" and "refactor app" in denied["why"]
            denied = await call(cb, "claim", items=["task/login"])
            assert not denied["granted"] and denied["holder"] == "a"
            # All or none: b's free item is not kept when its path is refused.
            partial = await call(cb, "claim", items=["task/other"], paths=["src/app"])
            assert not partial["granted"]
            assert json.loads(mesh.ctl("claims", "--json", node="b").stdout)[-1]["holder"] == "a"
            bad = await call(cb, "claim", paths=["src/*.py"])
            assert "only a trailing '/**'" in bad["error"]
            assert (await call(cb, "send", to="a", subject="login", body="may I?"))["queued"]
            assert (await call(cb, "send", to="*", subject="standup", body="now"))["queued"]
            msgs = await until_async(lambda: call(ca, "inbox"), 2)
            assert [(m["from"], m["subject"]) for m in msgs] == [("b", "login"), ("b", "standup")]
            assert msgs[1]["all"] is True and await call(ca, "inbox") == []  # marked read
            assert len(await call(ca, "inbox", unread_only=False)) == 2
            assert (await call(ca, "release", items=["task/login"], paths=["src/app/**"]))["released"] == 2
            assert "no session named" in (await call(cb, "send", to="zed", subject="s", body="b"))["error"]
            # The board: one session takes a task, the other is told who has it.
            added = (await call(ca, "work", add="fix the login form", priority="P1"))["added"]
            assert added["priority"] == "P1" and added["state"] == "open"
            seen = await until_async(lambda: call(cb, "work"), 1)
            assert [(t["id"], t["title"]) for t in seen] == [(added["id"], "fix the login form")]
            took = await call(cb, "work", take=added["id"])
            assert took["granted"] and took["token"] > 0, took
            refused = await call(ca, "work", take=added["id"])
            assert not refused["granted"] and refused["holder"] == "b", refused
            assert (await call(cb, "work", done=added["id"]))["done"]["state"] == "done"
            assert await call(cb, "work") == []  # done tasks are not listed
            assert "one of add, take or done" in (await call(ca, "work", add="x", done="y"))["error"]
    finally:
        await sa.close()
        await sb.close()


async def until_async(fn: Any, n: int, timeout: float = 15.0) -> Any:

    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        seen += await fn()
        if len(seen) >= n:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {seen!r}")


async def test_stdio_subprocess_finds_its_sessions_node(mesh: Mesh) -> None:
    # Two nodes run; the one started for this "agent" (this test's process) watches its pid, so the MCP
    # server (our child) picks that one without being told a name.
    mesh.up("other", "--no-mdns")
    mesh.up("mine", "--no-mdns", "--watch-pid", str(os.getpid()))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mesh.cli.main", "mcp"], env=mesh.env()
    )
    async with Client(params) as c:  # initialize
        assert c.server_info is not None and c.server_info.name == "session-mesh"
        assert len((await c.list_tools()).tools) == 7
        st = await call(c, "status")
        assert st["me"] == "mine"
