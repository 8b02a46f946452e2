"""`tiergate policy-info ADDRESS... [--expect REVISION --wait SECONDS]`: which policy revision
each Tiergate replica serves, and (with --expect) wait until all of them serve one.

    tiergate policy-info tiergate.tiergate.svc:50051 --every-address \\
        --ca ca.crt --cert rollout.crt --key rollout.key --expect sha256:… --wait 120

--every-address asks every address a name resolves to (a headless Service's pods). Exit codes:
0 every replica answered (and serves --expect), 1 bad usage or an unreadable file, 2 some
replica did not answer or serves another revision when the wait ran out.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "policy-info", help="show (or wait for) the policy revision each replica serves")
    parser.add_argument("addresses", metavar="HOST:PORT", nargs="+")
    parser.add_argument("--every-address", action="store_true",
                        help="ask every address each name resolves to (a headless Service)")
    parser.add_argument("--expect", metavar="REVISION",
                        help="succeed only when every replica serves this revision")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="with --expect: keep asking until they all do, up to this long")
    parser.add_argument("--ca", metavar="PEM", help="the CA that issued the servers' "
                        "certificates (TLS); without it, plaintext")
    parser.add_argument("--cert", metavar="PEM", help="this caller's certificate (mutual TLS)")
    parser.add_argument("--key", metavar="PEM", help="its private key")
    parser.add_argument("--server-name", metavar="NAME",
                        help="the name the servers' certificates carry, when not the host")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)


def _targets(addresses: list[str], every: bool) -> list[str]:
    targets = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not every:
            targets.append(address)
            continue
        found = sorted({info[4][0] for info in socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM)})
        targets.extend(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in found)
    return targets


def run(args) -> int:
    from .common import server_extra_missing

    if server_extra_missing("policy-info"):
        return 1
    import grpc

    from tiergate.v1 import authorizer_pb2 as pb
    from tiergate.v1 import authorizer_pb2_grpc as pb_grpc

    try:
        credentials = None
        if args.ca:
            def read(path):
                with open(path, "rb") as file:
                    return file.read()
            credentials = grpc.ssl_channel_credentials(
                read(args.ca), read(args.key) if args.key else None,
                read(args.cert) if args.cert else None)
        targets = _targets(args.addresses, args.every_address)
    except (OSError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    deadline = time.monotonic() + args.wait
    while True:
        answers = {}
        for target in targets:
            channel = (grpc.secure_channel(target, credentials, options) if credentials
                       else grpc.insecure_channel(target, options))
            try:
                info = pb_grpc.AuthorizerStub(channel).GetPolicyInfo(pb.GetPolicyInfoRequest(),
                                                                     timeout=5)
                answers[target] = {"revision": info.policy_revision,
                                   "reload_error": info.last_reload_error.message or None}
            except grpc.RpcError as error:
                answers[target] = {"error": f"{error.code().name}: {error.details()}"}
            finally:
                channel.close()
        done = all("revision" in a and (args.expect is None or a["revision"] == args.expect)
                   for a in answers.values())
        if done or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if args.format == "json":
        print(json.dumps({"expect": args.expect, "replicas": answers, "ok": done}, indent=2))
    else:
        for target, answer in answers.items():
            line = answer.get("revision") or answer["error"]
            if answer.get("reload_error"):
                line += f"  (last reload failed: {answer['reload_error']})"
            print(f"{target}  {line}")
        if args.expect is not None:
            served = sum(1 for a in answers.values() if a.get("revision") == args.expect)
            print(f"{served} of {len(answers)} serve {args.expect}")
    return 0 if done else 2
