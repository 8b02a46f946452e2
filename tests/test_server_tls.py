"""Who may ask: TLS and mutual TLS on the port, the [access] allow-list per method, rotation of the
certificate files without a restart, and the limits that keep one caller from starving the rest.

Every certificate is made here with `cryptography` (tests/pki.py); every call is a real gRPC
client against a real server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tiergate.server.app import start_server
from tiergate.server.config import ConfigError, ServeConfig, load_config
from tiergate.v1 import audit_pb2, audit_pb2_grpc
from tiergate.v1 import authorizer_pb2 as pb
from tiergate.v1 import authorizer_pb2_grpc as pb_grpc

from conftest import as_stated_directory, instant, make_request
from pki import Authority
from server_support import poll_until, to_proto
from test_audit_log import records

GATEWAY = "spiffe://tiergate.test/ns/gateway/sa/envoy"
AUDITOR = "spiffe://tiergate.test/ns/compliance/sa/auditor"
OPS = "ops.tiergate.test"  # a DNS SAN
NOW = instant("2026-11-22T10:00:00+08:00")


@pytest.fixture(scope="module")
def ca():
    return Authority()


@pytest.fixture
def tls_files(tmp_path, ca):
    key, cert = ca.server_cert().write(tmp_path, "server")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.pem)
    return {"tls_cert": cert, "tls_key": key, "tls_client_ca": ca_file}


# The auditor may decide (and see why) to answer a data owner's question; it is not a gateway.
ACCESS = {"decide": [GATEWAY, AUDITOR], "decide_batch": [GATEWAY], "check": [GATEWAY],
          "policy_info": [GATEWAY, OPS], "audit": [AUDITOR], "explain": [AUDITOR]}


@contextlib.contextmanager
def tls_server(tmp_path, tls_files, **settings):
    config = ServeConfig(policy_dir=as_stated_directory(), listen="127.0.0.1:0",
                         reload_interval=0, threads=4, audit_log=str(tmp_path / "audit.db"),
                         **{"audit_chain": "tls-1", "access": ACCESS, **tls_files, **settings})
    running = start_server(config, clock=lambda: NOW)
    try:
        yield running
    finally:
        running.stop(0)


def channel_for(port: int, ca: Authority, client=None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        ca.pem, *((client.key_pem, client.cert_pem) if client is not None else (None, None)))
    # The server's certificate names localhost and 127.0.0.1.
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def timeless_request():
    request = make_request()
    request["context"].pop("time", None)
    return to_proto(request)


def test_a_caller_without_a_certificate_or_with_a_foreign_or_expired_one_is_not_served(
        tmp_path, ca, tls_files):
    foreign = Authority("another CA").issue(uris=(GATEWAY,))
    expired = ca.issue(uris=(GATEWAY,), expired=True)
    with tls_server(tmp_path, tls_files) as running:
        for client in (None, foreign, expired):
            with channel_for(running.port, ca, client) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    pb_grpc.AuthorizerStub(channel).Decide(timeless_request(), timeout=5)
                # The handshake fails: there is no call, so nothing to decide or record.
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plaintext on the TLS port does not get an answer either.
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.RpcError):
                pb_grpc.AuthorizerStub(channel).Decide(timeless_request(), timeout=5)
    assert records(tmp_path / "audit.db") == []


def test_each_method_is_open_only_to_the_callers_the_config_lists(tmp_path, ca, tls_files):
    gateway, auditor = ca.issue(uris=(GATEWAY,)), ca.issue(uris=(AUDITOR,))
    ops = ca.issue(dns=(OPS,))
    with tls_server(tmp_path, tls_files) as running:
        with channel_for(running.port, ca, gateway) as channel:
            stub = pb_grpc.AuthorizerStub(channel)
            assert stub.Decide(timeless_request(), timeout=5).effect == pb.PERMIT
            assert stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=5).policy_revision
            with pytest.raises(grpc.RpcError) as no_explaining:
                stub.Decide(to_proto(make_request(), explain=True), timeout=5)
            with pytest.raises(grpc.RpcError) as no_reading:
                list(audit_pb2_grpc.AuditStub(channel).Query(audit_pb2.AuditQuery(),
                                                             timeout=5))
        with channel_for(running.port, ca, ops) as channel:  # a DNS SAN on the list
            stub = pb_grpc.AuthorizerStub(channel)
            assert stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=5).rule_count > 0
            with pytest.raises(grpc.RpcError) as no_deciding:
                stub.Decide(timeless_request(), timeout=5)
        with channel_for(running.port, ca, auditor) as channel:
            audit = audit_pb2_grpc.AuditStub(channel)
            # Records reach the queryable database a moment after they are journaled.
            assert poll_until(lambda: list(audit.Query(audit_pb2.AuditQuery(), timeout=5)), 10)
            found = list(audit.Query(audit_pb2.AuditQuery(), timeout=5))
            explained = pb_grpc.AuthorizerStub(channel).Decide(timeless_request_explained(),
                                                               timeout=5)
            # Health stays open to every verified caller (probes), whatever the list says.
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                               timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    for refused, who, what in ((no_explaining, GATEWAY, "access.explain"),
                               (no_reading, GATEWAY, "access.audit"),
                               (no_deciding, OPS, "access.decide")):
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert who in refused.value.details() and what in refused.value.details()
    assert found, "the auditor reads the log"
    # An explanation names policy files inside the policy directory, never the server's path.
    locations = [rule["location"]["file"] for rule in explained.explanation["rules"]
                 if rule["location"]]
    assert locations and all(not f.startswith("/") and str(tmp_path) not in f
                             for f in locations)
    kept = records(tmp_path / "audit.db")
    refusals = [r for r in kept if r.refusal is not None]
    assert sorted((r.caller.identity, r.entry) for r in refusals) == sorted(
        [(GATEWAY, "Decide"), (GATEWAY, "Query"), (OPS, "Decide")])
    assert all(r.refusal.code == "permission_denied" for r in refusals)
    decided = [r for r in kept if r.refusal is None]
    assert {r.caller.identity for r in decided} == {GATEWAY, AUDITOR}


def timeless_request_explained():
    message = timeless_request()
    message.explain = True
    return message


def test_only_callers_allowed_it_may_ask_for_another_time(tmp_path, ca, tls_files):
    gateway, auditor = ca.issue(uris=(GATEWAY,)), ca.issue(uris=(AUDITOR,))
    access = {**ACCESS, "request_time": [AUDITOR]}
    with tls_server(tmp_path, tls_files, access=access) as running:
        with channel_for(running.port, ca, gateway) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.AuthorizerStub(channel).Decide(to_proto(make_request()), timeout=5)
        with channel_for(running.port, ca, auditor) as channel:
            answer = pb_grpc.AuthorizerStub(channel).Decide(to_proto(make_request()), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context.time" in refused.value.details()
    assert answer.effect == pb.PERMIT


def test_a_method_no_permission_names_is_refused_to_everyone():
    """A service added without a permission in access.py is closed, even to a table that
    gives every permission to everyone."""
    from concurrent import futures

    from tiergate.server.access import PERMISSIONS, Access

    access = Access({p: ("*",) for p in PERMISSIONS}, verified=False)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    access.guard(server).add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Unnamed", {"Call": echo}),))
    access.guard(server).add_registered_method_handlers("test.Registered", {"Call": echo})
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            codes = []
            for method in ("/test.Unnamed/Call", "/test.Registered/Call"):
                with pytest.raises(grpc.RpcError) as refused:
                    channel.unary_unary(method)(b"x", timeout=5)
                codes.append((refused.value.code(), method in refused.value.details()))
    finally:
        server.stop(0)
    assert codes == [(grpc.StatusCode.PERMISSION_DENIED, True)] * 2


def served_certificate(port: int, ca: Authority, client) -> bytes:
    """The DER certificate the server presents to a new connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca.pem.decode())
    directory = os.environ.get("TMPDIR", "/tmp")
    stem = os.path.join(directory, f"tiergate-client-{os.getpid()}-{threading.get_ident()}")
    with open(stem + ".pem", "wb") as file:
        file.write(client.cert_pem + client.key_pem)
    try:
        context.load_cert_chain(stem + ".pem")
    finally:
        os.unlink(stem + ".pem")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def replace(path, data: bytes) -> None:
    """As cert-manager does: write beside, then rename over."""
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    aside.replace(path)


