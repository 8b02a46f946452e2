"""Between the wire and the engine: DecideRequest -> request dict, Decision -> proto.

The engine validates; this module only reshapes. A text attribute sent as "" is left out of
the dict (the engine treats "" as absent anyway), so a required one becomes the engine's "is
required" error rather than a silent decision. The catalogued booleans (resource.personal,
resource.shareable) have presence: an unset one is left out, so that the catalog decides.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from tiergate.engine import Decision, RequestError
from tiergate.engine.decision import thawed
from tiergate.engine.request import Problem, requested_time_refused
from tiergate.engine.timeutil import format_instant
from tiergate.v1 import authorizer_pb2 as pb

EFFECTS = {"PERMIT": pb.PERMIT, "DENY": pb.DENY}

_SUBJECT_TEXT = ("id", "org_id", "org_type", "region")
_RESOURCE_TEXT = ("id", "catalog_class", "tier", "owner_org_id")


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


def micros_of(timestamp: timestamp_pb2.Timestamp) -> int:
    """µs since the epoch; RequestError for a Timestamp outside its valid range."""
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if not (_FIRST_SECOND <= seconds <= _LAST_SECOND and 0 <= nanos <= 999_999_999):
        raise RequestError([Problem(
            "context.time", f"seconds={seconds}, nanos={nanos}",
            ("seconds -62135596800 to 253402300799, nanos 0 to 999999999",),
            f"context.time (seconds={seconds}, nanos={nanos}) is not a valid "
            "google.protobuf.Timestamp")])
    return seconds * 1_000_000 + nanos // 1_000


def timestamp_of(micros: int) -> timestamp_pb2.Timestamp:
    seconds, rest = divmod(micros, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1_000)


def request_time(message: pb.DecideRequest, *, accepted: bool) -> int | None:
    """context.time in µs since the epoch, or None when the request leaves it to the server.

    Raises RequestError when the request carries a time and `accepted` is false.
    """
    if message.HasField("context") and message.context.HasField("time"):
        when = micros_of(message.context.time)
        if not accepted:
            raise requested_time_refused(format_instant(when))
        return when
    return None


def request_to_dict(message: pb.DecideRequest) -> dict:
    """The contract's request dict, without context.time (the caller passes it as `now`).

    Leaving the time out and handing it to PolicySet.decide as `now` decides exactly as an
    RFC 3339 context.time would, without formatting and re-parsing an instant per call.
    """
    subject, resource, context = message.subject, message.resource, message.context
    out_subject: dict[str, Any] = {"real_name_verified": subject.real_name_verified}
    for key in _SUBJECT_TEXT:
        value = getattr(subject, key)
        if value:
            out_subject[key] = value
    out_resource: dict[str, Any] = {}
    if resource.HasField("personal"):
        out_resource["personal"] = resource.personal
    if resource.HasField("shareable"):
        out_resource["shareable"] = resource.shareable
    for key in _RESOURCE_TEXT:
        value = getattr(resource, key)
        if value:
            out_resource[key] = value
    out_context: dict[str, Any] = {"deidentified": context.deidentified,
                                   "consent": context.consent,
                                   "security_assessment": context.security_assessment}
    if context.storage_region:
        out_context["storage_region"] = context.storage_region
    out: dict[str, Any] = {"subject": out_subject, "resource": out_resource,
                           "context": out_context}
    if message.action:
        out["action"] = message.action
    if message.purpose:
        out["purpose"] = message.purpose
    return out


def decision_to_proto(decision: Decision, *, file_name=None) -> pb.Decision:
    """The Decision message; `file_name` (str -> str) renames the policy files an explanation's
    locations name, so that a server's own paths are not sent to its callers."""
    out = pb.Decision(
        effect=EFFECTS[decision.effect],
        grant_id=decision.grant_id or "",
        obligations=[pb.Obligation(id=o.id, params=dict(o.params)) for o in decision.obligations],
        reasons=[pb.Reason(rule_id=r.rule_id, effect=EFFECTS[r.effect], citation=r.citation,
                           message=r.message, message_zh=r.message_zh, message_en=r.message_en,
                           grant_id=r.grant_id or "")
                 for r in decision.reasons],
        policy_revision=decision.policy_revision,
        decision_id=decision.decision_id,
        unmet=[unmet_to_proto(u) for u in decision.unmet],
    )
    if decision.valid_until is not None:
        out.valid_until.CopyFrom(timestamp_of(decision.valid_until))
    if decision.explanation is not None:
        explanation = thawed(decision.explanation)
        if file_name is not None:
            explanation = _renamed_files(explanation, file_name)
        out.explanation.CopyFrom(struct_of(explanation))
    return out


def _renamed_files(value: Any, file_name) -> Any:
    if isinstance(value, dict):
        return {k: (file_name(v) if k == "file" and isinstance(v, str)
                    else _renamed_files(v, file_name)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_renamed_files(v, file_name) for v in value]
    return value


def unmet_to_proto(unmet) -> pb.Unmet:
    return pb.Unmet(rule_id=unmet.rule_id, requirement=unmet.requirement,
                    citation=unmet.citation, message_zh=unmet.message_zh,
                    message_en=unmet.message_en, grant_id=unmet.grant_id or "",
                    attribute=unmet.attribute or "")


def struct_of(value: Any) -> struct_pb2.Struct:
    """A JSON-shaped mapping as a Struct; non-JSON leaves (tuples, sets, instants) as JSON would."""
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(value, ensure_ascii=False, default=_jsonable)))
    return struct


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def request_error_to_proto(error: RequestError) -> pb.RequestError:
    return pb.RequestError(
        message=str(error),
        problems=[pb.Problem(attribute=p.attribute, value=_text(p.value),
                             allowed=[str(a) for a in p.allowed], message=p.message,
                             message_zh=p.message_zh)
                  for p in error.problems])
