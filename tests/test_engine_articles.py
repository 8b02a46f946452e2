"""The reference policy set, article by article: the permit side and the deny side.

Each case starts from the contract's example request (a university analyst in the park
querying conditionally open medical-service data for research under grant fz-2026-017) and
changes what the article is about.
"""

from __future__ import annotations

import pytest

from conftest import make_request

PARK_UNIVERSITY = {}
OPEN_QUERY = dict(resource__tier="open", resource__id="ds-open-1")
GOVERNMENT = dict(subject__org_type="government_agency", subject__org_id="fz-health-bureau",
                  purpose="government_administration")
CLOSED_CDC = dict(subject__org_id="fj-cdc-institute", subject__org_type="research_institute",
                  resource__tier="closed", resource__catalog_class="public_health",
                  resource__id="ds-epidemic-2025", context__time="2026-12-01T09:00:00+08:00")

CASES = [
    # (article, what, request changes, effect, rule that must decide)
    ("福州办法 第十五条", "open data: anyone, directly",
     dict(OPEN_QUERY, subject__org_type="individual", subject__org_id=None, purpose="personal_use",
          subject__region="mainland"), "PERMIT", "open-data-direct"),
    ("福州办法 第十五条", "open data cannot be changed or shared onward by just anyone",
     dict(OPEN_QUERY, subject__org_type="individual", action="share", purpose="personal_use"),
     "DENY", "not-authorised"),
    ("福州办法 第十四条", "government agency shares conditionally open data",
     dict(GOVERNMENT, action="share"), "PERMIT", "government-sharing"),
    ("福州办法 第十四条", "government sharing is not for commercial purposes",
     dict(GOVERNMENT, purpose="commercial"), "DENY", "not-authorised"),
    ("福州办法 第十八条", "conditional data with an operator-approved grant and agreement",
     PARK_UNIVERSITY, "PERMIT", "conditional-with-approved-grant"),
    ("福州办法 第十八条", "conditional data without any grant",
     dict(subject__org_id="xmu"), "DENY", "not-authorised"),
    ("福州办法 第十五条", "conditional data: applicants only from the park",
     dict(subject__region="fuzhou"), "DENY", "conditional-in-park-only"),
    ("福州办法 第十五条", "conditional data: foreign enterprises may not apply",
     dict(subject__org_type="foreign_enterprise"), "DENY", "conditional-eligible-applicants"),
    ("福州办法 第十七条", "no use beyond the granted purpose",
     dict(purpose="education", action="download"), "DENY", "not-authorised"),
    ("福州办法 第十七条", "no use beyond the granted catalog classes",
     dict(resource__catalog_class="medical_insurance"), "DENY", "not-authorised"),
    ("福州办法 第十八条 第二款", "closed data with the consent of both authorities",
     CLOSED_CDC, "PERMIT", "closed-with-authority-consent"),
    ("福州办法 第十八条 第二款", "closed data lacking the health commission's consent",
     dict(resource__tier="closed", context__time="2026-12-01T09:00:00+08:00"),
     "DENY", "not-authorised"),
    ("福州办法 第十八条 第二款", "closed grant limited to its dataset",
     dict(CLOSED_CDC, resource__id="ds-other"), "DENY", "not-authorised"),
    ("福州办法 第十九条", "universities: research and education only",
     dict(purpose="commercial"), "DENY", "research-non-profit-only"),
    ("福州办法 第十九条", "personal case data with consent",
     dict(resource__personal=True, context__deidentified=False, context__consent=True),
     "PERMIT", "conditional-with-approved-grant"),
    ("福州办法 第十九条", "personal case data without consent or de-identification",
     dict(resource__personal=True, context__deidentified=False, context__consent=False),
     "DENY", "personal-data-needs-consent-or-deidentification"),
    ("福州办法 第十六条", "personal data is opened only de-identified",
     dict(OPEN_QUERY, resource__personal=True, context__deidentified=False, context__consent=True),
     "DENY", "open-data-deidentified-first"),
    ("福州办法 第十九条", "identifiable case data, even de-identified, needs an approved application",
     dict(OPEN_QUERY, resource__personal=True, context__deidentified=True),
     "DENY", "not-authorised"),
    ("福州办法 第十九条", "government use of identifiable case data needs a grant too",
     dict(GOVERNMENT, resource__personal=True, context__consent=True), "DENY", "not-authorised"),
    ("福州办法 第十四条", "regulators are 行政机关: they share catalogued data",
     dict(GOVERNMENT, subject__org_type="regulator"), "PERMIT", "government-sharing"),
    ("福州办法 第十四条", "sharing follows the catalog's marking",
     dict(GOVERNMENT, resource__id="ds-drug-2026"), "DENY", "not-authorised"),
    ("福州办法 第二十五条", "a requester overseas is providing data abroad: assessment first",
     dict(OPEN_QUERY, subject__region="overseas"), "DENY", "export-needs-security-assessment"),
    ("福州办法 第二十五条", "no storage on servers abroad, whatever else holds",
     dict(context__storage_region="overseas"), "DENY", "no-overseas-storage"),
    ("国家办法 数据存储", "export needs a security assessment",
     dict(OPEN_QUERY, action="export"), "DENY", "export-needs-security-assessment"),
    ("福州办法 第二十六条", "nobody deletes health data",
     dict(OPEN_QUERY, action="delete", subject__org_id="fz-hosp-1"), "DENY",
     "no-tampering-or-deletion"),
    ("福州办法 第二十六条", "updating someone else's data is tampering",
     dict(action="update"), "DENY", "no-tampering-or-deletion"),
    ("福州办法 第五条", "the producing unit maintains its own data",
     dict(action="update", subject__org_id="fz-hosp-1", subject__org_type="medical_institution"),
     "PERMIT", "owner-maintains-own-data"),
    ("国家办法 实名认证", "access requires real-name authentication",
     dict(subject__real_name_verified=False), "DENY", "real-name-required"),
    ("福州办法 第二十九条", "grant used before its expiry",
     dict(context__time="2027-06-29T23:59:59+08:00"), "PERMIT", "conditional-with-approved-grant"),
    ("福州办法 第二十九条", "grant no longer applies at its expiry",
     dict(context__time="2027-06-30T00:00:00+08:00"), "DENY", "not-authorised"),
    ("福州办法 第二十九条", "an expired grant is not renewed by using it",
     dict(resource__catalog_class="family_planning"), "DENY", "not-authorised"),
]


