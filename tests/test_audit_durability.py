"""Nothing answered is lost: `tiergate serve` killed with SIGKILL under load, restarted on the
same chain, still holds the record of every decision a caller received."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import grpc

from conftest import BASE_REQUEST, POLICIES
from server_support import to_proto
from test_audit_log import cli, records, timeless
from test_server_process import READY
from tiergate.audit.journal import journal_path, read_frames
from tiergate.audit.record import parse_record
from tiergate.v1 import authorizer_pb2 as pb
from tiergate.v1 import authorizer_pb2_grpc as pb_grpc


def serve(db, key, *flags: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tiergate.cli.main", "serve", str(POLICIES), "--listen",
         "127.0.0.1:0", "--reload-interval", "0", "--threads", "8", "--audit-log", str(db),
         "--audit-key", str(key), "--audit-chain", "gw-1", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    line = process.stdout.readline()
    match = READY.match(line)
    if not match:
        process.kill()
        raise AssertionError(f"no ready line: {line!r}")
    return process, int(match.group(1))


def test_every_acknowledged_decision_survives_kill_9_under_load(tmp_path):
    key = tmp_path / "audit.key"
    assert cli("audit", "keygen", "--out", str(key))[0] == 0
    db = tmp_path / "audit.db"
    process, port = serve(db, key)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    single = to_proto(timeless(BASE_REQUEST))
    batch = pb.DecideBatchRequest(requests=[single] * 20)

    def load(use_batch: bool) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.AuthorizerStub(channel)
        sent = 0
        while not stop.is_set() and sent < 20_000:  # bounded; the kill comes much sooner
            sent += 1
            try:
                if use_batch:
                    ids = [r.decision.decision_id for r in stub.DecideBatch(batch, timeout=5).results]
                else:
                    ids = [stub.Decide(single, timeout=5).decision_id]
            except grpc.RpcError:
                continue  # not acknowledged: the server died before answering
            with lock:
                acknowledged.extend(ids)
        channel.close()

    clients = [threading.Thread(target=load, args=(i == 0,)) for i in range(4)]
    for client in clients:
        client.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # no drain, no final checkpoint
    process.wait(timeout=30)
    stop.set()
    for client in clients:
        client.join(timeout=30)
    assert len(acknowledged) >= 2000, "the load did not get going"

    # Right after the kill, each acknowledged record is in the database or in the journal the
    # writer had not yet moved into it.
    journaled = {parse_record(body).decision_id
                 for _, _, body in read_frames(journal_path(db, "gw-1"))}
    kept = {r.decision_id for r in records(db)} | journaled
    missing = [i for i in acknowledged if i not in kept]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged decisions were lost"

    # The restarted server moves the journal into the database, resumes the chain where the
    # killed one stopped, and the log verifies with every acknowledged decision in it.
    restarted, port = serve(db, key)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        after = pb_grpc.AuthorizerStub(channel).Decide(single, timeout=10).decision_id
        channel.close()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
    kept = {r.decision_id for r in records(db)}
    assert after in kept
    assert [i for i in acknowledged if i not in kept] == []
    assert not journal_path(db, "gw-1").exists() or not read_frames(journal_path(db, "gw-1"))
    code, out, _ = cli("audit", "verify", str(db), "--verify-key", f"{key}.pub")
    assert code == 0, out
