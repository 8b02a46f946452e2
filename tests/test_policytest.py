"""`tiergate test`: the shipped policy tests pass, failures read well, JUnit and coverage."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from tiergate.cli.main import main
from tiergate.engine import load_policy_set
from tiergate.tooling.policytest import TestFileError, load_suite, run_suites

from conftest import POLICIES

HEADER = """
[defaults]
now = 2026-11-22T10:00:00+08:00
[defaults.request]
action = "query"
purpose = "scientific_research"
subject = { id = "u-1042", org_id = "fzu", org_type = "university", region = "southeast_park", real_name_verified = true }
resource = { id = "ds-cardio-2025", catalog_class = "medical_service", tier = "conditional" }
context = { storage_region = "domestic", deidentified = true }
"""

PERMIT_CASE = """
[[case]]
name = "conditional data with the grant"
expect.effect = "PERMIT"
expect.grant_id = "fz-2026-017"
"""

WRONG_CASE = """
[[case]]
name = "outside the park, wrongly expected to pass"
request.subject.region = "fuzhou"
expect.effect = "PERMIT"
expect.rules = ["conditional-with-approved-grant"]
"""

ERROR_CASE = """
[[case]]
name = "an undeclared action"
request.action = "destroy"
expect.effect = "DENY"
"""


@pytest.fixture
def policy_dir(tmp_path):
    """A copy of the reference policies with an empty tests/ folder beside them."""
    for path in POLICIES.glob("*.policy"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "tests").mkdir()
    return tmp_path


def write_tests(policy_dir, text, name="sample_test.toml"):
    path = policy_dir / "tests" / name
    path.write_text(HEADER + text, encoding="utf-8")
    return path


def test_the_shipped_policy_tests_pass_with_full_coverage(capsys, policy):
    assert main(["test", str(POLICIES), "--min-coverage", "100"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\d+ passed, 0 failed$", out, re.MULTILINE), out
    rules, grants = len(policy.rules), len(policy.grants)
    assert f"rule coverage: {rules}/{rules} (100.0%)" in out
    assert f"grant coverage: {grants}/{grants} (100.0%)" in out
    assert "FAIL" not in out


def test_every_shipped_rule_has_a_permit_and_a_deny_case():
    """Article by article: each rule is seen deciding, and a nearby request where it does not."""
    policy = load_policy_set(POLICIES)
    suites = [load_suite(p) for p in sorted((POLICIES / "tests").glob("*_test.toml"))]
    cases = [c for s in suites for c in s.cases]
    for rule in policy.rules:
        if rule.effect == "obligation" or rule.fallback:
            continue
        assert [c for c in cases if rule.id in c.expect.rules], \
            f"no case expects {rule.id} among the reasons"
        assert [c for c in cases if rule.id in c.expect.not_rules], \
            f"no case shows a nearby request that {rule.id} does not decide"

def test_a_wrong_expectation_fails_with_decision_next_to_expected(policy_dir, capsys):
    write_tests(policy_dir, PERMIT_CASE + WRONG_CASE)
    assert main(["test", str(policy_dir)]) == 2
    out = capsys.readouterr().out
    (line,) = [l for l in out.splitlines() if l.startswith("FAIL")]
    assert "sample_test.toml:" in line and "outside the park, wrongly expected to pass" in line
    assert "expected PERMIT [conditional-with-approved-grant]" in line
    assert "decided DENY [conditional-in-park-only (福州办法 第十五条)]" in line
    assert "effect: expected PERMIT, got DENY" in out
    assert re.search(r"^1 passed, 1 failed$", out, re.MULTILINE)


def test_junit_xml_parses_and_counts(policy_dir, tmp_path, capsys):
    write_tests(policy_dir, PERMIT_CASE + WRONG_CASE + ERROR_CASE)
    junit = tmp_path / "junit.xml"
    assert main(["test", str(policy_dir), "--junit", str(junit)]) == 2
    capsys.readouterr()
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "conditional data with the grant", "outside the park, wrongly expected to pass",
        "an undeclared action"]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    assert "decided DENY" in cases[1].find("failure").get("message")
    assert "destroy" in cases[2].find("error").get("message")


def test_coverage_below_the_threshold_fails(policy_dir, capsys):
    write_tests(policy_dir, PERMIT_CASE)
    assert main(["test", str(policy_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 passed, 0 failed" in out and "rules no passing case pins down" in out
    assert "open-data-direct" in out and "fz-2026-030" in out
    assert main(["test", str(policy_dir), "--min-coverage", "50"]) == 2
    assert "coverage below the minimum of 50%" in capsys.readouterr().out
    assert main(["test", str(policy_dir), "--min-coverage", "0", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    rules = document["coverage"]["rules"]
    # The case expects the grant, so the grant is pinned down; it names no article, so no
    # rule is, though five decided (the permit and four obligation rules).
    assert rules["total"] == len(load_policy_set(policy_dir).rules)
    assert rules["asserted"] == 0 and document["coverage"]["grants"]["asserted"] == 1
    assert document["coverage"]["below_minimum"] is False


def test_json_format_reports_each_case(policy_dir, capsys):
    write_tests(policy_dir, PERMIT_CASE + WRONG_CASE)
    assert main(["test", str(policy_dir), "--format", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert (document["passed"], document["failed"]) == (1, 1)
    failed = [c for c in document["cases"] if not c["passed"]][0]
    assert failed["decision"]["effect"] == "DENY"
    assert failed["expected"]["effect"] == "PERMIT"


def test_a_bad_test_file_is_an_error_naming_file_and_case(policy_dir, capsys):
    write_tests(policy_dir, PERMIT_CASE + """
