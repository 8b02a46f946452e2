"""Does grpcio's asyncio server cost less per call than the thread pool? Measured, not assumed.

    python bench/aio_probe.py [--reps 5] [--duration 3]

Two echo servers (bench/echo_server.py: the thread-pool one with 2 handler threads, as
`tiergate serve` runs, and `--aio`), each loaded in turn by h2load (gRPC over h2c, 4
connections x 8 streams, a DecideRequest-sized message), repetition by repetition. Reported:
calls/s and server CPU per call (from /proc), medians, and their ratios. An echo has no work of
its own, so this is the gRPC layer's cost per call alone: the ~400 µs of a Check that the
handler does not explain (README, "Through Envoy").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import h2load_client  # noqa: E402
from server_load import process_cpu_seconds  # noqa: E402

MESSAGE = b"\x0a\x40" + b"x" * 64 + b"\x12\x20" + b"y" * 32  # ~100 bytes, a small request


def start(*flags: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(BENCH / "echo_server.py"), *flags],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line.split(" on ", 1)[1].split()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args(argv)
    h2load = h2load_client.find_h2load()
    if h2load is None:
        print("error: h2load is needed (apt-get install nghttp2-client)", file=sys.stderr)
        return 1
    servers = {"thread pool (2 threads)": start("--threads", "2"), "grpc.aio": start("--aio")}
    frame = h2load_client.grpc_frame(MESSAGE)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    try:
        for _ in range(args.reps):
            for name, (process, target) in servers.items():
                before = process_cpu_seconds(process.pid)
                started = time.monotonic()
                result = h2load_client.run(h2load, target, "/bench.Echo/Unary", [frame],
                                           len(frame), connections=4, streams=8,
                                           warmup_s=0.5, duration_s=args.duration)
                elapsed = time.monotonic() - started
                cpu = process_cpu_seconds(process.pid) - before
                # CPU over the whole run (warm-up included) per call at the measured rate.
                results[name].append((result.calls_s, cpu / (result.calls_s * elapsed) * 1e6))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print(f"echo servers, {args.reps} repetitions x {args.duration:g} s, h2load 4 x 8 in "
          "flight, medians:\n")
    print("| server | calls/s | server CPU µs per call |\n|---|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | "
              f"{statistics.median(r[1] for r in runs):.0f} |")
    pool, aio = results.values()
    ratios = [b[1] / a[1] for a, b in zip(pool, aio)]
    print(f"\nCPU per call, aio / thread pool, median of per-repetition ratios: "
          f"{statistics.median(ratios):.2f} (each: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
