"""`tiergate lint`: each finding on a policy set built for it, the shipped set, the matrix."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import POLICIES, instant, make_request
from tiergate.cli import lint as lint_cli
from tiergate.engine import compile_sources
from tiergate.tooling.lint import lint_policy
from tiergate.tooling.matrix import owner_only

VOCABULARY = (POLICIES / "vocabulary.policy").read_text(encoding="utf-8")
NOW = instant("2026-11-22T10:00:00+08:00")


def rule(name: str, body: str) -> str:
    return f'rule {name} {{\n  cite "测试 第一条"\n  message zh "测试" en "test"\n  {body}\n}}\n'


def grant(name: str, *, tier="conditional", catalog="medical_service", action="query",
          approved="data_operator", expires="2027-06-30T00:00:00+08:00") -> str:
    return (f"grant {name} {{\n  grantee fzu\n  tier {tier}\n  catalog {catalog}\n"
            f"  purpose scientific_research\n  action {action}\n  approved_by {approved}\n"
            f'  agreement "{name}"\n  expires {expires}\n}}\n')


GRANT_RULE = rule("with-grant", "permit when resource.tier == conditional "
                  "and grant.approved_by has data_operator")


def lint(*texts: str, now: int = NOW, days: int = 30):
    policy = compile_sources({"vocabulary.policy": VOCABULARY, "test.policy": "\n".join(texts)})
    return lint_policy(policy, now=now, expiring_days=days)


def codes(result) -> dict[str, str]:
    """{owner: code} of every finding."""
    return {d.owner: d.code for d in result.diagnostics}


def test_a_clean_set_has_no_findings():
    result = lint(rule("open", "permit when resource.tier == open"), GRANT_RULE, grant("g-1"))
    assert result.diagnostics == ()


def test_a_catalogued_dataset_no_rule_can_permit_is_reported():
    datasets = """
