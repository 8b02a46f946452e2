"""Build, start and drain one Tiergate gRPC server process.

Services on the port: tiergate.v1.Authorizer (service.py), grpc.health.v1.Health (SERVING while
the process serves; NOT_SERVING once draining) and server reflection (so grpcurl and similar
tools can list and call the services).

Adding a service — the registration contract
--------------------------------------------
Every module named in SERVICE_MODULES defines

    def register(server: grpc.Server, holder: PolicyHolder, config: ServeConfig, *,
                 audit: AuditLog | None, metrics: Metrics | None, access: Access,
                 shadow: Shadow | None) -> object

which adds its handlers to `server` (not yet started) and returns anything (kept in
RunningServer.services under the module's short name). The module also defines
`SERVICE_NAME` (or `SERVICE_NAMES`, a tuple): the full gRPC service names it serves, which
are listed in reflection and reported SERVING by the health service.

A handler reads `holder.current` (a holder.Snapshot: policy set, load time, decision cache)
once per call and uses only that snapshot; `holder.clock()` is the time for requests that give
none; `holder.on_swap(listener)` announces every reload. A handler that answers calls for real
records each answer with `audit.record(...)` before sending it (`audit` is None when the log is
off). Adding Envoy ext_authz is one line: append "tiergate.server.ext_authz" to SERVICE_MODULES.

`server` is guarded (access.py): every handler added to it runs only for callers the config's
[access] table allows, within the per-caller rate limit, with `access.current_caller()` telling
the handler who called. A new service's methods need a permission in access.py, or nobody may
call them.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tiergate.audit import record
from tiergate.audit.log import AuditLog, AuditUnavailable
from tiergate.audit.note import NoteError, read_signer_file
from tiergate.audit.store import StoreError, open_store
from tiergate.engine import PolicySet, compile_sources
from tiergate.engine.timeutil import now_micros

from .access import Access, Caller, RateLimiter
from .cache import next_decision_id
from .config import ServeConfig, default_chain
from .ext_authz_http import HttpCheckServer
from .holder import Clock, PolicyHolder
from .metrics import Metrics
from .reload import PolicyWatcher
from .shadow import Shadow
from .sources import DirectorySource, source_for
from .tls import CertificateFiles, TLSError
from .tracing import Tracing, TracingError

log = logging.getLogger("tiergate.server")

SERVICE_MODULES: tuple[str, ...] = (
    "tiergate.server.service",
    "tiergate.server.ext_authz",
    "tiergate.server.audit_service",
)


def service_names(module) -> tuple[str, ...]:
    names = getattr(module, "SERVICE_NAMES", None)
    return tuple(names) if names else (module.SERVICE_NAME,)


@dataclass
class RunningServer:
    """A started server: its bound port, the policy it serves, and how to stop it."""

    server: grpc.Server
    port: int
    holder: PolicyHolder
    health: health.HealthServicer
    watcher: PolicyWatcher | None
    services: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    source: Any = None  # where the policy comes from (sources.py), polled by the watcher

    audit: AuditLog | None = None
    metrics: Metrics | None = None  # .port: where GET /metrics answers
    tls: CertificateFiles | None = None  # the TLS files being served, re-read on change
    shadow: Shadow | None = None  # --shadow: the candidate decided beside the served policy
    shadow_watcher: PolicyWatcher | None = None
    tracing: Tracing | None = None
    health_server: grpc.Server | None = None  # health_listen: probes without TLS
    health_port: int = 0
    http_check: HttpCheckServer | None = None  # http_check_listen: ext_authz over HTTP
    draining: bool = False

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls in flight finish for up to `grace` seconds, stop."""
        self.health.enter_graceful_shutdown()  # health checks now answer NOT_SERVING
        self.draining = True
        for watcher in (self.watcher, self.shadow_watcher):
            if watcher is not None:
                watcher.stop()
        self.server.stop(grace).wait()
        if self.http_check is not None:
            self.http_check.stop()
        if self.health_server is not None:
            self.health_server.stop(0)
        if self.metrics is not None:
            self.metrics.stop()
        if self.audit is not None:
            self.audit.close()  # commits what is left and writes a last checkpoint
        if self.tracing is not None:
            self.tracing.shutdown()  # sends the spans still batched


def open_audit_log(config: ServeConfig, on_health) -> AuditLog | None:
    """The audit log `config` names, started; None when it is off. Raises RuntimeError when it
    cannot be opened or its key cannot be read: a server that cannot record does not serve."""
    if not config.auditing:
        log.warning("the audit log is OFF (audit_log = \"off\"): decisions are not recorded; "
                    "never run like this in front of real data (福州办法 第二十七条)")
        return None
    signer = None
    if config.audit_key is not None:
        try:
            signer = read_signer_file(config.audit_key)
        except (OSError, UnicodeDecodeError, NoteError) as problem:
            raise RuntimeError(f"audit_key {config.audit_key}: {problem}") from None
    else:
        log.warning("the audit log has no signing key (audit_key): its checkpoints are unsigned")
    target = config.audit_log
    audit = AuditLog(lambda: open_store(target, fsync=config.audit_fsync),
                     config.audit_chain or default_chain(), signer=signer,
                     checkpoint_interval=config.audit_checkpoint_interval,
                     wait_seconds=config.audit_wait_seconds, on_health=on_health)
    try:
        return audit.start()
    except StoreError as problem:
        raise RuntimeError(str(problem)) from None


