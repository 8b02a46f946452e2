"""Envoy's external authorization API (`envoy.service.auth.v3.Authorization/Check`).

An Envoy or Istio proxy asks before forwarding each HTTP request. The gateway mapping
(server/mapping.py) turns the request into a Tiergate request; the current policy set decides.

- PERMIT → status OK, and headers for the upstream: the decision id, the obligations (compact
  JSON), the grant id and the policy revision.
- DENY → status PERMISSION_DENIED, HTTP 403, a JSON body with the reasons and citations (zh, en).
- A request the mapping cannot complete, or that names a value the policy does not declare, is
  denied the same way (403) with a reason naming what was missing — never permitted.
- An unexpected failure is denied with 500: the proxy never sees a gRPC error it might be
  configured (failure_mode_allow) to let through.
- Every answer is committed to the audit log before it is sent; when it cannot be, the answer
  is a 503 denial saying so (tiergate.audit.log), never an unrecorded permit.
- With `cache_size` (as `tiergate serve` runs), a request without a time that was decided
  before is answered from the verdict cache while its decision holds (VerdictCache): under a
  fresh decision id, recorded, compared with the shadow and counted like any other answer.

The answer is a transport-neutral Verdict (ExtAuthzServicer.verdict); check_response encodes it
for gRPC, and ext_authz_http.py encodes the same Verdict for Envoy's http_service.

Wiring: `tiergate serve` registers this module (app.py's SERVICE_MODULES contract: `register`,
`SERVICE_NAME`); elsewhere `add_ext_authz(server, policy_source, mapping)`, where `policy_source`
is a zero-argument callable returning the PolicySet being served, so a reload is seen by the
next call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2, status_pb2

from tiergate.audit import record
from tiergate.audit.log import AuditLog, AuditUnavailable
from tiergate.engine import Decision, PolicySet, RequestError
from tiergate.engine.schema import Kind
from tiergate.engine.timeutil import now_micros

from .access import Access, current_caller
from .cache import DecisionCache, next_decision_id
from .mapping import (ATTRIBUTES, MAPPING_FILE, GatewayMapping, MappingError, MappingProblem,
                      TranslationCache, load_mapping)
from .metrics import outcome_of
from .tracing import note_decision

log = logging.getLogger("tiergate.ext_authz")

SERVICE_NAME = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name

DECISION_ID = "x-tiergate-decision-id"
OBLIGATIONS = "x-tiergate-obligations"
GRANT_ID = "x-tiergate-grant-id"
POLICY_REVISION = "x-tiergate-policy-revision"
# SECURITY: the upstream trusts these headers, so Tiergate always sets or removes every one of
# them; a client cannot smuggle its own copy past a permit.
UPSTREAM_HEADERS = (DECISION_ID, OBLIGATIONS, GRANT_ID, POLICY_REVISION)
# Envoy reports the decision in its dynamic metadata under the ext_authz filter's name, for
# access logs: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_JSON = "application/json; charset=utf-8"

PolicySource = Callable[[], PolicySet]
MappingSource = Callable[[], GatewayMapping]


class ExtAuthzServicer(external_auth_pb2_grpc.AuthorizationServicer):
    """Answers Envoy's Check with Tiergate decisions."""

    def __init__(self, policy_source: PolicySource,
                 mapping: GatewayMapping | MappingSource | None, *,
                 clock: Callable[[], int] | None = None, accept_request_time: bool = False,
                 audit: AuditLog | None = None, metrics=None, access: Access | None = None,
                 shadow=None, cache_size: int = 0):
        self._policy_source = policy_source
        self._access = access
        self._shadow = shadow  # shadow.Shadow with serve --shadow
        self._audit = audit
        self._metrics = metrics
        self._accept_request_time = accept_request_time
        # A plain mapping or a callable (so a holder can reload the mapping file too); None
        # when no mapping is configured: every Check is then denied, saying so.
        self._mapping_source = mapping if callable(mapping) else (lambda: mapping)
        self._clock = clock  # µs since the epoch, for requests without context.time
        # Shared with ext_authz over HTTP, whose keys name no token bytes (its token is a
        # header the key already holds), so the two kinds of key never meet.
        self.translations = TranslationCache()
        self._verdicts = VerdictCache(cache_size) if cache_size > 0 else None

    def Check(self, request: external_auth_pb2.CheckRequest, context) -> external_auth_pb2.CheckResponse:
        if self._metrics is not None:
            with self._metrics.timer("Check"):
                return self._check_safely(request, context)
        return self._check_safely(request, context)

    def _check_safely(self, request, context) -> external_auth_pb2.CheckResponse:
        try:
            return self.check(request, context)
        except Exception:  # noqa: BLE001 — any failure must still be a denial, never a pass
            return check_response(internal_failure())

    def check(self, request: external_auth_pb2.CheckRequest,
              context=None) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        address = request.attributes.source.address.socket_address
        downstream = f"{address.address}:{address.port_value}" if address.address else None
        metadata = request.attributes.metadata_context

        def caller() -> str:
            calling = current_caller()
            identity = calling.identity if calling is not None else None
            return (record.grpc_caller(context, downstream, identity) if context is not None
                    else record.caller_json(None, None, downstream))
        def translate(mapping: GatewayMapping) -> dict:
            by_filter = metadata.filter_metadata
            token = (by_filter[mapping.jwt_filter].SerializeToString()
                     if mapping.jwt_filter in by_filter else b"")
            return self.translations.translate(mapping, http.method, http.path,
                                                _headers(http), lambda m: _claims(metadata, m),
                                                claims_key=token)
        return check_response(self.verdict(http.method, http.path, translate, caller))

    def verdict(self, method: str, path: str, translate: Callable[[GatewayMapping], dict],
                caller: Callable[[], str]) -> "Verdict":
        """One HTTP request's answer, recorded: the part of a Check that does not depend on
        how it arrived (gRPC here, HTTP in ext_authz_http.py). `translate(mapping)` is the
        Tiergate request (or MappingError); `caller()` is the audit record's caller, asked only
        when recording."""
        verdict, decided = self._answer(method, path, translate)
        note_decision(verdict.decision_id, verdict.effect)
        if self._audit is None:
            return verdict
        try:
            self._audit.record([record.entry(decided, time_us=self._now(),
                                             decision_id=verdict.decision_id,
                                             entry_point="Check", caller=caller())])
        except AuditUnavailable as problem:
            # SECURITY: no unrecorded permit; the gateway gets a denial instead.
            log.debug("ext_authz %s not answered: %s", verdict.decision_id, problem)
            return _audit_denied(verdict.decision_id)
        return verdict

    @property
    def recording(self) -> bool:
        """Whether each answer waits for its audit record to commit."""
        return self._audit is not None

    def _now(self) -> int:
        return self._clock() if self._clock is not None else now_micros()

    def _answer(self, method: str, path: str, translate):
        """(Verdict, the audit record's decision part or None without a log) for one
        request."""
        recorded = self._audit is not None
        http_part = {"method": method[:20], "path": path.split("?", 1)[0][:2000]}
        mapping = self._mapping_source()
        if mapping is None:
            error = MappingError([MappingProblem(
                None, "mapping: no gateway mapping is configured (POLICY_DIR/gateway.toml "
                "or --mapping FILE)", "映射：未配置网关映射文件（POLICY_DIR/gateway.toml 或 --mapping）")])
            return self._mapping_refused(error, http_part, recorded)
        try:
            tiergate_request = translate(mapping)
        except MappingError as error:
            return self._mapping_refused(error, http_part, recorded)
        policy = self._policy_source()
        now = self._now()  # one instant for the answer and the shadow's
        cache = key = None
        if self._verdicts is not None and "time" not in tiergate_request.get("context", ()):
            # The audit record names the HTTP method and path, which a translation drops:
            # they are part of what a kept verdict answers.
            key = (http_part["method"], http_part["path"], request_key(tiergate_request))
            cache = self._verdicts.for_policy(policy)
            kept = cache.get(key, now)
            if kept is not None:
                verdict, decided, decision, outcome = kept
                return self._answered(verdict.with_decision_id(next_decision_id()), decided,
                                      decision, outcome, tiergate_request, now)
        decide = policy.decide_recorded if recorded else policy.decide
        try:
            requested_time = (self._access.allows_current("request_time")
                              if self._access is not None else self._accept_request_time)
            answer = decide(tiergate_request, now=now, requested_time=requested_time)
        except RequestError as error:
            error_id = _error_id()
            decided = record.refused(
                "invalid_request", str(error), record.problems_of(error),
                policy_revision=policy.revision, http=http_part,
                claimed=record.claimed_by(tiergate_request)) if recorded else None
            if self._metrics is not None:
                self._metrics.refused("Check", (p.attribute for p in error.problems))
            return _request_denied(error, policy.revision, error_id), decided
        decision, decided = answer, None
        if recorded:
            decision, settled = answer
            decided = record.decided(decision, settled, http_part)
        verdict = _permitted(decision) if decision.permitted else _decision_denied(decision)
        outcome = outcome_of(decision)
        if cache is not None:
            cache.put(key, (verdict, decided, decision, outcome), decision.valid_until, now)
        return self._answered(verdict, decided, decision, outcome, tiergate_request, now)

    def _answered(self, verdict: "Verdict", decided, decision: Decision, outcome,
                  tiergate_request: dict, now: int):
        """What every decided answer goes through, decided afresh or kept: the shadow's
        comparison (into the record) and the metrics."""
        if self._shadow is not None:
            difference = self._shadow.compare("Check", tiergate_request, decision, now)
            if difference is not None and decided is not None:
                decided = record.with_shadow(decided, difference)
        if self._metrics is not None:
            self._metrics.decided("Check", *outcome)
        return verdict, decided

    def _mapping_refused(self, error: MappingError, http_part: dict, recorded: bool):
        if self._metrics is not None:
            self._metrics.refused("Check", (p.attribute for p in error.problems))
        error_id = _error_id()
        decided = record.refused("mapping", str(error),
                                 [{"attribute": p.attribute, "value": None,
                                   "message": p.message_en} for p in error.problems],
                                 policy_revision=None, http=http_part) if recorded else None
        return _mapping_denied(error, error_id), decided


