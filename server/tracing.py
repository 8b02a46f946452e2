"""OpenTelemetry traces: one server span a call, a child of the caller's `traceparent`.

    trace_exporter = "otlp"      # or "console"; "off" (the default) loads no OpenTelemetry
    # OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ... configure the exporter as usual

Needs the `tiergate[tracing]` extra (opentelemetry-api, -sdk); "otlp" also needs
opentelemetry-exporter-otlp-proto-grpc. Each span is named after the gRPC method
(`tiergate.v1.Authorizer/Decide`), carries rpc.system/service/method, and the handler adds
the decision: `tiergate.decision_id`, `tiergate.effect`, `tiergate.policy_revision` (for a
batch, the count). Nothing here runs when tracing is off: the guard (access.py) calls
`Tracing.span` only when a Tracing exists, and `note_decision` is one global check.
"""

from __future__ import annotations

import contextlib

_active: "Tracing | None" = None  # the server's tracing, for note_decision


class TracingError(RuntimeError):
    """Tracing was asked for but cannot be set up; the message says what to install."""


def note_decision(decision_id: str, effect: str, revision: str | None = None) -> None:
    """Put the decision on the current call's span (no-op without tracing)."""
    if _active is not None:
        _active.note(decision_id, effect, revision)


class Tracing:
    def __init__(self, provider):
        from opentelemetry import propagate, trace

        self._provider = provider
        self._tracer = provider.get_tracer("tiergate.server")
        self._propagate = propagate
        self._trace = trace
        self._kind = trace.SpanKind.SERVER

    @classmethod
    def from_exporter(cls, exporter_name: str) -> "Tracing":
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        except ImportError:
            raise TracingError("trace_exporter needs OpenTelemetry: pip install "
                               "'tiergate[tracing]'") from None
        if exporter_name == "console":
            exporter = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise TracingError("trace_exporter = \"otlp\" needs pip install "
                                   "opentelemetry-exporter-otlp-proto-grpc") from None
            exporter = OTLPSpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "tiergate"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def activate(self) -> "Tracing":
        global _active
        _active = self
        return self

    def shutdown(self) -> None:
        global _active
        if _active is self:
            _active = None
        shutdown = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            shutdown()

    @contextlib.contextmanager
    def span(self, method: str, context):
        """A server span for the call, continuing the trace its metadata carries."""
        carrier = {key: value for key, value in (context.invocation_metadata() or ())
                   if isinstance(value, str)}
        parent = self._propagate.extract(carrier)
        service, _, name = method.lstrip("/").rpartition("/")
        with self._tracer.start_as_current_span(
                method.lstrip("/"), context=parent, kind=self._kind,
                attributes={"rpc.system": "grpc", "rpc.service": service,
                            "rpc.method": name}) as span:
            yield span

    def note(self, decision_id: str, effect: str, revision: str | None) -> None:
        span = self._trace.get_current_span()
        if span.is_recording():
            span.set_attribute("tiergate.decision_id", decision_id)
            span.set_attribute("tiergate.effect", effect)
            if revision:
                span.set_attribute("tiergate.policy_revision", revision)
