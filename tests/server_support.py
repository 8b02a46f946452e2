"""Helpers for the server tests: a real server on 127.0.0.1, requests as protos, comparisons."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import grpc

from conftest import TEST_AUDIT_LOG, as_stated_directory
from tiergate.engine.timeutil import parse_instant
from tiergate.server.app import start_server
from tiergate.server.config import ServeConfig
from tiergate.server.convert import timestamp_of
from tiergate.v1 import authorizer_pb2 as pb
from tiergate.v1 import authorizer_pb2_grpc as pb_grpc

EFFECT_NAMES = {pb.PERMIT: "PERMIT", pb.DENY: "DENY"}
# Decision responses for big batches exceed gRPC's 4 MiB client default.
CLIENT_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                  ("grpc.max_send_message_length", 64 * 1024 * 1024)]


def to_proto(request: dict, *, explain: bool = False) -> pb.DecideRequest:
    """The contract's JSON request as a DecideRequest (context.time -> Timestamp)."""
    context = dict(request.get("context", {}))
    time = context.pop("time", None)
    message = pb.DecideRequest(subject=pb.Subject(**request.get("subject", {})),
                               resource=pb.Resource(**request.get("resource", {})),
                               action=request.get("action", ""),
                               purpose=request.get("purpose", ""),
                               context=pb.Context(**context), explain=explain)
    if time is not None:
        message.context.time.CopyFrom(timestamp_of(parse_instant(time)))
    return message


def engine_summary(decision) -> tuple:
    """What a gateway relies on in an engine Decision (not its id)."""
    return (decision.effect, decision.grant_id or "",
            sorted((o.id, tuple(sorted(o.params.items()))) for o in decision.obligations),
            [(r.rule_id, r.effect, r.citation, r.message_zh, r.message_en, r.grant_id or "")
             for r in decision.reasons],
            decision.policy_revision)


def proto_summary(decision: pb.Decision) -> tuple:
    """The same as engine_summary, read from a proto Decision."""
    return (EFFECT_NAMES[decision.effect], decision.grant_id,
            sorted((o.id, tuple(sorted(o.params.items()))) for o in decision.obligations),
            [(r.rule_id, EFFECT_NAMES[r.effect], r.citation, r.message_zh, r.message_en,
              r.grant_id) for r in decision.reasons],
            decision.policy_revision)


def poll_until(condition, seconds: float) -> bool:
    """Whether `condition()` became true within `seconds` (checked every 0.1 s); the caller
    asserts what it needs afterwards."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def copy_policies(directory: Path) -> Path:
    """A copy of the `policy` fixture's directory (uncatalogued datasets decided as stated)."""
    target = directory / "policies"
    shutil.copytree(as_stated_directory(), target)
    return target


def write_atomically(path: Path, text: str) -> None:
    """Replace a policy file the way deploy tools do (write aside, rename)."""
    aside = path.with_name("." + path.name + ".tmp")  # not *.policy: never read half-written
    aside.write_text(text, encoding="utf-8")
    aside.replace(path)


@contextlib.contextmanager
def running_server(policy_dir: Path | None = None, **settings):
    """A started server on 127.0.0.1 (ephemeral port) and a stub connected to it.

    A test deployment: it accepts requested times (accept_request_time) unless told otherwise,
    so that decisions do not depend on today's date; it gives explanations and the audit log to
    anyone on loopback (tests of who may are in test_server_tls.py); and it serves the
    `policy` fixture's directory unless given another.
    """
    clock = settings.pop("clock", None)
    config = ServeConfig(policy_dir=policy_dir or as_stated_directory(), listen="127.0.0.1:0",
                         **{"reload_interval": 0, "threads": 4, "accept_request_time": True,
                            "audit_log": TEST_AUDIT_LOG,
                            "access": {"explain": ["*"], "audit": ["*"]}, **settings})
    running = start_server(config, **({"clock": clock} if clock else {}))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=CLIENT_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield running, pb_grpc.AuthorizerStub(channel), channel
    finally:
        channel.close()
        running.stop(0)
