"""Where an ext_authz Check spends its time inside Tiergate, stage by stage, in-process.

    python bench/check_profile.py [--rounds 20000]

Each stage of the Check handler is timed on its own over the same request, as Envoy sends it
(examples/envoy/envoy.yaml's headers and verified-token metadata): decoding the CheckRequest
bytes, mapping the HTTP request to a Tiergate request (gateway.toml), deciding, building and
encoding the CheckResponse, and the whole handler (ExtAuthzServicer.check, no audit log):
once deciding every time, once as `tiergate serve` runs it, with the repeated request's
translation and verdict kept (TranslationCache, VerdictCache). Medians of 7 runs. What
`bench/envoy_bench.py` measures as Tiergate's CPU per Check minus the handler's total is the
gRPC layer's own work per call (HTTP/2, TLS, threads, Python glue).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "tests"), str(BENCH)]

from envoy.service.auth.v3 import external_auth_pb2  # noqa: E402

from tiergate.engine import load_policy_set  # noqa: E402
from tiergate.server.config import ServeConfig  # noqa: E402
from tiergate.server.ext_authz import ExtAuthzServicer, _claims, _headers  # noqa: E402
from tiergate.server.mapping import load_mapping  # noqa: E402

from test_ext_authz_server import check_request  # noqa: E402

CLAIMS = {"sub": "u-1042", "org_id": "fzu", "org_type": "university", "real_name_verified": True,
          "iss": "https://idp.example.cn", "aud": "health-data-platform"}
HEADERS = {"x-purpose": "scientific_research", "x-storage-region": "domestic",
           "x-deidentified": "true", "x-region": "southeast_park", ":authority": "data.example.cn",
           "user-agent": "h2load nghttp2/1.52.0", "x-forwarded-proto": "http",
           "x-request-id": "5c1f9a2e-0b7d-4f43-9a51-3c2d8e0f6a77"}


def timed(function, rounds: int) -> float:
    """µs per call, median of 7 runs."""
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(rounds):
            function()
        runs.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args(argv)
    policy = load_policy_set(REPO / "policies")
    mapping = load_mapping(REPO / "policies" / "gateway.toml")
    request = check_request("GET", "/datasets/ds-cardio-2025", HEADERS, CLAIMS)
    wire = request.SerializeToString()
    servicer = ExtAuthzServicer(lambda: policy, mapping)
    served = ExtAuthzServicer(lambda: policy, mapping,
                              cache_size=ServeConfig.model_fields["cache_size"].default)
    http = request.attributes.request.http
    headers, claims = _headers(http), _claims(request.attributes.metadata_context, mapping)
    translated = mapping.translate(method=http.method, path=http.path, headers=headers,
                                   claims=claims)
    decision = policy.decide(translated)
    response = servicer.check(request)
    assert response.status.code == 0, "the profile must follow the permit path"
    stages = [
        ("decode the CheckRequest (protobuf)", lambda: external_auth_pb2.CheckRequest.FromString(wire)),
        ("read headers and token claims", lambda: (_headers(http),
                                                   _claims(request.attributes.metadata_context,
                                                           mapping))),
        ("map to a Tiergate request (gateway.toml)",
         lambda: mapping.translate(method=http.method, path=http.path, headers=headers,
                                   claims=claims)),
        ("decide", lambda: policy.decide(translated)),
        ("build the CheckResponse", lambda: servicer.check(request)),  # replaced below
        ("encode the CheckResponse", lambda: response.SerializeToString()),
        ("the whole handler (decode + check + encode)",
         lambda: servicer.check(external_auth_pb2.CheckRequest.FromString(wire))
         .SerializeToString()),
        ("the whole handler, as served (translation and verdict kept)",
         lambda: served.check(external_auth_pb2.CheckRequest.FromString(wire))
         .SerializeToString()),
    ]
    results = {name: timed(function, args.rounds) for name, function in stages}
    # "build" = the handler's check() minus what it does before building the answer.
    check_only = results.pop("build the CheckResponse")
    inner = (results["read headers and token claims"]
             + results["map to a Tiergate request (gateway.toml)"] + results["decide"])
    results["build the CheckResponse"] = max(check_only - inner, 0.0)
    order = ["decode the CheckRequest (protobuf)", "read headers and token claims",
             "map to a Tiergate request (gateway.toml)", "decide", "build the CheckResponse",
             "encode the CheckResponse", "the whole handler (decode + check + encode)",
             "the whole handler, as served (translation and verdict kept)"]
    print(f"Check path, in-process, {args.rounds:,} rounds x 7, medians ({len(wire)} bytes "
          f"of CheckRequest, decision {decision.effect}):\n")
    print("| stage | µs per Check |\n|---|---:|")
    for name in order:
        print(f"| {name} | {results[name]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
