"""Envoy's ext_authz over HTTP (`http_service`): the same Check as ext_authz.py, without gRPC.

Python's gRPC server costs a few hundred µs of CPU per call before any handler runs
(bench/envoy_bench.py's echo section); an HTTP/1.1 keep-alive connection parsed by httptools
costs a tenth of that. Gateways that can use ext_authz's `http_service` (Envoy, Istio) get the
same decisions, audit records, headers and denial bodies at that price.

The wire (Envoy's http_service with `path_prefix: /ext_authz`, examples/envoy/envoy-http.yaml):
- Envoy sends the client's method and `/ext_authz` + the client's path, with the headers its
  `allowed_headers` pass, and no body. The verified token is not in metadata (HTTP has none):
  jwt_authn's `forward_payload_header` puts it in a header (gateway.toml `[jwt] payload_header`,
  default x-jwt-payload), which the edge must strip from clients as it strips identity headers.
- A permit is 200 with the x-tiergate-* headers for the upstream (`allowed_upstream_headers`)
  and `x-envoy-auth-headers-to-remove` naming the upstream headers it removes.
- A denial is the status, headers and JSON body the gRPC Check sends in its DeniedHttpResponse;
  Envoy passes them to the client. Anything Tiergate cannot answer as a decision (a path
  outside the prefix, a caller not allowed `check` or over its rate limit, a request head over
  64 KiB, a malformed request) is a 4xx, which Envoy also turns into a denial: this port never says 200 otherwise.
- `GET /healthz` (outside the prefix, so no client request can reach it through Envoy) is 200
  while the server is ready, 503 while it drains or its audit log cannot be written.

Callers are identified as on the gRPC port: by their verified client certificate's URI and DNS
SANs, checked against [access] check. The port serves the same TLS files as the gRPC port;
when they change (and check out, server/tls.py), a new listener with the new files takes over
the port's socket and the old one stops accepting; open connections keep their session.

The event loop runs in one thread of the server process. Without an audit log each request is
decided in that thread; with one, in a pool, so that the waits for the record's commit overlap.
Either way a connection's answers leave in the order its requests came (Envoy does not
pipeline; a pipelined client is answered in order).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import json
import logging
import os
import socket
import ssl
import tempfile
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Mapping

import httptools

from tiergate.audit import record
from tiergate.audit.log import AuditUnavailable

from .access import RATE_LIMITED, Access, Caller
from .ext_authz import ExtAuthzServicer, Verdict, internal_failure
from .mapping import GatewayMapping, MappingError, MappingProblem
from .tls import CertificateFiles, Material

log = logging.getLogger("tiergate.ext_authz")

CHECK_PREFIX = "/ext_authz"
METHOD = "the HTTP Check (ext_authz http_service)"  # as refusals and logs name it
HEALTH_PATH = "/healthz"
MAX_HEAD_BYTES = 64 * 1024   # request line and headers; Envoy's own default limit is 60 KiB
MAX_HEADERS = 200
MAX_BODY_BYTES = 64 * 1024   # Envoy sends none unless with_request_body is set; it is unread
REMOVE_HEADERS = "x-envoy-auth-headers-to-remove"

Recorder = Callable[[Caller, str, str], str]  # (caller, method, message) -> decision id


def _response(status: int, headers, body: bytes = b"", *, close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
             f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def _plain(status: int, en: str, zh: str, *, close: bool = False) -> bytes:
    body = json.dumps({"effect": "DENY", "error": http.HTTPStatus(status).phrase.lower(),
                       "message_en": en, "message_zh": zh}, ensure_ascii=False).encode("utf-8")
    return _response(status, [("content-type", "application/json; charset=utf-8")], body,
                     close=close)


def encode_verdict(verdict: Verdict) -> bytes:
    """The HTTP response Envoy's http_service reads as this verdict."""
    headers = list(verdict.headers)
    if verdict.permitted:
        if verdict.remove:
            headers.append((REMOVE_HEADERS, ",".join(verdict.remove)))
        return _response(200, headers)
    return _response(verdict.http_status, headers, verdict.body.encode("utf-8"))


