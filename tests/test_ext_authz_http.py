"""ext_authz over HTTP (server/ext_authz_http.py) on a real `start_server`, called the way Envoy's
http_service calls it, by a real TLS client: decisions, who may ask, what is refused, and a
certificate rotation. tests/test_envoy_gateway.py runs the same port behind the real Envoy."""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest
from cryptography import x509

from tiergate.server.app import start_server
from tiergate.server.config import ServeConfig

from conftest import POLICIES, instant
from envoy_support import GATEWAY_ID, free_port, write_tiergate_tls
from pki import Authority
from server_support import poll_until, write_atomically
from test_audit_log import records
from test_envoy_gateway import CLAIMS, DATASET, DECLARED, gateway_policies

NOW = instant("2026-11-22T10:00:00+08:00")
OTHER_ID = "spiffe://platform.example.cn/ns/other/sa/batch"
# What the client declares, and what the example's Envoy adds (its region).
GATEWAY_SETS = {**DECLARED, "x-region": "southeast_park"}


def payload(claims: dict) -> str:
    """jwt_authn's forward_payload_header: the verified payload, base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


class Port:
    """A TLS client of the HTTP Check port, presenting one of the CA's certificates."""

    def __init__(self, port: int, ca: Authority, directory, identity: str | None):
        self.port = port
        self.context = ssl.create_default_context(cadata=ca.pem.decode())
        if identity is not None:
            key, cert = ca.issue(uris=(identity,)).write(directory, f"client-{abs(hash(identity))}")
            self.context.load_cert_chain(cert, key)

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return self.context.wrap_socket(raw, server_hostname="tiergate.internal")

    def ask(self, method="GET", path="/ext_authz" + DATASET, headers=None, *, connection=None,
            raw: bytes | None = None) -> tuple[int, dict, bytes]:
        sock = connection or self.connect()
        try:
            if raw is None:
                sent = {"host": "tiergate.internal", **GATEWAY_SETS,
                        "x-jwt-payload": payload(CLAIMS)} if headers is None else headers
                raw = (f"{method} {path} HTTP/1.1\r\n"
                       + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n").encode()
            sock.sendall(raw)
            return read_response(sock)
        finally:
            if connection is None:
                sock.close()


def read_response(sock) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("http-check")
    ca = Authority()
    tls = write_tiergate_tls(directory / "tls", ca)
    config = ServeConfig(policy_dir=gateway_policies(), listen="127.0.0.1:0", reload_interval=0,
                         **tls, audit_log=str(directory / "audit.db"), audit_chain="http",
                         access={"check": [GATEWAY_ID]},
                         http_check_listen=f"127.0.0.1:{free_port()}")
    running = start_server(config, clock=lambda: NOW)
    try:
        yield running, ca, directory, tls
    finally:
        running.stop(0)


def gateway_port(served) -> Port:
    running, ca, directory, _ = served
    return Port(running.http_check.port, ca, directory, GATEWAY_ID)


def test_a_permit_is_200_with_the_decision_headers_for_the_upstream(served):
    status, headers, body = gateway_port(served).ask()
    assert status == 200 and body == b""
    assert headers["x-tiergate-grant-id"] == "fz-2026-017"
    assert headers["x-tiergate-policy-revision"] == served[0].holder.current.policy.revision
    assert {"id": "audit"} in json.loads(headers["x-tiergate-obligations"])
    assert headers["x-tiergate-decision-id"]


def test_a_denial_carries_the_reasons_that_the_grpc_check_sends(served):
    status, headers, body = gateway_port(served).ask(
        "POST", "/ext_authz" + DATASET + "/export",
        {**GATEWAY_SETS, "x-storage-region": "overseas", "x-jwt-payload": payload(CLAIMS)})
    assert status == 403 and headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    by_rule = {r["rule_id"]: r for r in answer["reasons"]}
    assert by_rule["export-needs-security-assessment"]["citation"].startswith("国家办法")
    assert headers["x-tiergate-decision-id"] == answer["decision_id"]


def test_a_permit_without_a_grant_tells_envoy_to_remove_the_grant_header(served):
    # An open dataset needs no grant: the upstream must not see a client's grant id.
    status, headers, _ = gateway_port(served).ask(path="/ext_authz/datasets/ds-hospitals-open")
    assert status == 200
    assert "x-tiergate-grant-id" not in headers
    assert headers["x-envoy-auth-headers-to-remove"] == "x-tiergate-grant-id"


def test_claims_come_only_from_the_forwarded_payload_and_a_bad_one_is_refused(served):
    port = gateway_port(served)
    status, _, body = port.ask(headers=GATEWAY_SETS)
    assert status == 403
    assert "subject.org_type" in {r.get("attribute") for r in json.loads(body)["reasons"]}
    status, _, body = port.ask(headers={**GATEWAY_SETS, "x-jwt-payload": "not base64 json!"})
    assert status == 403
    [reason] = json.loads(body)["reasons"]
    assert "x-jwt-payload" in reason["message_en"] and "x-jwt-payload" in reason["message_zh"]


def test_one_connection_answers_request_after_request(served):
    port = gateway_port(served)
    with port.connect() as connection:
        answers = [port.ask(connection=connection)[0] for _ in range(5)]
    assert answers == [200] * 5


def test_pipelined_requests_are_answered_in_order(served):
    # With the audit log on, answers are decided in a pool; they still leave in order.
    port = gateway_port(served)
    one = ("GET /ext_authz{path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in {**GATEWAY_SETS, "x-jwt-payload": payload(CLAIMS)}.items())
        + "\r\n")
    paths = [DATASET, "/datasets/ds-hospitals-open", DATASET]
    with port.connect() as connection:
        connection.sendall("".join(one.format(path=p) for p in paths).encode())
        data = b""
        while data.count(b"\r\n\r\n") < len(paths):  # permits have no body
            chunk = connection.recv(65536)
            assert chunk, data
            data += chunk
    heads = data.split(b"\r\n\r\n")[:len(paths)]
    assert all(h.startswith(b"HTTP/1.1 200") for h in heads), heads
    grants = [b"x-tiergate-grant-id: fz-2026-017" in h for h in heads]
    assert grants == [True, False, True]


def test_a_caller_not_allowed_check_is_refused_and_recorded(served):
    running, ca, directory, _ = served
    status, headers, body = Port(running.http_check.port, ca, directory, OTHER_ID).ask()
    assert status == 403
    answer = json.loads(body)
    assert answer["error"] == "permission_denied" and OTHER_ID in answer["message"]
    assert "the HTTP Check" in answer["message"] and "access.check" in answer["message"]
    decision_id = headers["x-tiergate-decision-id"]
    db = directory / "audit.db"
    assert poll_until(lambda: any(r.decision_id == decision_id for r in records(db)), 10)
    [kept] = [r for r in records(db) if r.decision_id == decision_id]
    assert kept.refusal.code == "permission_denied" and kept.caller.identity == OTHER_ID


def test_a_caller_without_a_certificate_does_not_get_through_the_handshake(served):
    running, ca, directory, _ = served
    assert gateway_port(served).ask()[0] == 200  # the port answers a caller with one
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        Port(running.http_check.port, ca, directory, None).ask()


def test_what_is_not_a_check_is_never_a_200(served):
    port = gateway_port(served)
    assert port.ask(path=DATASET)[0] == 404  # outside the prefix
    assert port.ask(path="/ext_authz-other" + DATASET)[0] == 404
    status, _, body = port.ask(path="/healthz", headers={"host": "x"})
    assert (status, body) == (200, b"SERVING")
    status, headers, _ = port.ask(headers={**GATEWAY_SETS, "x-padding": "a" * 70_000})
    assert status == 431 and headers.get("connection") == "close"
    status, _, _ = port.ask(raw=b"GET /ext_authz/x HTTP/1.1\r\nbad header line\r\n\r\n")
    assert status == 400
    status, _, _ = port.ask(raw=b"GET /ext_authz" + DATASET.encode()
                            + b" HTTP/1.1\r\nx-purpose: \xff\xfe\r\n\r\n")
    assert status == 400


def test_the_port_picks_up_rotated_certificates_for_new_connections(served):
    running, ca, directory, tls = served
    port = gateway_port(served)

    def served_serial() -> int:
        with port.connect() as connection:
            der = connection.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    kept = port.connect()  # an open connection keeps its session across the rotation
    before = served_serial()
    fresh = ca.server_cert()
    write_atomically(tls["tls_key"], fresh.key_pem.decode())
    write_atomically(tls["tls_cert"], fresh.cert_pem.decode())
    running.holder.polled()  # what the watcher does on each poll
    assert served_serial() != before
    assert port.ask(connection=kept)[0] == 200
    kept.close()
    # The HTTP port read the new files first; the gRPC port must serve them too.
    context = ssl.create_default_context(cadata=ca.pem.decode())
    context.load_cert_chain(*reversed(ca.issue(uris=(GATEWAY_ID,)).write(directory, "grpc-c")))
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", running.port), timeout=10),
                             server_hostname="tiergate.internal") as grpc_side:
        der = grpc_side.getpeercert(binary_form=True)
    assert x509.load_der_x509_certificate(der).serial_number == served_serial()


