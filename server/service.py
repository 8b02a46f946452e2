"""The tiergate.v1.Authorizer servicer: Decide, DecideBatch, GetPolicyInfo.

A thin shell over PolicySet.decide (see holder.py for the snapshot rule every call follows).
Bad input is INVALID_ARGUMENT naming the attribute, the value and the allowed values, never a
decision; a malformed message is INVALID_ARGUMENT too (not INTERNAL), and an expired deadline
stops the work.
"""

from __future__ import annotations

import logging
import threading

import grpc
from google.protobuf.message import DecodeError

from tiergate.engine import RequestError
from tiergate.v1 import authorizer_pb2 as pb

from tiergate.audit import record
from tiergate.audit.log import AuditLog, AuditUnavailable

from . import convert, wire
from .access import Access, current_caller, deadline_passed
from .cache import next_decision_id
from .holder import PolicyHolder, Snapshot
from .metrics import outcome_of
from .tracing import note_decision

log = logging.getLogger("tiergate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorizer"].full_name  # "tiergate.v1.Authorizer"
REQUEST_ERROR_METADATA = "tiergate-request-error-bin"
# The id of a refused call's audit record, to find it from the error the caller saw.
DECISION_ID_METADATA = "tiergate-decision-id"
_DEADLINE_CHECK_EVERY = 64  # batch items between deadline checks


class _Malformed:
    """Stands in for a request whose bytes are not a valid message."""

    __slots__ = ("type_name", "problem")

    def __init__(self, type_name: str, problem: str):
        self.type_name, self.problem = type_name, problem


def _parser(message_type):
    def parse(data: bytes):
        try:
            return message_type.FromString(data)
        except DecodeError as problem:
            return _Malformed(message_type.DESCRIPTOR.full_name, str(problem))
    return parse


def _wire(data: bytes) -> bytes:
    return data


_DECIDE_REQUEST = _parser(pb.DecideRequest)


class InFlight:
    """Counts decision calls being answered, for GetPolicyInfo and the drain log."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.count += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.count -= 1


class Deadline(Exception):
    """The caller's deadline passed before the work was done."""


class TooLarge(Exception):
    """The answer would be larger than max_response_bytes."""


def _check_deadline(context: grpc.ServicerContext) -> None:
    if deadline_passed(context):
        raise Deadline()


class Answer:
    """One decided request: its wire bytes, and what its audit record needs."""

    __slots__ = ("encoded", "decided", "decision_id", "time_us", "outcome", "decision")

    def __init__(self, encoded: bytes, decided, decision_id: str, time_us: int,
                 outcome: tuple[str, str], decision):
        self.encoded, self.decided = encoded, decided
        self.decision_id, self.time_us = decision_id, time_us
        self.outcome = outcome  # metrics.outcome_of the decision
        # The Decision (from the cache: the one first decided, with that call's id); the
        # shadow compares its effect and obligations.
        self.decision = decision


def kept_answer(snapshot: Snapshot, key: bytes, now: int, recorded: bool) -> Answer | None:
    """The answer the cache keeps for the request serialized as `key`, under a fresh decision
    id, if it holds at `now` (and carries its record part when the answer is `recorded`)."""
    cache = snapshot.cache
    if cache is None:
        return None
    cached = cache.get(key, now)
    if cached is None or (cached[1] is None and recorded):
        return None
    decision_id = next_decision_id()
    return Answer(wire.with_id(cached[0], decision_id), cached[1], decision_id, now, cached[2],
                  cached[3])


def decide_one(snapshot: Snapshot, message: pb.DecideRequest, clock, *,
               accept_request_time: bool = False, recorded: bool = False,
               file_name=None, looked_up: bytes | None = None,
               now: int | None = None) -> Answer:
    """One serialized tiergate.v1.Decision from one snapshot, and (when `recorded`) the part
    of its audit record that says what was decided. `file_name` renames the policy files an
    explanation points at (so that no server path reaches the caller).

    The cache is used only for requests without a time (and without explain); it keeps the
    record part beside the encoding, so an answer from the cache is recorded as fully as one
    decided afresh. Its key is the request's bytes: `looked_up` when the caller already asked
    the cache for them (kept_answer) at `now`, else the message serialized. Raises RequestError
    for a request that cannot be decided, or that carries a time the server does not accept.
    """
    when = convert.request_time(message, accepted=accept_request_time)
    now = clock() if now is None else now
    cache = snapshot.cache
    if when is None and cache is not None and not message.explain:
        key = looked_up
        if key is None:
            key = message.SerializeToString()
            kept = kept_answer(snapshot, key, now, recorded)
            if kept is not None:
                return kept
        decision, settled = _decide(snapshot, message, now, False, recorded)
        decided = record.decided(decision, settled) if recorded else None
        encoded = wire.decision_without_id(decision)
        outcome = outcome_of(decision)
        cache.put(key, (encoded, decided, outcome, decision), decision.valid_until, now)
        return Answer(wire.with_id(encoded, decision.decision_id), decided, decision.decision_id,
                      now, outcome, decision)
    decision, settled = _decide(snapshot, message, now if when is None else when,
                                message.explain, recorded)
    decided = record.decided(decision, settled) if recorded else None
    return Answer(wire.decision_bytes(decision, file_name=file_name), decided,
                  decision.decision_id, now, outcome_of(decision), decision)


