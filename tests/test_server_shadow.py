"""Trying a candidate policy on real traffic: `serve --shadow CANDIDATE_DIR` answers with the
served policy, decides each call with the candidate too, and counts, logs and records the calls
the candidate would answer differently."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import urllib.request

from envoy.service.auth.v3 import external_auth_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tiergate.v1 import authorizer_pb2 as pb

from conftest import POLICIES, as_stated_directory, instant, make_request
from server_support import poll_until, running_server, to_proto, write_atomically
from test_audit_log import records
from test_ext_authz_server import DATASET, HEADERS, check_request

NOW = instant("2026-11-22T10:00:00+08:00")
# The candidate: fzu may no longer query under fz-2026-017 (only analyze).
GRANT_LINE = "  action      query, analyze\n  approved_by data_operator\n  agreement   \"FZ-2026-017\""


def candidate_directory(tmp_path):
    candidate = tmp_path / "candidate"
    shutil.copytree(as_stated_directory(), candidate)
    grants = candidate / "grants.policy"
    text = grants.read_text(encoding="utf-8")
    assert GRANT_LINE in text, "the reference grants changed"
    grants.write_text(text.replace(GRANT_LINE, GRANT_LINE.replace("query, analyze", "analyze")),
                      encoding="utf-8")
    return candidate


def test_the_served_policy_answers_and_each_difference_is_counted_logged_and_recorded(
        tmp_path, caplog):
    candidate = candidate_directory(tmp_path)
    db = tmp_path / "audit.db"
    served_query = to_proto(make_request(context__time=None))               # PERMIT → DENY
    same_analyze = to_proto(make_request(context__time=None, action="analyze"))  # PERMIT both
    with caplog.at_level(logging.INFO, logger="tiergate.shadow"):
        with running_server(shadow=candidate, audit_log=str(db), clock=lambda: NOW,
                            accept_request_time=False, metrics_listen="127.0.0.1:0") as (
                                running, stub, channel):
            answers = [stub.Decide(served_query, timeout=10) for _ in range(3)]  # 2 from cache
            kept_same = stub.Decide(same_analyze, timeout=10)
            batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[served_query, same_analyze]),
                                     timeout=10)
            info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=10)
            scraped = urllib.request.urlopen(
                f"http://127.0.0.1:{running.metrics.port}/metrics", timeout=10).read().decode()
            served_revision = running.holder.current.policy.revision
            running.stop(0)
    # Answered by the served policy, every time.
    assert all(a.effect == pb.PERMIT and a.grant_id == "fz-2026-017" for a in answers)
    assert kept_same.effect == pb.PERMIT
    assert [r.decision.effect for r in batch.results] == [pb.PERMIT, pb.PERMIT]
    # Counted: 6 decisions compared, 4 would change (3 Decide + 1 in the batch).
    assert info.shadow_revision and info.shadow_revision != served_revision
    assert (info.shadow_compared, info.shadow_differences) == (6, 4)
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    differences = {(s.labels["method"], s.labels["served"], s.labels["candidate"]): s.value
                   for s in families["tiergate_shadow_differences"].samples
                   if s.name.endswith("_total")}
    assert differences == {("Decide", "PERMIT", "DENY"): 3,
                           ("DecideBatch", "PERMIT", "DENY"): 1}
    shadow_info = [s for f in families.values() for s in f.samples
                   if s.name == "tiergate_shadow_policy_info"]
    assert [s.labels["revision"] for s in shadow_info] == [info.shadow_revision]
    # Logged with the request class and both sides' reasons.
    lines = [r.getMessage() for r in caplog.records if r.name == "tiergate.shadow"]
    assert len(lines) == 4 and "would be DENY" in lines[0] and "ds-cardio-2025" in lines[0]
    # Recorded: the records of the calls that would change say how.
    kept = records(db)
    changed = [r for r in kept if r.shadow is not None]
    assert len(changed) == 4 and len([r for r in kept if r.shadow is None]) == 2
    difference = changed[0].shadow
    assert difference.served.effect == "PERMIT" and difference.served.grant_id == "fz-2026-017"
    assert difference.candidate.effect == "DENY"
    assert difference.candidate.revision == info.shadow_revision
    assert difference.request_class["action"] == "query"
    assert difference.request_class["resource.id"] == "ds-cardio-2025"


def test_ext_authz_checks_are_shadowed_too(tmp_path):
    candidate = candidate_directory(tmp_path)
    policies = as_stated_directory()
    (policies / "gateway.toml").write_bytes((POLICIES / "gateway.toml").read_bytes())
    headers = {k: v for k, v in HEADERS.items() if k != "x-tiergate-time"}
    with running_server(policies, shadow=candidate, audit_log="off", clock=lambda: NOW,
                        accept_request_time=False) as (running, stub, channel):
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
        assert check(check_request("GET", DATASET, headers), timeout=10).status.code == 0
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=10)
    assert (info.shadow_compared, info.shadow_differences) == (1, 1)


def test_without_the_flag_there_is_no_shadow(tmp_path):
    with running_server(audit_log="off") as (running, stub, _):
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=10)
    assert running.shadow is None
    assert (info.shadow_revision, info.shadow_compared) == ("", 0)


def test_a_candidate_edit_that_does_not_compile_keeps_the_last_candidate(tmp_path):
    candidate = candidate_directory(tmp_path)
    with running_server(shadow=candidate, audit_log="off", reload_interval=0.05) as (
            running, stub, _):
        before = running.shadow.revision
        write_atomically(candidate / "access.policy",
                         (candidate / "access.policy").read_text(encoding="utf-8")
                         + "\nrule half-written {\n")
        assert poll_until(lambda: running.shadow.holder.last_failure is not None, 10)
        assert running.shadow.revision == before
        assert stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=10).shadow_revision == before


def test_a_candidate_that_does_not_compile_stops_the_start(tmp_path):
    candidate = candidate_directory(tmp_path)
    (candidate / "access.policy").write_text("rule broken {\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "tiergate.cli.main", "serve", str(POLICIES),
                           "--listen", "127.0.0.1:0", "--shadow", str(candidate),
                           "--audit-log", "off"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "access.policy" in done.stderr
