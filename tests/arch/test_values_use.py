"""`dataclasses.replace / asdict / astuple / fields` refuse `@value` classes (mesh.core.values), and a
class can become one in any merge (stop 20: a test tap's `dataclasses.replace` on the new `@value` Timing
broke three integration tests that only the full run found). mesh and the tests use `mesh.core.values`'
versions, which take values and dataclasses alike; only the module that implements them and its own test,
which compares them with the real dataclass, call `dataclasses`'."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"mesh/core/values.py", "tests/core/test_values.py", "tests/arch/test_values_use.py"}
USE = re.compile(
    r"\bdataclasses\.(replace|asdict|astuple|fields)\b"
    r"|^\s*from\s+dataclasses\s+import\s+[^\n]*\b(replace|asdict|astuple|fields)\b",
    re.MULTILINE,
)


def test_mesh_and_tests_copy_and_walk_values_with_mesh_core_values() -> None:
    files = [p for d in ("mesh", "tests") for p in (ROOT / d).rglob("*.py") if "_proto" not in p.parts]
    assert len(files) > 100  # the walk found the trees (the check can fail)
    bad = []
    for p in files:
        rel = p.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        text = p.read_text(encoding="utf-8")
        for m in USE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"{rel}:{line}: {m.group(0).strip()}")
    assert not bad, "use mesh.core.values.replace/asdict/fields instead:\n" + "\n".join(bad)
