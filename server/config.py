"""How `tiergate serve` is configured: CLI flags, then TIERGATE_* variables, then a TOML file.

    # tiergate.toml
    policy_dir = "policies"
    listen = "0.0.0.0:50051"
    workers = 2
    cache_size = 100000          # per policy set, Decide's decisions and the Check's verdicts
    reload_interval = 1.0        # seconds between polls of policy_dir; 0 turns watching off
    max_message_bytes = 4194304  # larger requests are refused with RESOURCE_EXHAUSTED
    drain_seconds = 10.0         # how long SIGTERM waits for calls in flight
    threads = 2                  # gRPC handler threads per process
    reuse_port = false           # let independent processes share the port (SO_REUSEPORT)
    accept_request_time = false  # decide requests that carry context.time (what-if, tests only)
    max_batch = 1000             # requests per DecideBatch; more is RESOURCE_EXHAUSTED
    max_concurrent_calls = 1000  # calls at once per process; more is RESOURCE_EXHAUSTED
    reflection = true            # gRPC server reflection (grpcurl list); switch off in production
    audit_log = "tiergate-audit.db"  # every answer, kept (SQLite file, or a postgresql:// URL)
    audit_key = "audit.key"          # signs the log's checkpoints (tiergate audit keygen)
    audit_chain = "gw-1"             # this process's chain (default: host, start time, pid)
    audit_checkpoint_interval = 10.0 # seconds between signed checkpoints
    metrics_listen = "127.0.0.1:9464"  # Prometheus metrics (GET /metrics); off when unset
    health_listen = "0.0.0.0:50052"    # plaintext gRPC health only, for kubelet probes
    trace_exporter = "otlp"            # OpenTelemetry spans, one a call (tiergate[tracing])
    tls_cert = "tls/tls.crt"         # TLS on the port (re-read when the files change)
    tls_key = "tls/tls.key"
    tls_client_ca = "tls/ca.crt"     # mutual TLS: callers must present a certificate it issued
    rate_limit = 500.0               # calls a second per caller (0: no limit); burst rate_burst
    default_deadline = 5.0           # seconds a call may run when its caller set no deadline
    max_response_bytes = 4194304     # a larger answer is RESOURCE_EXHAUSTED, not sent
    # allow_plaintext = true         # plaintext on an address other than loopback
    # [access]                       # who may call what (server/access.py)
    # decide = ["spiffe://prod.example.cn/ns/gateway/sa/envoy"]
    # shadow = "candidate-policies"  # decide each call with this too; count what would change
    # bundle = "https://bundles.example.cn/policies.bundle"   # instead of policy_dir
    # verify_key = "officer.pub"                              # required with bundle

A relative policy_dir in the file is relative to the file. Each key can be set as an environment variable, TIERGATE_<KEY> (TIERGATE_LISTEN,
TIERGATE_POLICY_DIR, ...), and the file itself named with TIERGATE_CONFIG. A flag beats a
variable, which beats the file, which beats the default. Unknown keys are errors: a typo in a
production config should stop the server, not be ignored.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "TIERGATE_"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where the policy set comes from: a directory, or a signed bundle (a file or an http(s)
    # URL, polled with ETags) that is served only if it verifies with verify_key (Ed25519).
    policy_dir: Path | None = None
    bundle: str | None = None
    verify_key: Path | None = None
    # A candidate policy directory decided beside the served one on every call (server/shadow.py).
    shadow: Path | None = None
    # Envoy ext_authz gateway mapping; default POLICY_DIR/gateway.toml when that file exists.
    mapping: Path | None = None
    listen: str = "127.0.0.1:50051"
    workers: int = Field(1, ge=1, le=256)
    # With --workers N: each worker on its own port (listen's port + i - 1; port 0: each picks
    # a free one) instead of all sharing one. A gateway then lists every worker as an endpoint
    # and balances calls among them; on a shared port the kernel spreads connections, and an
    # Envoy sends all its calls over one or two long-lived connections (issue 12).
    worker_ports: bool = False
    # Python runs one handler at a time (the GIL); more threads only add context switches
    # (bench/server_bench.py: 8 threads cost ~80 µs more per call than 2). Raise it when
    # handlers wait on something other than the CPU.
    threads: int = Field(2, ge=1, le=1024)
    # Entries in each of the two caches: Decide's decisions and the Check's verdicts.
    cache_size: int = Field(10_000, ge=0)
    reload_interval: float = Field(1.0, ge=0)
    max_message_bytes: int = Field(4 * 1024 * 1024, gt=0)
    drain_seconds: float = Field(10.0, ge=0)
    log_level: str = "INFO"
    # "text" (one line per event) or "json" (one JSON object a line, for log collectors).
    log_format: Literal["text", "json"] = "text"
    # Let several processes bind the port (SO_REUSEPORT). --workers sets it for its workers;
    # off otherwise, so a second server started by mistake fails instead of taking half the
    # connections with whatever policy it has.
    reuse_port: bool = False
    # A served decision is made at the server's clock. A requested context.time could re-open
    # an expired grant (福州办法 第二十九条) for whoever sends it, so it is refused
    # (INVALID_ARGUMENT naming context.time) unless this what-if/test switch is on.
    accept_request_time: bool = False
    # Requests one DecideBatch may carry; a larger batch is RESOURCE_EXHAUSTED, so one caller's
    # batch cannot hold the handler (and the GIL) for seconds while others time out.
    max_batch: int = Field(1000, ge=1, le=100_000)
    # Calls handled or queued at once per process; beyond it a call is RESOURCE_EXHAUSTED at
    # once rather than queued behind everyone else's (one client cannot starve the rest).
    max_concurrent_calls: int = Field(1000, ge=1, le=1_000_000)
    # Server reflection lists the whole API to anyone who can connect: off for production.
    reflection: bool = True
    # The audit log (tiergate.audit): a SQLite file (relative to the working directory, or to
    # the config file that names it) or a postgresql:// URL; "off" records nothing (development
    # only: the regulation requires the log, 福州办法 第二十七条).
    audit_log: str = "tiergate-audit.db"
    # The Ed25519 key that signs checkpoints (tiergate audit keygen); without one the log
    # still chains and verifies, and says it is unsigned.
    audit_key: Path | None = None
    # This process's chain; each replica (and each --workers worker) writes its own.
    audit_chain: str | None = None
    audit_checkpoint_interval: float = Field(10.0, gt=0)
    # FULL fsyncs every group commit (survives power loss); NORMAL survives a killed process.
    audit_fsync: bool = False
    # Prometheus metrics over HTTP (server/metrics.py), e.g. "127.0.0.1:9464"; off when unset.
    # With --workers N, worker i serves on the port + i - 1 (port 0: each picks a free one).
    metrics_listen: str | None = None
    # gRPC health alone, in plaintext, on its own port: kubelet's gRPC probes cannot present a
    # client certificate. Service "" is readiness (NOT_SERVING while the audit log cannot be
    # written, or draining); "tiergate.liveness" is SERVING while the process runs.
    health_listen: str | None = None
    # Envoy's ext_authz over HTTP (http_service, server/ext_authz_http.py): the same Check at a
    # fraction of gRPC's cost per call, with the same TLS and [access] check; off when unset.
    # With --workers N --worker-ports, worker i serves on the port + i - 1.
    http_check_listen: str | None = None
    # OpenTelemetry traces (server/tracing.py): "otlp", "console" or "off".
    trace_exporter: Literal["off", "otlp", "console"] = "off"
    # How long a call waits for its record to commit before it fails (UNAVAILABLE).
    audit_wait_seconds: float = Field(5.0, gt=0)
    # TLS on the port (server/tls.py); with tls_client_ca, mutual TLS: every caller presents a
    # certificate that CA issued, and [access] is checked against the names it carries.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Plaintext is for development on loopback; anywhere else it must be asked for by name.
    allow_plaintext: bool = False
    # Who may call what, by verified identity (server/access.py); defaults there.
    access: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Calls a second each caller (identity, or address without TLS) may make; 0 is no limit.
    rate_limit: float = Field(0.0, ge=0)
    rate_burst: int | None = Field(None, ge=1)
    # A call whose caller set no deadline (or a longer one) stops after this many seconds.
    default_deadline: float = Field(10.0, gt=0)
    # Answers larger than this are RESOURCE_EXHAUSTED instead of being sent (split the batch).
    max_response_bytes: int = Field(4 * 1024 * 1024, gt=0)

    @field_validator("listen", "metrics_listen", "health_listen", "http_check_listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:50051, [::]:50051)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "ServeConfig":
        if (self.policy_dir is None) == (self.bundle is None):
            raise ValueError("name either policy_dir (a directory) or bundle (a file or URL)")
        if self.bundle is not None and self.verify_key is None:
            raise ValueError("a bundle is served only with verify_key (the Ed25519 public key "
                             "that signed it)")
        return self

    @field_validator("access", mode="before")
    @classmethod
    def _access_table(cls, value):
        from .access import check_table

        if not isinstance(value, dict):
            raise ValueError("access must be a table of permission = [identities]")
        return check_table(value)

    @model_validator(mode="after")
    def _transport(self) -> "ServeConfig":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (the certificate and its key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.access and self.tls_client_ca is None:
            named = sorted(p for p, entries in self.access.items()
                           if any(e != "*" for e in entries))
            if named:
                raise ValueError(f"access.{named[0]} names callers, but callers are identified "
                                 "only by mutual TLS: set tls_client_ca (with tls_cert, tls_key)")
        for name in ("listen", "http_check_listen"):
            address = getattr(self, name)
            if (address is not None and self.tls_cert is None and not self.allow_plaintext
                    and not _loopback(address)):
                raise ValueError(f"{name} = {address!r} without TLS would serve medical-data "
                                 "decisions in plaintext beyond this machine: set tls_cert and "
                                 "tls_key (and tls_client_ca), or allow_plaintext = true")
        return self

    @field_validator("audit_chain")
    @classmethod
    def _chain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 100
                                  or any(c.isspace() or c in "/\\" for c in value)):
            raise ValueError(f"{value!r} is not a chain name (1-100 characters, no spaces or "
                             "slashes)")
        return value

    @property
    def auditing(self) -> bool:
        return self.audit_log != "off"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def with_listen_port(self, port: int) -> "ServeConfig":
        host = self.listen.rpartition(":")[0]
        return self.model_copy(update={"listen": f"{host}:{port}"})


FIELDS = tuple(ServeConfig.model_fields)


def _loopback(listen: str) -> bool:
    import ipaddress

    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_chain() -> str:
    """A process's audit chain when the config names none: host name, start time and pid, so
    that no two processes ever write one chain (each chain has exactly one writer)."""
    import socket
    import time

    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{host[:60] or 'tiergate'}-{started}-{os.getpid()}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as problem:
        raise ConfigError(f"cannot read config file {path}: {problem.strerror}") from None
    except tomllib.TOMLDecodeError as problem:
        raise ConfigError(f"config file {path} is not TOML: {problem}") from None


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[ENV_PREFIX + name.upper()] for name in FIELDS
            if environ.get(ENV_PREFIX + name.upper())}


def load_config(flags: Mapping[str, Any], *, config_file: str | Path | None = None,
                environ: Mapping[str, str] | None = None) -> ServeConfig:
    """Merge file < environment < flags (flags given as None are unset) and validate."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    if config_file:
        settings = read_config_file(config_file)
        for key in ("policy_dir", "shadow", "mapping", "verify_key", "audit_key", "tls_cert", "tls_key",
                    "tls_client_ca"):
            if isinstance(settings.get(key), str):
                # A relative path in a file means relative to that file, wherever we run.
                settings[key] = Path(config_file).parent / settings[key]
        audit_log = settings.get("audit_log")
        if (isinstance(audit_log, str) and audit_log != "off" and "://" not in audit_log):
            settings["audit_log"] = str(Path(config_file).parent / audit_log)
        merged.update(settings)
    merged.update(from_environment(environ))
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        return ServeConfig(**merged)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or "config"
            problems.append(f"{where}: {item['msg']}")
        raise ConfigError("bad serve configuration: " + "; ".join(problems)) from None
