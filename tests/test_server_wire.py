"""The memoised wire encoding parses to exactly the Decision message built field by field."""

from __future__ import annotations

import itertools

from conftest import make_request
from tiergate.engine import RequestError
from tiergate.server import convert, wire
from tiergate.v1 import authorizer_pb2 as pb


def _requests():
    for tier, org_type, action, purpose, personal, time in itertools.product(
            ["open", "conditional", "closed"], ["university", "government_agency", "research_institute"],
            ["query", "download", "delete", "export"], ["scientific_research", "commercial"],
            [False, True], ["2026-11-22T10:00:00+08:00", "2027-07-01T00:00:00Z"]):
        yield make_request(resource__tier=tier, subject__org_type=org_type, action=action,
                           purpose=purpose, resource__personal=personal, context__time=time)
    yield make_request(subject__org_id="fj-cdc-institute", subject__org_type="research_institute",
                       resource__tier="closed", resource__catalog_class="public_health",
                       resource__id="ds-epidemic-2025")


def test_encoded_decisions_equal_the_built_messages(policy):
    effects = set()
    for request in _requests():
        decision = policy.decide(request)
        effects.add(decision.effect)
        built = convert.decision_to_proto(decision)
        assert pb.Decision.FromString(wire.decision_bytes(decision)) == built
        batch = pb.DecideBatchResponse.FromString(wire.batch_decision(wire.decision_bytes(decision)) * 2)
        assert [r.decision for r in batch.results] == [built, built]
    assert effects == {"PERMIT", "DENY"}


def test_encoded_batch_error(policy):
    try:
        policy.decide(make_request(action="destroy"))
    except RequestError as error:
        message = convert.request_error_to_proto(error)
    response = pb.DecideBatchResponse.FromString(wire.batch_error(message))
    assert response.results[0].error == message


def test_varint_matches_protobuf():
    assert wire.varint(0) == b"\x00"
    for value in (1, 127, 128, 300, 16_383, 16_384, 2**31 - 1):
        assert pb.PolicyInfo(rule_count=value).SerializeToString() == b"\x18" + wire.varint(value)
