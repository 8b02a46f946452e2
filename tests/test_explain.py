"""Explanations: same decision as decide, conditions with their values, grants and why not."""

from __future__ import annotations

import itertools
import json

import pytest

from tiergate.cli.main import main
from tiergate.engine import compile_sources
from tiergate.tooling.explain_text import render_explanation

from conftest import POLICIES, as_stated_sources, make_request

VARIATIONS = {
    "resource__tier": ["open", "conditional", "closed"],
    "subject__org_type": ["university", "government_agency", "foreign_enterprise",
                          "research_institute"],
    "subject__region": ["southeast_park", "fuzhou"],
    "action": ["query", "download", "export", "update"],
    "purpose": ["scientific_research", "commercial", "government_administration"],
    "resource__personal": [False, True],
    "context__time": ["2026-11-22T10:00:00+08:00", "2027-07-01T10:00:00+08:00"],
}

NAMED = {
    "grant-bound permit": make_request(),
    "closed with three approvals": make_request(
        subject__org_id="fj-cdc-institute", subject__org_type="research_institute",
        resource__tier="closed", resource__catalog_class="public_health",
        resource__id="ds-epidemic-2025"),
    "expired grant": make_request(resource__catalog_class="family_planning"),
    "default deny, no org": make_request(subject__org_id=None, resource__tier="closed"),
    "deny overrides": make_request(context__storage_region="overseas"),
    "open without grant": make_request(resource__tier="open", action="copy"),
}


def _by_id(entries, key):
    return {e[key]: e for e in entries}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_explain_gives_the_same_decision_as_decide(policy, name):
    plain = policy.decide(NAMED[name])
    explained = policy.decide(NAMED[name], explain=True)
    assert (explained.effect, explained.grant_id, explained.reasons, explained.obligations) == \
        (plain.effect, plain.grant_id, plain.reasons, plain.obligations)
    assert explained.to_dict()["explanation"]["effect"] == plain.effect
    assert json.loads(json.dumps(explained.to_dict()))["explanation"]["effect"] == plain.effect


def test_explanation_agrees_with_decide_across_many_requests(policy):
    keys = list(VARIATIONS)
    for combo in itertools.product(*VARIATIONS.values()):
        request = make_request(**dict(zip(keys, combo)))
        plain = policy.decide(request)
        e = policy.decide(request, explain=True).to_dict()["explanation"]
        assert e["effect"] == plain.effect and e["grant_id"] == plain.grant_id, request
        rules = e["rules"]
        reasons = {r.rule_id for r in plain.reasons}
        assert {r["rule_id"] for r in rules if r["decided"]} == reasons
        # The tree keeps every rule that can apply: nothing applies outside the leaf.
        assert not [r for r in rules if r["applies"] and not r["considered"]], request
        applying_denies = {r["rule_id"] for r in rules
                           if r["effect"] == "deny" and r["applies"] and not r["fallback"]}
        if applying_denies:
            assert plain.effect == "DENY" and applying_denies == reasons
        elif plain.effect == "PERMIT":
            assert {r["rule_id"] for r in rules if r["effect"] == "permit" and r["applies"]} \
                == reasons
        else:
            assert not [r for r in rules if r["effect"] == "permit" and r["applies"]]
        bound = [g["grant_id"] for g in e["grants"] if g["bound"]]
        assert bound == ([plain.grant_id] if plain.grant_id else [])


