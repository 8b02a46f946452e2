"""The audit record: one per answer Tiergate gives, PERMIT, DENY or a refused request.

`AuditRecord` is the definition (field by field below, and in docs/audit.md). The server builds a
record's JSON on its hot path from a plain dict in the same shape (`Entry`), and every reader —
`tiergate audit verify`, `query`, `export`, the Audit gRPC service — reads it back through the model,
so a record the writer got wrong fails verification instead of being half understood.

A record's bytes are what is hashed into the Merkle tree (merkle.leaf_hash): they are stored as
written and never re-serialized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tiergate.engine.timeutil import format_instant


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Caller(_Strict):
    peer: str | None = Field(description="The transport peer as gRPC reports it, e.g. "
                             "ipv4:10.0.0.7:51234 (the gateway, for ext_authz); null for the CLI.")
    identity: str | None = Field(description="The verified client identity (SPIFFE ID or DNS SAN "
                                 "of the client certificate) when the call came over mTLS.")
    downstream: str | None = Field(description="ext_authz only: the address of the client the "
                                   "gateway asked about, as the gateway reported it.")


class ReasonEntry(_Strict):
    rule_id: str = Field(description="A rule that decided (every deny that applied, or the "
                         "permit and its `on permit` rules), or default-deny.")
    effect: Literal["PERMIT", "DENY"]
    citation: str = Field(description="The article the rule cites.")
    grant_id: str | None = Field(description="The grant the rule was satisfied with, if any.")


class ObligationEntry(_Strict):
    id: str = Field(description="An obligation from the policy's `obligation` vocabulary.")
    params: dict[str, str] = Field(description="Its parameters (e.g. destroy_on_expiry's at).")


class ProblemEntry(_Strict):
    attribute: str | None = Field(description="The request attribute that was wrong (null when "
                                  "the problem is not one attribute's, e.g. no route matched).")
    value: Any = Field(description="The value given (texts cut to 100 characters), or null "
                       "when it was missing.")
    message: str = Field(description="What was wrong and what is allowed (English).")


class Claimed(_Strict):
    subject: str | None = Field(description="subject.id as the refused request stated it.")
    org: str | None = Field(description="subject.org_id as stated.")
    dataset: str | None = Field(description="resource.id as stated.")


class Refusal(_Strict):
    code: Literal["invalid_request", "malformed", "mapping", "too_large",
                  "permission_denied"] = Field(
        description="invalid_request: an attribute was missing, undeclared or contradicted the "
        "catalog; malformed: the message could not be parsed; mapping: the gateway request did "
        "not map to a Tiergate request; too_large: a batch over max_batch or an answer over "
        "max_response_bytes; permission_denied: the caller may not call that method or ask "
        "for that (the server's [access] table).")
    message: str
    problems: list[ProblemEntry]
    claimed: Claimed = Field(description="Who the refused request said it came from and what it "
                             "asked for (unchecked: that is why it was refused), so that the "
                             "refusals of one subject can be found.")


class HttpRequest(_Strict):
    method: str
    path: str = Field(description="The request path without its query string.")


class ShadowSide(_Strict):
    revision: str
    effect: Literal["PERMIT", "DENY", "REFUSED"]
    obligations: list[str] = Field(description="Obligation ids.")
    rules: list[str] = Field(description="The deciding rules.")
    grant_id: str | None
    problems: list[str] = Field(default_factory=list, description="For REFUSED: the "
                                "attributes the candidate refused.")


class ShadowDifference(_Strict):
    request_class: dict[str, Any] = Field(alias="class", description="The request's class: "
                                          "org type, region, dataset, tier, catalog class, "
                                          "action, purpose, storage region, as asked.")
    served: ShadowSide
    candidate: ShadowSide


class AuditRecord(_Strict):
    """One answer Tiergate gave. Field order is the order in the stored JSON."""

    v: Literal[1] = Field(description="The record format's version.")
    chain: str = Field(description="The log this record belongs to: one per server process "
                       "(replica, worker), each with its own Merkle tree.")
    seq: int = Field(ge=0, description="The record's index in its chain, from 0, without gaps: "
                     "the leaf index in the Merkle tree.")
    time: str = Field(description="When the answer was given, by the server's clock (RFC 3339, "
                      "UTC, microseconds).")
    decision_id: str = Field(description="The id the caller received (Decision.decision_id, "
                             "x-tiergate-decision-id).")
    entry: str = Field(pattern=r"^[A-Za-z]{1,64}$", description="Which entry point answered: "
                       "Decide, DecideBatch, Check or cli; for a call refused by [access], the "
                       "gRPC method that was called (GetPolicyInfo, Query, ...).")
    caller: Caller
    outcome: Literal["PERMIT", "DENY", "REFUSED"] = Field(
        description="PERMIT or DENY for a decision; REFUSED for a request refused as bad input "
        "(the caller got an error, or for ext_authz a 403).")
    policy_revision: str | None = Field(description="The policy revision that decided (null "
                                        "only when a request was refused before a policy was "
                                        "consulted).")
    request: dict[str, Any] | None = Field(description="The request as decided: catalog "
                                           "attributes settled, context.time the instant it was "
                                           "decided at, absent attributes left out. For a refused "
                                           "request: null (its problems say what was wrong).")
    http: HttpRequest | None = Field(description="ext_authz only: the HTTP request Envoy asked "
                                     "about.")
    grant_id: str | None = Field(description="The grant a PERMIT was given under.")
    obligations: list[ObligationEntry] = Field(description="What the gateway was told to do.")
    reasons: list[ReasonEntry] = Field(description="The rules that decided, with their articles.")
    refusal: Refusal | None = Field(description="Set when outcome is REFUSED.")
    shadow: ShadowDifference | None = Field(None, description="Set when the server runs a "
                                            "shadow candidate (serve --shadow) that would "
                                            "have answered this call differently.")


def parse_record(data: bytes) -> AuditRecord:
    """A stored record read back through the model; ValueError when it does not fit it."""
    return AuditRecord.model_validate_json(data)


def index_columns(record: AuditRecord) -> dict:
    """What `audit query` searches a record by (store.INDEX_COLUMNS after chain, seq, time)."""
    if record.outcome == "REFUSED":
        claimed = record.refusal.claimed
        subject, org, dataset, owner = claimed.subject, claimed.org, claimed.dataset, None
    else:
        request = record.request or {}
        subject_part, resource = request.get("subject", {}), request.get("resource", {})
        subject, org = subject_part.get("id"), subject_part.get("org_id")
        dataset, owner = resource.get("id"), resource.get("owner_org_id")
    return {"decision_id": record.decision_id, "outcome": record.outcome, "subject": subject,
            "org": org, "dataset": dataset, "owner": owner, "grant_id": record.grant_id}


@dataclass(frozen=True, slots=True)
class Decided:
    """What a record says about the decision itself, the same for every answer a cached
    decision gives: the indexed columns and the record's JSON from `outcome` to the end."""

    outcome: str
    subject: str | None
    org: str | None
    dataset: str | None
    owner: str | None
    grant_id: str | None
    rules: tuple[str, ...]
    tail: str  # ',"outcome":...}': the record's last fields and its closing brace