def test_the_certificate_rotates_under_load_without_a_failed_call(tmp_path, ca, tls_files):
    gateway = ca.issue(uris=(GATEWAY,))
    first = tls_files["tls_cert"].read_bytes()
    second = ca.server_cert()
    failures, answered, stop = [], [0], threading.Event()

    def load():
        # New connections (the ones a rotation affects) and calls on an open one.
        while not stop.is_set():
            try:
                with channel_for(running.port, ca, gateway) as channel:
                    stub = pb_grpc.AuthorizerStub(channel)
                    for _ in range(5):
                        stub.Decide(timeless_request(), timeout=10)
                        answered[0] += 1
            except grpc.RpcError as error:
                failures.append(error.code())

    with tls_server(tmp_path, tls_files) as running:
        assert served_certificate(running.port, ca, gateway) == pem_to_der(first)
        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            assert poll_until(lambda: answered[0] >= 50, 60)
            # Half a rotation: the new certificate with the old key. It is not used.
            replace(tls_files["tls_cert"], second.cert_pem)
            assert poll_until(lambda: answered[0] >= 100, 60)
            assert served_certificate(running.port, ca, gateway) == pem_to_der(first)
            # The key follows: now the new pair serves new connections.
            replace(tls_files["tls_key"], second.key_pem)
            assert poll_until(lambda: served_certificate(running.port, ca, gateway)
                              == pem_to_der(second.cert_pem), 30)
            seen = answered[0]
            assert poll_until(lambda: answered[0] >= seen + 50, 60)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert running.tls.rotations == 1
    assert failures == []
    assert answered[0] >= 150