def test_conditions_show_their_values_for_a_known_request(policy):
    e = policy.decide(make_request(), explain=True).to_dict()["explanation"]
    assert [p["attribute"] for p in e["tree"]["path"]][0] == "resource.tier"
    assert e["tree"]["path"][0]["value"] == "conditional"
    rule = _by_id(e["rules"], "rule_id")["conditional-with-approved-grant"]
    assert rule["considered"] and rule["applies"] and rule["decided"]
    assert rule["grant_id"] == "fz-2026-017"
    shown = [(c["text"], c["holds"], c["values"]) for c in rule["conditions"]]
    assert shown == [
        ("resource.tier == conditional", True, {"resource.tier": "conditional"}),
        ("subject.org_type in [domestic_enterprise, university, research_institute]", True,
         {"subject.org_type": "university"}),
        ("subject.region == southeast_park", True, {"subject.region": "southeast_park"}),
        ("grant.approved_by has data_operator", True, {"grant.approved_by": ["data_operator"]}),
    ]
    tamper = _by_id(e["rules"], "rule_id")["no-tampering-or-deletion"]
    (condition,) = tamper["conditions"]
    assert condition["text"] == ("action == delete or (action == update and "
                                 "resource.owner_org_id != subject.org_id)")
    assert condition["holds"] is False
    assert condition["values"] == {"action": "query", "resource.owner_org_id": "fz-hosp-1",
                                   "subject.org_id": "fzu"}
    assert [p["holds"] for p in condition["parts"]] == [False, False]
    consent = _by_id(e["rules"], "rule_id")["personal-data-needs-consent-or-deidentification"]
    assert [(c["text"], c["holds"]) for c in consent["conditions"]] == [
        ("resource.personal", False), ("not context.consent", True),
        ("not context.deidentified", False)]
    assert e["time"] == "2026-11-22T10:00:00+08:00"


def test_grants_say_why_they_do_not_apply(policy):
    e = policy.decide(make_request(resource__tier="closed"), explain=True).to_dict()["explanation"]
    assert e["effect"] == "DENY" and e["citations"][0]["rule_id"] == "not-authorised"
    grants = _by_id(e["grants"], "grant_id")
    assert set(grants) == {"fz-2026-017", "fz-2026-031", "fz-2025-009"}  # fzu's grants only
    lacking = grants["fz-2026-031"]
    assert lacking["in_scope"] and not lacking["applies"]
    (why,) = lacking["why_not"]
    assert why["code"] == "lacking_approvals" and why["missing"] == ["health_commission"]
    assert why["rule_id"] == "closed-with-authority-consent"
    assert "health_commission" in why["en"] and "health_commission" in why["zh"]
    assert [w["code"] for w in grants["fz-2026-017"]["why_not"]] == ["tier_out_of_scope"]
    expired = _by_id(policy.decide(make_request(resource__catalog_class="family_planning"),
                                   explain=True).to_dict()["explanation"]["grants"], "grant_id")["fz-2025-009"]
    assert [w["code"] for w in expired["why_not"]] == ["expired"]
    assert "2026-06-30T00:00:00+08:00" in expired["why_not"][0]["en"]


def test_obligations_name_the_rules_that_added_them(policy):
    e = policy.decide(make_request(), explain=True).to_dict()["explanation"]
    sources = {o["id"]: o["rules"] for o in e["obligations"]}
    assert sources["destroy_on_expiry"] == ["conditional-with-approved-grant"]
    assert sources["audit"] == ["audit-every-operation"]
    denied = policy.decide(make_request(subject__region="fuzhou"), explain=True).to_dict()["explanation"]
    audit = _by_id(denied["rules"], "rule_id")["audit-every-operation"]
    assert audit["applies"] and audit["obligations_added"] == []


def test_time_conditions_read_as_written():
    sources = as_stated_sources()
    sources["pilot.policy"] = """
rule pilot-window {
  cite "试点"
  message zh "试点期内开放" en "Open during the pilot"
  permit when resource.tier == closed and context.time >= 2026-01-01T00:00:00+08:00
          and context.time < 2027-06-30T00:00:00+08:00 and grant.expires > context.time
          and grant.approved_by has any [digital_office, health_commission]
}
"""
    policy = compile_sources(sources)
    e = policy.decide(make_request(resource__tier="closed"), explain=True).to_dict()["explanation"]
    rule = _by_id(e["rules"], "rule_id")["pilot-window"]
    texts = [c["text"] for c in rule["conditions"]]
    assert texts == [
        "resource.tier == closed",
        "context.time >= 2026-01-01T00:00:00+08:00",
        "context.time < 2027-06-30T00:00:00+08:00",
        "context.time < grant.expires",
        "grant.approved_by has any [digital_office, health_commission]",
    ]
    assert rule["applies"] and rule["grant_id"] == "fz-2026-031"
    assert rule["conditions"][3]["values"] == {"context.time": "2026-11-22T10:00:00+08:00",
                                               "grant.expires": "2027-06-30T00:00:00+08:00"}