def test_plaintext_beyond_loopback_needs_allow_plaintext():
    with pytest.raises(ValueError, match="http_check_listen"):
        ServeConfig(policy_dir=POLICIES, listen="127.0.0.1:0",
                    http_check_listen="0.0.0.0:50053")
    assert ServeConfig(policy_dir=POLICIES, listen="127.0.0.1:0", allow_plaintext=True,
                       http_check_listen="0.0.0.0:50053").http_check_listen


def test_the_shipped_examples_agree_with_each_other_and_with_the_server():
    """examples/envoy/envoy-http.yaml asks where examples/envoy/tiergate.toml serves, on the
    prefix and health path the server answers, and forwards the token where the shipped
    mapping reads it."""
    import tomllib

    import yaml

    from tiergate.server.ext_authz_http import CHECK_PREFIX, HEALTH_PATH
    from tiergate.server.mapping import load_mapping

    examples = POLICIES.parent / "examples" / "envoy"
    served = tomllib.loads((examples / "tiergate.toml").read_text(encoding="utf-8"))
    envoy = yaml.safe_load((examples / "envoy-http.yaml").read_text(encoding="utf-8"))
    filters = {f["name"]: f["typed_config"] for f in envoy["static_resources"]["listeners"][0]
               ["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]}
    http_service = filters["envoy.filters.http.ext_authz"]["http_service"]
    [cluster] = [c for c in envoy["static_resources"]["clusters"]
                 if c["name"] == http_service["server_uri"]["cluster"]]
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert (endpoint["endpoint"]["address"]["socket_address"]["port_value"]
            == int(served["http_check_listen"].rpartition(":")[2]))
    assert http_service["path_prefix"] == CHECK_PREFIX
    assert cluster["health_checks"][0]["http_health_check"]["path"] == HEALTH_PATH
    [provider] = filters["envoy.filters.http.jwt_authn"]["providers"].values()
    forwarded = provider["forward_payload_header"]
    assert forwarded == load_mapping(POLICIES / "gateway.toml").jwt_payload_header
    stripped = [m["remove"] for m in filters["envoy.filters.http.header_mutation"]["mutations"]
                ["request_mutations"] if "remove" in m]
    assert forwarded in stripped  # a client's copy never reaches jwt_authn or Tiergate
