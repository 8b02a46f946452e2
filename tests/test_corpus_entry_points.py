"""One decision corpus, every entry point: the shipped policy tests, decided by the engine, by
`tiergate decide` (a real process), by a real gRPC server (Decide and DecideBatch) and by Envoy
ext_authz Check on a real gRPC server — and every one of them says the same.

The cases carry their own times (policy tests fix `now`), so the servers here are what-if
deployments (accept_request_time); the default refusal of a requested time is tested apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc

from conftest import POLICIES
from server_support import CLIENT_OPTIONS, EFFECT_NAMES, running_server, to_proto
from tiergate.engine import RequestError
from tiergate.engine.schema import REQUEST_ATTRIBUTES
from tiergate.engine.timeutil import format_instant
from tiergate.server.ext_authz import add_ext_authz
from tiergate.server.mapping import parse_mapping
from tiergate.tooling.policytest import discover, load_suites
from tiergate.v1 import authorizer_pb2 as pb

CASES = [case for suite in load_suites(discover(POLICIES)) for case in suite.cases]

# Every attribute from a header named after it, the dataset from the path: so any case can be
# sent as HTTP.
def _header(path: str) -> str:
    return "x-" + path.replace(".", "-").replace("_", "-")


CORPUS_MAPPING = "version = 1\n[attributes]\n" + "".join(
    f'{a.path} = {{ header = "{_header(a.path)}" }}\n'
    for a in REQUEST_ATTRIBUTES if a.path != "resource.id") + """
[[routes]]
name = "dataset"
path = "/datasets/{dataset_id}"
"""


def timed(case) -> dict:
    """The case's request with its `now` written into context.time (the servers' what-if)."""
    request = json.loads(json.dumps(case.request))
    if case.now is not None and "time" not in request.get("context", {}):
        request.setdefault("context", {})["time"] = format_instant(case.now, 480)
    return request


def engine_answer(policy, request: dict):
    try:
        d = policy.decide(request)
    except RequestError as error:
        return ("error", sorted({p.attribute for p in error.problems}))
    return (d.effect, d.grant_id or "", sorted(r.rule_id for r in d.reasons),
            sorted((o.id, tuple(sorted(o.params.items()))) for o in d.obligations),
            sorted((u.rule_id, u.requirement, u.grant_id or "") for u in d.unmet))


def proto_answer(decision: pb.Decision):
    return (EFFECT_NAMES[decision.effect], decision.grant_id,
            sorted(r.rule_id for r in decision.reasons),
            sorted((o.id, tuple(sorted(o.params.items()))) for o in decision.obligations),
            sorted((u.rule_id, u.requirement, u.grant_id) for u in decision.unmet))


def dict_answer(out: dict):
    if "error" in out:
        return ("error", sorted({p["attribute"] for p in out["problems"]}))
    return (out["effect"], out["grant_id"] or "", sorted(r["rule_id"] for r in out["reasons"]),
            sorted((o["id"], tuple(sorted(o.get("params", {}).items()))) for o in out["obligations"]),
            sorted((u["rule_id"], u["requirement"], u.get("grant_id", "")) for u in out.get("unmet", [])))


@pytest.fixture(scope="module")
def expected(shipped_policy):
    return [engine_answer(shipped_policy, timed(case)) for case in CASES]


def test_the_corpus_is_what_the_policy_tests_expect(expected):
    # The engine's answers are the policy tests' own (effect, or the refused attributes).
    for case, answer in zip(CASES, expected):
        if case.expect.error is not None:
            assert answer == ("error", sorted(case.expect.error)), case.name
        else:
            assert answer[0] == case.expect.effect, case.name
    assert {a[0] for a in expected} == {"PERMIT", "DENY", "error"}


def test_cli_decides_the_corpus_the_same(expected):
    lines = "\n".join(json.dumps(timed(case), ensure_ascii=False) for case in CASES)
    result = subprocess.run([sys.executable, "-m", "tiergate.cli.main", "decide", str(POLICIES)],
                            input=lines, capture_output=True, text=True, encoding="utf-8")
    answers = [dict_answer(json.loads(line)) for line in result.stdout.splitlines()]
    assert answers == expected
    assert result.returncode == (1 if any(a[0] == "error" for a in expected) else 0)


def test_grpc_server_decides_the_corpus_the_same(expected):
    with running_server(POLICIES) as (_, stub, _):
        for case, answer in zip(CASES, expected):
            message = to_proto(timed(case))
            try:
                got = proto_answer(stub.Decide(message, timeout=10))
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, case.name
                detail = dict(error.trailing_metadata())["tiergate-request-error-bin"]
                got = ("error", sorted({p.attribute for p in
                                        pb.RequestError.FromString(detail).problems}))
            assert got == answer, case.name
        batch = stub.DecideBatch(pb.DecideBatchRequest(
            requests=[to_proto(timed(case)) for case in CASES]), timeout=30)
        for result, answer in zip(batch.results, expected):
            if result.HasField("error"):
                assert answer == ("error", sorted({p.attribute for p in result.error.problems}))
            else:
                assert proto_answer(result.decision) == answer


def _headers(request: dict) -> dict:
    headers = {}
    for attribute in REQUEST_ATTRIBUTES:
        section = request.get(attribute.section, {}) if attribute.section else request
        value = section.get(attribute.key)
        if value is not None and attribute.path != "resource.id":
            headers[_header(attribute.path)] = str(value).lower() if isinstance(value, bool) \
                else str(value)
    return headers


def test_ext_authz_check_decides_the_corpus_the_same(shipped_policy, expected):
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_ext_authz(server, lambda: shipped_policy, parse_mapping(CORPUS_MAPPING),
                  accept_request_time=True)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CLIENT_OPTIONS)
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for case, answer in zip(CASES, expected):
            request = timed(case)
            dataset = request.get("resource", {}).get("id")
            if not dataset:
                continue  # no path names no dataset; the engine's refusal is tested above
            http = attribute_context_pb2.AttributeContext.HttpRequest(
                method="GET", path=f"/datasets/{dataset}", headers=_headers(request))
            response = stub.Check(external_auth_pb2.CheckRequest(
                attributes=attribute_context_pb2.AttributeContext(
                    request=attribute_context_pb2.AttributeContext.Request(http=http))))
            if answer[0] == "PERMIT":
                assert response.status.code == 0, case.name
                headers = {h.header.key: h.header.value for h in response.ok_response.headers}
                assert headers.get("x-tiergate-grant-id", "") == answer[1], case.name
                obligations = json.loads(headers["x-tiergate-obligations"])
                assert sorted((o["id"], tuple(sorted(o.get("params", {}).items())))
                              for o in obligations) == answer[3], case.name
                continue
            assert response.status.code == 7 and response.denied_response.status.code == 403
            body = json.loads(response.denied_response.body)
            if answer[0] == "error":
                assert sorted({p["attribute"] for p in body["problems"]}) == answer[1], case.name
            else:
                assert sorted(r["rule_id"] for r in body["reasons"]) == answer[2], case.name
                assert sorted((u["rule_id"], u["requirement"], u.get("grant_id", ""))
                              for u in body.get("unmet", [])) == answer[4], case.name
    finally:
        channel.close()
        server.stop(None)
