"""The new cores stay sans-IO: standard-library imports without I/O, and nothing that pulls in grpc."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mesh.core

CORES = ["errors", "globs", "hlc", "board", "stats"]
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "math",
    "re",
    "typing",
    "unicodedata",
}


@pytest.mark.parametrize("name", CORES)
def test_imports_are_pure(name: str) -> None:
    base = Path(mesh.core.__file__).parent
    package = base / name
    paths = sorted(package.glob("*.py")) if package.is_dir() else [base / f"{name}.py"]
    assert paths, name
    for path in paths:
        _check_pure(name, path)


def _check_pure(name: str, path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module.startswith("mesh."):
                assert module.startswith("mesh.core.") and module != "mesh.core.validate", (name, module)
            else:
                assert module.split(".")[0] in ALLOWED, (name, module)


def test_importing_them_does_not_import_grpc() -> None:
    code = "import sys, " + ", ".join(f"mesh.core.{c}" for c in CORES) + "; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
