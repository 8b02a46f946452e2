"""A native load client for bench/server_bench.py: nghttp2's h2load speaking gRPC over h2c.

The grpc.aio client (bench/server_load.py) spends about 80 µs of CPU per call, as much as half a
server process: on a 2-core machine it takes the core a second worker would need. h2load is C
and spends a small fraction of that, so measured through it the server, not the client, is what
limits throughput. Install it with `apt-get install nghttp2-client`; without it the h2load
sections are skipped.

gRPC over plain HTTP/2: POST /package.Service/Method with `content-type: application/grpc` and
`te: trailers`, the body one gRPC frame (flag byte 0 = uncompressed, 4-byte big-endian length,
the serialized message). h2load posts the same body on every request, so `run` starts one h2load
process per request file, all at once, each with `connections` connections and `streams`
requests in flight per connection (closed loop); in flight = processes x connections x streams.

h2load sees only HTTP status, not grpc-status (a gRPC error is HTTP 200 with an error in the
trailers and no message). So the caller checks each request file's answer with a real gRPC call
before timing, and `run` checks afterwards that the response DATA bytes per request are at least
most of a real answer's frame (a trailers-only error answer has none).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from server_load import process_cpu_seconds


def find_h2load() -> str | None:
    """The h2load executable on PATH (or $H2LOAD), or None."""
    explicit = os.environ.get("H2LOAD")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("h2load")


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


@dataclass(frozen=True)
class H2Result:
    calls_s: float  # requests per second over the measured windows, all processes together
    latencies_us: tuple[int, ...]  # per request in the window, sorted
    done: int
    client_pids: tuple[int, ...]


@dataclass(frozen=True)
class H2Summary:
    """The figures of one h2load run's standard output."""

    req_s: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    data_bytes: int


_NUMBERS = {
    "req_s": r"finished in [\d.]+\w*, ([\d.]+) req/s",
    "done": r"requests: \d+ total, \d+ started, (\d+) done",
    "succeeded": r"(\d+) succeeded",
    "failed": r"(\d+) failed",
    "errored": r"(\d+) errored",
    "timeout": r"(\d+) timeout",
    "status_2xx": r"status codes: (\d+) 2xx",
    "data_bytes": r"traffic: .*\((\d+)\) data",
}


def parse_output(text: str) -> H2Summary:
    """Read h2load's summary; ValueError naming what is missing (h2load printed an error)."""
    values = {}
    for key, pattern in _NUMBERS.items():
        found = re.search(pattern, text)
        if not found:
            raise ValueError(f"h2load output has no {key}: {text.strip()[-400:]}")
        values[key] = float(found.group(1)) if key == "req_s" else int(found.group(1))
    return H2Summary(**values)


def _ms(seconds: float) -> str:
    """h2load's DURATION takes whole numbers with a unit."""
    return f"{max(1, round(seconds * 1000))}ms"


def run(h2load: str, target: str, method: str, frames: list[bytes], min_answer: int, *,
        connections: int, streams: int, warmup_s: float, duration_s: float,
        on_start=None) -> H2Result:
    """One h2load process per frame, all at once, on http://target/method.

    `min_answer`: bytes of the smallest verified answer frame; fewer DATA bytes per request
    means some answers were not messages (gRPC errors). on_start(start_at) runs while the
    processes run (start_at = time.monotonic() at their launch), for sampling /proc.
    """
    with tempfile.TemporaryDirectory(prefix="tiergate-h2load-") as folder:
        processes, logs = [], []
        try:
            for index, frame in enumerate(frames):
                body, log = Path(folder, f"req{index}.bin"), Path(folder, f"log{index}.tsv")
                body.write_bytes(frame)
                logs.append(log)
                argv = [h2load, "-c", str(connections), "-m", str(streams), "-t", "1",
                        "-D", _ms(duration_s), "--warm-up-time", _ms(warmup_s),
                        "-d", str(body), "-H", "content-type: application/grpc",
                        "-H", "te: trailers", "--log-file", str(log),
                        f"http://{target}{method}"]
                processes.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True))
            start_at = time.monotonic()
            if on_start is not None:
                on_start(start_at, tuple(p.pid for p in processes))
            outputs = [p.communicate(timeout=warmup_s + duration_s + 60)[0] for p in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        summaries = []
        for process, text in zip(processes, outputs):
            if process.returncode != 0:
                raise RuntimeError(f"h2load exited with {process.returncode}: "
                                   f"{text.strip()[-400:]}")
            summaries.append(parse_output(text))
        for summary in summaries:
            bad = summary.done - summary.succeeded + summary.failed + summary.errored
            if bad or summary.timeout or summary.status_2xx != summary.done or not summary.done:
                raise RuntimeError(f"h2load: requests failed: {summary}")
            if summary.data_bytes < 0.8 * min_answer * summary.done:
                raise RuntimeError(f"h2load: {summary.data_bytes} DATA bytes for "
                                   f"{summary.done} requests, answers of {min_answer} bytes "
                                   "expected: some calls returned gRPC errors")
        latencies = []
        for log in logs:
            with open(log, encoding="ascii") as lines:
                latencies += [int(line.split("\t")[2]) for line in lines if line.strip()]
        return H2Result(sum(s.req_s for s in summaries), tuple(sorted(latencies)),
                        sum(s.done for s in summaries), tuple(p.pid for p in processes))


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """CPU of running h2load processes (0 for one that already exited)."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total
