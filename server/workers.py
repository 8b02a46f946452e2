"""`tiergate serve --workers N`: N server processes, on one port or (--worker-ports) one each.

Python runs one core per process, so throughput on a multi-core machine comes from processes.
Each worker is a full server (its own policy load, watcher, cache). By default all bind the
same port with SO_REUSEPORT and the kernel spreads connections across them; with
`worker_ports` worker i binds the port + i - 1, so a gateway that lists each as an endpoint
balances calls, not connections. Workers reload on their own, so for
up to a reload interval two workers may serve different revisions; every decision names the
revision that made it.

The parent only starts, watches and stops workers: it forwards SIGTERM/SIGINT as SIGTERM (each
worker drains its calls in flight) and exits 0 when all workers exited 0. A worker that dies on
its own is replaced while the others keep serving, after a back-off that doubles with each
death in a row (1 s up to 30 s; a worker that served a minute resets it), and every death and
restart is logged, so a crash loop is slowed and seen, not hidden. A worker that cannot start
at all at the beginning (a policy that does not load) fails the whole command.

Workers are fresh interpreters (subprocess), not forks: gRPC's threads do not survive fork.
They ask the kernel to stop them when the parent dies (PR_SET_PDEATHSIG), so a killed parent
leaves no orphan serving an old policy on the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .config import ServeConfig, default_chain

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


BACKOFF_FIRST_S, BACKOFF_MAX_S, STEADY_S = 1.0, 30.0, 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In a worker: SIGTERM when the parent dies (Linux; elsewhere a no-op). Called at start,
    not before exec (preexec_fn is unsafe in a threaded parent), so the parent may already be
    gone: then stop at once."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        sys.exit(1)


def _start_worker(config: ServeConfig) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tiergate.server.workers",
                             config.model_dump_json(), str(os.getpid())],
                            stdout=subprocess.PIPE, text=True, encoding="utf-8")


class _Slot:
    """One worker position: its process, when it started, and its back-off after deaths."""

    def __init__(self, index: int, process: subprocess.Popen):
        self.index, self.process, self.started = index, process, time.monotonic()
        self.backoff, self.restart_at = BACKOFF_FIRST_S, None

    def died(self) -> None:
        if time.monotonic() - self.started >= STEADY_S:
            self.backoff = BACKOFF_FIRST_S  # it had been serving: not a crash loop
        self.restart_at = time.monotonic() + self.backoff
        log.error("worker %d (pid %d) exited with %d; restarting it in %.0f s, the others keep "
                  "serving", self.index + 1, self.process.pid, self.process.returncode,
                  self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)

    def restart(self, config: ServeConfig, total: int) -> None:
        self.process, self.started, self.restart_at = _start_worker(config), time.monotonic(), None
        # The ready line is read on a thread: a slow or failing start must not stall the watch.
        threading.Thread(target=_announce, args=(self.process, self.index, total),
                         daemon=True).start()


def _announce(process: subprocess.Popen, index: int, total: int) -> None:
    line = process.stdout.readline().strip()
    if line:
        print(f"{line} (worker {index + 1}/{total}, pid {process.pid}, restarted)", flush=True)


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
    if config.port == 0 and not config.worker_ports:
        reserved, port = reserve_port(config.listen)
        config = config.with_listen_port(port)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda signum, frame: stop.set())
                for s in (signal.SIGTERM, signal.SIGINT)}
    workers: list[subprocess.Popen] = []
    try:
        # Each worker writes its own audit chain (one writer per chain); a restarted worker
        # takes up the chain of the one it replaces.
        base_chain = config.audit_chain or default_chain()
        child_configs = [config.model_copy(update={
            "workers": 1, "reuse_port": not config.worker_ports,
            "listen": _offset(config.listen, i) if config.worker_ports else config.listen,
            "health_listen": (_offset(config.health_listen, i)
                              if config.worker_ports and config.health_listen else
                              config.health_listen),
            "audit_chain": f"{base_chain}-w{i + 1}",
            "metrics_listen": _offset(config.metrics_listen, i),
            "http_check_listen": (_offset(config.http_check_listen, i)
                                  if config.worker_ports and config.http_check_listen else
                                  config.http_check_listen)})
            for i in range(config.workers)]
        for child_config in child_configs:
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
        slots = [_Slot(i, w) for i, w in enumerate(workers)]
        while not stop.wait(0.2):
            for slot in slots:
                if slot.restart_at is None and slot.process.poll() is not None:
                    slot.died()
                elif slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                    slot.restart(child_configs[slot.index], config.workers)
            workers = [slot.process for slot in slots]
        log.info("forwarding SIGTERM to %d workers", len(workers))
        codes = _stop_all([s.process for s in slots if s.restart_at is None], config.drain_seconds)
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        if reserved is not None:
            reserved.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _offset(listen: str | None, index: int) -> str | None:
    """Worker `index`'s own address: the configured port + index (port 0: any free one)."""
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + index if int(port) else 0}"


def _worker_main(argv: list[str]) -> int:
    from .app import serve
    from .logs import configure_logging

    if len(argv) > 2:
        _die_with_parent(int(argv[2]))
    config = ServeConfig.model_validate_json(argv[1])
    configure_logging(config.log_level, config.log_format)
    return serve(config)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv))
