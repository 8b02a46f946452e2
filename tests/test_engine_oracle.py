"""The compiled decision tree agrees with the plain rule-by-rule evaluator.

Two properties: (1) the reference policy set plus a few dozen generated grants, on requests
drawn from the whole declared vocabulary, with times at and around every grant expiry written
in many UTC offsets; (2) generated rule sets over the same vocabulary, so the normal-form
rewriting and the tree's branching meet conditions nobody wrote by hand.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import POLICIES, as_stated_sources, load_policy_set
from reference_evaluator import decide_or_error, reference_decide, summarise
from tiergate.engine import compile_sources
from tiergate.engine.load import read_policy_sources
from tiergate.engine.timeutil import format_instant, parse_instant

SOURCES = read_policy_sources(POLICIES)
CATALOG = load_policy_set(POLICIES).checked.catalog.datasets
ORGS = ["fzu", "mindray-health", "fj-cdc-institute", "org-a", "org-b", "org-c", ""]
DATASETS = sorted(CATALOG)
NOW = parse_instant("2026-11-22T10:00:00+08:00")


def _generated_grants(seed: int = 7, count: int = 40) -> str:
    """Grants over several orgs with expiries clustered around NOW, some sharing instants."""
    rng = random.Random(seed)
    tiers, classes = ["open", "conditional", "closed"], ["medical_service", "public_health",
                                                        "drug_management", "basic_info"]
    purposes = ["scientific_research", "education", "commercial", "public_health"]
    actions = ["query", "analyze", "download", "copy", "share"]
    approvers = ["data_operator", "digital_office", "health_commission"]
    offsets = ["+08:00", "Z", "-05:00", "+05:45"]
    texts = []
    for i in range(count):
        expires = NOW + rng.choice([-1, 1]) * rng.randrange(0, 400) * 86_400_000_000 // 10
        when = datetime.fromtimestamp(expires / 1e6, timezone.utc).replace(microsecond=0)
        offset = rng.choice(offsets)
        shown = when.astimezone(datetime.fromisoformat("2000-01-01T00:00:00" + offset).tzinfo)
        grant_tiers, grant_classes = rng.sample(tiers, rng.randint(1, 2)), rng.sample(classes, rng.randint(1, 3))
        # A grant may only name catalogued datasets its tier and catalog cover (TG245, TG246).
        coverable = [d for d in DATASETS
                     if CATALOG[d].tier in grant_tiers and CATALOG[d].catalog_class in grant_classes]
        dataset = f"\n  dataset {rng.choice(coverable)}" if coverable and rng.random() < 0.5 else ""
        texts.append(
            f"grant gen-{i} {{\n  grantee {rng.choice(ORGS[:-1])}\n"
            f"  tier {', '.join(grant_tiers)}\n"
            f"  catalog {', '.join(grant_classes)}{dataset}\n"
            f"  purpose {', '.join(rng.sample(purposes, rng.randint(1, 3)))}\n"
            f"  action {', '.join(rng.sample(actions, rng.randint(1, 3)))}\n"
            f"  approved_by {', '.join(rng.sample(approvers, rng.randint(1, 3)))}\n"
            f"  agreement \"G-{i}\"\n  expires {shown.isoformat()}\n}}\n")
    return "\n".join(texts)


# The shipped set refuses datasets its catalog does not list; the same set deciding them as
# stated lets the requests range over every attribute. Both are checked against the oracle.
POLICY = compile_sources({**as_stated_sources(), "generated.policy": _generated_grants()})
REFUSING = compile_sources({**SOURCES, "generated.policy": _generated_grants()})
VOCAB = {name: sorted(v.labels) for name, v in POLICY.vocabularies.items()}
EXPIRIES = sorted({g.expires for g in POLICY.grants})

offsets = st.sampled_from([0, 8 * 60, -5 * 60, 5 * 60 + 45, -9 * 60 - 30, 14 * 60, -12 * 60])
near_expiry = st.tuples(st.sampled_from(EXPIRIES),
                        st.sampled_from([0, -1, 1, -1_000_000, 1_000_000, -86_400_000_000]))
times = st.one_of(
    near_expiry.map(lambda pair: pair[0] + pair[1]),
    st.integers(NOW - 400 * 86_400_000_000, NOW + 400 * 86_400_000_000),
)


@st.composite
def requests(draw):
    org = draw(st.sampled_from(ORGS + ["nobody"]))
    context = {
        "storage_region": draw(st.sampled_from(VOCAB["context.storage_region"])),
        "deidentified": draw(st.booleans()),
        "consent": draw(st.booleans()),
        "security_assessment": draw(st.booleans()),
    }
    if draw(st.integers(0, 9)) > 0:  # mostly an explicit time, sometimes the clock (`now`)
        context["time"] = format_instant(draw(times), draw(offsets))
    subject = {"id": draw(st.sampled_from(["u-1"] * 9 + [""])), "org_id": org,
               "org_type": draw(st.sampled_from(VOCAB["subject.org_type"])),
               "region": draw(st.sampled_from(VOCAB["subject.region"])),
               "real_name_verified": draw(st.booleans())}
    stated = {"catalog_class": draw(st.sampled_from(VOCAB["resource.catalog_class"])),
              "tier": draw(st.sampled_from(VOCAB["resource.tier"])),
              "personal": draw(st.booleans()), "shareable": draw(st.booleans()),
              "owner_org_id": draw(st.sampled_from([org, "fz-hosp-1", ""]))}
    dataset = draw(st.sampled_from(DATASETS + ["ds-other", ""]))
    if dataset in CATALOG:  # mostly what the catalog says, or nothing; sometimes a lie
        listed = {k: getattr(CATALOG[dataset], k) for k in stated}
        stated = {k: draw(st.sampled_from([listed[k], None, None, stated[k]])) for k in stated}
    elif draw(st.booleans()):
        stated.pop("owner_org_id")
    resource = {"id": dataset, **{k: v for k, v in stated.items() if v is not None}}
    return {"subject": subject, "resource": resource,
            "action": draw(st.sampled_from(VOCAB["action"])),
            "purpose": draw(st.sampled_from(VOCAB["purpose"])), "context": context}


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), now=times)
def test_tree_agrees_with_reference_on_reference_policy(request, now):
    for policy in (POLICY, REFUSING):
        decision = decide_or_error(policy, request, now=now)
        assert summarise(decision) == reference_decide(policy.checked, request, now)


@settings(max_examples=300, deadline=None)
@given(request=requests(), offset=offsets)
def test_decision_does_not_depend_on_the_offset_an_instant_is_written_in(request, offset):
    if "time" not in request["context"]:
        return
    instant = parse_instant(request["context"]["time"])
    shifted = {**request, "context": {**request["context"], "time": format_instant(instant, offset)}}
    assert summarise(decide_or_error(POLICY, request)) == summarise(decide_or_error(POLICY, shifted))


def test_grant_stops_applying_exactly_at_its_expiry():
    grant = next(g for g in POLICY.grants if g.id == "fz-2026-017")
    request = {"subject": {"id": "u", "org_id": "fzu", "org_type": "university",
                           "region": "southeast_park", "real_name_verified": True},
               "resource": {"id": "ds-cardio-2025"},
               "action": "query", "purpose": "scientific_research",
               "context": {"storage_region": "domestic"}}
    for offset in (0, 480, -300):
        at = lambda micros: {**request, "context": {**request["context"],
                                                    "time": format_instant(micros, offset)}}
        assert POLICY.decide(at(grant.expires - 1)).effect == "PERMIT"
        assert POLICY.decide(at(grant.expires)).effect == "DENY"
        assert POLICY.decide(at(grant.expires + 1)).effect == "DENY"
    before = POLICY.decide(request, now=grant.expires - 10)
    assert before.effect == "PERMIT" and before.valid_until == grant.expires


# ---- generated rule sets -----------------------------------------------------------------

VOCABULARY_TEXT = SOURCES[str(POLICIES / "vocabulary.policy")]
SMALL = {
    "resource.tier": ["open", "conditional", "closed"],
    "action": ["query", "download", "export"],
    "subject.region": ["southeast_park", "overseas"],
    "purpose": ["education", "commercial"],
}
BOOLS = ["resource.personal", "context.consent", "subject.real_name_verified"]
INSTANTS = ["2026-01-01T00:00:00+08:00", "2026-11-22T10:00:00+08:00", "2027-01-01T00:00:00Z"]


def _atom(draw) -> str:
    kind = draw(st.sampled_from(["eq", "in", "bool", "time", "text"]))
    if kind == "bool":
        return draw(st.sampled_from(BOOLS))
    if kind == "time":
        op = draw(st.sampled_from(["<", "<=", ">", ">="]))
        return f"context.time {op} {draw(st.sampled_from(INSTANTS))}"
    if kind == "text":
        return draw(st.sampled_from(['resource.owner_org_id == subject.org_id',
                                     'subject.org_id in ["fzu", "org-a"]',
                                     'resource.id != "ds-1"']))
    attribute = draw(st.sampled_from(sorted(SMALL)))
    if kind == "eq":
        return f"{attribute} {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(SMALL[attribute]))}"
    values = draw(st.lists(st.sampled_from(SMALL[attribute]), min_size=1, max_size=2, unique=True))
    return f"{attribute} {draw(st.sampled_from(['in', 'not in']))} [{', '.join(values)}]"


@st.composite
def conditions(draw, depth=0):
    if depth >= 2 or draw(st.integers(0, 2)) == 0:
        text = _atom(draw)
    else:
        joiner = draw(st.sampled_from([" and ", " or "]))
        parts = draw(st.lists(conditions(depth + 1), min_size=2, max_size=3))
        text = "(" + joiner.join(parts) + ")"
    return f"not {text}" if draw(st.integers(0, 4)) == 0 else text


@st.composite
def rule_sets(draw):
    rules = []
    for i in range(draw(st.integers(1, 6))):
        effect = draw(st.sampled_from(["permit", "deny", "on permit", "grant-permit"]))
        condition = draw(conditions())
        oblige = "\n  oblige audit" if effect == "on permit" else ""
        if effect == "grant-permit":
            effect = "permit"
            approvers = draw(st.sampled_from(["data_operator", "all [data_operator, digital_office]",
                                              "any [digital_office, health_commission]"]))
            condition = f"{condition} and grant.approved_by has {approvers}"
            oblige = "\n  oblige destroy_on_expiry(at: grant.expires)"
        rules.append(f'rule r{i} {{\n  cite "t"\n  message zh "中" en "e"\n'
                     f"  {effect} when {condition}{oblige}\n}}\n")
    if draw(st.booleans()):
        rules.append('rule fallback {\n  cite "t"\n  message zh "拒" en "no"\n  deny otherwise\n}\n')
    return "\n".join(rules)


GRANTS_TEXT = """
grant a1 { grantee fzu tier conditional, closed catalog medical_service purpose education
  action query, download approved_by data_operator agreement "A1" expires 2026-11-22T10:00:00+08:00 }
