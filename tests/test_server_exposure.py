"""What the service tells a caller and writes to its log: no server paths to callers, and JSON
log lines when asked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from conftest import POLICIES
from server_support import copy_policies, running_server, write_atomically
from test_server_process import READY
from tiergate.server.service import public_source
from tiergate.server.reload import PolicyWatcher
from tiergate.v1 import authorizer_pb2 as pb


def test_policy_info_names_the_source_without_the_servers_path(tmp_path):
    policies = copy_policies(tmp_path)
    with running_server(policies) as (running, stub, _):
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert info.policy_dir == "policies"
        watcher = PolicyWatcher(running.holder, interval=0)
        target = sorted(policies.glob("*.policy"))[0]
        write_atomically(target, "rule broken {\n")
        watcher.poll()
        watcher.poll()  # the watcher compiles what it saw twice (a write may be under way)
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
    text = info.SerializeToString().decode("utf-8", "replace")
    assert info.last_reload_error.diagnostics
    assert any(line.startswith(f"{target.name}:") for line in info.last_reload_error.diagnostics)
    assert str(tmp_path) not in text


def test_a_bundle_url_is_shown_without_its_credentials_or_query():
    assert public_source("https://ci:s3cret@bundles.example.cn/p.bundle?token=x") == \
        "https://bundles.example.cn/p.bundle"
    assert public_source("/srv/tiergate/policies/") == "policies"


def test_json_logs_are_one_object_a_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tiergate.cli.main", "serve", str(POLICIES), "--listen",
         "127.0.0.1:0", "--log-format", "json", "--audit-log", "off", "--reload-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        assert READY.match(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "pid", "message"} <= set(l) for l in lines)
    assert any(l["level"] == "WARNING" and "audit log is OFF" in l["message"] for l in lines)
    assert any("stopped" in l["message"] for l in lines)


def test_calls_beyond_the_concurrency_limit_are_refused_not_queued(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from conftest import make_request
    from server_support import to_proto

    batch = pb.DecideBatchRequest(requests=[to_proto(make_request())] * 1000)
    with running_server(max_concurrent_calls=2, audit_log="off") as (running, stub, _):
        def call(_):
            try:
                stub.DecideBatch(batch, timeout=30)
                return "ok"
            except grpc.RpcError as error:
                return error.code()
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(call, range(24)))
        after = call(0)  # the limit is on calls at once, not in all
    assert "ok" in codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {"ok", grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert after == "ok"


def test_an_answer_over_max_response_bytes_is_refused_and_the_refusal_recorded(tmp_path):
    import grpc
    import pytest

    from conftest import make_request
    from server_support import to_proto
    from test_audit_log import records

    batch = pb.DecideBatchRequest(requests=[to_proto(make_request())] * 200)
    db = tmp_path / "audit.db"
    with running_server(max_response_bytes=10_000, audit_log=str(db)) as (running, stub, _):
        with pytest.raises(grpc.RpcError) as refused:
            stub.DecideBatch(batch, timeout=30)
        small = stub.DecideBatch(pb.DecideBatchRequest(requests=batch.requests[:5]), timeout=30)
        running.stop(0)  # commits and moves the journal into the database
        kept = records(db)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_response_bytes" in refused.value.details()
    assert len(small.results) == 5
    # The 200 decisions were never sent, so they are not recorded as answers; the refusal is.
    assert [r.refusal.code for r in kept if r.refusal] == ["too_large"]
    assert sum(1 for r in kept if r.refusal is None) == 5


def test_a_call_without_a_deadline_gets_the_servers(tmp_path):
    import grpc
    import pytest

    from conftest import make_request
    from server_support import to_proto

    batch = pb.DecideBatchRequest(requests=[to_proto(make_request())] * 100)
    with running_server(default_deadline=1e-6, audit_log="off") as (_, stub, _):
        with pytest.raises(grpc.RpcError) as stopped:
            stub.DecideBatch(batch)  # no deadline from the caller
    assert stopped.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_batch_of_bad_requests_gets_compact_errors_that_still_say_what_is_allowed(tmp_path):
    from tiergate.v1 import authorizer_pb2 as pb_

    batch = pb_.DecideBatchRequest(requests=[pb_.DecideRequest()] * 1000)  # all empty
    with running_server(audit_log="off") as (_, stub, _):
        answer = stub.DecideBatch(batch, timeout=30)
        single = pb_.DecideBatchResponse.FromString(
            stub.DecideBatch(pb_.DecideBatchRequest(requests=batch.requests[:1]),
                             timeout=30).SerializeToString())
    errors = [r.error for r in answer.results]
    assert len(errors) == 1000 and all(r.WhichOneof("result") == "error" for r in answer.results)
    first = {p.attribute: list(p.allowed) for p in errors[0].problems}
    assert first["action"], "the first error lists the allowed values"
    assert all(not p.allowed for e in errors[1:] for p in e.problems)
    assert all([p.attribute for p in e.problems] == [p.attribute for p in errors[0].problems]
               for e in errors)
    full = single.ByteSize()
    assert answer.ByteSize() < 0.5 * 1000 * full
