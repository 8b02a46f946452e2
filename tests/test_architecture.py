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


# Each phase may use the ones before it, never the ones after: parse → check → compile →
# decide → serve. (diagnostics and audit serve several phases.)
LATER = {
    "diagnostics": ("tiergate.grammar", "tiergate.engine", "tiergate.server", "tiergate.tooling",
                    "tiergate.cli", "tiergate.audit"),
    "grammar": ("tiergate.engine", "tiergate.server", "tiergate.tooling", "tiergate.cli",
                "tiergate.audit"),
    "engine": ("tiergate.server", "tiergate.tooling", "tiergate.cli"),
    "audit": ("tiergate.server", "tiergate.tooling", "tiergate.cli"),
    "tooling": ("tiergate.server", "tiergate.cli"),
}


def test_no_phase_imports_a_later_one():
    found = []
    for folder, forbidden in LATER.items():
        for path in sorted((REPO / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                           else [a.name for a in node.names] if isinstance(node, ast.Import)
                           else [])
                found += [f"{folder}/{path.name} imports {m}" for m in modules
                          if m.startswith(forbidden)]
    assert found == []