def add_ext_authz(server, policy_source: PolicySource,
                  mapping: GatewayMapping | MappingSource | None, *,
                  clock: Callable[[], int] | None = None,
                  accept_request_time: bool = False,
                  audit: AuditLog | None = None, metrics=None,
                  access: Access | None = None, shadow=None,
                  cache_size: int = 0) -> ExtAuthzServicer:
    """Serve envoy.service.auth.v3.Authorization on `server` (a grpc.Server)."""
    servicer = ExtAuthzServicer(policy_source, mapping, clock=clock,
                                accept_request_time=accept_request_time, audit=audit,
                                metrics=metrics, access=access, shadow=shadow,
                                cache_size=cache_size)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, server)
    undeclared = []
    try:
        current = servicer._mapping_source()
        if current is not None:
            undeclared = current.undeclared_values(policy_source().vocabularies)
    except Exception:  # noqa: BLE001 — a warning only; no policy may be loaded yet
        pass
    for warning in undeclared:
        log.warning("gateway mapping: %s (requests using it are denied)", warning)
    return servicer


def mapping_path(config) -> Path | None:
    """The mapping file `tiergate serve` uses: --mapping, else POLICY_DIR/gateway.toml if present."""
    explicit = getattr(config, "mapping", None)
    if explicit:
        return Path(explicit)
    if getattr(config, "policy_dir", None) is None:  # a bundle: name the mapping with --mapping
        return None
    default = Path(config.policy_dir) / MAPPING_FILE
    return default if default.is_file() else None