def _decide(snapshot: Snapshot, message, now: int, explain: bool, recorded: bool):
    request = convert.request_to_dict(message)
    if recorded:
        return snapshot.policy.decide_recorded(request, now=now, explain=explain)
    return snapshot.policy.decide(request, now=now, explain=explain), None


def refusal_record(error: RequestError, message, policy_revision: str | None):
    """The record part of a request refused as bad input, with whom it claimed to be from."""
    claimed = None
    if message is not None and message.__class__ is not _Malformed:
        claimed = {"subject": message.subject.id, "org": message.subject.org_id,
                   "dataset": message.resource.id}
    return record.refused("invalid_request", str(error), record.problems_of(error),
                          policy_revision=policy_revision, claimed=claimed)


class AuthorizerService:
    """Answers tiergate.v1.Authorizer calls from whatever snapshot the holder has now.

    With an audit log, every answer — decision or refusal — is committed to it before it is
    sent; if it cannot be, the call fails with UNAVAILABLE instead (see tiergate.audit.log).
    """

    def __init__(self, holder: PolicyHolder, *, access: Access | None = None,
                 max_batch: int = 1000, max_response_bytes: int = 4 * 1024 * 1024,
                 audit: AuditLog | None = None, metrics=None, shadow=None):
        self.holder = holder
        self.shadow = shadow  # shadow.Shadow with --shadow, else None
        self.metrics = metrics
        self.in_flight = InFlight()
        self.access = access or Access({}, verified=False)
        self.max_batch = max_batch
        self.max_response_bytes = max_response_bytes
        self.audit = audit
        source = str(holder.policy_dir)
        self._file_name = lambda name: without_source(name, source)

    def _record(self, context, entry_point: str, answers: list) -> None:
        """Commit the records of `answers` ((decided, decision id, time) each) or abort."""
        calling = current_caller()
        caller = record.grpc_caller(context, identity=calling.identity if calling else None)
        entries = [record.entry(decided, time_us=time_us, decision_id=decision_id,
                                entry_point=entry_point, caller=caller)
                   for decided, decision_id, time_us in answers]
        try:
            self.audit.record(entries)
        except AuditUnavailable as problem:
            # SECURITY: an answer the log does not hold is not given (fail closed).
            log.debug("%s not answered: %s", entry_point, problem)
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          "the decision could not be recorded in the audit log, so it is not "
                          "given; try again later / 审计日志无法写入，不予决策")

    def _refuse(self, context, entry_point: str, code, message: str, decided) -> None:
        """Record a refusal (when auditing), then abort the call with `code`."""
        decision_id = next_decision_id()
        if self.audit is not None:
            self._record(context, entry_point, [(decided, decision_id, self.holder.clock())])
        context.set_trailing_metadata(((DECISION_ID_METADATA, decision_id),))
        context.abort(code, message)

    def _deny(self, context, entry_point: str, permission: str) -> None:
        """Refuse (PERMISSION_DENIED, recorded) a caller asking for what it may not have."""
        message = self.access.denial(current_caller(), permission)
        log.warning("permission denied: %s", message)
        if self.metrics is not None:
            self.metrics.call_refused(entry_point, "permission_denied")
        self._refuse(context, entry_point, grpc.StatusCode.PERMISSION_DENIED, message,
                     record.refused("permission_denied", message, (),
                                    policy_revision=self.holder.current.policy.revision))

    def _compare(self, method: str, message, answer: Answer) -> None:
        """Decide again with the shadow candidate; a difference goes into the answer's record."""
        difference = self.shadow.compare(method, convert.request_to_dict(message),
                                         answer.decision, answer.time_us)
        if difference is not None and answer.decided is not None:
            answer.decided = record.with_shadow(answer.decided, difference)

    def Decide(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        if self.metrics is None:
            return self._decide(data, context)
        with self.metrics.timer("Decide"):
            return self._decide(data, context)

    def _decide(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        snapshot = self.holder.current
        recorded = self.audit is not None
        now = self.holder.clock()
        # PERF: a request asked before is answered from the cache by its bytes, unparsed. Only
        # a request without a time or explain, that was decided, is ever kept.
        answer = kept_answer(snapshot, data, now, recorded)
        request = None
        if answer is None:
            request = _DECIDE_REQUEST(data)
            if request.__class__ is _Malformed:
                message = f"malformed {request.type_name}: {request.problem}"
                self._refuse(context, "Decide", grpc.StatusCode.INVALID_ARGUMENT, message,
                             record.refused("malformed", message, (), policy_revision=None))
            if request.explain and not self.access.allows_current("explain"):
                self._deny(context, "Decide", "explain")
        with self.in_flight:
            try:
                _check_deadline(context)
                if answer is None:
                    answer = decide_one(snapshot, request, self.holder.clock,
                                        accept_request_time=self.access.allows_current(
                                            "request_time"),
                                        recorded=recorded, file_name=self._file_name,
                                        looked_up=data, now=now)
            except RequestError as error:
                detail = convert.request_error_to_proto(error)
                decision_id = next_decision_id()
                context.set_trailing_metadata(
                    ((REQUEST_ERROR_METADATA, detail.SerializeToString()),
                     (DECISION_ID_METADATA, decision_id)))
                if self.metrics is not None:
                    self.metrics.refused("Decide", (p.attribute for p in error.problems))
                if recorded:
                    self._record(context, "Decide", [(
                        refusal_record(error, request, snapshot.policy.revision),
                        decision_id, self.holder.clock())])
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            except Deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              "the deadline passed before the request was decided")
            except Exception:
                # SECURITY: a failure while deciding is an error, never a permit.
                log.exception("Decide failed")
                context.abort(grpc.StatusCode.INTERNAL, "the request could not be decided")
            if self.shadow is not None:
                self._compare("Decide", request or pb.DecideRequest.FromString(data), answer)
            if recorded:
                self._record(context, "Decide",
                             [(answer.decided, answer.decision_id, answer.time_us)])
            if self.metrics is not None:
                self.metrics.decided("Decide", *answer.outcome)
            note_decision(answer.decision_id, answer.outcome[0], snapshot.policy.revision)
            return answer.encoded

    def DecideBatch(self, request, context: grpc.ServicerContext) -> bytes:
        if self.metrics is None:
            return self._decide_batch(request, context)
        with self.metrics.timer("DecideBatch"):
            return self._decide_batch(request, context)

    def _decide_batch(self, request, context: grpc.ServicerContext) -> bytes:
        if request.__class__ is _Malformed:
            message = f"malformed {request.type_name}: {request.problem}"
            self._refuse(context, "DecideBatch", grpc.StatusCode.INVALID_ARGUMENT, message,
                         record.refused("malformed", message, (), policy_revision=None))
        if len(request.requests) > self.max_batch:
            message = (f"a batch of {len(request.requests)} requests is more than this server "
                       f"decides in one call ({self.max_batch}); split it")
            self._refuse(context, "DecideBatch", grpc.StatusCode.RESOURCE_EXHAUSTED, message,
                         record.refused("too_large", message, (), policy_revision=None))
        if any(item.explain for item in request.requests) and not self.access.allows_current(
                "explain"):
            self._deny(context, "DecideBatch", "explain")
        snapshot = self.holder.current  # INVARIANT: one policy for the whole batch
        clock, accept = self.holder.clock, self.access.allows_current("request_time")
        recorded, metrics = self.audit is not None, self.metrics
        results, answers = [], []
        size, limit = 0, self.max_response_bytes
        errors = wire.BatchErrors()
        with self.in_flight:
            try:
                for index, item in enumerate(request.requests):
                    if index % _DEADLINE_CHECK_EVERY == 0:
                        _check_deadline(context)
                        if size > limit:
                            raise TooLarge()
                    try:
                        answer = decide_one(snapshot, item, clock, accept_request_time=accept,
                                            recorded=recorded, file_name=self._file_name)
                        results.append(wire.batch_decision(answer.encoded))
                        if self.shadow is not None:
                            self._compare("DecideBatch", item, answer)
                        if metrics is not None:
                            metrics.decided("DecideBatch", *answer.outcome)
                        if recorded:
                            answers.append((answer.decided, answer.decision_id, answer.time_us))
                    except RequestError as error:
                        results.append(errors.encode(error))
                        if metrics is not None:
                            metrics.refused("DecideBatch", (p.attribute for p in error.problems))
                        if recorded:
                            answers.append((refusal_record(error, item, snapshot.policy.revision),
                                            next_decision_id(), clock()))
                    size += len(results[-1])
                if size > limit:
                    raise TooLarge()
            except Deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"the deadline passed after {len(results)} of "
                              f"{len(request.requests)} requests were decided")
            except TooLarge:
                # Nothing was answered, so nothing is recorded as answered; the refusal is.
                message = (f"the answer to this batch is larger than this server sends in one "
                           f"call ({limit} bytes, max_response_bytes) after {len(results)} of "
                           f"{len(request.requests)} requests; split it")
                self._refuse(context, "DecideBatch", grpc.StatusCode.RESOURCE_EXHAUSTED,
                             message, record.refused("too_large", message, (),
                                                     policy_revision=snapshot.policy.revision))
            except Exception:
                # SECURITY: one failure fails the whole batch; no partial answer to misread.
                log.exception("DecideBatch failed")
                context.abort(grpc.StatusCode.INTERNAL, "the batch could not be decided")
            if recorded and answers:
                self._record(context, "DecideBatch", answers)
        note_decision(f"{len(results)} decisions", "BATCH", snapshot.policy.revision)
        return b"".join(results)  # the serialized DecideBatchResponse

    def GetPolicyInfo(self, request, context: grpc.ServicerContext) -> pb.PolicyInfo:
        snapshot = self.holder.current
        policy = snapshot.policy
        # SECURITY: nothing sent to a caller carries a server path (issue 10): the source is
        # named by its last component, and diagnostics by paths inside it.
        source = str(self.holder.policy_dir)
        info = pb.PolicyInfo(policy_revision=policy.revision,
                             loaded_at=convert.timestamp_of(snapshot.loaded_at),
                             rule_count=len(policy.rules), grant_count=len(policy.grants),
                             policy_dir=public_source(source),
                             calls_in_flight=self.in_flight.count)
        if self.shadow is not None:
            info.shadow_revision = self.shadow.revision
            info.shadow_compared = self.shadow.compared
            info.shadow_differences = self.shadow.differences
        failure = self.holder.last_failure
        if failure is not None:
            info.last_reload_error.CopyFrom(pb.ReloadError(
                failed_at=convert.timestamp_of(failure.failed_at),
                message=without_source(failure.message, source),
                diagnostics=[without_source(line, source) for line in failure.diagnostics]))
        return info


