"""Envoy ext_authz end to end: a real gRPC server on 127.0.0.1, a real AuthorizationStub client,
real CheckRequests built as Envoy sends them, and the shipped gateway mapping."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import struct_pb2

from tiergate.engine import RequestError
from tiergate.server.ext_authz import ExtAuthzServicer, add_ext_authz
from tiergate.server.mapping import parse_mapping

from conftest import POLICIES, TEST_AUDIT_LOG, instant

GATEWAY = POLICIES / "gateway.toml"
OK, PERMISSION_DENIED, INTERNAL = 0, 7, 13

# What the gateway's authentication filter sets for the contract's example requester.
HEADERS = {
    "x-subject-id": "u-1042", "x-org-id": "fzu", "x-org-type": "university",
    "x-region": "southeast_park", "x-real-name-verified": "true",
    "x-purpose": "scientific_research", "x-storage-region": "domestic", "x-deidentified": "true",
    # Decisions here must not depend on today's date: the test mapping maps context.time.
    "x-tiergate-time": "2026-11-22T10:00:00+08:00",
}
DATASET = "/datasets/ds-cardio-2025"


def gateway_mapping():
    # The shipped mapping, with the one line it leaves commented out (context.time) switched on.
    text = GATEWAY.read_text(encoding="utf-8")
    assert "# context.time = { header" in text
    return parse_mapping(text.replace("# context.time = { header", "context.time = { header"),
                         str(GATEWAY))


@pytest.fixture(scope="module")
def authz(policy):
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    # A what-if deployment: requested times are accepted, so the time header decides.
    add_ext_authz(server, lambda: policy, gateway_mapping(), accept_request_time=True)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield external_auth_pb2_grpc.AuthorizationStub(channel)
    channel.close()
    server.stop(None)


def check_request(method: str, path: str, headers: dict, claims: dict | None = None,
                  payload: str = "jwt_payload") -> external_auth_pb2.CheckRequest:
    attributes = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(
            http=attribute_context_pb2.AttributeContext.HttpRequest(
                id="req-1", method=method, path=path, host="data.example.cn", scheme="https",
                protocol="HTTP/1.1", headers=headers)))
    if claims is not None:
        jwt = struct_pb2.Struct()
        jwt.update({payload: claims})
        attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].CopyFrom(jwt)
    return external_auth_pb2.CheckRequest(attributes=attributes)


def without(headers: dict, *names: str, **changes: str) -> dict:
    out = {k: v for k, v in headers.items() if k not in names}
    out.update({k.replace("_", "-"): v for k, v in changes.items()})
    return out


def upstream_headers(response) -> dict:
    return {h.header.key: h.header.value for h in response.ok_response.headers}


def denial(response) -> dict:
    assert response.status.code == PERMISSION_DENIED
    assert response.HasField("denied_response") and not response.HasField("ok_response")
    assert response.denied_response.status.code == 403
    headers = {h.header.key: h.header.value for h in response.denied_response.headers}
    assert headers["content-type"].startswith("application/json")
    body = json.loads(response.denied_response.body)
    assert body["effect"] == "DENY"
    assert headers["x-tiergate-decision-id"] == body["decision_id"]
    return body


def test_permit_from_headers_and_path(authz, policy):
    response = authz.Check(check_request("GET", DATASET + "?fields=age,sex", HEADERS))
    assert response.status.code == OK
    assert response.HasField("ok_response") and not response.HasField("denied_response")
    headers = upstream_headers(response)
    assert headers["x-tiergate-grant-id"] == "fz-2026-017"
    assert headers["x-tiergate-policy-revision"] == policy.revision
    assert headers["x-tiergate-decision-id"]
    obligations = json.loads(headers["x-tiergate-obligations"])
    assert {"id": "destroy_on_expiry", "params": {"at": "2027-06-30T00:00:00+08:00"}} in obligations
    assert {"id": "audit"} in obligations
    assert " " not in headers["x-tiergate-obligations"]  # compact
    assert response.dynamic_metadata["decision_id"] == headers["x-tiergate-decision-id"]


def test_route_action_override(authz):
    # POST …/analyze is `analyze` by the route; a POST to the bare dataset has no action.
    response = authz.Check(check_request("POST", DATASET + "/analyze", HEADERS))
    assert response.status.code == OK
    body = denial(authz.Check(check_request("POST", DATASET, HEADERS)))
    assert body["error"] == "mapping"
    assert "no action for method POST" in body["reasons"][0]["message_en"]


def test_permit_from_jwt_claims(authz):
    claims = {"sub": "u-1042", "org_id": "fzu", "org_type": "university",
              "real_name_verified": True, "iss": "https://idp.example.cn"}
    headers = without(HEADERS, "x-subject-id", "x-org-id", "x-org-type", "x-real-name-verified")
    response = authz.Check(check_request("GET", DATASET, headers, claims))
    assert response.status.code == OK
    assert upstream_headers(response)["x-tiergate-grant-id"] == "fz-2026-017"


def test_verified_claim_beats_a_header(authz):
    # A forged header saying "university" must not outrank the verified claim.
    claims = {"sub": "u-9", "org_id": "acme-intl", "org_type": "foreign_enterprise"}
    body = denial(authz.Check(check_request("GET", DATASET, HEADERS, claims)))
    assert "error" not in body
    assert [r["rule_id"] for r in body["reasons"]] == ["conditional-eligible-applicants"]
    # …and the verified claim wins the other way round too.
    forged = without(HEADERS, x_org_type="foreign_enterprise", x_org_id="acme-intl")
    claims = {"sub": "u-1042", "org_id": "fzu", "org_type": "university"}
    assert authz.Check(check_request("GET", DATASET, forged, claims)).status.code == OK


def test_checks_that_differ_only_in_their_token_are_decided_on_each_token(authz):
    # The Check path reuses translations; the token's claims are part of what it reuses by.
    headers = without(HEADERS, "x-subject-id", "x-org-id", "x-org-type", "x-real-name-verified")
    university = {"sub": "u-1042", "org_id": "fzu", "org_type": "university",
                  "real_name_verified": True}
    foreign = {**university, "org_id": "acme-intl", "org_type": "foreign_enterprise"}
    answers = [authz.Check(check_request("GET", DATASET, headers, claims)).status.code
               for claims in (university, foreign, university, foreign)]
    assert answers == [OK, PERMISSION_DENIED, OK, PERMISSION_DENIED]


def test_numeric_subject_claim_is_text(authz):
    claims = {"sub": 1042, "org_id": "fzu", "org_type": "university"}
    headers = without(HEADERS, "x-subject-id")
    assert authz.Check(check_request("GET", DATASET, headers, claims)).status.code == OK


def test_deny_body_has_reasons_and_citations_in_both_languages(authz, policy):
    headers = without(HEADERS, x_storage_region="overseas")
    body = denial(authz.Check(check_request("POST", DATASET + "/export", headers)))
    assert body["policy_revision"] == policy.revision
    by_rule = {r["rule_id"]: r for r in body["reasons"]}
    assert set(by_rule) == {"no-overseas-storage", "export-needs-security-assessment"}
    export = by_rule["export-needs-security-assessment"]
    assert export["citation"].startswith("国家办法")
    assert export["message_zh"] == "因业务需要向境外提供数据的，应当先行安全评估审核"
    assert export["message_en"] == "Providing data abroad requires a security assessment first"


def test_missing_header_is_denied_naming_it(authz):
    body = denial(authz.Check(check_request("GET", DATASET, without(HEADERS, "x-region"))))
    assert body["error"] == "mapping"
    [reason] = body["reasons"]
    assert reason["message_en"] == "mapping: header x-region is missing (needed for subject.region)"
    assert "x-region" in reason["message_zh"] and reason["attribute"] == "subject.region"


def test_missing_header_and_claim_are_both_named(authz):
    body = denial(authz.Check(check_request("GET", DATASET, without(HEADERS, "x-org-type"))))
    [reason] = body["reasons"]
    assert "header x-org-type" in reason["message_en"] and "claim org_type" in reason["message_en"]


def test_every_missing_attribute_is_listed(authz):
    body = denial(authz.Check(check_request("GET", DATASET, {})))
    named = {r["attribute"] for r in body["reasons"]}
    assert named == {"subject.id", "subject.org_type", "subject.region", "purpose",
                     "context.storage_region"}


def test_undeclared_value_in_a_header_names_attribute_and_allowed_values(authz):
    body = denial(authz.Check(check_request("GET", DATASET, without(HEADERS, x_purpose="mining"))))
    assert body["error"] == "invalid_request"
    [problem] = body["problems"]
    assert problem["attribute"] == "purpose" and problem["value"] == "mining"
    assert "scientific_research" in problem["allowed"] and "mining" not in problem["allowed"]
    [reason] = body["reasons"]
    assert "purpose" in reason["message_en"] and "mining" in reason["message_en"]
    assert "scientific_research" in reason["message_en"] and "scientific_research" in reason["message_zh"]


def test_the_catalog_not_the_url_says_what_a_dataset_is(shipped_policy):
    # A client cannot write a tier into the path: the mapping takes the dataset id only, and
    # a dataset the catalog does not list is refused (the shipped set: uncatalogued refuse).
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    # The test mapping maps x-tiergate-time; a server that does not accept requested times
    # (the default) refuses a request that sends one.
    add_ext_authz(server, lambda: shipped_policy, gateway_mapping(),
                  clock=lambda: instant("2026-11-22T10:00:00+08:00"))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        headers = without(HEADERS, "x-tiergate-time")
        assert stub.Check(check_request("GET", "/datasets/ds-cardio-2025", headers)).status.code == OK
        # ds-emr-2025 is closed: no route makes it open, and fzu's closed grant lacks consent.
        body = denial(stub.Check(check_request("GET", "/datasets/ds-emr-2025", headers)))
        assert body["unmet"][0]["requirement"] == "grant_approval"
        assert denial(stub.Check(check_request("GET", "/datasets/medical_service/open/ds-x",
                                               headers)))["error"] == "mapping"
        body = denial(stub.Check(check_request("GET", "/datasets/ds-not-listed", headers)))
        assert body["error"] == "invalid_request"
        assert body["problems"][0]["attribute"] == "resource.id"
        # The server's clock decides: a requested time is refused, naming context.time.
        body = denial(stub.Check(check_request("GET", "/datasets/ds-cardio-2025", HEADERS)))
        assert body["error"] == "invalid_request"
        assert [p["attribute"] for p in body["problems"]] == ["context.time"]
    finally:
        channel.close()
        server.stop(None)


def test_bad_boolean_header_is_denied_naming_it(authz):
    body = denial(authz.Check(check_request("GET", DATASET, without(HEADERS, x_deidentified="yes"))))
    assert "header x-deidentified 'yes'" in body["reasons"][0]["message_en"]


def test_no_route_is_denied(authz):
    body = denial(authz.Check(check_request("GET", "/admin/users", HEADERS)))
    assert body["reasons"][0]["message_en"] == "mapping: no route matches GET /admin/users"
    body = denial(authz.Check(check_request("DELETE", DATASET + "/download", HEADERS)))
    assert "routes for this path allow GET" in body["reasons"][0]["message_en"]


def test_time_header_decides_as_of_that_time(authz):
    # After fz-2026-017 expires the same request is denied (the mapping maps x-tiergate-time).
    later = without(HEADERS, x_tiergate_time="2027-07-01T00:00:00+08:00")
    body = denial(authz.Check(check_request("GET", DATASET, later)))
    assert [r["rule_id"] for r in body["reasons"]] == ["not-authorised"]


def test_permit_without_grant_removes_a_smuggled_grant_header(authz):
    headers = without(HEADERS, x_tiergate_grant_id="fz-forged", x_org_id="nobody")
    response = authz.Check(check_request("GET", "/datasets/ds-hospitals-open", headers))
    assert response.status.code == OK
    assert "x-tiergate-grant-id" not in upstream_headers(response)
    assert list(response.ok_response.headers_to_remove) == ["x-tiergate-grant-id"]
    assert all(h.append_action == h.OVERWRITE_IF_EXISTS_OR_ADD
               for h in response.ok_response.headers)


def test_percent_encoded_chinese_dataset_id(shipped_policy):
    mapping = gateway_mapping()
    request = mapping.translate(method="GET", path="/datasets/%E5%B0%B1%E8%AF%8A", headers=HEADERS)
    assert request["resource"]["id"] == "就诊"
    # Not in the shipped catalog: refused, naming the decoded id, not its escapes.
    with pytest.raises(RequestError, match="resource.id '就诊' is not in the catalog"):
        shipped_policy.decide(request, requested_time=True)


def test_raw_header_map_is_read(authz):
    # Envoy with encode_raw_headers sends header_map instead of the headers map.
    request = check_request("GET", DATASET, {})
    header_map = request.attributes.request.http.header_map
    for key, value in HEADERS.items():
        header_map.headers.add(key=key, raw_value=value.encode())
    assert authz.Check(request).status.code == OK


def test_an_internal_failure_is_a_denial_not_a_grpc_error():
    def broken():
        raise RuntimeError("no policy")

    servicer = ExtAuthzServicer(broken, gateway_mapping())
    response = servicer.Check(check_request("GET", DATASET, HEADERS), None)
    assert response.status.code == INTERNAL
    assert response.denied_response.status.code == 500
    assert json.loads(response.denied_response.body)["error"] == "internal"


# ----------------------------------------------------------------------------------------------
# As `tiergate serve` wires it: app.py's register(server, holder, config) contract.

def serve_with_register(policy, policy_dir, clock):
    from tiergate.server import ext_authz
    from tiergate.server.config import ServeConfig
    from tiergate.server.holder import PolicyHolder

    holder = PolicyHolder(policy, policy_dir=str(policy_dir), clock=clock)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    ext_authz.register(server, holder, ServeConfig(policy_dir=policy_dir))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, holder, grpc.insecure_channel(f"127.0.0.1:{port}")


def test_register_uses_the_holders_policy_clock_and_mapping(policy):
    now = [instant("2026-11-22T10:00:00+08:00")]
    server, holder, channel = serve_with_register(policy, POLICIES, lambda: now[0])
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        headers = without(HEADERS, "x-tiergate-time")  # the shipped mapping has no time header
        assert stub.Check(check_request("GET", DATASET, headers)).status.code == OK
        now[0] = instant("2027-06-30T00:00:00+08:00")  # fz-2026-017 has expired
        body = denial(stub.Check(check_request("GET", DATASET, headers)))
        assert [r["rule_id"] for r in body["reasons"]] == ["not-authorised"]
    finally:
        channel.close()
        server.stop(None)


def test_register_without_a_mapping_file_denies_saying_so(policy, tmp_path):
    server, holder, channel = serve_with_register(policy, tmp_path, lambda: 0)
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        body = denial(stub.Check(check_request("GET", DATASET, HEADERS)))
        assert "no gateway mapping is configured" in body["reasons"][0]["message_en"]
    finally:
        channel.close()
        server.stop(None)


def test_register_refuses_a_bad_mapping_and_the_watcher_reloads_an_edited_one(policy, tmp_path):
    import shutil

    from tiergate.engine import DiagnosticError
    from tiergate.server.reload import PolicyWatcher

    for source in [*POLICIES.glob("*.policy"), *POLICIES.glob("*.catalog.csv")]:
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "gateway.toml").write_text("[[routes]]\npth = '/x'\n", encoding="utf-8")
    with pytest.raises(DiagnosticError):
        serve_with_register(policy, tmp_path, lambda: 0)
    good = GATEWAY.read_text(encoding="utf-8")
    (tmp_path / "gateway.toml").write_text(good.replace('"/datasets/{dataset_id}"', '"/public/{dataset_id}"'),
                                           encoding="utf-8")
    server, holder, channel = serve_with_register(
        policy, tmp_path, lambda: instant("2026-11-22T10:00:00+08:00"))
    watcher = PolicyWatcher(holder, interval=0)
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        assert stub.Check(check_request("GET", "/public/ds-hospitals-open", HEADERS)).status.code == OK
        # An edit to the mapping alone (the policies unchanged) is picked up on the next poll.
        (tmp_path / "gateway.toml").write_text(good, encoding="utf-8")
        assert watcher.poll() is False  # no new policy set ...
        assert stub.Check(check_request("GET", "/datasets/ds-hospitals-open", HEADERS)).status.code == OK
        assert stub.Check(check_request("GET", "/public/ds-hospitals-open", HEADERS)).status.code != OK
        # ... and a broken mapping edit keeps the last good one serving.
        (tmp_path / "gateway.toml").write_text("not toml [", encoding="utf-8")
        watcher.poll()
        assert stub.Check(check_request("GET", "/datasets/ds-hospitals-open", HEADERS)).status.code == OK
    finally:
        channel.close()
        server.stop(None)


def test_native_server_serves_check_once_the_module_is_listed(policy, monkeypatch):
    # The one-line wiring in app.py: "tiergate.server.ext_authz" in SERVICE_MODULES.
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tiergate.server import app
    from tiergate.server.config import ServeConfig

    modules = tuple(m for m in app.SERVICE_MODULES if m != "tiergate.server.ext_authz")
    monkeypatch.setattr(app, "SERVICE_MODULES", modules + ("tiergate.server.ext_authz",))
    config = ServeConfig(policy_dir=POLICIES, listen="127.0.0.1:0", reload_interval=0,
                         audit_log=TEST_AUDIT_LOG)
    running = app.start_server(config, policy=policy,
                               clock=lambda: instant("2026-11-22T10:00:00+08:00"))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        headers = without(HEADERS, "x-tiergate-time")
        assert stub.Check(check_request("GET", DATASET, headers)).status.code == OK
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="envoy.service.auth.v3.Authorization"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        running.stop(0)


def test_bad_time_header_is_denied_as_a_bad_instant(authz):
    body = denial(authz.Check(check_request("GET", DATASET, without(HEADERS, x_tiergate_time="tomorrow"))))
    assert body["error"] == "invalid_request"
    [reason] = body["reasons"]
    assert reason["attribute"] == "context.time" and "RFC 3339" in reason["message_zh"]
