"""Reporters for a policy test run: text for people, JSON for machines, JUnit XML for CI.

The runner (tooling/policytest.py) knows nothing of output; each reporter reads a TestRun.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .policytest import CaseResult, TestRun


def summary_line(run: TestRun) -> str:
    # INVARIANT: CI systems grep this exact shape; do not reword it.
    return f"{run.passed} passed, {run.failed} failed"


def coverage_lines(run: TestRun) -> list[str]:
    c = run.coverage
    lines = [f"rule coverage: {len(c.rules) - len(c.rules_missed)}/{len(c.rules)} "
             f"({c.rule_percent:.1f}%)",
             f"grant coverage: {len(c.grants) - len(c.grants_missed)}/{len(c.grants)} "
             f"({c.grant_percent:.1f}%)"]
    if c.rules_missed:
        lines.append("rules no passing case pins down (a case where the rule decides and "
                     "expect.citations names an article only it cites) / 未经测试验证的规则: "
                     + ", ".join(c.rules_missed))
    if c.grants_missed:
        lines.append("grants no passing case expects a permit under (expect.grant_id) / "
                     "未经测试验证的授权: " + ", ".join(c.grants_missed))
    return lines


def _decided(result: CaseResult) -> str:
    d = result.decision
    if d is None:
        return f"error: {result.error}"
    grant = f" grant {d.grant_id}" if d.grant_id else ""
    reasons = "; ".join(f"{r.rule_id} ({r.citation})" if r.citation else r.rule_id
                        for r in d.reasons)
    unmet = "".join(f"; unmet {u.rule_id}: {u.requirement}" for u in d.unmet)
    return f"{d.effect}{grant} [{reasons}{unmet}]"


def _expected(result: CaseResult) -> str:
    e = result.case.expect
    if e.error is not None:
        return f"refusal for {', '.join(e.error)}"
    text = e.effect
    if e.grant_id is not None:
        text += f" grant {e.grant_id}" if e.grant_id else " no grant"
    if e.rules:
        text += f" [{', '.join(e.rules)}]"
    return text


def failure_detail(result: CaseResult) -> list[str]:
    """The headline (one line per failing case) and the mismatches under it."""
    head = (f"FAIL {result.case.where} {result.case.name}: expected {_expected(result)}, "
            f"decided {_decided(result)}")
    return [head] + [f"    {m}" for m in result.mismatches]


def render_text(run: TestRun, *, verbose: bool = False) -> str:
    lines = []
    for result in run.results:
        if result.passed:
            if verbose:
                lines.append(f"ok   {result.case.where} {result.case.name}")
        else:
            lines.extend(failure_detail(result))
    lines.append(summary_line(run))
    lines.extend(coverage_lines(run))
    return "\n".join(lines) + "\n"


def to_json(run: TestRun, *, min_coverage: float | None = None) -> dict:
    c = run.coverage
    return {
        "passed": run.passed,
        "failed": run.failed,
        "cases": [{
            "file": r.case.file, "line": r.case.line, "name": r.case.name,
            "passed": r.passed,
            "expected": r.case.expect.model_dump(exclude_none=True),
            "decision": None if r.decision is None else
            {k: v for k, v in r.decision.to_dict().items() if k != "explanation"},
            "error": r.error,
            "mismatches": list(r.mismatches),
        } for r in run.results],
        "coverage": {
            "rules": {"total": len(c.rules), "asserted": len(c.rules) - len(c.rules_missed),
                      "percent": round(c.rule_percent, 2), "missed": c.rules_missed},
            "grants": {"total": len(c.grants), "asserted": len(c.grants) - len(c.grants_missed),
                       "percent": round(c.grant_percent, 2), "missed": c.grants_missed},
            "min_coverage": min_coverage,
        },
    }


def to_junit(run: TestRun) -> bytes:
    """JUnit XML: one <testsuite> per test file, one <testcase> per case."""
    root = ET.Element("testsuites", name="tiergate policy tests", tests=str(len(run.results)),
                      failures=str(sum(1 for r in run.results if r.error is None and not r.passed)),
                      errors=str(sum(1 for r in run.results if r.error is not None)))
    by_file: dict[str, list[CaseResult]] = {}
    for result in run.results:
        by_file.setdefault(result.case.file, []).append(result)
    for file, results in by_file.items():
        suite = ET.SubElement(
            root, "testsuite", name=file, tests=str(len(results)),
            failures=str(sum(1 for r in results if r.error is None and not r.passed)),
            errors=str(sum(1 for r in results if r.error is not None)), skipped="0")
        for result in results:
            case = ET.SubElement(suite, "testcase", name=result.case.name, classname=file,
                                 file=file, line=str(result.case.line))
            if result.error is not None:
                ET.SubElement(case, "error", message=result.error,
                              type="RequestError").text = result.error
            elif not result.passed:
                detail = failure_detail(result)
                ET.SubElement(case, "failure", message=detail[0],
                              type="PolicyTestFailure").text = "\n".join(detail)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
