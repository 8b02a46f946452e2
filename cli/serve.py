"""`tiergate serve [POLICY_DIR] --listen HOST:PORT [--workers N] [--config FILE]`: the gRPC service.

Serves tiergate.v1.Authorizer, gRPC health and reflection on one port, reloads the policy
directory when it changes, and drains calls in flight on SIGTERM. Settings may also come from
a TOML file (--config or TIERGATE_CONFIG) and TIERGATE_* environment variables; see
tiergate.server.config. Exit codes: 0 stopped cleanly, 1 error (bad config, policy that does
not load, address in use, a worker died).
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve decisions over gRPC (and reload policies)")
    parser.add_argument("policy_dir", metavar="POLICY_DIR", nargs="?",
                        help="the policy directory (or policy_dir in the config, TIERGATE_POLICY_DIR)")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="address to serve on (default 127.0.0.1:50051; port 0 picks one)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="server processes sharing the port (default 1)")
    parser.add_argument("--worker-ports", action="store_true", default=None,
                        help="with --workers N: worker i serves on the port + i - 1, so a "
                        "gateway can balance calls among them (list each as an endpoint)")
    parser.add_argument("--config", metavar="FILE", help="a TOML file with the settings")
    parser.add_argument("--mapping", metavar="FILE",
                        help="gateway mapping for Envoy ext_authz (default: POLICY_DIR/gateway.toml if present)")
    parser.add_argument("--cache-size", type=int, metavar="N",
                        help="decisions kept per process (0 turns the cache off)")
    parser.add_argument("--reload-interval", type=float, metavar="SECONDS",
                        help="seconds between checks of POLICY_DIR (0 turns reloading off)")
    parser.add_argument("--max-message-bytes", type=int, metavar="N",
                        help="largest request accepted (default 4 MiB)")
    parser.add_argument("--drain-seconds", type=float, metavar="SECONDS",
                        help="how long SIGTERM waits for calls in flight (default 10)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="gRPC handler threads per process (default 2: the GIL runs one at a time)")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING")
    parser.add_argument("--max-batch", type=int, metavar="N",
                        help="requests per DecideBatch (default 1000; more is RESOURCE_EXHAUSTED)")
    parser.add_argument("--max-concurrent-calls", type=int, metavar="N",
                        help="calls at once per process (default 1000; more is "
                        "RESOURCE_EXHAUSTED)")
    parser.add_argument("--no-reflection", dest="reflection", action="store_false", default=None,
                        help="do not serve gRPC server reflection")
    parser.add_argument("--bundle", metavar="FILE|URL",
                        help="serve a signed policy bundle (tiergate bundle build) instead of a "
                        "directory; polled for changes (ETag for a URL)")
    parser.add_argument("--verify-key", metavar="PUB",
                        help="the Ed25519 public key a bundle must be signed with")
    parser.add_argument("--accept-request-time", action="store_true", default=None,
                        help="decide requests that carry context.time as of that time (what-if "
                        "and test deployments only: by default the server's clock decides and "
                        "a requested time is refused)")
    parser.add_argument("--audit-log", metavar="FILE|URL|off",
                        help="where every answer is recorded: a SQLite file (default "
                        "tiergate-audit.db), a postgresql:// URL, or off (development only)")
    parser.add_argument("--audit-key", metavar="KEY",
                        help="the signing key for the log's checkpoints (tiergate audit keygen)")
    parser.add_argument("--audit-chain", metavar="NAME",
                        help="this server's chain in the log (default: host, start time, pid)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="log lines as text (default) or one JSON object a line")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="serve Prometheus metrics over HTTP here (GET /metrics)")
    parser.add_argument("--shadow", metavar="CANDIDATE_DIR",
                        help="decide every call with this policy directory too, answer with "
                        "POLICY_DIR, and count, log and record each call it would answer "
                        "differently")
    parser.add_argument("--health-listen", metavar="HOST:PORT",
                        help="serve gRPC health alone here, in plaintext (Kubernetes probes)")
    parser.add_argument("--http-check-listen", metavar="HOST:PORT",
                        help="also answer Envoy's ext_authz over HTTP (http_service) here, "
                        "with the same TLS and [access]: docs/ext_authz.md")
    parser.add_argument("--trace-exporter", choices=("off", "otlp", "console"),
                        help="OpenTelemetry spans for each call (needs tiergate[tracing])")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve TLS with this certificate chain (re-read when it changes)")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="mutual TLS: callers must present a certificate this CA issued; "
                        "[access] in the config says which of them may call what")
    parser.add_argument("--allow-plaintext", action="store_true", default=None,
                        help="serve without TLS on an address other than loopback")
    parser.add_argument("--rate-limit", type=float, metavar="CALLS_PER_S",
                        help="calls a second per caller (default 0: no limit)")
    parser.add_argument("--max-response-bytes", type=int, metavar="N",
                        help="largest answer sent (default 4 MiB; larger is RESOURCE_EXHAUSTED)")
    parser.add_argument("--default-deadline", type=float, metavar="SECONDS",
                        help="longest a call may run (default 10)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from .common import server_extra_missing

    if server_extra_missing("serve"):
        return 1
    from tiergate.server.config import FIELDS, ConfigError, load_config
    from tiergate.server.logs import configure_logging

    # Every flag is named after the setting it sets (server/config.py), so the flags are
    # the settings argparse filled in.
    flags = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    try:
        config = load_config(flags, config_file=args.config)
    except ConfigError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    configure_logging(config.log_level, config.log_format)
    if config.workers > 1:
        from tiergate.server.workers import run_workers
        return run_workers(config)
    from tiergate.server.app import serve
    return serve(config)
