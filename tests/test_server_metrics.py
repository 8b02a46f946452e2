"""Prometheus metrics: a real server on 127.0.0.1, scraped with a real HTTP GET and read with
prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from conftest import BASE_REQUEST, instant
from server_support import poll_until, running_server, to_proto
from test_audit_log import timeless
from test_ext_authz_server import DATASET, HEADERS, check_request
from tiergate.v1 import authorizer_pb2 as pb

NOW = instant("2026-11-22T10:00:00+08:00")


def scrape(port: int) -> dict:
    """{(name, frozenset(labels)): value} from GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_answers_errors_latency_cache_policy_grants_and_the_audit_log(tmp_path):
    with running_server(metrics_listen="127.0.0.1:0", audit_log=str(tmp_path / "audit.db"),
                        clock=lambda: NOW, accept_request_time=False) as (running, stub, channel):
        request = timeless(BASE_REQUEST)
        permit = stub.Decide(to_proto(request))
        stub.Decide(to_proto(request))  # from the cache
        bad = dict(request, purpose="curiosity")
        with pytest.raises(grpc.RpcError):
            stub.Decide(to_proto(bad))
        stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(request), to_proto(bad)]))
        external_auth_pb2_grpc.AuthorizationStub(channel).Check(
            check_request("GET", DATASET, {k: v for k, v in HEADERS.items()
                                           if k != "x-tiergate-time"}))
        samples = scrape(running.metrics.port)
        policy = running.holder.current.policy

    def value(name, **labels):
        return samples.get((name, frozenset(labels.items())))

    rule = permit.reasons[0].rule_id
    assert value("tiergate_decisions_total", method="Decide", effect="PERMIT", rule=rule) == 2
    assert value("tiergate_decisions_total", method="DecideBatch", effect="PERMIT", rule=rule) == 1
    assert value("tiergate_decisions_total", method="Check", effect="PERMIT", rule=rule) == 1
    assert value("tiergate_request_errors_total", method="Decide", attribute="purpose") == 1
    assert value("tiergate_request_errors_total", method="DecideBatch", attribute="purpose") == 1
    assert value("tiergate_call_seconds_count", method="Decide") == 3
    assert value("tiergate_call_seconds_count", method="DecideBatch") == 1
    assert value("tiergate_call_seconds_count", method="Check") == 1
    assert value("tiergate_cache_hits_total") >= 1 and value("tiergate_cache_misses_total") >= 1
    assert value("tiergate_policy_info", revision=policy.revision) == 1
    expiring = sum(1 for g in policy.grants if NOW <= g.expires < NOW + 30 * 86_400_000_000)
    assert value("tiergate_grants_expiring_30d") == expiring
    assert value("tiergate_audit_records_total") == 6  # 3 Decide, 2 in the batch, 1 Check
    assert value("tiergate_audit_healthy") == 1
    assert value("tiergate_audit_commit_seconds_count") >= 1
    assert value("tiergate_audit_pending") == 0


def test_a_reload_is_counted_and_the_new_revision_shown(tmp_path):
    from server_support import copy_policies, write_atomically

    policies = copy_policies(tmp_path)
    with running_server(policies, metrics_listen="127.0.0.1:0", reload_interval=0.1,
                        audit_log=str(tmp_path / "audit.db")) as (running, stub, _):
        before = running.holder.current.policy.revision
        target = next(policies.glob("*.policy"))
        write_atomically(target, target.read_text(encoding="utf-8") + "\n# edited\n")
        poll_until(lambda: running.holder.current.policy.revision != before, 10)
        write_atomically(target, "rule broken {\n")
        poll_until(lambda: running.holder.last_failure is not None, 10)
        samples = scrape(running.metrics.port)
        after = running.holder.current.policy.revision
    assert after != before
    assert samples[("tiergate_reloads_total", frozenset({("outcome", "success")}))] == 1
    assert samples[("tiergate_reloads_total", frozenset({("outcome", "failure")}))] == 1
    assert samples[("tiergate_policy_info", frozenset({("revision", after)}))] == 1