class _ReloadingMapping:
    """The mapping file, re-read when its content changes (checked on every poll of the policy
    directory, where the file lives). A mapping edit that does not load keeps the last good
    mapping serving, as a broken policy edit does."""

    def __init__(self, path: Path):
        self.path = path
        self._content = self._read()
        self.current = load_mapping(path)  # DiagnosticError at start: refuse to serve

    def __call__(self) -> GatewayMapping:
        return self.current

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def reload_if_changed(self) -> None:
        content = self._read()
        if content == self._content:
            return
        self._content = content
        try:
            self.current = load_mapping(self.path)
            log.info("gateway mapping %s reloaded (%d routes)", self.path, len(self.current.routes))
        except Exception as problem:  # noqa: BLE001 — keep serving the last good mapping
            log.error("gateway mapping %s did not reload; still serving the previous one: %s",
                      self.path, problem)


def register(server, holder, config, *, audit: AuditLog | None = None,
             metrics=None, access: Access | None = None, shadow=None) -> ExtAuthzServicer:
    """app.py's registration contract: Envoy ext_authz over the holder's current policy set.

    Raises DiagnosticError when the mapping file does not load, so the server does not start.
    """
    path = mapping_path(config)
    mapping = None
    if path is not None:
        mapping = _ReloadingMapping(path)
        holder.on_poll(mapping.reload_if_changed)
        log.info("ext_authz: gateway mapping %s (%d routes)", path, len(mapping().routes))
    else:
        where = (f"{config.policy_dir}/{MAPPING_FILE}" if config.policy_dir is not None
                 else "--mapping FILE, which a bundle needs")
        log.warning("ext_authz: no gateway mapping (%s); every Check is denied", where)
    return add_ext_authz(server, lambda: holder.current.policy, mapping, clock=holder.clock,
                         accept_request_time=config.accept_request_time, audit=audit,
                         metrics=metrics, access=access, shadow=shadow,
                         cache_size=config.cache_size)


