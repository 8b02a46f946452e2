"""What ext_authz over HTTP costs Tiergate in-process, per request, without the network.

    python bench/http_check_profile.py [--rounds 20000] [--profile]

One recorded request, as examples/envoy/envoy-http.yaml's Envoy sends it (its x- headers, the
forwarded token payload, the bearer token), is fed to one connection of the HTTP Check server
again and again: httptools' parse, the mapping (reused from the translation cache after the
first), the decision and the answer's bytes; with --no-cache the verdict is decided every
time, else kept as `tiergate serve` keeps it (VerdictCache). No audit log, no TLS, no socket: what
`bench/envoy_bench.py` measures beyond this is asyncio, TLS and the kernel. Medians of 7 runs;
`--profile` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from tiergate.engine import load_policy_set  # noqa: E402
from tiergate.server.access import Access  # noqa: E402
from tiergate.server.config import ServeConfig  # noqa: E402
from tiergate.server.ext_authz import ExtAuthzServicer  # noqa: E402
from tiergate.server.ext_authz_http import HttpCheckServer, _Connection  # noqa: E402
from tiergate.server.mapping import load_mapping  # noqa: E402

CLAIMS = {"sub": "u-1042", "org_id": "fzu", "org_type": "university", "real_name_verified": True,
          "iss": "https://idp.example.cn", "aud": "health-data-platform", "exp": 1999999999}


class _Transport:
    """Just enough of an asyncio transport: the answers are kept, never sent."""

    def __init__(self):
        self.written: list[bytes] = []

    def get_extra_info(self, name):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def recorded_request() -> bytes:
    payload = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).decode().rstrip("=")
    headers = {"host": "tiergate.internal", "x-purpose": "scientific_research",
               "x-storage-region": "domestic", "x-deidentified": "true",
               "x-region": "southeast_park", "x-forwarded-proto": "http",
               "x-request-id": "5c1f9a2e-0b7d-4f43-9a51-3c2d8e0f6a77", "x-jwt-payload": payload,
               "x-envoy-expected-rq-timeout-ms": "1000", "content-length": "0",
               "authorization": "Bearer " + "a" * 400}
    return ("GET /ext_authz/datasets/ds-cardio-2025 HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-cache", action="store_true",
                        help="decide every request (no verdict cache)")
    args = parser.parse_args(argv)
    policy = load_policy_set(REPO / "policies")
    cache_size = 0 if args.no_cache else ServeConfig.model_fields["cache_size"].default
    servicer = ExtAuthzServicer(lambda: policy, load_mapping(REPO / "policies" / "gateway.toml"),
                                cache_size=cache_size)
    connection = _Connection(HttpCheckServer(servicer, Access({}, verified=False),
                                             ready=lambda: True))
    transport = _Transport()
    connection.connection_made(transport)
    request = recorded_request()
    connection.data_received(request)
    first = transport.written[-1]
    assert first.startswith(b"HTTP/1.1 200"), "the profile must follow the permit path"
    runs = []
    for _ in range(7):
        transport.written.clear()
        start = time.perf_counter()
        for _ in range(args.rounds):
            connection.data_received(request)
        runs.append((time.perf_counter() - start) / args.rounds * 1e6)
    print(f"ext_authz over HTTP, in-process, {args.rounds:,} requests x 7, {len(request)} bytes "
          f"a request, verdict {'decided every time' if args.no_cache else 'kept'}: "
          f"{statistics.median(runs):.1f} µs a request (median; each: "
          f"{', '.join(f'{r:.1f}' for r in runs)})")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [connection.data_received(request)
                                  for _ in range(args.rounds)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
