"""Who may call what: the verified caller's identity against the config's allow-list, per method.

    [access]
    decide = ["spiffe://prod.example.cn/ns/gateway/sa/envoy"]
    check = ["spiffe://prod.example.cn/ns/gateway/sa/envoy"]
    policy_info = ["spiffe://prod.example.cn/ns/deploy/sa/rollout", "ops.example.cn"]
    audit = ["spiffe://prod.example.cn/ns/compliance/sa/auditor"]
    explain = []           # nobody gets explanations over the wire
    request_time = []      # nobody may ask for a decision at another time

A caller's identities are the names its client certificate was verified with: each URI SAN
(SPIFFE IDs, `spiffe://...`) and each DNS SAN, kept apart so a DNS name can never pass for a
URI. An entry matches a URI exactly, a DNS name exactly, or, as "*", any caller that reached
the port (with mutual TLS: any certificate the client CA issued). Permissions and the methods
they open:

    decide        tiergate.v1.Authorizer/Decide
    decide_batch  tiergate.v1.Authorizer/DecideBatch
    check         envoy.service.auth.v3.Authorization/Check
    policy_info   tiergate.v1.Authorizer/GetPolicyInfo
    audit         tiergate.v1.Audit/*  (the decision records: who asked for what)
    reflection    grpc.reflection.*/*  (the API's description)
    health        grpc.health.v1.Health/*
    explain       Decide with explain = true (the rules, conditions and grants considered)
    request_time  a request carrying context.time (a decision at another moment)

A permission the table leaves out has its default: "*" for decide, decide_batch, check,
policy_info, health and reflection; nobody for explain, audit and request_time (except that
`accept_request_time = true` makes request_time "*", for what-if servers). A method no
permission names is refused to everyone. A refused call is PERMISSION_DENIED naming the
caller, the method and the setting, and is recorded in the audit log.

The check runs in the gRPC thread that runs the handler, before it: `current_caller()` then
tells the handler (and its audit record) who is calling.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from typing import Callable

import grpc
from cachetools import LRUCache

log = logging.getLogger("tiergate.server")

PERMISSIONS = ("decide", "decide_batch", "check", "policy_info", "audit", "reflection", "health",
               "explain", "request_time")
OPEN_BY_DEFAULT = frozenset({"decide", "decide_batch", "check", "policy_info", "reflection",
                             "health"})
ANYONE = "*"
RATE_LIMITED, PERMISSION_DENIED = "rate_limited", "permission_denied"  # Access.screen's reasons

_METHODS = {
    "/tiergate.v1.Authorizer/Decide": "decide",
    "/tiergate.v1.Authorizer/DecideBatch": "decide_batch",
    "/tiergate.v1.Authorizer/GetPolicyInfo": "policy_info",
    "/envoy.service.auth.v3.Authorization/Check": "check",
}
_SERVICES = {
    "/tiergate.v1.Audit/": "audit",
    "/grpc.health.v1.Health/": "health",
    "/grpc.reflection.v1alpha.ServerReflection/": "reflection",
    "/grpc.reflection.v1.ServerReflection/": "reflection",
}


def permission_of(method: str) -> str | None:
    """The permission that opens a full gRPC method name, or None (then nobody may call it)."""
    permission = _METHODS.get(method)
    if permission is None:
        service = method[:method.rfind("/") + 1]
        permission = _SERVICES.get(service)
    return permission


class Caller:
    """Who is calling: the names its verified certificate carries (none over plaintext), and
    its address, as gRPC writes a peer (`ipv4:HOST:PORT`)."""

    __slots__ = ("uris", "dns", "_peer", "_peer_of")

    def __init__(self, uris: tuple[str, ...] = (), dns: tuple[str, ...] = (), peer: str = "",
                 *, peer_of: Callable[[], str] | None = None):
        self.uris, self.dns = uris, dns
        self._peer, self._peer_of = peer, peer_of

    @property
    def peer(self) -> str:
        """The address, asked of `peer_of` the first time something needs it. PERF: gRPC's
        context.peer() lets go of the GIL and measured about 9 µs of CPU a call under load,
        and most calls never need the address: only refusals, the rate limit and records do."""
        if self._peer_of is not None:
            self._peer, self._peer_of = self._peer_of(), None
        return self._peer

    @property
    def identity(self) -> str | None:
        """The name it is recorded under: its SPIFFE ID (first URI SAN), else its first DNS
        name; None when it presented no certificate."""
        return (self.uris or self.dns or (None,))[0]

    @property
    def key(self) -> str:
        """What the rate limit counts by: the identity, else the peer's address."""
        return self.identity or self.peer.rpartition(":")[0]

    def describe(self) -> str:
        return self.identity or f"unauthenticated caller {self.peer}"