dataset ds-open { catalog basic_info tier open }
dataset ds-closed { catalog basic_info tier closed }
dataset ds-conditional { catalog medical_service tier conditional }
"""
    result = lint(rule("open", "permit when resource.tier == open"), GRANT_RULE, datasets)
    findings = {d.owner: d for d in result.diagnostics if d.code == "TG513"}
    # Open data is permitted directly, conditional data with a grant (present or not):
    # only the closed dataset can never be permitted.
    assert set(findings) == {"ds-closed"}
    assert findings["ds-closed"].severity == "warning"
    assert findings["ds-closed"].span.line == 15  # its own line, after the two rules


def test_permit_rule_always_overridden_by_a_deny_is_shadowed():
    result = lint(rule("read", "permit when action == query and resource.tier == open"),
                  rule("no-read", "deny when action in [query, copy]"),
                  rule("other", "permit when action == download"))
    finding = next(d for d in result.diagnostics if d.owner == "read")
    assert (finding.code, finding.severity) == ("TG501", "error")
    assert "no-read" in finding.message
    assert finding.span.file == "test.policy" and finding.span.line == 1
    assert "other" not in codes(result)


def test_a_deny_with_a_residual_test_does_not_shadow():
    result = lint(rule("read", "permit when action == query"),
                  rule("no-read-for-x", 'deny when action == query and subject.org_id == "x"'))
    assert result.diagnostics == ()


def test_permit_rule_whose_grant_conditions_contradict():
    result = lint(rule("never", "permit when resource.tier == closed "
                       "and grant.approved_by has data_operator "
                       "and not grant.approved_by has any [data_operator, digital_office]"))
    assert codes(result)["never"] == "TG502"


def test_on_permit_rule_that_can_never_fire():
    result = lint(rule("read", "permit when action == query"),
                  rule("on-delete", "on permit when action == delete\n  oblige audit"),
                  rule("on-read", "on permit when action == query\n  oblige audit"))
    assert codes(result).get("on-delete") == "TG503"
    assert "on-read" not in codes(result)


def test_grant_rule_no_present_grant_satisfies_is_a_warning():
    result = lint(rule("closed", "permit when resource.tier == closed "
                       "and grant.approved_by has all [data_operator, health_commission]"),
                  grant("g-1", tier="closed"))
    found = {d.owner: d for d in result.diagnostics}
    assert (found["closed"].code, found["closed"].severity) == ("TG504", "warning")
    assert found["g-1"].code == "TG511"
    assert "health_commission" in found["g-1"].message


def test_grant_scope_outside_every_permit_rule():
    result = lint(GRANT_RULE, grant("g-1"), grant("g-open", tier="open"))
    finding = next(d for d in result.diagnostics if d.owner == "g-open")
    assert finding.code == "TG511" and "no permit rule" in finding.message
    assert "g-1" not in codes(result)


def test_grant_scope_that_is_always_denied():
    result = lint(GRANT_RULE, grant("g-1"), grant("g-down", action="download"),
                  rule("no-download", "deny when action == download"))
    finding = next(d for d in result.diagnostics if d.owner == "g-down")
    assert finding.code == "TG511" and "no-download" in finding.message


def test_expired_and_expiring_grants():
    result = lint(GRANT_RULE, grant("old", expires="2026-01-01T00:00:00+08:00"),
                  grant("soon", expires="2026-12-10T00:00:00+08:00"),
                  grant("later", expires="2027-12-10T00:00:00+08:00"))
    assert codes(result) == {"old": "TG510", "soon": "TG512"}
    soon = next(d for d in result.diagnostics if d.owner == "soon")
    assert "in 18 days" in soon.message and "第二十九条" in soon.help
    assert codes(lint(GRANT_RULE, grant("soon", expires="2026-12-10T00:00:00+08:00"),
                      days=10)) == {}


# ---- the shipped policy set -------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(policy):
    return lint_policy(policy, now=NOW)


def test_shipped_findings(shipped):
    assert codes(shipped) == {"fz-2026-031": "TG511", "fz-2025-009": "TG510"}
    assert shipped.errors == 0
    unusable = next(d for d in shipped.diagnostics if d.owner == "fz-2026-031")
    assert "closed-with-authority-consent" in unusable.message
    assert "health_commission" in unusable.message
    uses = {g.id: g for g in shipped.grants}
    assert uses["fz-2026-017"].usable and uses["fz-2026-017"].rules == ("conditional-with-approved-grant",)
    assert set(uses["fz-2026-017"].org_types) == {"domestic_enterprise", "university",
                                                  "research_institute"}
    assert not uses["fz-2026-031"].usable


def test_shipped_expiring_within_sixty_days(policy):
    result = lint_policy(policy, now=NOW, expiring_days=60)
    assert codes(result)["fz-2026-021"] == "TG512"


def test_matrix_shape_and_known_cells(shipped):
    matrix = shipped.matrix
    assert len(matrix.cells) == len(matrix.classes) * len(matrix.tiers) * len(matrix.org_types)
    assert (len(matrix.classes), len(matrix.tiers), len(matrix.org_types)) == (8, 3, 12)
    for org in matrix.org_types:
        for catalog_class in matrix.classes:
            assert matrix.cell(catalog_class, "open", org).without_grant
    foreign = matrix.cell("medical_service", "conditional", "foreign_enterprise")
    # Only the owner maintaining its own data is permitted: not a cell open to the org type.
    assert foreign.mark == "o" and foreign.permitted_by == ("owner-maintains-own-data",)
    assert not foreign.permitted and foreign.owner_only
    assert foreign.denied_by(matrix.fallback) == ("conditional-eligible-applicants",)
    assert foreign.shares[0] == ("conditional-eligible-applicants", 1.0)
    fzu = matrix.cell("medical_service", "conditional", "university")
    assert fzu.mark == "G" and fzu.grants == ("fz-2026-017",)
    assert matrix.cell("public_health", "closed", "research_institute").grants == ("fz-2026-030",)
    basic = matrix.cell("basic_info", "closed", "research_institute")
    assert basic.with_some_grant and not basic.with_present_grant and not basic.unconditional
    assert matrix.cell("basic_info", "conditional", "government_agency").mark == "P"


ORG_TYPES = ["government_agency", "public_institution", "social_group", "medical_institution",
             "domestic_enterprise", "foreign_enterprise", "university", "research_institute",
             "individual", "data_operator", "tech_service", "regulator"]


@settings(max_examples=150, deadline=None)
@given(org_id=st.sampled_from(["fzu", "fj-cdc-institute", "mindray-health", "other"]),
       org_type=st.sampled_from(ORG_TYPES),
       tier=st.sampled_from(["open", "conditional", "closed"]),
       catalog_class=st.sampled_from(["public_health", "medical_service", "drug_management",
                                      "family_planning", "basic_info"]),
       action=st.sampled_from(["query", "analyze", "download", "update"]),
       purpose=st.sampled_from(["scientific_research", "commercial", "public_health"]),
       dataset=st.sampled_from(["ds-epidemic-2025", "ds-x"]))
def test_matrix_agrees_with_decisions(policy, shipped, org_id, org_type, tier, catalog_class,
                                      action, purpose, dataset):
    """A permitted request never falls in a cell the matrix says is always denied."""
    listed = policy.catalog.datasets.get(dataset)
    if listed is not None:  # a catalogued dataset is decided on the catalog's tier and class
        tier, catalog_class = listed.tier, listed.catalog_class
    request = make_request(subject__org_id=org_id, subject__org_type=org_type,
                           resource__tier=tier, resource__catalog_class=catalog_class,
                           resource__id=dataset, action=action, purpose=purpose)
    decision = policy.decide(request)
    cell = shipped.matrix.cell(catalog_class, tier, org_type)
    rules = {rule.id: rule for rule in policy.rules}
    if decision.effect == "PERMIT" and all(owner_only(rules[r.rule_id]) for r in decision.reasons):
        # Permitted only because the requester owns the data: the cell says so apart.
        assert cell.permitted or cell.owner_only
    elif decision.effect == "PERMIT":
        assert cell.permitted
        if decision.grant_id:
            assert decision.grant_id in cell.grants


# ---- the command ------------------------------------------------------------------------


def run_lint(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    lint_cli.register(parser.add_subparsers())
    args = parser.parse_args(["lint", *argv])
    return args.run(args)


def test_cli_text_and_exit_codes(capsys):
    assert run_lint(str(POLICIES), "--now", "2026-11-22T10:00:00+08:00") == 0
    out = capsys.readouterr().out
    assert "grants.policy:39:1: warning[TG511]" in out and "[TG510]" in out
    assert "coverage matrix" in out and "conditional × foreign_enterprise: every class" in out
    assert run_lint(str(POLICIES), "--now", "2026-11-22T10:00:00+08:00", "--strict") == 2


def test_cli_json(capsys):
    assert run_lint(str(POLICIES), "--now", "2026-11-22T10:00:00+08:00", "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert {f["owner"] for f in document["findings"]} == {"fz-2026-031", "fz-2025-009"}
    assert document["findings"][0]["file"].endswith(".policy")
    assert len(document["matrix"]["cells"]) == 288


def test_cli_errors_exit_two_and_bad_policy_exits_one(tmp_path, capsys):
    (tmp_path / "vocabulary.policy").write_text(VOCABULARY, encoding="utf-8")
    (tmp_path / "rules.policy").write_text(
        rule("read", "permit when action == query") + rule("no-read", "deny when action == query"),
        encoding="utf-8")
    assert run_lint(str(tmp_path), "--no-matrix") == 2
    assert "TG501" in capsys.readouterr().out
    (tmp_path / "rules.policy").write_text("rule {", encoding="utf-8")
    assert run_lint(str(tmp_path)) == 1


def test_matrix_marks_on_a_small_set():
    result = lint(rule("open", "permit when resource.tier == open"),
                  rule("owner", "permit when action == update "
                       "and resource.owner_org_id == subject.org_id"),
                  GRANT_RULE, grant("g-1"),
                  rule("closed-off", "deny when resource.tier == closed"))
    matrix = result.matrix
    assert matrix.cell("basic_info", "open", "individual").mark == "P"
    assert matrix.cell("medical_service", "conditional", "individual").mark == "G"
    assert matrix.cell("basic_info", "conditional", "individual").mark == "o"  # owners only
    timed = lint(rule("until-2027", "permit when resource.tier == conditional "
                      "and context.time < 2027-01-01T00:00:00+08:00")).matrix
    assert timed.cell("basic_info", "conditional", "individual").mark == "p"  # a time test
    closed = matrix.cell("basic_info", "closed", "individual")
    assert closed.mark == "·" and closed.denied_throughout_by == ("closed-off",)
    assert closed.denied_by(matrix.fallback) == ("closed-off",)
    grant_only = lint(GRANT_RULE).matrix.cell("basic_info", "conditional", "university")
    assert grant_only.mark == "g"
