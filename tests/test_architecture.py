"""The phases keep to their interfaces: the officer's tools read the compiled policy through
tiergate.engine.analysis (and the package's public names), never through the engine's
modules, so the engine can change how it compiles without breaking lint, diff or the report."""

from __future__ import annotations

import ast

from conftest import REPO

ALLOWED = {"tiergate.engine", "tiergate.engine.analysis", "tiergate.engine.timeutil"}


def test_the_tooling_imports_only_the_engines_analysis_interface():
    reached = {}
    for path in sorted((REPO / "tooling").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "tiergate.engine"):
                reached.setdefault(node.module, []).append(path.name)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tiergate.engine"):
                        reached.setdefault(alias.name, []).append(path.name)
    assert set(reached) <= ALLOWED, {m: f for m, f in reached.items() if m not in ALLOWED}
