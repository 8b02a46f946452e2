"""A bad request is an error naming the attribute, the value and what is allowed — never a
decision, neither a silent DENY nor a PERMIT."""

from __future__ import annotations

import pytest

from conftest import make_request
from tiergate.engine import RequestError


def problems(policy, request):
    with pytest.raises(RequestError) as caught:
        policy.decide(request)
    return {p.attribute: p for p in caught.value.problems}


def test_undeclared_value_names_attribute_value_and_allowed(policy):
    found = problems(policy, make_request(resource__catalog_class="genomics"))
    p = found["resource.catalog_class"]
    assert p.value == "genomics"
    assert "medical_service" in p.allowed and len(p.allowed) == 8
    assert "genomics" in p.message and "allowed: basic_info" in p.message


def test_misspelt_value_gets_a_suggestion(policy):
    p = problems(policy, make_request(action="qurey"))["action"]
    assert "did you mean query?" in p.message


@pytest.mark.parametrize("path", ["subject__id", "resource__catalog_class", "resource__tier",
                                  "action", "purpose", "subject__org_type", "subject__region",
                                  "context__storage_region"])
def test_required_attribute_missing(policy, path):
    attribute = path.replace("__", ".")
    p = problems(policy, make_request(**{path: None}))[attribute]
    # A catalogued dataset's class and tier come from the catalog; these requests name an
    # uncatalogued one, which must state them.
    assert p.message in (f"{attribute} is required",
                         f"{attribute} is required for a dataset the catalog does not list")
    assert p.value is None


def test_every_problem_is_reported_together(policy):
    found = problems(policy, make_request(action="destroy", purpose=None,
                                          context__deidentified="yes"))
    assert set(found) == {"action", "purpose", "context.deidentified"}
    assert found["context.deidentified"].allowed == ("true", "false")


def test_unknown_attribute_is_an_error_not_ignored(policy):
    found = problems(policy, make_request(subject__regoin="southeast_park"))
    assert "subject.regoin" in found
    assert "did you mean subject.region?" in found["subject.regoin"].message


def test_time_must_carry_an_offset(policy):
    p = problems(policy, make_request(context__time="2026-11-22T10:00:00"))["context.time"]
    assert "not RFC 3339" in p.message and p.value == "2026-11-22T10:00:00"


def test_wrong_types_are_errors(policy):
    found = problems(policy, make_request(resource__tier=3, subject__id=42,
                                          resource__personal="false"))
    assert set(found) == {"resource.tier", "subject.id", "resource.personal"}


def test_request_must_be_an_object(policy):
    with pytest.raises(RequestError):
        policy.decide(["not", "a", "request"])


def test_error_serialises_for_gateways(policy):
    with pytest.raises(RequestError) as caught:
        policy.decide(make_request(resource__tier="secret"))
    payload = caught.value.to_dict()
    assert payload["error"] == "invalid_request"
    assert payload["problems"][0] == {
        "attribute": "resource.tier", "value": "secret", "allowed": ["open", "conditional", "closed"],
        "message": "resource.tier 'secret' is not a declared value; allowed: open, conditional, "
                   "closed"}
    assert payload["message"] == payload["problems"][0]["message"]  # one problem: its message


def test_booleans_default_to_false(policy):
    request = make_request(subject__real_name_verified=None)
    decision = policy.decide(request)
    assert decision.effect == "DENY"
    assert [r.rule_id for r in decision.reasons] == ["real-name-required"]