@dataclass(slots=True)
class Entry:
    """A record waiting for its place in a chain: the writer adds `chain` and `seq` in front."""

    time_us: int
    decision_id: str
    decided: Decided
    fragment: str  # ',"time":...}': every field after seq

    def body(self, chain_json: str, seq: int) -> bytes:
        return f'{{"v":1,"chain":{chain_json},"seq":{seq}{self.fragment}'.encode()


# PERF: one encoder, made once (json.dumps with arguments builds a new one per call).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_MEMO_LIMIT = 20_000
_parts: dict = {}  # reasons and obligations -> their JSON; emptied when full


def _memo_json(key, make) -> str:
    text = _parts.get(key)
    if text is None:
        if len(_parts) >= _MEMO_LIMIT:
            _parts.clear()
        text = _parts[key] = _dumps(make())
    return text


def _decision_json(decision) -> str:
    """grant_id, obligations and reasons of a decision, as JSON fields (memoised: they repeat)."""
    obligations = ",".join(
        _memo_json(("o", o.id, tuple(o.params.items())),
                   lambda o=o: {"id": o.id, "params": dict(o.params)})
        for o in decision.obligations)
    reasons = ",".join(
        _memo_json(r, lambda r=r: {"rule_id": r.rule_id, "effect": r.effect,
                                   "citation": r.citation, "grant_id": r.grant_id})
        for r in decision.reasons)
    return (f'"grant_id":{_dumps(decision.grant_id)},"obligations":[{obligations}],'
            f'"reasons":[{reasons}]')


def _fields(fields: dict) -> str:
    """`fields` as the inside of a JSON object, after a leading comma."""
    return "," + _dumps(fields)[1:-1]