class VerdictCache:
    """Verdicts of Checks without a time, kept while their decision holds.

    Why: a gateway asks about the same request again and again (a user paging through a
    dataset), and deciding and writing the verdict are most of a Check's own work. A verdict is
    a function of the policy set, the translated request and the instant, and the engine says
    until when the instant does not matter (Decision.valid_until), so a kept verdict is served
    only within [the instant it was decided, valid_until), as server/cache.py does for Decide.
    One DecisionCache per policy set: a reload starts an empty one, and a call still deciding
    with the old set never puts its verdict where the new set's calls look. Thread-safe.
    """

    def __init__(self, size: int):
        self._size = size
        self._lock = threading.Lock()
        self._current: tuple[PolicySet, DecisionCache] | None = None

    def for_policy(self, policy: PolicySet) -> DecisionCache:
        current = self._current  # one read: the pair is replaced whole
        if current is None or current[0] is not policy:
            with self._lock:
                current = self._current
                if current is None or current[0] is not policy:
                    current = self._current = (policy, DecisionCache(self._size))
        return current[1]


def request_key(request: Mapping[str, Any]) -> tuple:
    """A translated request (contract JSON: sections of attribute values) as a hashable key."""
    return tuple(sorted((name, tuple(sorted(value.items())) if isinstance(value, dict) else value)
                        for name, value in request.items()))


# ----------------------------------------------------------------------------------------------
# Reading the CheckRequest

def _headers(http) -> Mapping[str, str]:
    if http.headers:
        return http.headers
    # Envoy sends header_map instead when encode_raw_headers is on; repeated names are joined
    # with a comma, as the plain map does (a doubled identity header then fails validation).
    joined: dict[str, str] = {}
    for header in http.header_map.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        key = header.key.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _claims(metadata_context, mapping: GatewayMapping) -> Mapping[str, Any] | None:
    by_filter = metadata_context.filter_metadata
    if mapping.jwt_filter not in by_filter:
        return None
    fields = by_filter[mapping.jwt_filter].fields
    for name in mapping.jwt_payloads:
        if name in fields and fields[name].HasField("struct_value"):
            return json_format.MessageToDict(fields[name].struct_value)
    return None


# ----------------------------------------------------------------------------------------------
# The answer, and the CheckResponse that carries it over gRPC