def test_text_rendering_speaks_both_languages(policy):
    e = policy.decide(make_request(subject__region="fuzhou"), explain=True).to_dict()["explanation"]
    both = render_explanation(e, "both", verbose=True)
    assert "决策树路径" in both and "Path through the decision tree" in both
    assert "拒绝" in both and "DENY" in both
    assert "conditional-in-park-only" in both and "福州办法 第十五条" in both
    assert "✗ subject.region != southeast_park" not in both  # it holds, so it is ticked
    assert "✓ subject.region != southeast_park" in both
    assert "申请授权开放的数据使用单位暂限于中国东南大数据产业园范围内" in both
    assert "must for now be located in the China Southeast Big Data Industrial Park" in both
    english = render_explanation(e, "en", verbose=True)
    assert "Path through the decision tree" in english and "决策树路径" not in english
    chinese = render_explanation(e, "zh", verbose=True)
    assert "决策树路径" in chinese and "Path through the decision tree" not in chinese


def test_cli_explain(tmp_path, capsys):
    request = tmp_path / "request.json"
    closed = make_request(resource__id="ds-emr-2025", context__consent=True)
    request.write_text(json.dumps(closed), encoding="utf-8")
    assert main(["explain", str(POLICIES), str(request), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "fz-2026-031" in out and "health_commission" in out and "not-authorised" in out
    assert main(["explain", str(POLICIES), str(request), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["effect"] == "DENY" and document["explanation"]["effect"] == "DENY"
    request.write_text(json.dumps(make_request(action="destroy")), encoding="utf-8")
    assert main(["explain", str(POLICIES), str(request)]) == 1
    assert "action 'destroy'" in capsys.readouterr().err


def plain(request: dict, lang: str, *, verbose: bool = False) -> str:
    from tiergate.engine import load_policy_set

    decision = load_policy_set(POLICIES).decide(request, explain=True)
    return render_explanation(decision.explanation, lang, verbose=verbose)


def opening(text: str) -> list[str]:
    return text.split("\n\n", 1)[0].splitlines()


def test_explain_opens_with_a_few_plain_lines_for_a_permit():
    lines = opening(plain(make_request(), "en"))
    assert 2 <= len(lines) <= 5
    assert lines[0].startswith("Permitted: Conditionally open data may be used")
    assert "grant fz-2026-017" in lines[1] and "2027-06-30" in lines[1] and "renewed" in lines[1]
    assert lines[-1].startswith("Articles: 福州办法 第十五条")
    zh = opening(plain(make_request(), "zh"))
    assert zh[0].startswith("许可：") and not any("Permitted" in line for line in zh)


def test_a_deny_says_what_would_have_to_differ_without_a_double_negative():
    out = plain(make_request(subject__real_name_verified=False), "en")
    lines = opening(out)
    assert lines[0] == ("Denied: Access to the platform requires real-name authentication "
                        "(rule real-name-required).")
    assert lines[1] == "Why: real-name verified: no. The answer changes only if this changes."
    assert "not subject.real_name_verified" not in out  # the details wait for --verbose
    verbose = plain(make_request(subject__real_name_verified=False), "en", verbose=True)
    assert "Path through the decision tree" in verbose
    assert "✓ real-name verified: no" in verbose
    assert "✗ not subject.real_name_verified" not in verbose


def test_a_default_deny_names_the_grant_that_would_have_to_exist():
    lines = opening(plain(make_request(subject__org_id="xmu"), "en"))
    assert lines[0].startswith("Denied: no rule permits this request.")
    assert ("The closest permit, rule conditional-with-approved-grant, is missing this: no grant "
            "of xmu covers medical_service / conditional") in lines[1]
    assert "福州办法 第十八条 第一款" in lines[1]


def test_an_expired_grant_is_named_as_the_one_to_renew():
    later = make_request(subject__org_id="fzu", context__time="2027-07-01T10:00:00+08:00")
    lines = opening(plain(later, "en"))
    assert lines[0].startswith("Denied: no rule permits this request.")
    assert "fz-2026-017" in lines[1] and "expired" in lines[1]
