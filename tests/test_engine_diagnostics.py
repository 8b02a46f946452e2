"""Errors a compliance officer can act on: where, what, and what to do; loading all or nothing."""

from __future__ import annotations

import pytest

from conftest import POLICIES
from tiergate.engine import DiagnosticError, compile_sources
from tiergate.diagnostics import render_human

VOCABULARY = (POLICIES / "vocabulary.policy").read_text(encoding="utf-8")

RULE = """rule r1 {
  cite "福州办法 第十八条"
  message zh "中文" en "English"
  permit when resource.tier == conditional
}
"""


def errors_of(text: str, **more: str):
    sources = {"vocabulary.policy": VOCABULARY, "rules.policy": text, **more}
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    return caught.value.diagnostics, render_human(caught.value.diagnostics, sources)


def test_syntax_error_points_at_line_and_column_with_a_caret():
    diagnostics, text = errors_of(RULE.replace("permit when", "permt when"))
    (d,) = diagnostics
    assert (d.span.file, d.span.line, d.span.column) == ("rules.policy", 4, 3)
    assert "rules.policy:4:3" in text
    assert "    4 |   permt when resource.tier == conditional" in text
    assert "      |   ^^^^^" in text
    assert d.help == "did you mean permit?"


def test_undeclared_value_suggests_the_declared_one():
    (d,), _ = errors_of(RULE.replace("resource.tier == conditional",
                                     "resource.catalog_class == medical_servce"))
    assert d.code == "TG212"
    assert "'medical_servce' is not a declared value of resource.catalog_class" in d.message
    assert d.help == "did you mean medical_service?"
    assert (d.span.line, d.span.column) == (4, 41)


def test_unknown_attribute_suggests_the_right_name():
    (d,), _ = errors_of(RULE.replace("resource.tier", "resource.teir"))
    assert d.code == "TG210" and d.help == "did you mean resource.tier?"


def test_caret_lines_up_under_chinese_text():
    text = RULE.replace('message zh "中文" en "English"', 'message zh "中文" fr "法语"')
    _, rendered = errors_of(text)
    source_line = next(l for l in rendered.splitlines() if "fr" in l and "|" in l)
    caret_line = rendered.splitlines()[rendered.splitlines().index(source_line) + 1]
    # "中文" is four cells wide in a terminal; the caret must sit under `fr`.
    assert caret_line.index("^") == source_line.index("fr") + 2


def test_duplicate_rule_and_grant_ids_are_reported_with_both_places():
    grant = """grant g1 { grantee fzu tier open catalog basic_info purpose education action query
  approved_by data_operator agreement "A" expires 2027-01-01T00:00:00+08:00 }\n"""
    diagnostics, _ = errors_of(RULE + RULE, **{"grants.policy": grant + grant})
    codes = sorted(d.code for d in diagnostics)
    assert codes == ["TG220", "TG230"]
    assert all("first at" in d.message for d in diagnostics)


def test_grant_naming_an_undeclared_class_is_reported():
    grant = """grant g1 {
  grantee fzu  tier conditional  catalog genomics, medical_service
  purpose education  action query  approved_by data_operator
  agreement "A"  expires 2027-01-01T00:00:00+08:00
}"""
    (d,), _ = errors_of(RULE, **{"grants.policy": grant})
    assert d.code == "TG233" and "'genomics' is not a declared resource.catalog_class" in d.message
    assert d.owner == "g1" and (d.span.line, d.span.column) == (2, 42)


def test_condition_that_can_never_hold_is_reported():
    (d,), _ = errors_of(RULE.replace(
        "resource.tier == conditional",
        "resource.tier == conditional and resource.tier == open"))
    assert d.code == "TG226" and d.owner == "r1"


def test_contradicting_time_bounds_can_never_hold():
    (d,), _ = errors_of(RULE.replace(
        "resource.tier == conditional",
        "context.time < 2026-01-01T00:00:00+08:00 and context.time >= 2026-01-01T00:00:00+08:00"))
    assert d.code == "TG226"


def test_instant_without_offset_says_how_to_write_one():
    grant = """grant g1 { grantee fzu tier open catalog basic_info purpose education action query
  approved_by data_operator agreement "A" expires 2027-06-30 }"""
    (d,), _ = errors_of(RULE, **{"grants.policy": grant})
    assert d.code == "TG215" and "not RFC 3339" in d.message
    assert "+08:00" in d.help


def test_every_error_in_the_set_is_reported_at_once_sorted_by_position():
    broken = RULE.replace("conditional", "conditionl") + RULE.replace("r1", "r2").replace(
        'cite "福州办法 第十八条"\n', "")
    diagnostics, _ = errors_of(broken)
    assert [d.code for d in diagnostics] == ["TG212", "TG221"]
    assert diagnostics[0].span.line < diagnostics[1].span.line


def test_rule_must_cite_and_speak_both_languages():
    diagnostics, _ = errors_of('rule r { permit when action == query }\n')
    assert sorted(d.code for d in diagnostics) == ["TG221", "TG222", "TG222"]


def test_deny_rules_cannot_lean_on_grants():
    (d,), _ = errors_of(RULE.replace("permit when resource.tier == conditional",
                                     "deny when grant.approved_by has data_operator"))
    assert d.code == "TG214"


def test_missing_vocabulary_is_reported():
    with pytest.raises(DiagnosticError) as caught:
        compile_sources({"rules.policy": RULE})
    assert {d.code for d in caught.value.diagnostics} >= {"TG203"}


def test_chinese_in_comments_and_strings_parses():
    text = "# 授权开放类 规则\n" + RULE.replace('"中文"', '"授权开放类数据 \\"须\\" 审批"')
    policy = compile_sources({"vocabulary.policy": VOCABULARY, "r.policy": text})
    assert policy.rules[0].message_zh == '授权开放类数据 "须" 审批'


def test_loading_is_all_or_nothing(tmp_path):
    from tiergate.engine import load_policy_set
    for f in POLICIES.glob("*.policy"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_policy_set(tmp_path).rules
    (tmp_path / "zz-broken.policy").write_text("rule x {", encoding="utf-8")
    with pytest.raises(DiagnosticError) as caught:
        load_policy_set(tmp_path)
    assert caught.value.diagnostics[0].span.file.endswith("zz-broken.policy")