grant a2 { grantee fzu tier closed catalog medical_service purpose education, commercial
  action query approved_by data_operator, digital_office agreement "A2" expires 2027-01-01T00:00:00Z }
grant b1 { grantee org-a tier open, conditional catalog medical_service dataset ds-1 purpose commercial
  action export, query approved_by health_commission agreement "B1" expires 2026-06-01T00:00:00-05:00 }
"""


@st.composite
def small_requests(draw):
    org = draw(st.sampled_from(["fzu", "org-a", "other"]))
    context = {"storage_region": "domestic", "consent": draw(st.booleans())}
    if draw(st.booleans()):
        context["time"] = draw(st.sampled_from(INSTANTS + ["2026-11-22T01:59:59.999999Z",
                                                           "2026-06-01T05:00:00Z"]))
    resource = {"id": draw(st.sampled_from(["ds-1", "ds-2"])), "catalog_class": "medical_service",
                "tier": draw(st.sampled_from(SMALL["resource.tier"])),
                "personal": draw(st.booleans())}
    if draw(st.booleans()):
        resource["owner_org_id"] = draw(st.sampled_from([org, "fzu"]))
    return {"subject": {"id": "u", "org_id": org, "org_type": "university",
                        "region": draw(st.sampled_from(SMALL["subject.region"])),
                        "real_name_verified": draw(st.booleans())},
            "resource": resource,
            "action": draw(st.sampled_from(SMALL["action"])),
            "purpose": draw(st.sampled_from(SMALL["purpose"])), "context": context}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets(), batch=st.lists(small_requests(), min_size=20, max_size=20))
def test_tree_agrees_with_reference_on_generated_rule_sets(rules, batch):
    from tiergate.engine import DiagnosticError
    try:
        policy = compile_sources({"vocabulary.policy": VOCABULARY_TEXT, "rules.policy": rules,
                                  "grants.policy": GRANTS_TEXT})
    except DiagnosticError as error:
        # Generated conditions can contradict themselves; that must be the only complaint.
        assert {d.code for d in error.diagnostics} <= {"TG226"}, error.diagnostics
        return
    for request in batch:
        assert summarise(policy.decide(request, now=NOW)) == \
            reference_decide(policy.checked, request, NOW), (rules, request)