@dataclass(frozen=True, slots=True)
class Verdict:
    """One Check's answer, whichever transport carries it: a gRPC CheckResponse
    (check_response) or an HTTP response (ext_authz_http.py)."""

    code: int                            # google.rpc code: OK on a permit
    http_status: int                     # what Envoy answers the client on a denial; 200 else
    headers: tuple[tuple[str, str], ...]  # for the upstream on a permit, the client on a denial
    remove: tuple[str, ...]              # upstream headers a permit removes
    body: str                            # the denial's JSON; "" on a permit
    message: str                         # the first reason (gRPC status message)
    effect: str
    decision_id: str
    grant_id: str | None
    # The kept verdict this one gives again under its own decision id (VerdictCache), whose
    # encodings can be reused with the id changed; None for a verdict decided afresh.
    origin: "Verdict | None" = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def permitted(self) -> bool:
        return self.code == code_pb2.OK

    def with_decision_id(self, decision_id: str) -> "Verdict":
        """The same answer under another decision id: every answer has its own, kept or not.
        The id is in the headers and, on a denial, in the body (`"decision_id":"..."` once:
        json.dumps escapes every quote inside a string, so the sequence is only ever the key)."""
        headers = tuple((name, decision_id if name == DECISION_ID else value)
                        for name, value in self.headers)
        body = self.body
        if body:
            old, new = (f'"decision_id":{json.dumps(i)}' for i in (self.decision_id, decision_id))
            if old not in body:
                raise ValueError("a denial body without its decision id")
            body = body.replace(old, new, 1)
        return Verdict(self.code, self.http_status, headers, self.remove, body, self.message,
                       self.effect, decision_id, self.grant_id, self.origin or self)


class _Templates(dict):
    """id(kept verdict) -> (that verdict, its CheckResponse). Holding the verdict keeps its id
    from being reused while the entry lives; the table empties itself when full."""

    LIMIT = 4096

    def of(self, kept: Verdict) -> external_auth_pb2.CheckResponse:
        entry = self.get(id(kept))
        if entry is None or entry[0] is not kept:
            if len(self) >= self.LIMIT:
                self.clear()
            entry = self[id(kept)] = (kept, _encoded(kept))
        return entry[1]


_templates = _Templates()


def check_response(verdict: Verdict) -> external_auth_pb2.CheckResponse:
    """The CheckResponse that carries `verdict`. A kept verdict's is its origin's, copied with
    the decision id changed: building one field by field costs several times more (PERF)."""
    if verdict.origin is None:
        return _encoded(verdict)
    response = external_auth_pb2.CheckResponse()
    response.CopyFrom(_templates.of(verdict.origin))
    answer = response.ok_response if verdict.permitted else response.denied_response
    for option in answer.headers:
        if option.header.key == DECISION_ID:
            option.header.value = verdict.decision_id
    if not verdict.permitted:
        response.denied_response.body = verdict.body
    response.dynamic_metadata.fields["decision_id"].string_value = verdict.decision_id
    return response


def _encoded(verdict: Verdict) -> external_auth_pb2.CheckResponse:
    headers = [_header(k, v) for k, v in verdict.headers]
    metadata = _metadata(verdict.effect, verdict.decision_id, verdict.grant_id)
    if verdict.permitted:
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(headers=headers,
                                                         headers_to_remove=verdict.remove),
            dynamic_metadata=metadata)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=verdict.code, message=verdict.message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=verdict.http_status), headers=headers,
            body=verdict.body),
        dynamic_metadata=metadata)


def internal_failure() -> Verdict:
    """The answer to a Check that failed unexpectedly: a denial (500), logged with its id."""
    error_id = _error_id()
    log.exception("ext_authz check failed (decision id %s)", error_id)
    return _internal_denied(error_id)


def _permitted(decision: Decision) -> Verdict:
    obligations = json.dumps([o.to_dict() for o in decision.obligations],
                             separators=(",", ":"), ensure_ascii=True)
    headers = [(DECISION_ID, decision.decision_id), (OBLIGATIONS, obligations),
               (POLICY_REVISION, decision.policy_revision)]
    remove = ()
    if decision.grant_id is not None:
        headers.append((GRANT_ID, decision.grant_id))
    else:
        remove = (GRANT_ID,)
    return Verdict(code_pb2.OK, 200, tuple(headers), remove, "", "", decision.effect,
                   decision.decision_id, decision.grant_id)


