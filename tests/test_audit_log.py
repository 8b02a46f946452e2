"""The decision log, end to end: a real server on 127.0.0.1 records every answer it gives, and
`tiergate audit` finds, proves, exports, prunes — and catches every kind of edit to the file."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tiergate.audit.journal import journal_path, read_frames
from tiergate.audit.merkle import leaf_hash
from tiergate.audit.record import parse_record
from tiergate.audit.store import open_store
from tiergate.cli.main import main as tiergate
from tiergate.v1 import audit_pb2, audit_pb2_grpc
from tiergate.v1 import authorizer_pb2 as pb

from conftest import BASE_REQUEST, POLICIES, REPO, as_stated_directory, instant
from server_support import poll_until, running_server, to_proto
from test_ext_authz_server import DATASET, HEADERS, check_request

NOW = instant("2026-11-22T10:00:00+08:00")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tiergate(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def keys(tmp_path):
    code, _, _ = cli("audit", "keygen", "--out", str(tmp_path / "audit.key"))
    assert code == 0
    assert stat.S_IMODE((tmp_path / "audit.key").stat().st_mode) == 0o600
    return tmp_path / "audit.key", tmp_path / "audit.key.pub"


@contextlib.contextmanager
def audited_server(tmp_path, keys=None, **settings):
    settings = {"audit_log": str(tmp_path / "audit.db"), "audit_chain": "gw-1",
                "audit_checkpoint_interval": 0.2, "clock": lambda: NOW,
                "accept_request_time": False, **settings}
    if keys is not None:
        settings["audit_key"] = keys[0]
    with running_server(**settings) as (running, stub, channel):
        yield running, stub, channel


def timeless(request: dict) -> dict:
    out = json.loads(json.dumps(request))
    out["context"].pop("time", None)
    return out


def records(db: Path) -> list:
    store = open_store(db, create=False)
    try:
        return [parse_record(row.body) for chain in store.chains()
                for row in store.records(chain) if row.body is not None]
    finally:
        store.close()


def durable_records(db: Path, chain: str = "gw-1") -> list:
    """What a running server has made durable: the database, and its chain's journal (records
    the writer moves into the database a moment after answering)."""
    journaled = [parse_record(body) for _, _, body in read_frames(journal_path(db, chain))]
    return records(db) + journaled


class Load:
    """Decide calls from 4 threads until stopped (at most 5,000 in all): the ids answered and
    the status codes of the calls that failed."""

    def __init__(self, stub, request):
        self.answered: list[str] = []
        self.failed: list = []
        self._stub, self._request = stub, request
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(4)]

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.answered) + len(self.failed) < 5000:
            try:
                self.answered.append(self._stub.Decide(self._request, timeout=10).decision_id)
            except grpc.RpcError as error:
                self.failed.append(error.code())

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def write_log(tmp_path, keys, count: int = 12) -> tuple[Path, list[str]]:
    """A signed log of `count` answers (decisions, a refusal), all under checkpoints."""
    ids = []
    with audited_server(tmp_path, keys) as (running, stub, _):
        for index in range(count):
            request = timeless(BASE_REQUEST)
            if index % 3 == 1:
                request["purpose"] = "commercial"  # a DENY
            ids.append(stub.Decide(to_proto(request)).decision_id)
    return tmp_path / "audit.db", ids


# ----------------------------------------------------------------------------------------------
# What is recorded


def test_every_answer_is_recorded_before_it_is_given_with_what_was_decided(tmp_path, keys):
    db = tmp_path / "audit.db"
    with audited_server(tmp_path, keys) as (running, stub, channel):
        # A catalogued dataset named by id only: the record holds the catalog's attributes.
        by_id = timeless(BASE_REQUEST)
        by_id["resource"] = {"id": "ds-cardio-2025"}
        permit = stub.Decide(to_proto(by_id))
        cached = stub.Decide(to_proto(by_id))  # from the decision cache, recorded all the same
        explained = stub.Decide(to_proto(by_id, explain=True))  # carries file:line locations
        bad = timeless(BASE_REQUEST)
        bad["purpose"] = "curiosity"
        with pytest.raises(grpc.RpcError) as refused:
            stub.Decide(to_proto(bad))
        refused_id = dict(refused.value.trailing_metadata())["tiergate-decision-id"]
        batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(by_id), to_proto(bad)]))
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check(
            check_request("GET", DATASET + "?rows=10", {k: v for k, v in HEADERS.items()
                                                         if k != "x-tiergate-time"}))
        # SECURITY: the log file says who asked for which medical data: owner-only.
        for name in ("audit.db", "audit.db-wal", "audit.db-shm", "audit.db.journal.gw-1"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert permit.effect == pb.PERMIT
        # Durable before each answer returned.
        kept = {r.decision_id: r for r in durable_records(db)}
    assert permit.decision_id in kept and cached.decision_id in kept
    assert batch.results[0].decision.decision_id in kept
    record = kept[permit.decision_id]
    assert record.outcome == "PERMIT" and record.entry == "Decide"
    assert record.request["resource"] == {
        "id": "ds-cardio-2025", "catalog_class": "medical_service", "tier": "conditional",
        "personal": False, "owner_org_id": "fz-hosp-1", "shareable": True}
    assert record.request["context"]["time"] == "2026-11-22T02:00:00Z"  # the server's clock
    assert record.grant_id == permit.grant_id == "fz-2026-017"
    assert [(r.rule_id, r.citation) for r in record.reasons] == [
        (r.rule_id, r.citation) for r in permit.reasons]
    assert sorted(o.id for o in record.obligations) == sorted(o.id for o in permit.obligations)
    assert record.policy_revision == permit.policy_revision
    assert record.caller.peer.startswith("ipv4:127.0.0.1:")
    assert kept[cached.decision_id].request == record.request
    assert kept[cached.decision_id].reasons == record.reasons
    refusal = kept[refused_id]
    assert refusal.outcome == "REFUSED" and refusal.refusal.code == "invalid_request"
    assert refusal.refusal.problems[0].attribute == "purpose"
    assert refusal.refusal.problems[0].value == "curiosity"
    assert refusal.refusal.claimed.subject == "u-1042"
    assert [r.entry for r in kept.values()].count("DecideBatch") == 2
    check_id = next(h.header.value for h in check.ok_response.headers
                    if h.header.key == "x-tiergate-decision-id")
    via_gateway = kept[check_id]
    assert via_gateway.entry == "Check" and via_gateway.outcome == "PERMIT"
    assert via_gateway.http.method == "GET" and via_gateway.http.path == DATASET  # no query
    assert kept[explained.decision_id].outcome == "PERMIT"
    stored = b"".join(row.body for row in open_store(db, create=False).records("gw-1"))
    for path in (as_stated_directory(), REPO):  # no server paths in records
        assert str(path).encode() not in stored


def test_concurrent_calls_share_commits(tmp_path):
    with audited_server(tmp_path, threads=8) as (running, stub, _):
        request = to_proto(timeless(BASE_REQUEST))
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: stub.Decide(request).decision_id, range(400)))
        audit = running.audit
        assert audit.committed == 400
        batches = audit.batches
    assert batches < 400, "every decision had its own commit"
    assert {r.decision_id for r in records(tmp_path / "audit.db")} == set(ids)


def test_a_restarted_server_continues_its_chain_and_the_log_verifies(tmp_path, keys):
    write_log(tmp_path, keys, 5)
    write_log(tmp_path, keys, 4)
    seqs = [r.seq for r in records(tmp_path / "audit.db")]
    assert seqs == list(range(9))
    code, out, _ = cli("audit", "verify", str(tmp_path / "audit.db"), "--verify-key", str(keys[1]))
    assert code == 0, out
    assert "chain gw-1: 9 records" in out


def test_a_log_without_a_key_still_verifies_and_says_it_is_unsigned(tmp_path):
    write_log(tmp_path, None, 4)
    code, out, _ = cli("audit", "verify", str(tmp_path / "audit.db"))
    assert code == 0, out
    assert "UNSIGNED" in out


# ----------------------------------------------------------------------------------------------
# Tamper evidence: each edit made to the database directly, the way someone covering tracks would


def tampered(tmp_path, name: str, *statements: str) -> Path:
    copy = tmp_path / f"{name}.db"
    shutil.copy(tmp_path / "audit.db", copy)
    db = sqlite3.connect(copy)
    for statement in statements:  # SQL text, or (SQL, parameters)
        db.execute(*((statement,) if isinstance(statement, str) else statement))
    db.commit()
    db.close()
    return copy


def verify(db: Path, keys, *extra: str) -> tuple[int, str]:
    code, out, _ = cli("audit", "verify", str(db), "--verify-key", str(keys[1]), *extra)
    return code, out


@pytest.fixture
def signed_log(tmp_path, keys):
    db, ids = write_log(tmp_path, keys)
    code, out = verify(db, keys)
    assert code == 0, out
    return db, ids


def test_verify_finds_a_changed_record_and_names_it(tmp_path, keys, signed_log):
    db, ids = signed_log
    changed = tampered(tmp_path, "changed", "UPDATE audit_records SET body = "
                       "replace(body, '\"outcome\":\"DENY\"', '\"outcome\":\"PERMIT\"') "
                       "WHERE seq = 4")
    code, out = verify(changed, keys)
    assert code == 2
    assert f"record 4 (decision {ids[4]}): the record was changed" in out


def test_verify_finds_a_changed_record_whose_hash_was_rewritten_too(tmp_path, keys, signed_log):
    db, ids = signed_log
    store = open_store(db, create=False)
    row = next(r for r in store.records("gw-1") if r.seq == 4)
    store.close()
    body = row.body.replace(b'"outcome":"DENY"', b'"outcome":"PERMIT"')
    copy = tampered(tmp_path, "rehashed",
                    ("UPDATE audit_records SET body = ?, leaf = ? WHERE seq = 4",
                     (body, leaf_hash(body))),
                    "UPDATE audit_index SET outcome = 'PERMIT' WHERE seq = 4")
    code, out = verify(copy, keys)
    assert code == 2
    assert "does not match the records: a record between 0 and 11" in out


def test_verify_finds_a_deleted_record(tmp_path, keys, signed_log):
    code, out = verify(tampered(tmp_path, "deleted",
                                "DELETE FROM audit_records WHERE seq = 5"), keys)
    assert code == 2
    assert "record 5: records 5 to 5 are missing (deleted)" in out


def test_verify_finds_an_inserted_record(tmp_path, keys, signed_log):
    db, ids = signed_log
    # Make room at 3 and put a forged copy of record 2 there.
    inserted = tampered(
        tmp_path, "inserted",
        "UPDATE audit_records SET seq = -seq - 1 WHERE seq >= 3",
        "UPDATE audit_records SET seq = -seq WHERE seq < 0",
        "INSERT INTO audit_records SELECT chain, 3, time_us, body, leaf FROM audit_records "
        "WHERE seq = 2")
    code, out = verify(inserted, keys)
    assert code == 2
    assert f"record 3 (decision {ids[2]}): the record says it is record 2" in out


def test_verify_finds_reordered_records(tmp_path, keys, signed_log):
    db, ids = signed_log
    reordered = tampered(tmp_path, "reordered",
                         "UPDATE audit_records SET seq = -1 WHERE seq = 2",
                         "UPDATE audit_records SET seq = 2 WHERE seq = 6",
                         "UPDATE audit_records SET seq = 6 WHERE seq = -1")
    code, out = verify(reordered, keys)
    assert code == 2
    assert f"record 2 (decision {ids[6]}): the record says it is record 6" in out
    assert f"record 6 (decision {ids[2]}): the record says it is record 2" in out


def test_verify_finds_a_truncated_log_against_its_own_and_outside_checkpoints(tmp_path, keys,
                                                                              signed_log):
    code, out = verify(tampered(tmp_path, "truncated",
                                "DELETE FROM audit_records WHERE seq >= 10"), keys)
    assert code == 2
    assert "the log is truncated: a stored checkpoint covers 12 records, only 10 are stored" in out
    # Deleting the checkpoints too is caught by a checkpoint kept outside (a regulator's copy).
    _, note, _ = cli("audit", "checkpoints", str(tmp_path / "audit.db"), "--latest")
    (tmp_path / "handed-out.checkpoint").write_text(note, encoding="utf-8")
    covered = tampered(tmp_path, "covered", "DELETE FROM audit_records WHERE seq >= 10",
                       "DELETE FROM audit_checkpoints")
    code, out = verify(covered, keys, "--checkpoint", str(tmp_path / "handed-out.checkpoint"))
    assert code == 2
    assert "checkpoint given with --checkpoint covers 12 records, only 10 are stored" in out


def test_verify_finds_a_forged_checkpoint(tmp_path, keys, signed_log):
    forged = tampered(tmp_path, "forged", "UPDATE audit_checkpoints SET note = "
                      "replace(note, 'time 2026', 'time 2025')")
    code, out = verify(forged, keys)
    assert code == 2
    assert "is not signed by tiergate-audit" in out


def test_verify_finds_a_changed_index_column(tmp_path, keys, signed_log):
    db, ids = signed_log
    code, out = verify(tampered(tmp_path, "column",
                                "UPDATE audit_index SET subject = 'someone-else' WHERE seq = 7"),
                       keys)
    assert code == 2
    assert f"record 7 (decision {ids[7]}): the indexed column subject says 'someone-else'" in out


# ----------------------------------------------------------------------------------------------
# Proofs a regulator checks with only the public key


def test_inclusion_and_consistency_proofs_check_with_the_public_key_alone(tmp_path, keys,
                                                                         signed_log):
    db, ids = signed_log
    proof = tmp_path / "proof.json"
    code, _, err = cli("audit", "prove", str(db), ids[3], "--out", str(proof))
    assert code == 0, err
    code, out, _ = cli("audit", "check-proof", str(proof), "--verify-key", str(keys[1]))
    assert code == 0 and out.startswith("ok: tiergate-inclusion-proof/v1, 1 record(s)")
    document = json.loads(proof.read_text(encoding="utf-8"))
    document["record"] = document["record"].replace('"outcome":"PERMIT"', '"outcome":"DENY"')
    proof.write_text(json.dumps(document), encoding="utf-8")
    code, _, err = cli("audit", "check-proof", str(proof), "--verify-key", str(keys[1]))
    assert code == 2 and "not in the tree the checkpoint signs" in err
    other = tmp_path / "other.key"
    cli("audit", "keygen", "--out", str(other))
    cli("audit", "prove", str(db), ids[3], "--out", str(proof))
    code, _, err = cli("audit", "check-proof", str(proof), "--verify-key", f"{other}.pub")
    assert code == 2 and "is not signed by" in err

    store = open_store(db, create=False)
    sizes = [c.size for c in store.checkpoints("gw-1")]
    store.close()
    consistency = tmp_path / "consistency.json"
    code, _, err = cli("audit", "consistency", str(db), str(sizes[0]), str(sizes[-1]),
                       "--out", str(consistency))
    assert code == 0, err
    code, out, _ = cli("audit", "check-proof", str(consistency), "--verify-key", str(keys[1]))
    assert code == 0 and "tiergate-consistency-proof/v1" in out


def test_a_checkpoint_of_a_rewritten_history_is_not_consistent(tmp_path, keys):
    """Two logs that share a first checkpoint and then differ: the later cannot be proved to
    extend the earlier."""
    db, _ = write_log(tmp_path, keys, 3)
    _, old_note, _ = cli("audit", "checkpoints", str(db), "--latest")
    (tmp_path / "old.checkpoint").write_text(old_note, encoding="utf-8")
    write_log(tmp_path, keys, 4)
    consistency = tmp_path / "consistency.json"
    assert cli("audit", "consistency", str(db), str(tmp_path / "old.checkpoint"), "7",
               "--out", str(consistency))[0] == 0
    document = json.loads(consistency.read_text(encoding="utf-8"))
    document["old"] = document["old"].replace(document["old"].split("\n")[2],
                                              "A" * 43 + "=")
    consistency.write_text(json.dumps(document), encoding="utf-8")
    code, _, err = cli("audit", "check-proof", str(consistency))
    assert code == 2 and "does not extend" in err


# ----------------------------------------------------------------------------------------------
# Query, export, prune


def test_query_filters_by_every_attribute_an_auditor_names(tmp_path, keys, signed_log):
    db, ids = signed_log
    def found(*options):
        code, out, err = cli("audit", "query", str(db), *options)
        assert code == 0, err
        return [json.loads(line)["decision_id"] for line in out.splitlines()]
    assert found() == ids
    assert found("--effect", "DENY") == ids[1::3]
    assert found("--subject", "u-1042", "--org", "fzu", "--dataset", "ds-cardio-2025",
                 "--owner", "fz-hosp-1") == ids
    assert found("--grant", "fz-2026-017") == [i for n, i in enumerate(ids) if n % 3 != 1]
    deny_rules = {r.rule_id for r in records(db) if r.outcome == "DENY" for r in r.reasons}
    assert found("--rule", sorted(deny_rules)[0]) == ids[1::3]
    assert found("--subject", "nobody") == []
    assert found("--since", "2026-11-22T10:00:00+08:00") == ids
    assert found("--until", "2026-11-22T10:00:00+08:00") == []
    code, out, _ = cli("audit", "query", str(db), "--effect", "DENY", "--format", "table")
    assert code == 0 and out.count("DENY") == 4
    code, _, err = cli("audit", "query", str(db), "--since", "yesterday")
    assert code == 1 and "--since 'yesterday' is not an RFC 3339 time" in err


def test_export_for_a_producing_unit_is_its_records_with_proofs(tmp_path, keys, signed_log):
    db, ids = signed_log
    out_file = tmp_path / "fz-hosp-1.json"
    code, _, err = cli("audit", "export", str(db), "--owner", "fz-hosp-1", "--out", str(out_file))
    assert code == 0 and "12 record(s) in 1 segment(s)" in err
    code, out, _ = cli("audit", "check-proof", str(out_file), "--verify-key", str(keys[1]))
    assert code == 0 and "12 record(s) proved" in out
    code, _, err = cli("audit", "export", str(db), "--owner", "another-hospital",
                       "--out", str(out_file))
    assert code == 0 and "0 record(s)" in err
    code, _, err = cli("audit", "export", str(db), "--operator", "--out", str(out_file))
    assert code == 0 and "12 record(s)" in err


def test_prune_refuses_young_records_and_leaves_the_log_verifiable(tmp_path, keys, signed_log):
    db, ids = signed_log
    code, _, err = cli("audit", "prune", str(db), "--before", "2026-11-23T00:00:00Z")
    assert code == 1 and "younger than the retention period" in err
    code, _, err = cli("audit", "prune", str(db), "--before", "2026-11-23T00:00:00Z",
                       "--retention-days", "30")
    assert code == 1 and "shorter than the three years" in err
    code, out, err = cli("audit", "prune", str(db), "--before", "2026-11-23T00:00:00Z",
                         "--now", "2030-01-01T00:00:00Z")
    assert code == 0, err
    assert "pruned 12 record(s)" in out
    code, out = verify(db, keys)
    assert code == 0 and "12 pruned" in out, out
    assert cli("audit", "query", str(db))[1] == ""
    db_file = sqlite3.connect(db)
    remaining = db_file.execute("SELECT (SELECT count(*) FROM audit_records WHERE body IS NOT "
                                "NULL) + (SELECT count(*) FROM audit_index) + "
                                "(SELECT count(*) FROM audit_rules)").fetchone()[0]
    assert remaining == 0  # who asked for what is gone; seq, time and hash stay
    assert db_file.execute("SELECT count(*) FROM audit_records").fetchone()[0] == 12


# ----------------------------------------------------------------------------------------------
# Fail closed


def test_when_the_log_cannot_be_written_no_answer_is_given_and_health_says_so(tmp_path):
    db = tmp_path / "audit.db"
    with audited_server(tmp_path, threads=8, audit_wait_seconds=5.0) as (running, stub, channel):
        health = health_pb2_grpc.HealthStub(channel)
        request = to_proto(timeless(BASE_REQUEST))
        statuses = []
        load = Load(stub, request).start()
        answered, failed = load.answered, load.failed
        # Another process takes the database's write lock for longer than the writer waits.
        blocker = sqlite3.connect(db, timeout=10)
        blocker.execute("BEGIN EXCLUSIVE")
        for _ in range(100):
            statuses.append(health.Check(health_pb2.HealthCheckRequest(service="")).status)
            if statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            threading.Event().wait(0.1)
        during = len(answered)
        threading.Event().wait(0.5)
        assert len(answered) == during, "answers were given while the log could not be written"
        blocker.rollback()
        blocker.close()
        poll_until(lambda: health.Check(health_pb2.HealthCheckRequest(service="")).status
                   == health_pb2.HealthCheckResponse.SERVING, 6)
        after = len(answered)
        poll_until(lambda: len(answered) > after, 10)
        load.stop()
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert failed and set(failed) == {grpc.StatusCode.UNAVAILABLE}
    assert len(answered) > after, "decisions did not resume once the log could be written"
    kept = {r.decision_id for r in records(db)}
    missing = [i for i in answered if i not in kept]
    assert missing == [], f"{len(missing)} answers were given without a record"


def test_a_gateway_gets_a_denial_when_the_log_cannot_be_written(tmp_path):
    db = tmp_path / "audit.db"
    with audited_server(tmp_path, audit_wait_seconds=1.0) as (running, stub, channel):
        check = external_auth_pb2_grpc.AuthorizationStub(channel)
        headers = {k: v for k, v in HEADERS.items() if k != "x-tiergate-time"}
        assert check.Check(check_request("GET", DATASET, headers)).status.code == 0
        blocker = sqlite3.connect(db, timeout=10)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            # Answers go on while the journal holds their records, until the database has
            # refused them for longer than the writer waits (about 2 s): then denials.
            for _ in range(100):
                response = check.Check(check_request("GET", DATASET, headers))
                if response.status.code != 0:
                    break
                threading.Event().wait(0.1)
        finally:
            blocker.rollback()
            blocker.close()
    assert response.status.code == 14  # UNAVAILABLE, with a 503 and a body saying why
    assert response.denied_response.status.code == 503
    assert json.loads(response.denied_response.body)["error"] == "audit"


# ----------------------------------------------------------------------------------------------
# The supervision port


def test_the_audit_service_queries_follows_and_hands_out_checkpoints(tmp_path, keys):
    with audited_server(tmp_path, keys) as (running, stub, channel):
        audit = audit_pb2_grpc.AuditStub(channel)
        request = timeless(BASE_REQUEST)
        first = stub.Decide(to_proto(request)).decision_id
        followed = audit.Follow(audit_pb2.AuditFollow(), timeout=10)
        got: list = []
        reader = threading.Thread(target=lambda: got.append(next(followed)))
        reader.start()
        threading.Event().wait(0.3)
        request["purpose"] = "commercial"
        second = stub.Decide(to_proto(request)).decision_id
        reader.join(timeout=10)
        followed.cancel()
        assert [parse_record(e.record).decision_id for e in got] == [second]
        # A record is searchable within a moment of being answered (its index is written after).
        for _ in range(50):
            denied = list(audit.Query(audit_pb2.AuditQuery(effect="DENY")))
            if denied:
                break
            threading.Event().wait(0.1)
        assert [parse_record(e.record).decision_id for e in denied] == [second]
        everything = list(audit.Query(audit_pb2.AuditQuery(subject="u-1042")))
        assert [parse_record(e.record).decision_id for e in everything] == [first, second]
        page = list(audit.Query(audit_pb2.AuditQuery(limit=1)))
        rest = list(audit.Query(audit_pb2.AuditQuery(after=audit_pb2.AuditPosition(
            chain=page[0].chain, seq=page[0].seq))))
        assert [e.seq for e in page + rest] == [0, 1]
        with pytest.raises(grpc.RpcError) as bad:
            list(audit.Query(audit_pb2.AuditQuery(effect="MAYBE")))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        threading.Event().wait(0.5)
        notes = audit.GetCheckpoints(audit_pb2.GetCheckpointsRequest()).notes
    from tiergate.audit.note import is_signed_by, parse_checkpoint, read_verifier
    verifier = read_verifier(keys[1].read_text())
    assert len(notes) == 1 and is_signed_by(notes[0], verifier)
    assert parse_checkpoint(notes[0]).size == 2


def test_the_cli_records_its_decisions_when_asked(tmp_path):
    db = tmp_path / "audit.db"
    requests = tmp_path / "requests.jsonl"
    bad = dict(BASE_REQUEST, purpose="curiosity")
    requests.write_text(json.dumps(BASE_REQUEST) + "\n" + json.dumps(bad) + "\n",
                        encoding="utf-8")
    code, out, _ = cli("decide", str(POLICIES), str(requests), "--audit-log", str(db))
    assert code == 1  # one request was refused
    printed = [json.loads(line) for line in out.splitlines()]
    kept = {r.decision_id: r for r in records(db)}
    assert set(kept) == {printed[0]["decision_id"], printed[1]["decision_id"]}
    assert {r.entry for r in kept.values()} == {"cli"}
    assert kept[printed[0]["decision_id"]].outcome == printed[0]["effect"]
    assert kept[printed[1]["decision_id"]].refusal.problems[0].attribute == "purpose"
    assert kept[printed[0]["decision_id"]].caller.peer.startswith("local:")
