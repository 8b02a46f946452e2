"""tiergate.v1.Audit: the read-only supervision port over the decision log (proto/…/audit.proto).

Query and Follow stream records as stored (the bytes hashed into the Merkle tree), so a regulator
can check each against a signed checkpoint. The service reads the log through its own
connection; it can never write. With the audit log off, every call is FAILED_PRECONDITION.
"""

from __future__ import annotations

import threading

import grpc

from tiergate.audit.log import AuditLog
from tiergate.audit.store import StoreError, open_store
from tiergate.engine.timeutil import parse_instant
from tiergate.v1 import audit_pb2 as pb
from tiergate.v1 import audit_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Audit"].full_name  # "tiergate.v1.Audit"
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10_000
_FOLLOW_POLL_S = 1.0  # other replicas' records (PostgreSQL) are found by polling this often


class AuditService(pb_grpc.AuditServicer):
    def __init__(self, audit: AuditLog | None, target: str | None):
        self._audit = audit
        self._target = target
        self._store = None
        self._lock = threading.Lock()  # one connection, one reader at a time
        self._committed = threading.Condition()
        if audit is not None:
            audit.on_commit(self._wake)

    def _wake(self) -> None:
        with self._committed:
            self._committed.notify_all()

    def _read(self, context, read):
        if self._audit is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "this server keeps no audit log (audit_log = \"off\")")
        try:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self._target, create=False)
                return read(self._store)
        except StoreError as problem:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the audit log cannot be read: {problem}")

    def Query(self, request: pb.AuditQuery, context):
        filters = {name: getattr(request, name) for name in
                   ("subject", "org", "dataset", "owner", "grant", "chain")
                   if getattr(request, name)}
        if request.effect:
            if request.effect not in ("PERMIT", "DENY", "REFUSED"):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"effect {request.effect[:20]!r} is not PERMIT, DENY or REFUSED")
            filters["effect"] = request.effect
        bounds = {}
        for name in ("since", "until"):
            text = getattr(request, name)
            if text:
                try:
                    bounds[name] = parse_instant(text)
                except ValueError:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{name} {text[:40]!r} is not an RFC 3339 time")
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        after = ((request.after.chain, request.after.seq) if request.HasField("after") else None)
        rows = self._read(context, lambda store: store.query(
            filters=filters, rule=request.rule or None, since_us=bounds.get("since"),
            until_us=bounds.get("until"), limit=limit, after=after))
        for row in rows:
            yield pb.AuditEntry(chain=row.chain, seq=row.seq, record=row.body)

    def Follow(self, request: pb.AuditFollow, context):
        chain = request.chain or None
        positions = {p.chain: p.seq for p in getattr(request, "from")}  # `from` is a keyword
        if not positions:
            positions = self._read(context, lambda store: {
                name: store.size(name) for name in ([chain] if chain else store.chains())})
            if chain in (None, self._audit.chain):
                # This server's own records may still be in its journal: "now" is its end.
                positions[self._audit.chain] = max(positions.get(self._audit.chain, 0),
                                                   self._audit.size)
        while context.is_active():
            rows = self._read(context, lambda store: store.after(chain, positions))
            for row in rows:
                if row.body is None:
                    continue  # pruned
                positions[row.chain] = row.seq + 1
                yield pb.AuditEntry(chain=row.chain, seq=row.seq, record=row.body)
            if not rows:
                with self._committed:
                    self._committed.wait(_FOLLOW_POLL_S)

    def GetCheckpoints(self, request: pb.GetCheckpointsRequest, context) -> pb.Checkpoints:
        def latest(store):
            names = [request.chain] if request.chain else store.chains()
            return [c.note for c in map(store.latest_checkpoint, names) if c is not None]
        return pb.Checkpoints(notes=self._read(context, latest))


def register(server: grpc.Server, holder, config, *, audit: AuditLog | None = None,
             metrics=None, access=None, shadow=None):
    """app.py's registration contract (only callers access.audit names reach it)."""
    service = AuditService(audit, config.audit_log if audit is not None else None)
    pb_grpc.add_AuditServicer_to_server(service, server)
    return service
