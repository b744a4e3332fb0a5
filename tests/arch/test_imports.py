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
            out.add(node.module)
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if _exists(sub):
                    out.add(sub)
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
