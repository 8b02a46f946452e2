"""A trivial gRPC echo server: the ceiling Python gRPC allows on this machine.

    python bench/echo_server.py [--listen 127.0.0.1:0] [--threads 8]

One Python process, built like `tiergate serve` (grpc.server on a ThreadPoolExecutor with the
same thread count), so the difference between the two is what Tiergate adds per call. Prints
one ready line, `echo: serving on HOST:PORT pid PID`, then serves until SIGTERM/SIGINT.

Methods (generic handlers, no generated code):
- /bench.Echo/Unary  returns the request bytes unchanged (no parse, no serialize);
- /bench.Echo/Batch  parses a tiergate.v1.DecideBatchRequest and answers with every item
  re-encoded one by one as a repeated field, the least a batch server must do per message
  (the batch row's "echoed messages/s" counts items).

With --decide POLICY_DIR, /bench.Echo/Unary parses a tiergate.v1.DecideRequest and answers
with the Decision `tiergate serve` would (server/service.py's decide_one on the same policy
set, requested times accepted, decision cache on), and nothing else of Tiergate's server: no
access guard, deadline, metrics or in-flight count. The gap between it and the plain echo is
what deciding costs inside Python gRPC, whichever server shell runs it (issue 12).

With --ext-authz it serves Envoy's /envoy.service.auth.v3.Authorization/Check instead: every
call answered OK with one prepared CheckResponse, the request not even parsed. Behind Envoy,
that is the floor an ext_authz server in Python gRPC costs per Check (bench/envoy_bench.py's
"echo" section). --tls-cert/--tls-key/--tls-client-ca serve it over mutual TLS, as Tiergate is.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Unary"
BATCH = f"/{SERVICE}/Batch"


def _field1(payload: bytes) -> bytes:
    """payload as field 1 (length-delimited) of a message."""
    size = len(payload)
    head = bytearray(b"\x0a")
    while size > 0x7F:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + payload


def _unary(request: bytes, context) -> bytes:
    return request


def _batch(request, context) -> bytes:
    return b"".join([_field1(item.SerializeToString()) for item in request.requests])


def _deciding(policy_dir: str):
    """The Unary handler of --decide, and its request parser."""
    from tiergate.engine import compile_sources
    from tiergate.server import service
    from tiergate.server.holder import PolicyHolder
    from tiergate.server.sources import DirectorySource
    from tiergate.server.config import ServeConfig
    from tiergate.v1 import authorizer_pb2 as pb

    sources, revision = DirectorySource(policy_dir).read()
    holder = PolicyHolder(compile_sources(sources, revision=revision),
                          cache_size=ServeConfig.model_fields["cache_size"].default)

    parse = service._parser(pb.DecideRequest)

    def decide(data: bytes, context) -> bytes:
        # As AuthorizerService.Decide: a kept answer by the request's bytes, else parse.
        snapshot, now = holder.current, holder.clock()
        kept = service.kept_answer(snapshot, data, now, False)
        if kept is not None:
            return kept.encoded
        return service.decide_one(snapshot, parse(data), holder.clock, accept_request_time=True,
                                  looked_up=data, now=now).encoded
    return decide, lambda data: data


def _ext_authz_handlers() -> tuple[str, dict]:
    from envoy.service.auth.v3 import external_auth_pb2

    allowed = external_auth_pb2.CheckResponse()
    allowed.status.code = 0
    allowed.ok_response.SetInParent()
    answer = allowed.SerializeToString()
    return "envoy.service.auth.v3.Authorization", {"Check": grpc.unary_unary_rpc_method_handler(
        lambda request, context: answer, request_deserializer=None, response_serializer=None)}


def _credentials(cert: str, key: str, client_ca: str) -> grpc.ServerCredentials:
    def read(path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()
    return grpc.ssl_server_credentials([(read(key), read(cert))], read(client_ca),
                                       require_client_auth=True)


def build_server(listen: str, threads: int, *, ext_authz: bool = False,
                 tls: tuple[str, str, str] | None = None,
                 decide: str | None = None) -> tuple[grpc.Server, int]:
    from tiergate.v1 import authorizer_pb2 as pb

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads),
                         options=[("grpc.so_reuseport", 0),
                                  ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    if ext_authz:
        service, handlers = _ext_authz_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service,
                                                                              handlers),))
        port = (server.add_secure_port(listen, _credentials(*tls)) if tls
                else server.add_insecure_port(listen))
        if port == 0:
            raise RuntimeError(f"cannot listen on {listen}")
        server.start()
        return server, port
    identity = lambda data: data  # noqa: E731 - bytes in, bytes out
    unary, parse = _deciding(decide) if decide else (_unary, identity)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=parse, response_serializer=identity),
        "Batch": grpc.unary_unary_rpc_method_handler(
            _batch, request_deserializer=pb.DecideBatchRequest.FromString,
            response_serializer=identity),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    server.start()
    return server, port


def serve_aio(listen: str) -> int:
    """The same Unary echo on grpc.aio (one event loop, no handler threads), to measure what
    the asyncio server costs per call against the thread-pool one (issue 12)."""
    import asyncio
    import os

    async def unary(request: bytes, context) -> bytes:
        return request

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        identity = lambda data: data  # noqa: E731
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=identity, response_serializer=identity)}),))
        port = server.add_insecure_port(listen)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print(f"echo: serving on {listen.rpartition(':')[0]}:{port} pid {os.getpid()} (aio)",
              flush=True)
        await stop.wait()
        await server.stop(1)

    asyncio.run(run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--aio", action="store_true",
                        help="serve Unary on grpc.aio instead of the thread pool")
    parser.add_argument("--ext-authz", action="store_true",
                        help="serve Envoy's ext_authz Check (always OK) instead of bench.Echo")
    parser.add_argument("--decide", metavar="POLICY_DIR",
                        help="answer Unary with the Decision tiergate serve would give")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca")
    args = parser.parse_args(argv)
    if args.aio:
        return serve_aio(args.listen)
    tls = ((args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None)
    server, port = build_server(args.listen, args.threads, ext_authz=args.ext_authz, tls=tls,
                                decide=args.decide)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    host = args.listen.rpartition(":")[0]
    print(f"echo: serving on {host}:{port} pid {__import__('os').getpid()}", flush=True)
    while not stop.wait(3600):
        pass
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
