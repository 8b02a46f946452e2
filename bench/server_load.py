"""The load client for bench/server_bench.py: closed-loop gRPC calls from separate processes.

Each client process runs grpc.aio with `tasks` coroutines over `channels` channels (each its own
TCP connection, so SO_REUSEPORT can spread them over `--workers` processes). Requests are
pre-serialized bytes sent through a generic `channel.unary_unary(path)` with no serializer and
no response parsing: the client spends the least CPU Python gRPC allows per call, so it hides as
little of the server's speed as possible. Calls are closed-loop (a task sends its next call when
its last one returns), so calls in flight = channels x tasks summed over client processes.

Processes live for the whole benchmark (ClientPool) and run one measurement at a time:
connect, report ready, wait for a common start instant (CLOCK_MONOTONIC is system-wide), warm
up, measure a fixed window, stop at the window's end or after `max_calls`, whichever is first.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from dataclasses import dataclass, field

CHANNEL_OPTIONS = [
    # One TCP connection per channel object, not one shared subchannel per target.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class LoadSpec:
    target: str  # HOST:PORT, always 127.0.0.1 here
    method: str  # full path, e.g. /tiergate.v1.Authorizer/Decide
    payloads: tuple[bytes, ...]  # cycled; each process starts at a different offset
    channels: int
    tasks: int  # coroutines per channel
    warmup_s: float
    duration_s: float
    max_calls: int  # per process, counted in the measured window
    timeout_s: float = 30.0


@dataclass
class LoadResult:
    calls: int = 0  # completed in the window
    errors: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0  # this client process's CPU in the window
    latencies_ns: list[int] = field(default_factory=list)
    error_text: str = ""


async def _run(spec: LoadSpec, index: int, ready, start_at_of) -> LoadResult:
    import grpc

    channels = [grpc.aio.insecure_channel(spec.target, options=CHANNEL_OPTIONS)
                for _ in range(spec.channels)]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=15)
        calls = [channel.unary_unary(spec.method) for channel in channels]
        ready()
        start_at = await asyncio.get_running_loop().run_in_executor(None, start_at_of)
        result = LoadResult()
        measure_from = start_at + spec.warmup_s
        measure_to = measure_from + spec.duration_s
        clock = time.monotonic_ns
        from_ns, to_ns = int(measure_from * 1e9), int(measure_to * 1e9)
        latencies = result.latencies_ns
        payloads = spec.payloads
        count = len(payloads)
        cpu = {}
        done = asyncio.Event()

        async def worker(call, offset: int) -> None:
            position = offset
            while True:
                payload = payloads[position % count]
                position += 1
                started = clock()
                if started >= to_ns or done.is_set():
                    return
                try:
                    await call(payload, timeout=spec.timeout_s)
                except grpc.RpcError as problem:
                    if from_ns <= clock() < to_ns:
                        result.errors += 1
                        result.error_text = result.error_text or str(problem)[:300]
                    continue
                ended = clock()
                if from_ns <= started and ended < to_ns:
                    latencies.append(ended - started)
                    if len(latencies) >= spec.max_calls:
                        done.set()
                        return

        async def window() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            cpu["from"], cpu["at"] = time.process_time(), time.monotonic()
            try:
                await asyncio.wait_for(done.wait(), timeout=max(0.0, measure_to - time.monotonic()))
            except asyncio.TimeoutError:
                pass
            cpu["to"], cpu["end"] = time.process_time(), time.monotonic()

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        workers = [worker(calls[t % len(calls)], (index * 7919 + t * 131) % count)
                   for t in range(spec.channels * spec.tasks)]
        await asyncio.gather(window(), *workers)
        result.calls = len(latencies)
        result.window_s = cpu["end"] - cpu["at"]
        result.cpu_s = cpu["to"] - cpu["from"]
        return result
    finally:
        for channel in channels:
            await channel.close()


def _client_main(connection, index: int) -> None:
    """A client process: run each LoadSpec it is sent until it is sent None."""
    while True:
        spec = connection.recv()
        if spec is None:
            return
        steps = {"ready": False, "started": False}

        def ready() -> None:
            connection.send("ready")
            steps["ready"] = True

        def start_at() -> float:
            value = connection.recv()
            steps["started"] = True
            return value

        try:
            result = asyncio.run(_run(spec, index, ready, start_at))
        except Exception as problem:  # reported to the parent, which fails the run
            result = LoadResult(error_text=f"{type(problem).__name__}: {problem}")
            # Keep the protocol in step: the parent still expects "ready" and sends a start.
            if not steps["ready"]:
                connection.send("ready")
            if not steps["started"]:
                connection.recv()
        connection.send(result)


class ClientPool:
    """`processes` long-lived client processes (spawned: grpc threads do not survive fork)."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("spawn")
        self._connections = []
        self.processes = []
        for index in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child, index), daemon=True)
            process.start()
            self._connections.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def run(self, spec: LoadSpec, *, on_start=None) -> list[LoadResult]:
        """Run `spec` in every process at once; on_start(start_at) is called before the start."""
        for connection in self._connections:
            connection.send(spec)
        for connection in self._connections:
            if not connection.poll(60):
                raise RuntimeError("a load client did not connect within 60 s")
            connection.recv()  # "ready"
        start_at = time.monotonic() + 0.05
        for connection in self._connections:
            connection.send(start_at)
        if on_start is not None:
            on_start(start_at)
        results = []
        limit = spec.warmup_s + spec.duration_s + spec.timeout_s + 30
        for connection in self._connections:
            if not connection.poll(limit):
                raise RuntimeError("a load client did not finish in time")
            results.append(connection.recv())
        return results

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads) from /proc, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick
