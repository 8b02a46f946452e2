"""The native gRPC API against a real server on 127.0.0.1: decisions, errors, limits, tools."""

from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import make_request
from server_support import engine_summary, proto_summary, running_server, to_proto
from tiergate.engine.timeutil import parse_instant
from tiergate.server.holder import Snapshot
from tiergate.v1 import authorizer_pb2 as pb

PERMITTED = make_request()  # fzu, conditional medical_service, research, under grant fz-2026-017
DENIED = make_request(action="delete")
BAD_CLASS = make_request(resource__catalog_class="genomics")


@pytest.fixture(scope="module")
def server():
    with running_server(max_message_bytes=64 * 1024) as started:
        yield started


def test_decide_permit_matches_the_engine(server, policy):
    _, stub, _ = server
    answer = stub.Decide(to_proto(PERMITTED))
    expected = policy.decide(PERMITTED)
    assert answer.effect == pb.PERMIT
    assert answer.grant_id == "fz-2026-017"
    assert proto_summary(answer) == engine_summary(expected)
    obligations = {o.id: dict(o.params) for o in answer.obligations}
    assert obligations["destroy_on_expiry"] == {"at": "2027-06-30T00:00:00+08:00"}
    assert answer.reasons[0].message == f"{answer.reasons[0].message_zh} / {answer.reasons[0].message_en}"
    assert answer.decision_id and answer.policy_revision == policy.revision


def test_decide_deny_names_the_rule_and_its_citation(server, policy):
    _, stub, _ = server
    answer = stub.Decide(to_proto(DENIED))
    assert answer.effect == pb.DENY
    assert "no-tampering-or-deletion" in [r.rule_id for r in answer.reasons]
    assert all(r.citation for r in answer.reasons)
    assert not answer.obligations
    assert proto_summary(answer) == engine_summary(policy.decide(DENIED))


def test_each_call_gets_its_own_decision_id(server):
    _, stub, _ = server
    timeless = to_proto(make_request(context__time=None))
    ids = {stub.Decide(timeless).decision_id for _ in range(3)}  # the 2nd and 3rd are cached
    assert len(ids) == 3


def test_valid_until_is_the_grants_expiry(server):
    _, stub, _ = server
    answer = stub.Decide(to_proto(PERMITTED))
    micros = answer.valid_until.seconds * 1_000_000 + answer.valid_until.nanos // 1000
    assert micros == parse_instant("2027-06-30T00:00:00+08:00")


def test_explain_returns_a_struct(server):
    _, stub, _ = server
    answer = stub.Decide(to_proto(PERMITTED, explain=True))
    assert answer.explanation.fields["effect"].string_value == "PERMIT"
    plain = stub.Decide(to_proto(PERMITTED))
    assert not plain.HasField("explanation")


def test_undeclared_value_is_invalid_argument_naming_attribute_value_and_allowed(server):
    _, stub, _ = server
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(to_proto(BAD_CLASS))
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource.catalog_class" in error.details()
    assert "genomics" in error.details()
    assert "medical_service" in error.details()
    detail = dict(error.trailing_metadata())["tiergate-request-error-bin"]
    problems = pb.RequestError.FromString(detail).problems
    assert [(p.attribute, p.value) for p in problems] == [("resource.catalog_class", "genomics")]
    assert "public_health" in problems[0].allowed


def test_chinese_value_in_error_message(server):
    _, stub, _ = server
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(to_proto(make_request(resource__catalog_class="基因组")))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource.catalog_class '基因组' is not a declared value" in raised.value.details()


def test_empty_required_attribute_counts_as_missing(server):
    _, stub, _ = server
    request = to_proto(PERMITTED)
    request.purpose = ""
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose is required" in raised.value.details()


def test_malformed_message_is_invalid_argument_and_harms_no_one(server):
    _, stub, channel = server
    raw = channel.unary_unary("/tiergate.v1.Authorizer/Decide",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as raised:
        raw(b"\x0a\xff\xff\xff\xff\x0f")  # field 1, length far past the end
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed tiergate.v1.DecideRequest" in raised.value.details()
    assert stub.Decide(to_proto(PERMITTED)).effect == pb.PERMIT


def test_batch_answers_in_order_with_errors_in_place(server, policy):
    _, stub, _ = server
    requests = [PERMITTED, DENIED, BAD_CLASS, make_request(resource__tier="open", action="copy")]
    response = stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(r) for r in requests]))
    assert len(response.results) == 4
    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["decision", "decision", "error", "decision"]
    for request, result in zip(requests, response.results):
        if result.HasField("decision"):
            assert proto_summary(result.decision) == engine_summary(policy.decide(request))
    assert response.results[2].error.problems[0].attribute == "resource.catalog_class"
    ids = [r.decision.decision_id for r in response.results if r.HasField("decision")]
    assert len(set(ids)) == 3


def test_policy_info(server, policy):
    _, stub, _ = server
    info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
    assert info.policy_revision == policy.revision
    assert info.rule_count == len(policy.rules) and info.grant_count == len(policy.grants)
    assert info.loaded_at.seconds > 0
    assert not info.HasField("last_reload_error")


def test_health_is_serving(server):
    _, _, channel = server
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tiergate.v1.Authorizer"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server):
    _, _, channel = server
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="tiergate.v1.Authorizer"),
    ]))
    listed = next(answers).list_services_response.service
    assert {"tiergate.v1.Authorizer", "grpc.health.v1.Health"} <= {s.name for s in listed}
    files = next(answers).file_descriptor_response.file_descriptor_proto
    assert files, "reflection must serve the descriptor so tools can call Decide"


def test_oversized_message_is_refused_while_other_calls_succeed(server):
    _, stub, _ = server
    huge = pb.DecideBatchRequest(requests=[to_proto(PERMITTED)] * 2000)  # > 64 KiB limit
    assert huge.ByteSize() > 64 * 1024
    results: dict = {}

    def normal_calls():
        results["normal"] = [stub.Decide(to_proto(PERMITTED)).effect for _ in range(20)]

    thread = threading.Thread(target=normal_calls)
    thread.start()
    with pytest.raises(grpc.RpcError) as raised:
        stub.DecideBatch(huge)
    thread.join(timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert results["normal"] == [pb.PERMIT] * 20
    assert stub.Decide(to_proto(PERMITTED)).effect == pb.PERMIT


def test_deadline_exceeded(server):
    _, stub, _ = server
    batch = pb.DecideBatchRequest(requests=[to_proto(PERMITTED)] * 200)
    with pytest.raises(grpc.RpcError) as raised:
        stub.DecideBatch(batch, timeout=0.000001)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Decide(to_proto(PERMITTED), timeout=10).effect == pb.PERMIT


class _BrokenPolicy:
    """A policy set whose evaluation fails (a bug): the answer must be an error, not a decision."""

    def __init__(self, real):
        self.revision, self.rules, self.grants = real.revision, real.rules, real.grants

    def decide(self, *args, **kwargs):
        raise ZeroDivisionError("bug")


def test_failure_while_deciding_is_internal_never_a_decision():
    with running_server(cache_size=0) as (running, stub, _):
        snapshot = running.holder.current
        running.holder.current = Snapshot(_BrokenPolicy(snapshot.policy), snapshot.loaded_at, None)
        for call in (lambda: stub.Decide(to_proto(PERMITTED)),
                     lambda: stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(PERMITTED)]))):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            assert raised.value.code() == grpc.StatusCode.INTERNAL


def test_a_batch_larger_than_the_limit_is_refused_and_others_still_served():
    with running_server(max_batch=5) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as raised:
            stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(PERMITTED)] * 6), timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "6 requests" in raised.value.details() and "(5)" in raised.value.details()
        batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(PERMITTED)] * 5), timeout=10)
        assert [r.decision.effect for r in batch.results] == [pb.PERMIT] * 5


def test_reflection_can_be_switched_off():
    with running_server(reflection=False) as (_, stub, channel):
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            next(reflection.ServerReflectionInfo(iter([
                reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stub.Decide(to_proto(PERMITTED), timeout=10).effect == pb.PERMIT
