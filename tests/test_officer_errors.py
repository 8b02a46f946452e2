"""Errors a compliance officer can act on, pinned by golden files beside their inputs
(tests/golden/errors/NAME.policy and NAME.expected): a block left open is named at its own
line, every syntax error of a file is reported, a condition that can never hold names the two
tests that contradict each other, and "did you mean" covers keywords with underscores.

Each input is added to the shipped policy set (whose vocabularies it uses) as NAME.policy;
TIERGATE_UPDATE_GOLDEN=1 rewrites the expected files (review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiergate.engine import DiagnosticError, compile_sources
from tiergate.diagnostics import render_human

from conftest import POLICIES

GOLDEN = Path(__file__).resolve().parent / "golden" / "errors"
UPDATE = os.environ.get("TIERGATE_UPDATE_GOLDEN") == "1"
CASES = sorted(GOLDEN.glob("*.policy"))


def rendered(case: Path) -> str:
    sources = {path.name: path.read_text(encoding="utf-8")
               for path in sorted(POLICIES.glob("*.policy"))}
    sources[case.name] = case.read_text(encoding="utf-8")
    with pytest.raises(DiagnosticError) as failed:
        compile_sources(sources)
    return render_human(failed.value.diagnostics, sources) + "\n"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_the_error_an_officer_reads(case):
    out = rendered(case)
    expected = case.with_suffix(".expected")
    if UPDATE:
        expected.write_text(out, encoding="utf-8")
    assert expected.exists(), f"{expected.name} is missing: run with TIERGATE_UPDATE_GOLDEN=1"
    assert out == expected.read_text(encoding="utf-8")


def test_every_case_has_its_golden_file_and_no_golden_file_is_orphaned():
    assert {p.stem for p in GOLDEN.glob("*.expected")} == {p.stem for p in CASES}
    assert len(CASES) >= 5
