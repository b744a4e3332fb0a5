"""The house's import rules, checked from the code's own imports (every `import`, at any depth).

The ruff banned-api table in mesh/core/ruff.toml names the worst offenders; these tests hold the whole rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "mesh"
STDLIB = set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(under: Path = MESH) -> Iterator[Path]:
    for path in sorted(under.rglob("*.py")):
        if "_proto" not in path.parts:
            yield path


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts a.b when that is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found = {s for s in subs if _exists(s)}
            out |= found
            if found != subs:  # names defined by the module itself (not only its submodules)
                out.add(node.module)
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def test_core_imports_only_the_standard_library_and_itself() -> None:
    bad = {
        f"{module_name(p)} imports {m}"
        for p in sources(MESH / "core")
        for m in imports(p)
        if m.split(".")[0] not in STDLIB and not (m == "mesh.core" or m.startswith("mesh.core."))
    }
    banned_stdlib = {"asyncio", "socket", "sqlite3", "time", "os", "subprocess", "threading"}
    bad |= {
        f"{module_name(p)} imports {m}"
        for p in sources(MESH / "core")
        for m in imports(p)
        if m.split(".")[0] in banned_stdlib
    }
    assert not bad, sorted(bad)


def test_the_core_and_the_errors_load_without_grpc() -> None:
    mods = [module_name(p) for p in sources(MESH / "core")] + ["mesh.errors"]
    heavy = ("grpc", "google", "asyncio", "sqlite3")
    code = (
        f"import sys\nfor m in {mods!r}: __import__(m)\n"
        f"print(sorted(k for k in sys.modules if k.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def graph() -> dict[str, set[str]]:
    """mesh module -> the mesh modules it imports (any depth, TYPE_CHECKING included: a knot is a knot)."""
    mods = {module_name(p): p for p in sources()}
    return {m: {i for i in imports(p) if i in mods and i != m} for m, p in mods.items()}


def circles(g: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    assert circles(graph()) == []


def test_production_imports_nothing_from_mesh_testing() -> None:
    g = graph()
    bad = {(m, i) for m, deps in g.items() if not m.startswith("mesh.testing") for i in deps}
    assert not {(m, i) for m, i in bad if i.startswith("mesh.testing")}


def test_faces_and_services_keep_to_their_side() -> None:
    g = graph()
    wire = {m for m in g if m.startswith(("mesh._proto", "mesh._transport"))}
    for m, deps in g.items():
        if m.startswith("mesh.cli"):
            assert not any(d.startswith("mesh._proto") for d in deps), m  # the CLI speaks the API only
            assert not any(d.startswith(("mesh._runtime", "mesh._services")) for d in deps), m
        if m.startswith("mesh._transport"):
            assert not any(d.startswith(("mesh._services", "mesh._runtime")) for d in deps), m
        if m.startswith(("mesh.web", "mesh.mcp_server", "mesh.pathclaims", "mesh.briefing")):
            # The new faces stand on MeshAPI (a Client, or the Node), never below it.
            below = ("mesh._proto", "mesh._transport", "mesh._runtime", "mesh._services")
            assert not any(d.startswith(below) for d in deps), m
        if m.startswith("mesh._services"):
            assert not deps & wire, m  # services hand core messages to their context; the codec encodes
            assert not any(d.startswith("mesh._runtime") for d in deps), m
