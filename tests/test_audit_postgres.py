"""The audit log in a real PostgreSQL (started by .ci/run): many replicas, one database, one chain
each; the same verification; and a database that drops its connections fails decisions closed."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import BASE_REQUEST, instant
from server_support import poll_until, running_server, to_proto
from test_audit_log import Load, cli, timeless
from tiergate.audit.record import parse_record
from tiergate.audit.store import open_store

NOW = instant("2026-11-22T10:00:00+08:00")


@pytest.fixture
def database():
    """A fresh database in the test PostgreSQL; its URL."""
    url = os.environ.get("TIERGATE_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("TIERGATE_TEST_POSTGRES is not set: .ci/run starts PostgreSQL and sets it")
        pytest.skip("no PostgreSQL (TIERGATE_TEST_POSTGRES); .ci/run starts one")
    import psycopg

    name = "tiergate_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def replica(database, chain: str, **settings):
    return running_server(audit_log=database, audit_chain=chain, audit_checkpoint_interval=0.2,
                          clock=lambda: NOW, accept_request_time=False, **settings)


def test_replicas_write_their_own_chains_into_one_database_and_it_verifies(database, tmp_path):
    key = tmp_path / "audit.key"
    assert cli("audit", "keygen", "--out", str(key))[0] == 0
    request = to_proto(timeless(BASE_REQUEST))
    with replica(database, "replica-a", audit_key=key) as (_, a, _c), \
            replica(database, "replica-b", audit_key=key) as (_, b, _d):
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: (a if i % 2 else b).Decide(request).decision_id,
                                range(200)))
    store = open_store(database)
    try:
        assert store.chains() == ["replica-a", "replica-b"]
        kept = [parse_record(r.body) for chain in store.chains() for r in store.records(chain)]
    finally:
        store.close()
    assert sorted(r.decision_id for r in kept) == sorted(ids)
    assert {r.chain for r in kept} == {"replica-a", "replica-b"}
    code, out, _ = cli("audit", "verify", database, "--verify-key", f"{key}.pub")
    assert code == 0, out
    assert "chain replica-a: 100 records" in out and "chain replica-b: 100 records" in out
    code, out, _ = cli("audit", "query", database, "--subject", "u-1042")
    assert code == 0 and len(out.splitlines()) == 200

    import psycopg
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("UPDATE audit_records SET body = convert_to(replace(convert_from(body, 'UTF8'), "
                   "'\"outcome\":\"PERMIT\"', '\"outcome\":\"DENY\"'), 'UTF8') "
                   "WHERE chain = 'replica-b' AND seq = 7")
    code, out, _ = cli("audit", "verify", database, "--verify-key", f"{key}.pub")
    assert code == 2 and "chain replica-b, record 7" in out and "was changed" in out


def test_a_database_that_drops_connections_fails_decisions_closed_then_recovers(database):
    import psycopg

    request = to_proto(timeless(BASE_REQUEST))
    with replica(database, "replica-a", threads=8) as (running, stub, _):
        load = Load(stub, request).start()
        answered, failed = load.answered, load.failed
        with psycopg.connect(database, autocommit=True) as admin:
            for _ in range(10):  # the database "restarts" for about a second
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "datname = current_database() AND pid <> pg_backend_pid()")
                threading.Event().wait(0.1)
        poll_until(lambda: running.audit.healthy, 20)  # reconnecting may take a while
        before = len(answered)
        poll_until(lambda: len(answered) > before, 10)
        load.stop()
    assert failed and set(failed) == {grpc.StatusCode.UNAVAILABLE}
    assert len(answered) > before, "decisions did not resume once the database was back"
    store = open_store(database)
    try:
        kept = {parse_record(r.body).decision_id for r in store.records("replica-a")}
    finally:
        store.close()
    assert [i for i in answered if i not in kept] == []