def caller_json(peer: str | None, identity: str | None = None,
                downstream: str | None = None) -> str:
    return _dumps({"peer": peer, "identity": identity, "downstream": downstream})


def decided(decision, request: dict, http: dict | None = None) -> Decided:
    """The decision part of the record of `decision`, made on `request` (as decided)."""
    subject, resource = request.get("subject", {}), request.get("resource", {})
    tail = (f',"outcome":"{decision.effect}","policy_revision":{_dumps(decision.policy_revision)},'
            f'"request":{_dumps(request)},"http":{_dumps(http)},{_decision_json(decision)},'
            '"refusal":null}')
    return Decided(decision.effect, subject.get("id"), subject.get("org_id"), resource.get("id"),
                   resource.get("owner_org_id"), decision.grant_id,
                   tuple(r.rule_id for r in decision.reasons), tail)


def with_shadow(decided_part: Decided, difference: dict) -> Decided:
    """`decided_part` with the shadow candidate's different answer (server/shadow.py)."""
    tail = decided_part.tail[:-1] + ',"shadow":' + _dumps(difference) + "}"
    return Decided(decided_part.outcome, decided_part.subject, decided_part.org,
                   decided_part.dataset, decided_part.owner, decided_part.grant_id,
                   decided_part.rules, tail)


def refused(code: str, message: str, problems: list[dict], *, policy_revision: str | None,
            claimed: dict | None = None, http: dict | None = None) -> Decided:
    """The decision part of the record of a request refused as bad input. `claimed` is who the
    request said it was from and what it asked for; the request itself is not kept (it may be
    anything a caller sent), its problems are."""
    claimed = {key: _text((claimed or {}).get(key)) for key in ("subject", "org", "dataset")}
    tail = _fields({
        "outcome": "REFUSED", "policy_revision": policy_revision, "request": None, "http": http,
        "grant_id": None, "obligations": [], "reasons": [],
        "refusal": {"code": code, "message": message[:1000],
                    "problems": list(problems), "claimed": claimed}}) + "}"
    return Decided("REFUSED", claimed["subject"], claimed["org"], claimed["dataset"], None, None,
                   (), tail)


def claimed_by(request: Any) -> dict:
    """The subject, org and dataset a (perhaps malformed) request in the contract's JSON shape
    states, for the record of its refusal."""
    def part(name: str) -> dict:
        value = request.get(name) if isinstance(request, dict) else None
        return value if isinstance(value, dict) else {}
    subject, resource = part("subject"), part("resource")
    return {"subject": subject.get("id"), "org": subject.get("org_id"),
            "dataset": resource.get("id")}


def problems_of(error) -> list[dict]:
    """A RequestError's problems as a refusal lists them."""
    return [{"attribute": p.attribute, "value": p.value, "message": p.message}
            for p in error.problems]


def entry(decided_part: Decided, *, time_us: int, decision_id: str, entry_point: str,
          caller: str) -> Entry:
    """The record of one answer: when, its id, who asked (`caller_json`), and what was decided."""
    head = (f',"time":"{_utc_text(time_us)}","decision_id":{_dumps(decision_id)},'
            f'"entry":"{entry_point}","caller":{caller}')
    return Entry(time_us, decision_id, decided_part, head + decided_part.tail)


_second = [None, ""]  # the last second formatted, and its text up to the seconds


def _utc_text(time_us: int) -> str:
    """format_instant(time_us) for a record's time (UTC, microseconds), the date and time
    formatted once per second: PERF, it is on every answer's path."""
    second, micros = divmod(time_us, 1_000_000)
    cached = _second
    if cached[0] != second:
        text = format_instant(second * 1_000_000)  # "...T08:00:00Z"
        cached[0], cached[1] = second, text[:-1]
    return f"{cached[1]}.{micros:06d}Z" if micros else cached[1] + "Z"


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


_callers: dict = {}  # (peer, identity) -> its caller JSON


def grpc_caller(context, downstream: str | None = None, identity: str | None = None) -> str:
    """caller_json for a gRPC call: its peer, and the identity its client certificate was
    verified with (server/access.py; None over plaintext)."""
    peer = context.peer()
    if downstream is not None:
        return caller_json(peer, identity, downstream)
    key = (peer, identity)
    text = _callers.get(key)
    if text is None:
        if len(_callers) > 10_000:
            _callers.clear()
        text = _callers[key] = caller_json(peer, identity)
    return text
