"""Installs that fit their user: a compliance officer's `pip install tiergate` has no gRPC, no
protobuf, no Envoy protos and no Prometheus client, and every officer command still works;
`tiergate serve` and `tiergate gateway` then say which extra to install."""

from __future__ import annotations

import subprocess
import sys

from conftest import POLICIES, REPO

# Run each command in a fresh interpreter where the service's packages cannot be imported,
# as in a venv that installed only `tiergate`.
_WITHOUT_SERVER = """
import sys
class _NotInstalled:
    SERVICE = ("grpc", "grpc_health", "grpc_reflection", "envoy", "google.protobuf",
               "prometheus_client", "xds", "validate", "udpa")
    def find_spec(self, name, path=None, target=None):
        if any(name == p or name.startswith(p + ".") for p in self.SERVICE):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
from tiergate.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def officer(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT_SERVER, *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_the_officers_commands_need_no_service_packages(tmp_path):
    policies, request = str(POLICIES), str(REPO / "examples" / "request.json")
    for argv, codes in ((("check", policies), {0}),
                        (("fmt", "--check", policies), {0}),
                        (("test", policies), {0}),
                        (("lint", policies), {0, 2}),
                        (("diff", policies, policies), {0}),
                        (("explain", policies, request), {0}),
                        (("report", policies, "--html", str(tmp_path / "r.html")), {0}),
                        (("decide", policies, request, "--audit-log",
                          str(tmp_path / "a.db")), {0}),
                        (("audit", "verify", str(tmp_path / "a.db")), {0})):
        done = officer(*argv, cwd=tmp_path)
        assert done.returncode in codes, (argv, done.stderr[-2000:])
        assert "ModuleNotFoundError" not in done.stderr, (argv, done.stderr[-2000:])


def test_the_service_commands_name_the_extra_to_install(tmp_path):
    for command in ("serve", "gateway"):
        done = officer(command, str(POLICIES), cwd=tmp_path)
        assert done.returncode == 1
        assert "pip install 'tiergate[server]'" in done.stderr
        assert "Traceback" not in done.stderr
