"""`tiergate serve --workers N`: N server processes on one port.

Python runs one core per process, so throughput on a multi-core machine comes from processes.
Each worker is a full server (its own policy load, watcher, cache) bound to the same port with
SO_REUSEPORT; the kernel spreads connections across them. Workers reload on their own, so for
up to a reload interval two workers may serve different revisions; every decision names the
revision that made it.

The parent only starts, watches and stops workers: it forwards SIGTERM/SIGINT as SIGTERM (each
worker drains its calls in flight) and exits 0 when all workers exited 0. If a worker dies on
its own the parent stops the others and exits 1, leaving restarts to the supervisor
(systemd, Kubernetes) rather than hiding a crash loop.

Workers are fresh interpreters (subprocess), not forks: gRPC's threads do not survive fork.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading

from .config import ServeConfig

log = logging.getLogger("tiergate.server")


def reserve_port(listen: str) -> tuple[socket.socket, int]:
    """Bind HOST:0 with SO_REUSEPORT to choose one free port that every worker can then bind.

    The socket is held until the workers have bound, so no other program takes the port.
    """
    host = listen.rpartition(":")[0].strip("[]")
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock, sock.getsockname()[1]


def _start_worker(config: ServeConfig) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tiergate.server.workers",
                             config.model_dump_json()],
                            stdout=subprocess.PIPE, text=True, encoding="utf-8")


def _stop_all(workers: list[subprocess.Popen], grace: float) -> list[int]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=grace + 5))
        except subprocess.TimeoutExpired:
            worker.kill()
            codes.append(worker.wait())
    return codes


def run_workers(config: ServeConfig) -> int:
    """Start config.workers processes, wait for a signal or a worker's death; the exit code."""
    reserved = None
    if config.port == 0:
        reserved, port = reserve_port(config.listen)
        config = config.with_listen_port(port)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda signum, frame: stop.set())
                for s in (signal.SIGTERM, signal.SIGINT)}
    workers: list[subprocess.Popen] = []
    try:
        child_config = config.model_copy(update={"workers": 1, "reuse_port": True})
        for _ in range(config.workers):
            workers.append(_start_worker(child_config))
        for index, worker in enumerate(workers):
            line = worker.stdout.readline().strip()  # the worker's ready line, or EOF
            if not line:
                log.error("worker %d (pid %d) did not start", index + 1, worker.pid)
                _stop_all(workers, 0)
                return 1
            print(f"{line} (worker {index + 1}/{config.workers}, pid {worker.pid})", flush=True)
        if reserved is not None:
            reserved.close()
            reserved = None
        while not stop.wait(0.5):
            dead = [w for w in workers if w.poll() is not None]
            if dead:
                log.error("worker pid %d exited with %d; stopping the others",
                          dead[0].pid, dead[0].returncode)
                _stop_all(workers, config.drain_seconds)
                return 1
        log.info("forwarding SIGTERM to %d workers", len(workers))
        codes = _stop_all(workers, config.drain_seconds)
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        if reserved is not None:
            reserved.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _worker_main(argv: list[str]) -> int:
    from .app import serve
    from .logs import configure_logging

    config = ServeConfig.model_validate_json(argv[1])
    configure_logging(config.log_level)
    return serve(config)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))