def server_options(config: ServeConfig) -> list[tuple[str, Any]]:
    return [
        # An oversized message is refused (RESOURCE_EXHAUSTED) before it is parsed; other
        # calls on the same port are not affected.
        ("grpc.max_receive_message_length", config.max_message_bytes),
        # The handlers refuse a larger answer themselves, before recording it; this is the net.
        ("grpc.max_send_message_length", config.max_response_bytes + 1024),
        # --workers N: every process binds the same port and the kernel spreads connections.
        # gRPC turns SO_REUSEPORT on by default; a lone server turns it off (see config).
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]


def open_tls(config: ServeConfig) -> CertificateFiles | None:
    """The TLS files the config names, checked; None for plaintext (said loudly)."""
    if config.tls_cert is None:
        log.warning("serving WITHOUT TLS on %s: callers are not authenticated and decisions "
                    "travel in plaintext; development only (set tls_cert, tls_key and "
                    "tls_client_ca)", config.listen)
        return None
    try:
        files = CertificateFiles(config.tls_cert, config.tls_key, config.tls_client_ca)
    except TLSError as problem:
        raise RuntimeError(f"TLS: {problem}") from None
    if not files.mutual:
        log.warning("TLS without client certificates (no tls_client_ca): any caller that can "
                    "reach %s is served, and [access] can only say \"*\"", config.listen)
    return files


def record_refusal(holder: PolicyHolder, audit: AuditLog | None, caller_text: str,
                   entry_point: str, message: str) -> str:
    """Record that a caller was refused (permission_denied); the refusal's decision id.
    Raises AuditUnavailable when it cannot be recorded."""
    decision_id = next_decision_id()
    if audit is not None:
        refusal = record.refused("permission_denied", message, (),
                                 policy_revision=holder.current.policy.revision)
        audit.record([record.entry(refusal, time_us=holder.clock(), decision_id=decision_id,
                                   entry_point=entry_point, caller=caller_text)])
    return decision_id


def refusal_recorder(holder: PolicyHolder, audit: AuditLog | None):
    """What access.py calls when it refuses a call: record the refusal, then say its id."""
    def on_refused(context, caller: Caller, method: str, code, message: str) -> None:
        try:
            decision_id = record_refusal(holder, audit,
                                         record.grpc_caller(context, identity=caller.identity),
                                         method, message)
        except AuditUnavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the refusal could not be recorded "
                          "in the audit log / 审计日志无法写入")
        context.set_trailing_metadata((("tiergate-decision-id", decision_id),))
    return on_refused


def start_http_check(config: ServeConfig, running: "RunningServer", access: Access,
                     ready: Callable[[], bool]) -> HttpCheckServer:
    """ext_authz over HTTP on config.http_check_listen, answered by the gRPC Check's servicer."""
    holder, audit = running.holder, running.audit

    def on_refused(caller: Caller, method: str, message: str) -> str:
        return record_refusal(holder, audit, record.caller_json(caller.peer, caller.identity),
                              method, message)
    server = HttpCheckServer(running.services["ext_authz"], access, ready=ready,
                             tls=running.tls, on_refused=on_refused, metrics=running.metrics)
    port = server.start(config.http_check_listen, reuse_port=config.reuse_port)
    holder.on_poll(server.reload_tls)
    host = config.http_check_listen.rpartition(":")[0]
    log.info("ext_authz over HTTP on %s:%d (%s)", host, port,
             "mutual TLS" if running.tls is not None and running.tls.mutual
             else "TLS" if running.tls is not None else "plaintext")
    return server