def _decision_denied(decision: Decision) -> Verdict:
    body = {"effect": "DENY", "decision_id": decision.decision_id,
            "policy_revision": decision.policy_revision,
            "reasons": [{"rule_id": r.rule_id, "citation": r.citation, "message_zh": r.message_zh,
                         "message_en": r.message_en} for r in decision.reasons]}
    if decision.unmet:  # a default deny: what the closest permit rules missed
        body["unmet"] = [u.to_dict() for u in decision.unmet]
    return _denied(code_pb2.PERMISSION_DENIED, http_status_pb2.Forbidden, body,
                   decision.decision_id, decision.policy_revision)


def _internal_denied(error_id: str) -> Verdict:
    body = {"effect": "DENY", "error": "internal", "decision_id": error_id,
            "reasons": [_reason("internal", "授权服务内部错误，请求被拒绝",
                                "internal error in the authorization service; "
                                "the request is denied")]}
    return _denied(code_pb2.INTERNAL, http_status_pb2.InternalServerError, body, error_id, None)


def _audit_denied(decision_id: str) -> Verdict:
    body = {"effect": "DENY", "error": "audit", "decision_id": decision_id,
            "reasons": [_reason("audit", "审计日志无法写入，请求被拒绝（不允许未留痕的访问）",
                                "the audit log cannot be written, so the request is denied "
                                "(no access goes unrecorded)")]}
    return _denied(code_pb2.UNAVAILABLE, http_status_pb2.ServiceUnavailable, body, decision_id,
                   None)


def _mapping_denied(error: MappingError, error_id: str) -> Verdict:
    log.debug("ext_authz %s denied: %s", error_id, error)
    body = {"effect": "DENY", "error": "mapping", "decision_id": error_id,
            "reasons": [_reason("mapping", p.message_zh, p.message_en, p.attribute)
                        for p in error.problems]}
    return _denied(code_pb2.PERMISSION_DENIED, http_status_pb2.Forbidden, body, error_id, None)


def _request_denied(error: RequestError, revision: str, error_id: str) -> Verdict:
    log.debug("ext_authz %s denied: %s", error_id, error)
    reasons = []
    for p in error.problems:
        kind = ATTRIBUTES[p.attribute].kind if p.attribute in ATTRIBUTES else None
        if p.message_zh:
            zh = f"请求：{p.message_zh}"
        elif p.value is None:
            zh = f"请求：缺少 {p.attribute}"
        elif kind is Kind.ENUM:
            zh = f"请求：{p.attribute} 的值 {p.value!r} 未在策略中声明；允许的值：{'、'.join(p.allowed)}"
        elif kind is Kind.TIME:
            zh = f"请求：{p.attribute} 的值 {p.value!r} 不是带时区偏移的 RFC 3339 时间"
        else:
            zh = f"请求：{p.attribute} 的值 {p.value!r} 无效"
        reasons.append(_reason("request", zh, "request: " + p.message, p.attribute))
    body = {"effect": "DENY", "error": "invalid_request", "decision_id": error_id,
            "policy_revision": revision, "reasons": reasons,
            "problems": [p.to_dict() for p in error.problems]}
    return _denied(code_pb2.PERMISSION_DENIED, http_status_pb2.Forbidden, body, error_id, revision)


def _denied(code: int, http_code: int, body: dict, decision_id: str,
            revision: str | None) -> Verdict:
    headers = [("content-type", _JSON), (DECISION_ID, decision_id)]
    if revision is not None:
        headers.append((POLICY_REVISION, revision))
    first = body["reasons"][0]["message_en"] if body.get("reasons") else body["effect"]
    return Verdict(code, http_code, tuple(headers), (),
                   json.dumps(body, ensure_ascii=False, separators=(",", ":")), first, "DENY",
                   decision_id, None)


def _reason(rule_id: str, zh: str, en: str, attribute: str | None = None) -> dict:
    out = {"rule_id": rule_id, "citation": "", "message_zh": zh, "message_en": en}
    if attribute is not None:
        out["attribute"] = attribute
    return out


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value),
                                      append_action=_OVERWRITE)


def _metadata(effect: str, decision_id: str, grant_id: str | None) -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    metadata.update({"effect": effect, "decision_id": decision_id,
                     **({"grant_id": grant_id} if grant_id else {})})
    return metadata


def _error_id() -> str:
    # Denials that never reached the engine still get an id, to match the log with the 403.
    return "m-" + uuid.uuid4().hex[:20]
