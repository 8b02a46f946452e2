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

from . import convert, wire
from .cache import next_decision_id
from .holder import PolicyHolder, Snapshot

log = logging.getLogger("tiergate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorizer"].full_name  # "tiergate.v1.Authorizer"
REQUEST_ERROR_METADATA = "tiergate-request-error-bin"
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


def _check_deadline(context: grpc.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise Deadline()


def decide_one(snapshot: Snapshot, message: pb.DecideRequest, clock, *,
               accept_request_time: bool = False) -> bytes:
    """One serialized tiergate.v1.Decision from one snapshot.

    The cache is used only for requests without a time (and without explain). Raises
    RequestError for a request that cannot be decided, or that carries a time the server
    does not accept.
    """
    when = convert.request_time(message, accepted=accept_request_time)
    if when is None:
        now = clock()
        cache = snapshot.cache
        if cache is not None and not message.explain:
            key = message.SerializeToString()
            encoded = cache.get(key, now)
            if encoded is None:
                decision = snapshot.policy.decide(convert.request_to_dict(message), now=now)
                encoded = wire.decision_without_id(decision)
                cache.put(key, encoded, decision.valid_until, now)
                return wire.with_id(encoded, decision.decision_id)
            return wire.with_id(encoded, next_decision_id())
    else:
        now = when
    decision = snapshot.policy.decide(convert.request_to_dict(message), now=now,
                                      explain=message.explain)
    return wire.decision_bytes(decision)


class AuthorizerService:
    """Answers tiergate.v1.Authorizer calls from whatever snapshot the holder has now."""

    def __init__(self, holder: PolicyHolder, *, accept_request_time: bool = False,
                 max_batch: int = 1000):
        self.holder = holder
        self.in_flight = InFlight()
        self.accept_request_time = accept_request_time
        self.max_batch = max_batch

    def Decide(self, request, context: grpc.ServicerContext) -> bytes:
        if request.__class__ is _Malformed:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"malformed {request.type_name}: {request.problem}")
        with self.in_flight:
            try:
                _check_deadline(context)
                return decide_one(self.holder.current, request, self.holder.clock,
                                  accept_request_time=self.accept_request_time)
            except RequestError as error:
                detail = convert.request_error_to_proto(error)
                context.set_trailing_metadata(
                    ((REQUEST_ERROR_METADATA, detail.SerializeToString()),))
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            except Deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              "the deadline passed before the request was decided")
            except Exception:
                # SECURITY: a failure while deciding is an error, never a permit.
                log.exception("Decide failed")
                context.abort(grpc.StatusCode.INTERNAL, "the request could not be decided")

    def DecideBatch(self, request, context: grpc.ServicerContext) -> bytes:
        if request.__class__ is _Malformed:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"malformed {request.type_name}: {request.problem}")
        if len(request.requests) > self.max_batch:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"a batch of {len(request.requests)} requests is more than this server "
                          f"decides in one call ({self.max_batch}); split it")
        snapshot = self.holder.current  # INVARIANT: one policy for the whole batch
        clock, accept = self.holder.clock, self.accept_request_time
        results = []
        with self.in_flight:
            try:
                for index, item in enumerate(request.requests):
                    if index % _DEADLINE_CHECK_EVERY == 0:
                        _check_deadline(context)
                    try:
                        results.append(wire.batch_decision(
                            decide_one(snapshot, item, clock, accept_request_time=accept)))
                    except RequestError as error:
                        results.append(wire.batch_error(convert.request_error_to_proto(error)))
            except Deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"the deadline passed after {len(results)} of "
                              f"{len(request.requests)} requests were decided")
            except Exception:
                # SECURITY: one failure fails the whole batch; no partial answer to misread.
                log.exception("DecideBatch failed")
                context.abort(grpc.StatusCode.INTERNAL, "the batch could not be decided")
        return b"".join(results)  # the serialized DecideBatchResponse

    def GetPolicyInfo(self, request, context: grpc.ServicerContext) -> pb.PolicyInfo:
        snapshot = self.holder.current
        policy = snapshot.policy
        info = pb.PolicyInfo(policy_revision=policy.revision,
                             loaded_at=convert.timestamp_of(snapshot.loaded_at),
                             rule_count=len(policy.rules), grant_count=len(policy.grants),
                             policy_dir=str(self.holder.policy_dir),
                             calls_in_flight=self.in_flight.count)
        failure = self.holder.last_failure
        if failure is not None:
            info.last_reload_error.CopyFrom(pb.ReloadError(
                failed_at=convert.timestamp_of(failure.failed_at), message=failure.message,
                diagnostics=failure.diagnostics))
        return info


def _handlers(service: AuthorizerService) -> dict:
    def unary(method, request_type, response_serializer):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=_parser(request_type),
            response_serializer=response_serializer)

    def already_encoded(response: bytes) -> bytes:
        return response

    return {
        # Decide and DecideBatch return wire bytes (see wire.py), GetPolicyInfo a message.
        "Decide": unary(service.Decide, pb.DecideRequest, already_encoded),
        "DecideBatch": unary(service.DecideBatch, pb.DecideBatchRequest, already_encoded),
        "GetPolicyInfo": unary(service.GetPolicyInfo, pb.GetPolicyInfoRequest,
                               pb.PolicyInfo.SerializeToString),
    }


def register(server: grpc.Server, holder: PolicyHolder, config) -> AuthorizerService:
    """Add tiergate.v1.Authorizer to `server` (the app.py registration contract)."""
    service = AuthorizerService(holder, accept_request_time=config.accept_request_time,
                                max_batch=config.max_batch)
    handlers = _handlers(service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    return service