def start_server(config: ServeConfig, *, policy: PolicySet | None = None,
                 clock: Clock = now_micros, tracing: Tracing | None = None) -> RunningServer:
    """Load the policy (unless given), start serving on config.listen, start watching.

    Raises DiagnosticError when the policy set does not load, RuntimeError when the address
    cannot be bound. Port 0 picks a free port: see RunningServer.port.
    """
    source = source_for(config)
    if policy is None:
        sources, revision = source.read()
        policy = compile_sources(sources, revision=revision)
    holder = PolicyHolder(policy, policy_dir=str(source), cache_size=config.cache_size,
                          clock=clock)
    health_servicer = health.HealthServicer()
    served_names: list[str] = [""]

    audit_writable = [True]  # for the HTTP Check's /healthz, which gRPC health does not serve

    def on_audit_health(ok: bool) -> None:
        # The log failing makes every decision an error: say so to load balancers.
        audit_writable[0] = ok
        status = (health_pb2.HealthCheckResponse.SERVING if ok
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in served_names:
            health_servicer.set(name, status)

    shadow = None
    if config.shadow is not None:
        candidate_source = DirectorySource(config.shadow)
        candidates, candidate_revision = candidate_source.read()
        # A candidate that does not compile stops the start (DiagnosticError), as a policy does.
        shadow = Shadow(PolicyHolder(compile_sources(candidates, revision=candidate_revision),
                                     policy_dir=str(candidate_source), clock=clock),
                        source=candidate_source)
        log.info("shadow: deciding every call with %s too (revision %s)", config.shadow,
                 shadow.revision)
    if tracing is None and config.trace_exporter != "off":
        try:
            tracing = Tracing.from_exporter(config.trace_exporter)
        except TracingError as problem:
            raise RuntimeError(str(problem)) from None
    if tracing is not None:
        tracing.activate()
    tls = open_tls(config)
    audit = open_audit_log(config, on_audit_health)
    metrics = Metrics(holder, audit) if config.metrics_listen else None
    if metrics is not None:
        metrics.tls = tls
    if shadow is not None and metrics is not None:
        shadow.metrics, metrics.shadow = metrics, shadow
    access = Access(config.access, verified=tls is not None and tls.mutual,
                    accept_request_time=config.accept_request_time,
                    limiter=(RateLimiter(config.rate_limit, config.rate_burst
                                         or max(1, int(config.rate_limit)))
                             if config.rate_limit else None),
                    default_deadline=config.default_deadline,
                    on_refused=refusal_recorder(holder, audit), tracing=tracing,
                    metrics=metrics)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.threads,
                                                    thread_name_prefix="tiergate-rpc"),
                         options=server_options(config),
                         maximum_concurrent_rpcs=config.max_concurrent_calls)
    guarded = access.guard(server)
    services: dict[str, Any] = {}
    names: list[str] = []
    for module_name in SERVICE_MODULES:
        module = importlib.import_module(module_name)
        services[module_name.rsplit(".", 1)[-1]] = module.register(
            guarded, holder, config, audit=audit, metrics=metrics, access=access, shadow=shadow)
        names.extend(service_names(module))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, guarded)
    served_names.extend(names)
    for name in served_names:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    all_names = (*names, health.SERVICE_NAME)
    if config.reflection:
        all_names = (*all_names, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(all_names, guarded)
    if tls is None:
        port = server.add_insecure_port(config.listen)
    else:
        port = server.add_secure_port(config.listen, tls.credentials())
    if port == 0:
        if audit is not None:
            audit.close()
        raise RuntimeError(f"cannot listen on {config.listen}")
    server.start()
    if metrics is not None:
        try:
            metrics.serve(config.metrics_listen)
        except OSError as problem:
            server.stop(0)
            if audit is not None:
                audit.close()
            raise RuntimeError(f"cannot serve metrics on {config.metrics_listen}: "
                               f"{problem.strerror}") from None
    watcher = shadow_watcher = None
    if config.reload_interval > 0:
        watcher = PolicyWatcher(holder, interval=config.reload_interval, source=source).start()
        if shadow is not None:
            shadow_watcher = PolicyWatcher(shadow.holder, interval=config.reload_interval,
                                           source=shadow.source).start()
    running = RunningServer(server, port, holder, health_servicer, watcher, services, all_names,
                            source, audit, metrics, tls, shadow, shadow_watcher, tracing)
    try:
        if config.health_listen is not None:
            running.health_server, running.health_port = serve_health(config, health_servicer)
        if config.http_check_listen is not None:
            running.http_check = start_http_check(
                config, running, access, lambda: audit_writable[0] and not running.draining)
    except RuntimeError:
        running.stop(0)
        raise
    return running


LIVENESS = "tiergate.liveness"


def serve_health(config: ServeConfig, servicer: health.HealthServicer) -> tuple[grpc.Server, int]:
    """grpc.health.v1 alone on health_listen, in plaintext (kubelet's probes)."""
    servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="tiergate-health"),
                         options=[("grpc.so_reuseport", 1 if config.reuse_port else 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(config.health_listen)
    if port == 0:
        raise RuntimeError(f"cannot serve health checks on {config.health_listen}")
    server.start()
    return server, port


def serve(config: ServeConfig, *, ready_message: bool = True) -> int:
    """Run one server process until SIGTERM or SIGINT, then drain; the process's exit code."""
    from tiergate.engine import DiagnosticError
    from tiergate.diagnostics import render_plain

    try:
        running = start_server(config)
    except DiagnosticError as error:
        print(render_plain(error.diagnostics), file=sys.stderr)
        print("error: the server did not start: the policy set or the gateway mapping has errors",
              file=sys.stderr)
        return 1
    except RuntimeError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        host = config.listen.rpartition(":")[0]
        if ready_message:
            # Tests and scripts wait for this line; keep its shape.
            served = ", ".join(n for n in running.names
                               if n not in (health.SERVICE_NAME, reflection.SERVICE_NAME))
            print(f"tiergate: serving {served} on {host}:{running.port} "
                  f"policy {running.holder.current.policy.revision}", flush=True)
        while not stop.wait(3600):
            pass
        service = running.services.get("service")
        in_flight = service.in_flight.count if service is not None else 0
        log.info("signal %s: draining %d call(s) in flight (up to %.1fs)",
                 signal.Signals(received[0]).name, in_flight, config.drain_seconds)
        running.stop(config.drain_seconds)
        log.info("stopped")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