_NOBODY = Caller()
_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("tiergate_caller",
                                                                         default=None)


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("tiergate_deadline",
                                                                  default=float("inf"))


def current_caller() -> Caller | None:
    """The caller of the unary call this thread is handling (None outside a guarded call)."""
    return _current.get()


def deadline_passed(context) -> bool:
    """Whether the call's deadline has passed: the caller's, or the server's default_deadline
    for a caller that set none (or a longer one)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return True
    return time.monotonic() > _deadline.get()


def _texts(values) -> tuple[str, ...]:
    return tuple(v.decode("utf-8", "replace") for v in values or ())


def caller_of(context) -> Caller:
    """The caller of a call, from its TLS auth context."""
    auth = context.auth_context()
    return Caller(_texts(auth.get("peer_uri")), _texts(auth.get("peer_dns")),
                  peer_of=context.peer)


def plaintext_caller(context) -> Caller:
    return Caller(peer_of=context.peer)


def _valid_identity(entry: str) -> bool:
    if entry == ANYONE:
        return True
    if "://" in entry:
        return entry.startswith("spiffe://") and " " not in entry and len(entry) <= 2048
    labels = entry.split(".")
    return len(entry) <= 253 and all(
        label and len(label) <= 63 and all(c.isascii() and (c.isalnum() or c == "-")
                                           for c in label) for label in labels)


def check_table(table: dict) -> dict[str, tuple[str, ...]]:
    """The [access] table checked: known permissions, lists of identities. Raises ValueError
    naming the key or entry that is wrong and what is allowed."""
    checked = {}
    for permission, entries in table.items():
        if permission not in PERMISSIONS:
            raise ValueError(f"access.{permission} is not a permission; the permissions are "
                             + ", ".join(PERMISSIONS))
        if not isinstance(entries, (list, tuple)) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"access.{permission} must be a list of identities (strings)")
        for entry in entries:
            if not _valid_identity(entry):
                raise ValueError(
                    f"access.{permission}: {entry!r} is not an identity; write a SPIFFE ID "
                    "(spiffe://trust-domain/path), a DNS name (gateway.example.cn) or \"*\" "
                    "(any caller)")
        checked[permission] = tuple(entries)
    return checked


_ASKING = {  # what a permission beyond the method itself lets a caller ask for, en and zh
    "explain": ("receive explanations (explain = true)", "获取决策解释（explain）"),
    "request_time": ("ask for a decision at another time (context.time)",
                     "请求按指定时间决策（context.time）"),
}


class RateLimiter:
    """A token bucket per caller: `rate` calls a second, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: LRUCache = LRUCache(maxsize=100_000)  # (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed


Refusal = Callable[[object, Caller, str, grpc.StatusCode, str], None]