def public_source(source: str) -> str:
    """What a caller is told the policy comes from: a URL without credentials or query, or a
    directory's or file's own name, never the server's path to it."""
    from urllib.parse import urlsplit

    if "://" in source:
        parts = urlsplit(source)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    return source.rstrip("/").rsplit("/", 1)[-1]


def without_source(text: str, source: str) -> str:
    """`text` with the server's path to the policy source cut from the paths it names."""
    if "://" in source:
        return text
    directory = source.rstrip("/")
    return text.replace(directory + "/", "").replace(directory, public_source(source))


def _handlers(service: AuthorizerService) -> dict:
    def unary(method, request_type, response_serializer):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=_parser(request_type) if request_type else _wire,
            response_serializer=response_serializer)

    def already_encoded(response: bytes) -> bytes:
        return response

    return {
        # Decide and DecideBatch return wire bytes (see wire.py), GetPolicyInfo a message.
        # Decide takes its request's bytes: they are its cache key, and parsed on a miss.
        "Decide": unary(service.Decide, None, already_encoded),
        "DecideBatch": unary(service.DecideBatch, pb.DecideBatchRequest, already_encoded),
        "GetPolicyInfo": unary(service.GetPolicyInfo, pb.GetPolicyInfoRequest,
                               pb.PolicyInfo.SerializeToString),
    }


def register(server: grpc.Server, holder: PolicyHolder, config, *,
             audit: AuditLog | None = None, metrics=None,
             access: Access | None = None, shadow=None) -> AuthorizerService:
    """Add tiergate.v1.Authorizer to `server` (the app.py registration contract)."""
    service = AuthorizerService(holder, access=access, max_batch=config.max_batch,
                                max_response_bytes=config.max_response_bytes, audit=audit,
                                metrics=metrics, shadow=shadow)
    handlers = _handlers(service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    return service
