"""A reviewed policy can be pinned and signed: bundles built, verified and served (from a file
or over HTTP with ETags), and directories that carry their manifest."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from conftest import POLICIES, TEST_AUDIT_LOG, make_request
from server_support import CLIENT_OPTIONS, to_proto
from tiergate.engine import DiagnosticError, load_policy_set
from tiergate.engine.bundle import build_bundle, read_bundle
from tiergate.engine.load import read_policy_sources
from tiergate.server.app import start_server
from tiergate.server.config import ServeConfig
from tiergate.server.reload import PolicyWatcher
from tiergate.v1 import authorizer_pb2 as pb
from tiergate.v1 import authorizer_pb2_grpc as pb_grpc


def tiergate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    for name in ("officer", "intruder"):
        assert tiergate("bundle", "keygen", folder / f"{name}.key").returncode == 0
    return folder


def relative_sources(directory=POLICIES) -> dict[str, str]:
    return {name[len(str(directory)) + 1:]: text
            for name, text in read_policy_sources(directory).items()}


def signed(keys, sources=None, key="officer") -> bytes:
    sources = sources or relative_sources()
    from tiergate.engine import compile_sources
    revision = compile_sources(sources).revision
    return build_bundle(sources, revision, built_by="test",
                        private_key_pem=(keys / f"{key}.key").read_bytes())


def public(keys, name="officer") -> bytes:
    return (keys / f"{name}.key.pub").read_bytes()


def test_build_and_verify_from_the_command_line(tmp_path, keys):
    bundle = tmp_path / "p.bundle"
    built = tiergate("bundle", "build", POLICIES, "-o", bundle, "--sign", keys / "officer.key")
    assert built.returncode == 0, built.stderr
    revision = load_policy_set(POLICIES).revision
    assert revision in built.stdout  # the same revision as the directory it came from
    ok = tiergate("bundle", "verify", bundle, "--verify-key", keys / "officer.key.pub")
    assert ok.returncode == 0 and "signature verified" in ok.stdout
    other = tiergate("bundle", "verify", bundle, "--verify-key", keys / "intruder.key.pub")
    assert other.returncode == 1 and "TG008" in other.stderr and "does not verify" in other.stderr


def _rewritten(data: bytes, change) -> bytes:
    """The bundle's members passed through `change(name, bytes) -> [(name, bytes)]`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source:
            for name, content in change(member.name, source.extractfile(member).read()):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                target.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.mark.parametrize("tamper, expected", [
    (lambda n, c: [(n, c.replace(b"2027-06-30", b"2099-06-30"))] if n == "files/grants.policy"
     else [(n, c)], "does not match its hash"),
    (lambda n, c: [(n, c)] + ([("files/extra.policy", b"rule x {}\n")] if n == "manifest.json" else []),
     "not in its manifest"),
    (lambda n, c: [] if n == "files/prohibitions.policy" else [(n, c)], "not in the bundle"),
    (lambda n, c: [] if n == "manifest.sig" else [(n, c)], "not signed"),
    (lambda n, c: [("files/../escape.policy" if n == "files/access.policy" else n, c)],
     "not a manifest, a signature or a file under files/"),
])
def test_a_bundle_changed_after_signing_is_refused(keys, tamper, expected):
    data = _rewritten(signed(keys), tamper)
    with pytest.raises(DiagnosticError) as caught:
        read_bundle(data, public(keys))
    assert any(expected in d.message for d in caught.value.diagnostics), caught.value.diagnostics


def test_a_directory_that_carries_a_manifest_loads_only_as_listed(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies, ignore=shutil.ignore_patterns("tests", "gateway.toml"))
    assert tiergate("bundle", "manifest", policies).returncode == 0
    revision = load_policy_set(policies).revision
    (policies / "late.policy").write_text("# not reviewed\n", encoding="utf-8")
    result = tiergate("check", policies)
    assert result.returncode == 1 and "late.policy is not in tiergate-manifest.json" in result.stderr
    (policies / "late.policy").unlink()
    grants = policies / "grants.policy"
    grants.write_text(grants.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert "changed since tiergate-manifest.json" in tiergate("check", policies).stderr
    shutil.copy(POLICIES / "grants.policy", grants)
    assert load_policy_set(policies).revision == revision
    (policies / "obligations.policy").unlink()
    assert "is in tiergate-manifest.json but missing" in tiergate("check", policies).stderr


class _BundleHTTP(BaseHTTPRequestHandler):
    """Serves `server.bundle` with an ETag; answers 304 to a matching If-None-Match."""

    def do_GET(self):  # noqa: N802 — http.server's name
        etag = f'"{hash(self.server.bundle) & 0xFFFFFFFF:x}"'
        self.server.requests.append(self.headers.get("If-None-Match"))
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(self.server.bundle)))
        self.end_headers()
        self.wfile.write(self.server.bundle)

    def log_message(self, *args):
        pass


def test_a_server_serves_a_signed_bundle_from_a_url_and_only_one_that_verifies(tmp_path, keys):
    http = ThreadingHTTPServer(("127.0.0.1", 0), _BundleHTTP)
    http.bundle, http.requests = signed(keys), []
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}/policies.bundle"
    (tmp_path / "officer.pub").write_bytes(public(keys))
    config = ServeConfig(bundle=url, verify_key=tmp_path / "officer.pub", listen="127.0.0.1:0",
                         audit_log=TEST_AUDIT_LOG,
                         reload_interval=0, accept_request_time=True)
    running = start_server(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=CLIENT_OPTIONS)
    try:
        stub = pb_grpc.AuthorizerStub(channel)
        first = stub.GetPolicyInfo(pb.GetPolicyInfoRequest()).policy_revision
        assert first == load_policy_set(POLICIES).revision
        assert stub.Decide(to_proto(make_request()), timeout=10).effect == pb.PERMIT
        watcher = PolicyWatcher(running.holder, interval=0, source=running.source)
        watcher.poll()
        assert http.requests[-1] is not None  # asked with If-None-Match, answered 304
        # A new reviewed bundle: fz-2026-017 withdrawn.
        sources = relative_sources()
        sources["grants.policy"] = sources["grants.policy"].replace(
            "expires     2027-06-30T00:00:00+08:00", "expires     2026-01-01T00:00:00+08:00", 1)
        http.bundle = signed(keys, sources)
        watcher.poll()
        watcher.poll()  # a change is compiled once it is seen twice
        second = stub.GetPolicyInfo(pb.GetPolicyInfoRequest()).policy_revision
        assert second != first
        assert stub.Decide(to_proto(make_request()), timeout=10).effect == pb.DENY
        # A bundle signed by another key is never served: the last good one keeps serving.
        http.bundle = signed(keys, relative_sources(), key="intruder")
        watcher.poll()
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert info.policy_revision == second
        assert any("TG008" in line and "does not verify" in line
                   for line in info.last_reload_error.diagnostics)
    finally:
        channel.close()
        running.stop(0)
        http.shutdown()


def test_serving_a_bundle_needs_its_verify_key(tmp_path):
    from tiergate.server.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="verify_key"):
        load_config({"bundle": str(tmp_path / "p.bundle")}, environ={})
    with pytest.raises(ConfigError, match="either policy_dir"):
        load_config({}, environ={})
