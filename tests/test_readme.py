"""The README's commands are the ones CI runs, so the README cannot drift."""

from __future__ import annotations

import re

from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_two_setup_commands():
    run_main, run_tests = readme_commands()[:2]
    assert "pip install" in run_main and "tiergate decide policies" in run_main
    assert "pip install" in run_tests and "pytest" in run_tests


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci.splitlines()