@pytest.mark.parametrize("article, what, changes, effect, rule", CASES,
                         ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_article(policy, article, what, changes, effect, rule):
    decision = policy.decide(make_request(**changes))
    assert decision.effect == effect, [r.rule_id for r in decision.reasons]
    deciding = {r.rule_id: r for r in decision.reasons}
    assert rule in deciding
    assert all(r.effect == effect for r in decision.reasons)
    assert deciding[rule].citation and deciding[rule].message_zh and deciding[rule].message_en


def test_deny_overrides_every_permit(policy):
    # The grant would permit; overseas storage and a missing real-name check both deny.
    decision = policy.decide(make_request(context__storage_region="overseas",
                                          subject__real_name_verified=False))
    assert decision.effect == "DENY"
    assert [r.rule_id for r in decision.reasons] == ["no-overseas-storage", "real-name-required"]
    assert decision.grant_id is None and decision.obligations == ()


def test_obligations_merge_from_every_applicable_rule(policy):
    decision = policy.decide(make_request(action="analyze", resource__personal=True,
                                          context__deidentified=True))
    ids = [o.id for o in decision.obligations]
    # 第二十九条 destroy at the grant's expiry, 第二十七条 audit, 第二十三条 minimal extraction,
    # 第二十九条 controlled environment, 第二十条 cite source, 第十九条 non-commercial, de-identify.
    assert set(ids) == {"destroy_on_expiry", "audit", "minimal_extraction",
                        "controlled_environment", "cite_source", "non_commercial_use",
                        "deidentify"}
    assert len(ids) == len(set(ids))
    destroy = next(o for o in decision.obligations if o.id == "destroy_on_expiry")
    assert destroy.params == {"at": "2027-06-30T00:00:00+08:00"}
    assert decision.grant_id == "fz-2026-017"


def test_open_data_carries_audit_but_not_grant_obligations(policy):
    decision = policy.decide(make_request(**OPEN_QUERY, subject__org_type="individual",
                                          purpose="personal_use"))
    assert [o.id for o in decision.obligations] == ["audit"]
    assert decision.grant_id is None


def test_latest_expiring_grant_is_bound(policy):
    from tiergate.engine import compile_sources
    sources = dict(policy.sources)
    sources["extra.policy"] = """
grant fz-2026-099 {
  grantee fzu  tier conditional  catalog medical_service  purpose scientific_research
  action query  approved_by data_operator  agreement "FZ-2026-099"
  expires 2028-01-01T00:00:00+08:00
}"""
    decision = compile_sources(sources).decide(make_request())
    assert decision.grant_id == "fz-2026-099"
    destroy = next(o for o in decision.obligations if o.id == "destroy_on_expiry")
    assert destroy.params["at"] == "2028-01-01T00:00:00+08:00"


def test_policy_revision_is_a_content_hash(shipped_policy, tmp_path):
    from conftest import POLICIES
    from tiergate.engine import load_policy_set
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in [*POLICIES.glob("*.policy"), *POLICIES.glob("*.catalog.csv")]:
        (copy / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_policy_set(copy).revision == shipped_policy.revision
    (copy / "grants.policy").write_text(
        (copy / "grants.policy").read_text(encoding="utf-8") + "\n# 备注\n", encoding="utf-8")
    assert load_policy_set(copy).revision != shipped_policy.revision
    assert shipped_policy.decide(make_request()).policy_revision == shipped_policy.revision
    # The catalog data file is part of what was reviewed: a change to it is a new revision.
    (copy / "grants.policy").write_text(
        (POLICIES / "grants.policy").read_text(encoding="utf-8"), encoding="utf-8")
    data = copy / "open-data.catalog.csv"
    data.write_text(data.read_text(encoding="utf-8").replace(",open,false,", ",open,true,", 1),
                    encoding="utf-8")
    assert load_policy_set(copy).revision != shipped_policy.revision


def test_decision_ids_are_unique(policy):
    ids = {policy.decide(make_request()).decision_id for _ in range(1000)}
    assert len(ids) == 1000
