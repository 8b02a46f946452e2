"""The ext_authz verdict cache: a repeated Check is answered without deciding again, only while
the decision holds, under its own decision id, and exactly as a fresh decision would be."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate.server.ext_authz import ExtAuthzServicer, add_ext_authz, check_response
from tiergate.server.mapping import load_mapping

from conftest import POLICIES, instant
from test_ext_authz_server import (DATASET, HEADERS, OK, check_request, denial, upstream_headers,
                                   without)

SHIPPED_MAPPING = load_mapping(POLICIES / "gateway.toml")  # no time header: the server's clock
TIMELESS = without(HEADERS, "x-tiergate-time")
BEFORE_EXPIRY = instant("2026-11-22T10:00:00+08:00")
FZ_2026_017_EXPIRES = instant("2027-06-30T00:00:00+08:00")


class CountingPolicy:
    """The policy set, counting how often the engine is asked."""

    def __init__(self, policy):
        self.policy, self.decided = policy, 0

    def decide(self, *args, **kwargs):
        self.decided += 1
        return self.policy.decide(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.policy, name)


@pytest.fixture
def served(shipped_policy):
    """A real gRPC server answering Check with the verdict cache on, at a clock the test sets."""
    counting, now = CountingPolicy(shipped_policy), [BEFORE_EXPIRY]
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_ext_authz(server, lambda: counting, SHIPPED_MAPPING, clock=lambda: now[0],
                  cache_size=100)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield external_auth_pb2_grpc.AuthorizationStub(channel), counting, now
    channel.close()
    server.stop(None)


def test_a_repeated_permit_is_kept_and_answered_under_its_own_decision_id(served):
    stub, counting, _ = served
    first, second = (stub.Check(check_request("GET", DATASET, TIMELESS)) for _ in range(2))
    assert first.status.code == second.status.code == OK
    assert counting.decided == 1  # the second answer was kept, not decided again
    one, two = upstream_headers(first), upstream_headers(second)
    assert one["x-tiergate-decision-id"] != two["x-tiergate-decision-id"]
    assert two["x-tiergate-decision-id"] == second.dynamic_metadata["decision_id"]
    del one["x-tiergate-decision-id"], two["x-tiergate-decision-id"]
    assert one == two and two["x-tiergate-grant-id"] == "fz-2026-017"


def test_a_repeated_denial_names_its_own_decision_id_in_header_and_body(served):
    stub, counting, _ = served
    request = check_request("GET", DATASET, without(TIMELESS, x_org_id="mindray-health",
                                                    x_org_type="domestic_enterprise"))
    first, second = denial(stub.Check(request)), denial(stub.Check(request))
    assert counting.decided == 1
    assert first.pop("decision_id") != second.pop("decision_id")  # denial() checked the header
    assert first == second and first["unmet"]


def test_a_kept_permit_ends_when_its_grant_expires(served):
    stub, counting, now = served
    assert stub.Check(check_request("GET", DATASET, TIMELESS)).status.code == OK
    now[0] = FZ_2026_017_EXPIRES - 1
    assert stub.Check(check_request("GET", DATASET, TIMELESS)).status.code == OK
    assert counting.decided == 1
    now[0] = FZ_2026_017_EXPIRES  # the first instant the grant no longer covers
    body = denial(stub.Check(check_request("GET", DATASET, TIMELESS)))
    assert [r["rule_id"] for r in body["reasons"]] == ["not-authorised"]
    assert counting.decided == 2


def test_a_clock_stepped_back_is_decided_again(served):
    stub, counting, now = served
    now[0] = FZ_2026_017_EXPIRES
    denial(stub.Check(check_request("GET", DATASET, TIMELESS)))
    now[0] = BEFORE_EXPIRY  # before the instant the kept denial was decided: not kept for it
    assert stub.Check(check_request("GET", DATASET, TIMELESS)).status.code == OK
    assert counting.decided == 2


def test_a_reloaded_policy_set_starts_with_nothing_kept(shipped_policy, policy):
    served_now = [shipped_policy]
    servicer = ExtAuthzServicer(lambda: served_now[0], SHIPPED_MAPPING,
                                clock=lambda: BEFORE_EXPIRY, cache_size=100)

    def revision_answered() -> str:
        verdict = servicer.verdict("GET", DATASET, lambda m: m.translate(
            method="GET", path=DATASET, headers=TIMELESS), lambda: "")
        return dict(verdict.headers)["x-tiergate-policy-revision"]
    assert policy.revision != shipped_policy.revision  # else a kept verdict would pass too
    assert revision_answered() == shipped_policy.revision
    served_now[0] = policy  # a reload: another PolicySet
    assert revision_answered() == policy.revision


# -- every answer from the cache is the answer a fresh decision gives

ORGS = [("fzu", "university"), ("mindray-health", "domestic_enterprise"),
        ("fj-cdc-institute", "research_institute"), ("fz-health-commission", "government_agency")]
PATHS = ["/datasets/ds-cardio-2025", "/datasets/ds-cardio-2025/download",
         "/datasets/ds-cardio-2025/analyze", "/datasets/ds-hospitals-open",
         "/datasets/ds-emr-2025", "/datasets/ds-emr-2025?page=2", "/datasets/no-such-dataset"]
# Around the shipped grants' expiries and the rules' instants, in no particular order.
INSTANTS = [instant(t) for t in (
    "2025-01-01T00:00:00+08:00", "2026-06-29T23:59:59+08:00", "2026-06-30T00:00:00+08:00",
    "2026-11-22T10:00:00+08:00", "2027-06-29T23:59:59.999999+08:00",
    "2027-06-30T00:00:00+08:00", "2030-01-01T00:00:00+08:00")]



def mostly(usual, *others):
    """`usual` half of the time: requests near the contract's permitted one, so that kept
    permits meet the instants at which they end."""
    return st.one_of(st.just(usual), st.sampled_from([usual, *others]))


requests = st.tuples(
    mostly(*ORGS), mostly(*PATHS), mostly("southeast_park", "fuzhou"),
    mostly("scientific_research", "commercial", "government_administration"),
    mostly("true", "false"), mostly("GET", "PUT"))
# A few requests, asked again and again at instants in no particular order.
sequences = st.lists(requests, min_size=1, max_size=4).flatmap(lambda asked: st.tuples(
    st.just(asked), st.lists(st.tuples(st.integers(0, len(asked) - 1), st.sampled_from(INSTANTS)),
                             min_size=1, max_size=30)))


def _normalised(verdict):
    return verdict.with_decision_id("d-test")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequences)
def test_kept_verdicts_are_the_verdicts_a_fresh_decision_gives(shipped_policy, sequence):
    asked, order = sequence
    now = [0]
    kept = ExtAuthzServicer(lambda: shipped_policy, SHIPPED_MAPPING, clock=lambda: now[0],
                            cache_size=8)
    fresh = ExtAuthzServicer(lambda: shipped_policy, SHIPPED_MAPPING, clock=lambda: now[0])
    ids = set()
    for index, when in order:
        (org, org_type), path, region, purpose, deidentified, method = asked[index]
        headers = without(TIMELESS, x_org_id=org, x_org_type=org_type, x_region=region,
                          x_purpose=purpose, x_deidentified=deidentified)
        now[0] = when

        def translate(servicer):
            return lambda m: servicer.translations.translate(
                m, method, path, headers, lambda _: None)
        answer = kept.verdict(method, path, translate(kept), lambda: "")
        assert answer.decision_id not in ids  # every answer has its own id
        ids.add(answer.decision_id)
        assert dict(answer.headers).get("x-tiergate-decision-id") == answer.decision_id
        if answer.body:
            assert json.loads(answer.body)["decision_id"] == answer.decision_id
        assert _normalised(answer) == _normalised(
            fresh.verdict(method, path, translate(fresh), lambda: ""))
        # The gRPC encoding reused from the kept verdict's is the one built field by field.
        assert check_response(answer) == check_response(dataclasses.replace(answer, origin=None))