class Access:
    """The allow-list of one server, and the guard that applies it to every handler."""

    def __init__(self, table: dict[str, tuple[str, ...]], *, verified: bool,
                 accept_request_time: bool = False, limiter: RateLimiter | None = None,
                 default_deadline: float = float("inf"), on_refused: Refusal | None = None,
                 tracing=None, metrics=None):
        defaults = {p: (ANYONE,) for p in OPEN_BY_DEFAULT}
        if accept_request_time:
            defaults["request_time"] = (ANYONE,)
        merged = {**defaults, **table}
        self._anyone = frozenset(p for p, entries in merged.items() if ANYONE in entries)
        self._named = {p: frozenset(e for e in entries if e != ANYONE)
                       for p, entries in merged.items()}
        # Callers are identified by mutual TLS; over plaintext they have no names.
        self._caller_of = caller_of if verified else plaintext_caller
        self.limiter = limiter
        self.default_deadline = default_deadline
        self.on_refused = on_refused
        self.tracing = tracing  # tracing.Tracing, or None: then no span is made
        self.metrics = metrics  # metrics.Metrics, or None: refused calls are not counted

    def allows(self, caller: Caller, permission: str) -> bool:
        if permission in self._anyone:
            return True
        named = self._named.get(permission)
        if not named:
            return False
        return any(u in named for u in caller.uris) or any(d in named for d in caller.dns)

    def allows_current(self, permission: str) -> bool:
        """Whether the caller of the call being handled has `permission` (outside a guarded
        call: whether anyone has it)."""
        return self.allows(_current.get() or _NOBODY, permission)

    def screen(self, caller: Caller, permission: str | None, method: str,
               label: str) -> tuple[str, str] | None:
        """Why `caller` may not call `method` (which `permission` opens; None: nothing does)
        now: (RATE_LIMITED or PERMISSION_DENIED, the message), counted in metrics under
        `label`; None when it may. The one admission rule of every port: the rate limit
        first, then the permission. A rate-limited call is not recorded (a flood would
        otherwise fill the audit log); a denied one is, by whoever transports the refusal."""
        if self.limiter is not None and not self.limiter.take(caller.key):
            if self.metrics is not None:
                self.metrics.call_refused(label, RATE_LIMITED)
            return RATE_LIMITED, (f"{caller.describe()} is over its rate limit "
                                  f"({self.limiter.rate:g} calls/s); slow down / 调用过于频繁")
        if permission is None or not self.allows(caller, permission):
            log.warning("permission denied: %s called %s", caller.describe(), method)
            if self.metrics is not None:
                self.metrics.call_refused(label, PERMISSION_DENIED)
            return PERMISSION_DENIED, self.denial(caller, permission or "-", method)
        return None

    @contextlib.contextmanager
    def calling(self, caller: Caller):
        """Handle a call of `caller` outside gRPC (ext_authz_http.py): allows_current and
        current_caller answer for it meanwhile."""
        token = _current.set(caller)
        try:
            yield
        finally:
            _current.reset(token)

    def refuse(self, context, caller: Caller, method: str, code: grpc.StatusCode,
               message: str) -> None:
        if self.on_refused is not None:
            self.on_refused(context, caller, method, code, message)
        context.abort(code, message)

    def denial(self, caller: Caller | None, permission: str, method: str | None = None) -> str:
        """The message of a PERMISSION_DENIED: who, what, and the setting that decides it."""
        caller = caller or _NOBODY
        en, zh = _ASKING.get(permission, (None, None)) if method is None else (None, None)
        en = en or f"call {method}"
        zh = zh or f"调用 {method}"
        return (f"{caller.describe()} may not {en} (access.{permission} in the server's "
                f"config lists who may) / 调用方 {caller.identity or caller.peer} 无权{zh}")

    # -- wrapping handlers
    def guard(self, server: grpc.Server) -> "GuardedServer":
        return GuardedServer(server, self)

    def wrap(self, handler, method: str):
        if handler is None:
            return None
        permission = permission_of(method)
        short = method.rsplit("/", 1)[-1]
        access = self

        def guarded(behaviour):
            if behaviour is None:
                return None

            def call(request, context):
                if access.tracing is None:
                    return checked(request, context)
                with access.tracing.span(method, context):
                    return checked(request, context)

            def checked(request, context):
                caller = access._caller_of(context)
                refused = access.screen(caller, permission, method, short)
                if refused is not None:
                    reason, message = refused
                    if reason == RATE_LIMITED:
                        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
                    access.refuse(context, caller, short, grpc.StatusCode.PERMISSION_DENIED,
                                  message)
                token = _current.set(caller)
                deadline = _deadline.set(time.monotonic() + access.default_deadline)
                try:
                    return behaviour(request, context)
                finally:
                    _deadline.reset(deadline)
                    _current.reset(token)
            return call

        return handler._replace(
            unary_unary=guarded(handler.unary_unary), unary_stream=guarded(handler.unary_stream),
            stream_unary=guarded(handler.stream_unary),
            stream_stream=guarded(handler.stream_stream))


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, access: Access):
        self._inner, self._access = inner, access

    def service(self, handler_call_details):
        return self._access.wrap(self._inner.service(handler_call_details),
                                 handler_call_details.method)


class GuardedServer:
    """A grpc.Server whose every added handler first checks the caller (what registration
    functions — ours, health's, reflection's — are given instead of the server itself)."""

    def __init__(self, server: grpc.Server, access: Access):
        self._server, self._access = server, access

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGeneric(h, self._access) for h in handlers))

    def add_registered_method_handlers(self, service_name: str, handlers: dict) -> None:
        self._server.add_registered_method_handlers(service_name, {
            name: self._access.wrap(h, f"/{service_name}/{name}") for name, h in handlers.items()})

    def __getattr__(self, name):
        return getattr(self._server, name)