def claims_from_header(mapping: GatewayMapping,
                       headers: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The verified token's payload from jwt_authn's forward_payload_header (base64url JSON),
    None when the header is absent; MappingError when it is there but is not a JSON object."""
    text = headers.get(mapping.jwt_payload_header)
    if text is None:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        payload = None
    if not isinstance(payload, dict):
        name = mapping.jwt_payload_header
        raise MappingError([MappingProblem(
            None, f"header {name} is not a base64url JSON token payload",
            f"请求头 {name} 不是 base64url 编码的 JSON 令牌载荷")])
    return payload


def _caller(transport: asyncio.Transport) -> Caller:
    peer = transport.get_extra_info("peername")
    # As gRPC writes a peer, so that the audit records of both ports read alike.
    address = (f"ipv4:{peer[0]}:{peer[1]}" if peer and len(peer) == 2
               else f"ipv6:[{peer[0]}]:{peer[1]}" if peer else "")
    certificate = transport.get_extra_info("peercert") or {}
    names = certificate.get("subjectAltName", ())
    return Caller(tuple(v for k, v in names if k == "URI"), tuple(v for k, v in names if k == "DNS"),
                  address)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parse each request head, answer it, wait for the next."""

    def __init__(self, server: "HttpCheckServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.caller = Caller()
        self.head_bytes = 0
        self.pending: asyncio.Future | None = None  # the answer still being decided
        self._reset()

    def _reset(self) -> None:
        """Forget the request being parsed (not the bytes counted towards its head, which
        data_received counts before the parser says a request began)."""
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_count = self.body_bytes = 0
        self.in_body = False
        self.bad: tuple[int, str, str] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.caller = _caller(transport)
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                return self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes",
                                    f"请求头超过 {MAX_HEAD_BYTES} 字节")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not served", "不支持协议升级")
        except httptools.HttpParserError:
            self._refuse(400, "malformed HTTP request", "HTTP 请求格式错误")

    def _refuse(self, status: int, en: str, zh: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_plain(status, en, zh, close=True))
            self.transport.close()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self.bad = (431, f"more than {MAX_HEADERS} headers", f"请求头超过 {MAX_HEADERS} 个")
            return
        try:
            key, text = name.decode("ascii").lower(), value.decode("utf-8")
        except UnicodeDecodeError:
            self.bad = (400, "a header is not UTF-8", "请求头不是 UTF-8 编码")
            return
        # Repeated names are joined with a comma, as Envoy's gRPC CheckRequest does.
        self.headers[key] = f"{self.headers[key]},{text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.in_body = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            self._refuse(413, f"request body over {MAX_BODY_BYTES} bytes",
                         f"请求体超过 {MAX_BODY_BYTES} 字节")

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        keep_alive = self.parser.should_keep_alive()
        if self.bad is not None:
            return self._refuse(*self.bad)
        try:
            request = (self.caller, self.parser.get_method().decode("ascii"),
                       self.url.decode("utf-8"), self.headers)
        except UnicodeDecodeError:
            return self._refuse(400, "the request path is not UTF-8", "请求路径不是 UTF-8 编码")
        self.head_bytes = 0
        self._reset()
        if self.pending is not None and self.pending.done():
            self.pending = None
        if self.server.pool is None and self.pending is None:
            self._send(self.server.answer(*request), keep_alive)
        else:
            self.pending = asyncio.ensure_future(self._answer_after(self.pending, request,
                                                                    keep_alive))

    async def _answer_after(self, previous, request, keep_alive: bool) -> None:
        # Answers leave in the order their requests came, one connection at a time.
        if previous is not None:
            await previous
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.server.pool, self.server.answer, *request)
        self._send(answer, keep_alive)

    def _send(self, answer: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(answer)
        if not keep_alive:
            self.transport.close()


class HttpCheckServer:
    """ext_authz over HTTP on its own port, answered by `servicer` (the gRPC Check's core)."""

    def __init__(self, servicer: ExtAuthzServicer, access: Access, *,
                 ready: Callable[[], bool], tls: CertificateFiles | None = None,
                 on_refused: Recorder | None = None, metrics=None):
        self.servicer, self.access, self.ready = servicer, access, ready
        self.tls, self.on_refused, self.metrics = tls, on_refused, metrics
        self.connections: set[_Connection] = set()
        self.loop = asyncio.new_event_loop()
        # With an audit log each answer waits for its record's commit; deciding in a pool lets
        # the waits of many connections share one group commit instead of queueing behind
        # each other in the loop. Without one, deciding inline saves two thread hand-offs.
        self.pool = (futures.ThreadPoolExecutor(max_workers=32,
                                                thread_name_prefix="tiergate-http-check")
                     if servicer.recording else None)
        self.port = 0
        self._socket: socket.socket | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._material: Material | None = None
        self._thread: threading.Thread | None = None

    # -- answering (in the loop's thread)
    def answer(self, caller: Caller, method: str, url: str, headers: dict[str, str]) -> bytes:
        if not url.startswith(CHECK_PREFIX + "/"):
            if url == HEALTH_PATH and method in ("GET", "HEAD"):
                if not self.access.allows(caller, "health"):  # as gRPC health is guarded
                    return _plain(403, self.access.denial(caller, "health"), "无权查询健康状态")
                return (_response(200, [], b"SERVING") if self.ready()
                        else _response(503, [], b"NOT_SERVING"))
            return _plain(404, f"this port answers {CHECK_PREFIX}/… (Envoy's http_service "
                          f"path_prefix) and {HEALTH_PATH}", f"此端口只响应 {CHECK_PREFIX}/… 与 "
                          f"{HEALTH_PATH}")
        refused = self.access.screen(caller, "check", METHOD, "CheckHTTP")
        if refused is not None:
            reason, message = refused
            if reason == RATE_LIMITED:
                return _plain(429, message, "调用过于频繁")
            return self._refused(caller, message)
        path = url[len(CHECK_PREFIX):]
        try:
            with self.access.calling(caller):
                if self.metrics is None:
                    verdict = self._verdict(caller, method, path, headers)
                else:
                    with self.metrics.timer("CheckHTTP"):
                        verdict = self._verdict(caller, method, path, headers)
        except Exception:  # noqa: BLE001 — any failure must still be a denial, never a pass
            verdict = internal_failure()
        return encode_verdict(verdict)

    def _verdict(self, caller: Caller, method: str, path: str,
                 headers: dict[str, str]) -> Verdict:
        def translate(mapping: GatewayMapping) -> dict:
            return self.servicer.translations.translate(
                mapping, method, path, headers, lambda m: claims_from_header(m, headers))
        # No downstream address: over HTTP it would be a client-written header.
        return self.servicer.verdict(method, path, translate,
                                     lambda: record.caller_json(caller.peer, caller.identity))

    def _refused(self, caller: Caller, message: str) -> bytes:
        """The 403 of a caller not allowed `check`, recorded (503 when it cannot be)."""
        headers = [("content-type", "application/json; charset=utf-8")]
        if self.on_refused is not None:
            try:
                headers.append(("x-tiergate-decision-id", self.on_refused(caller, "CheckHTTP",
                                                                          message)))
            except AuditUnavailable:
                return _plain(503, "the refusal could not be recorded in the audit log",
                              "审计日志无法写入")
        body = json.dumps({"effect": "DENY", "error": "permission_denied",
                           "message": message}, ensure_ascii=False).encode("utf-8")
        return _response(403, headers, body)

    # -- the listener
    def _context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        material = self._material = self.tls.material
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        # ssl loads a key only from a file: a private copy of the files' checked contents, so
        # a rotation midway cannot pair a new certificate with an old key.
        with tempfile.TemporaryDirectory(prefix="tiergate-tls-") as directory:
            chain, key = Path(directory, "chain.pem"), Path(directory, "key.pem")
            chain.write_bytes(material.chain_pem)
            descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(material.key_pem)
            context.load_cert_chain(chain, key)
        if material.client_ca_pem is not None:
            context.load_verify_locations(cadata=material.client_ca_pem.decode("ascii"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _listen(self) -> asyncio.AbstractServer:
        # Each listener accepts on its own duplicate of the one bound socket: a listener that
        # replaces another takes over the same queue of connections, losing none.
        return await self.loop.create_server(lambda: _Connection(self),
                                             sock=self._socket.dup(), ssl=self._context())

    def start(self, listen: str, *, reuse_port: bool = False) -> int:
        """Listen on HOST:PORT and serve in a thread; the bound port. RuntimeError when the
        address cannot be bound."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server((host, int(port)), family=family, backlog=512,
                                                reuse_port=reuse_port)
            self._listener = self.loop.run_until_complete(self._listen())
        except OSError as problem:
            raise RuntimeError(f"cannot serve the HTTP Check on {listen}: "
                               f"{problem.strerror}") from None
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="tiergate-http-check")
        self._thread.start()
        return self.port

    def reload_tls(self) -> None:
        """When the TLS files changed and check out, a listener with them takes over the port.
        Called on every poll of the policy directory (from another thread)."""
        if self.tls is None:
            return
        self.tls.refresh()
        if self.tls.material is not self._material:
            asyncio.run_coroutine_threadsafe(self._swap_listener(), self.loop).result(10)

    async def _swap_listener(self) -> None:
        fresh = await self._listen()
        old, self._listener = self._listener, fresh
        if old is not None:
            old.close()
        log.info("HTTP Check port %d now serves the reloaded TLS certificate", self.port)

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let open connections finish what they are answering, close."""
        if self._thread is None:
            return

        async def close() -> None:
            if self._listener is not None:
                self._listener.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.close()  # answers already written are flushed first
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(grace)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(grace)
        self._thread = None
        if self._socket is not None:
            self._socket.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
