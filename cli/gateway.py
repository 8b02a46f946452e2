"""`tiergate gateway POLICY_DIR [METHOD PATH]`: check the gateway mapping, or try one HTTP request.

Without METHOD PATH: load the mapping (POLICY_DIR/gateway.toml, or --mapping FILE) and report
its errors (exit 1) or the values it writes that the policy set does not declare (exit 2).
With them: show the Tiergate request the mapping makes from that HTTP request and the answer an
Envoy proxy would get from ext_authz (status, upstream headers or the 403 body) — the same code
path `tiergate serve` runs, without a proxy.

    tiergate gateway policies GET /datasets/medical_service/conditional/ds-cardio-2025 \\
        -H x-subject-id:u-1042 -H x-org-type:university -H x-region:southeast_park \\
        -H x-purpose:scientific_research -H x-storage-region:domestic --claims '{"org_id":"fzu"}'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tiergate.engine import DiagnosticError

from .common import (add_error_format, add_now_option, load_or_report, print_diagnostics,
                     server_extra_missing)

MAPPING_FILE = "gateway.toml"  # tiergate.server.mapping.MAPPING_FILE (imported with the extra)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gateway", help="check the Envoy gateway mapping, or try an HTTP request against it")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("method", metavar="METHOD", nargs="?", help="e.g. GET")
    parser.add_argument("path", metavar="PATH", nargs="?", help="e.g. /datasets/…?q=1")
    parser.add_argument("--mapping", metavar="FILE",
                        help=f"the mapping file (default: POLICY_DIR/{MAPPING_FILE})")
    parser.add_argument("-H", "--header", metavar="NAME:VALUE", action="append", default=[],
                        help="a request header as the gateway sets it (repeatable)")
    parser.add_argument("--claims", metavar="JSON",
                        help="verified JWT claims, as jwt_authn would put them in metadata")
    add_now_option(parser, help="the time for the decision (default: the clock)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    if server_extra_missing("gateway"):
        return 1
    from tiergate.server.mapping import MappingError, load_mapping

    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    path = Path(args.mapping) if args.mapping else Path(args.policy_dir) / MAPPING_FILE
    try:
        mapping = load_mapping(path)
    except DiagnosticError as error:
        print_diagnostics(error.diagnostics, args.error_format)
        return 1
    if args.method is None:
        return _report_mapping(mapping, policy, path, args.format)
    if args.path is None:
        print("error: give both METHOD and PATH", file=sys.stderr)
        return 1
    try:
        headers = _headers(args.header)
        claims = json.loads(args.claims) if args.claims else None
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if claims is not None and not isinstance(claims, dict):
        print("error: --claims must be a JSON object", file=sys.stderr)
        return 1
    from google.protobuf import json_format

    from tiergate.server.ext_authz import ExtAuthzServicer

    request = _check_request(args.method.upper(), args.path, headers, claims, mapping)
    servicer = ExtAuthzServicer(lambda: policy, mapping,
                                clock=(lambda: args.now) if args.now is not None else None)
    response = servicer.check(request)
    try:
        translated = mapping.translate(method=args.method, path=args.path, headers=headers,
                                       claims=claims)
    except MappingError:
        translated = None
    if args.format == "json":
        out = {"request": translated,
               "response": json_format.MessageToDict(response, preserving_proto_field_name=True)}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_text(translated, response)
    return 0


def _report_mapping(mapping, policy, path: Path, output: str) -> int:
    warnings = mapping.undeclared_values(policy.vocabularies)
    if output == "json":
        print(json.dumps({"mapping": str(path), "routes": [r.name for r in mapping.routes],
                          "warnings": warnings}, ensure_ascii=False, indent=2))
    else:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{path}: {len(mapping.routes)} routes "
              f"({', '.join(r.name for r in mapping.routes)})"
              + (f"; {len(warnings)} warnings" if warnings else "; ok"))
    return 2 if warnings else 0


def _headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"-H {item!r} is not NAME:VALUE")
        headers[name.strip().lower()] = value.strip()
    return headers


def _check_request(method: str, path: str, headers: dict, claims: dict | None, mapping):
    """The envoy.service.auth.v3.CheckRequest Envoy would send for this HTTP request."""
    from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
    from google.protobuf import struct_pb2

    context = attribute_context_pb2.AttributeContext
    attributes = context(request=context.Request(http=context.HttpRequest(
        method=method, path=path, headers=headers)))
    if claims is not None:
        metadata = struct_pb2.Struct()
        metadata.update({mapping.jwt_payloads[0]: claims})
        attributes.metadata_context.filter_metadata[mapping.jwt_filter].CopyFrom(metadata)
    return external_auth_pb2.CheckRequest(attributes=attributes)


def _print_text(translated: dict | None, response) -> None:
    if translated is not None:
        print("Tiergate request:")
        print("  " + json.dumps(translated, ensure_ascii=False))
    if response.HasField("ok_response"):
        print("ext_authz: OK — the request goes to the upstream with:")
        for option in response.ok_response.headers:
            print(f"  {option.header.key}: {option.header.value}")
        for name in response.ok_response.headers_to_remove:
            print(f"  (removed) {name}")
        return
    denied = response.denied_response
    print(f"ext_authz: status {response.status.code}, HTTP {denied.status.code} to the client:")
    print(json.dumps(json.loads(denied.body), ensure_ascii=False, indent=2))