def test_one_caller_over_its_rate_limit_does_not_slow_another(tmp_path, ca, tls_files):
    greedy, other = ca.issue(uris=(GATEWAY,)), ca.issue(dns=(OPS,))
    with tls_server(tmp_path, tls_files, rate_limit=5, rate_burst=5,
                    metrics_listen="127.0.0.1:0") as running:
        with channel_for(running.port, ca, greedy) as channel:
            stub = pb_grpc.AuthorizerStub(channel)
            codes = []
            for _ in range(20):
                try:
                    stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=5)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())
                    details = error.details()
        with channel_for(running.port, ca, other) as channel:
            other_answer = pb_grpc.AuthorizerStub(channel).GetPolicyInfo(
                pb.GetPolicyInfoRequest(), timeout=5)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{running.metrics.port}/metrics",
                                         timeout=5).read().decode()
    assert codes.count(grpc.StatusCode.OK) <= 6  # the burst, and what refilled meanwhile
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and "rate limit" in details
    assert other_answer.rule_count > 0
    limited = [s.value for f in text_string_to_metric_families(scraped) for s in f.samples
               if s.name == "tiergate_calls_refused_total"
               and s.labels == {"method": "GetPolicyInfo", "reason": "rate_limited"}]
    assert limited == [codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)]
    [expiry] = [s.value for f in text_string_to_metric_families(scraped) for s in f.samples
                if s.name == "tiergate_tls_certificate_expiry_timestamp_seconds"]
    assert expiry == running.tls.material.not_after.timestamp()


def test_plaintext_is_for_loopback_and_callers_are_named_only_under_mutual_tls(tmp_path,
                                                                               tls_files):
    policies = str(as_stated_directory())
    with pytest.raises(ConfigError, match="allow_plaintext"):
        load_config({"policy_dir": policies, "listen": "0.0.0.0:50051"}, environ={})
    load_config({"policy_dir": policies, "listen": "0.0.0.0:50051", "allow_plaintext": True},
                environ={})
    with pytest.raises(ConfigError, match="tls_client_ca"):
        load_config({"policy_dir": policies, "access": {"decide": [GATEWAY]}}, environ={})
    with pytest.raises(ConfigError, match="access.decidee is not a permission"):
        load_config({"policy_dir": policies, "access": {"decidee": ["*"]}}, environ={})
    with pytest.raises(ConfigError, match="not an identity"):
        load_config({"policy_dir": policies, **tls_files,
                     "access": {"decide": ["https://gateway"]}}, environ={})


def test_a_rollout_waits_for_every_replica_to_serve_the_revision(tmp_path, ca, tls_files):
    import io

    from tiergate.cli.main import main as tiergate

    rollout = ca.issue(dns=(OPS,))
    key, cert = rollout.write(tmp_path, "rollout")
    (tmp_path / "client-ca.crt").write_bytes(ca.pem)
    (tmp_path / "b").mkdir()  # the second replica's audit log

    def policy_info(*argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = tiergate(["policy-info", *argv, "--ca", str(tmp_path / "client-ca.crt"),
                             "--cert", str(cert), "--key", str(key), "--format", "json"])
        return code, out.getvalue()

    with tls_server(tmp_path, tls_files) as first, \
            tls_server(tmp_path / "b", tls_files, audit_chain="tls-2") as second:
        revision = first.holder.current.policy.revision
        targets = [f"localhost:{first.port}", f"localhost:{second.port}"]
        served, report = policy_info(*targets, "--expect", revision)
        other, _ = policy_info(*targets, "--expect", "sha256:" + "0" * 64)
    assert served == 0 and json.loads(report)["ok"]
    assert set(json.loads(report)["replicas"]) == set(targets)
    assert other == 2