[[case]]
name = "misspelt"
expect.effect = "MAYBE"
expect.grant = "fz-2026-017"
""")
    assert main(["test", str(policy_dir)]) == 1
    err = capsys.readouterr().err
    assert "sample_test.toml:16: case 2 'misspelt': expect.effect" in err
    assert "expect.grant: Extra inputs are not permitted" in err


def test_a_bad_policy_is_an_error(policy_dir, capsys):
    write_tests(policy_dir, PERMIT_CASE)
    (policy_dir / "broken.policy").write_text("rule x { permit when action == fly }",
                                              encoding="utf-8")
    assert main(["test", str(policy_dir)]) == 1
    assert "fly" in capsys.readouterr().err


def test_no_test_files_is_an_error(policy_dir, capsys):
    assert main(["test", str(policy_dir)]) == 1
    assert "no *_test.toml" in capsys.readouterr().err


def test_defaults_merge_and_unset(policy_dir):
    path = write_tests(policy_dir, """
[[case]]
name = "merged"
request.subject.region = "fuzhou"
request.context.time = 2027-01-01T00:00:00Z
unset = ["subject.real_name_verified"]
expect.effect = "deny"
""")
    (case,) = load_suite(path).cases
    assert case.request["subject"] == {"id": "u-1042", "org_id": "fzu",
                                       "org_type": "university", "region": "fuzhou"}
    assert case.request["context"]["time"] == "2027-01-01T00:00:00+00:00"
    assert case.request["resource"]["tier"] == "conditional"
    assert case.expect.effect == "DENY"
    run = run_suites(load_policy_set(policy_dir), [load_suite(path)])
    assert run.results[0].decision.reasons[0].rule_id == "real-name-required"


def test_an_instant_without_offset_is_refused(policy_dir):
    path = write_tests(policy_dir, """
[[case]]
name = "local time"
request.context.time = 2027-01-01T00:00:00
expect.effect = "DENY"
""")
    with pytest.raises(TestFileError, match=r"case 1 'local time'.*no UTC offset"):
        load_suite(path)


def test_every_shipped_case_names_the_deciding_rule_or_the_refused_attributes():
    from tiergate.tooling.policytest import discover, load_suites

    cases = [c for s in load_suites(discover(POLICIES)) for c in s.cases]
    assert cases and all(c.expect.rules or c.expect.error for c in cases), \
        [c.name for c in cases if not (c.expect.rules or c.expect.error)]
    # ... and the why-not kinds the shipped rules can produce are all pinned by some case.
    kinds = {u if isinstance(u, str) else u.requirement
             for c in cases for u in (c.expect.unmet or [])}
    assert {"attribute", "grant_missing", "grant_expired", "grant_scope", "grant_approval"} <= kinds


# ---- coverage counts what a passing case checks, not what it touched ----------------------

def _shipped_suites():
    from tiergate.tooling.policytest import discover, load_suites

    return load_suites(discover(POLICIES))


def _shipped_sources() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8")
            for p in sorted(POLICIES.iterdir()) if p.suffix in (".policy", ".csv")}


def _block(text: str, keyword: str, name: str) -> tuple[int, int]:
    """Where `keyword name { ... }` starts and ends in `text` (a block has no nested braces)."""
    start = re.search(rf"^{keyword} {re.escape(name)} {{", text, re.M).start()
    return start, text.index("\n}", start) + 2


def _run_with(sources: dict[str, str]):
    from tiergate.engine import compile_sources

    return run_suites(compile_sources(sources), _shipped_suites())


def test_changing_any_rules_citation_fails_the_shipped_tests():
    sources = _shipped_sources()
    rules = load_policy_set(POLICIES).rules
    for rule in rules:
        name = next(n for n, t in sources.items()
                    if re.search(rf"^rule {re.escape(rule.id)} {{", t, re.M))
        start, end = _block(sources[name], "rule", rule.id)
        block = sources[name][start:end]
        changed = re.sub(r'cite "[^"]*"', 'cite "测试办法 第九十九条"', block, count=1)
        assert changed != block
        run = _run_with({**sources, name: sources[name][:start] + changed + sources[name][end:]})
        assert run.failed > 0, f"changing the citation of {rule.id} failed no case"


def test_deleting_any_grant_fails_the_shipped_tests():
    sources = _shipped_sources()
    for grant in load_policy_set(POLICIES).grants:
        start, end = _block(sources["grants.policy"], "grant", grant.id)
        text = sources["grants.policy"]
        run = _run_with({**sources, "grants.policy": text[:start] + text[end:]})
        assert run.failed > 0, f"deleting grant {grant.id} failed no case"


def test_a_case_that_only_visits_a_rule_or_a_grant_does_not_cover_it(policy_dir):
    path = write_tests(policy_dir, """
[[case]]
name = "permitted, but nothing about why is checked"
expect.effect = "PERMIT"
""")
    run = run_suites(load_policy_set(policy_dir), [load_suite(path)])
    assert run.passed == 1
    assert "conditional-with-approved-grant" in run.coverage.rules_missed
    assert "fz-2026-017" in run.coverage.grants_missed
    # Expecting the grant and the rule's own article pins both down.
    path = write_tests(policy_dir, """
[[case]]
name = "permitted, and why"
expect.effect = "PERMIT"
expect.grant_id = "fz-2026-017"
expect.citations = ["第十八条 第一款"]
""")
    run = run_suites(load_policy_set(policy_dir), [load_suite(path)])
    assert "conditional-with-approved-grant" in run.coverage.rules_exercised
    assert "fz-2026-017" in run.coverage.grants_exercised
