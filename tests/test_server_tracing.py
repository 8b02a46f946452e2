"""OpenTelemetry: every call is a server span in the caller's trace (its `traceparent`),
carrying the decision id the caller got."""

from __future__ import annotations

import os

import pytest

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("tiergate[tracing] is not installed", allow_module_level=True)

import grpc

from tiergate.server.app import start_server
from tiergate.server.config import ConfigError, ServeConfig, load_config
from tiergate.server.tracing import Tracing
from tiergate.v1 import authorizer_pb2 as pb
from tiergate.v1 import authorizer_pb2_grpc as pb_grpc

from conftest import as_stated_directory, instant, make_request
from server_support import to_proto

NOW = instant("2026-11-22T10:00:00+08:00")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_each_call_is_a_span_in_the_callers_trace_with_its_decision_id():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = ServeConfig(policy_dir=as_stated_directory(), listen="127.0.0.1:0",
                         reload_interval=0, audit_log="off")
    running = start_server(config, clock=lambda: NOW, tracing=Tracing(provider))
    request = make_request()
    request["context"].pop("time")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.AuthorizerStub(channel)
            answer = stub.Decide(to_proto(request), timeout=10, metadata=(
                ("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),))
            stub.GetPolicyInfo(pb.GetPolicyInfoRequest(), timeout=10)  # a trace of its own
    finally:
        running.stop(0)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    decide = spans["tiergate.v1.Authorizer/Decide"]
    assert format(decide.context.trace_id, "032x") == TRACE_ID
    assert format(decide.parent.span_id, "016x") == PARENT
    assert decide.attributes["tiergate.decision_id"] == answer.decision_id
    assert decide.attributes["tiergate.effect"] == "PERMIT"
    assert decide.attributes["rpc.method"] == "Decide"
    info = spans["tiergate.v1.Authorizer/GetPolicyInfo"]
    assert format(info.context.trace_id, "032x") != TRACE_ID and info.parent is None


def test_an_unknown_exporter_is_a_config_error():
    with pytest.raises(ConfigError, match="trace_exporter"):
        load_config({"policy_dir": str(as_stated_directory()), "trace_exporter": "jaeger"},
                    environ={})
