"""The committed gRPC stubs are exactly what proto/generate.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("tiergate_proto_generate", REPO / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_up_to_date(tmp_path):
    generate = _generator()
    written = generate.generate(tmp_path)
    assert written, "no .proto files found"
    stale = []
    for path in written:
        committed = generate.PROTO_ROOT / path.relative_to(tmp_path)
        if not committed.exists() or committed.read_bytes() != path.read_bytes():
            stale.append(str(committed.relative_to(REPO)))
    assert stale == [], f"run `python proto/generate.py` and commit: {stale}"


def test_stubs_import_under_the_tiergate_namespace_only(tmp_path):
    # Outside the checkout (where the folder itself is not on sys.path), as an installed user.
    script = ("import importlib.util\n"
              "from tiergate.v1 import authorizer_pb2\n"
              "print(authorizer_pb2.DESCRIPTOR.package, importlib.util.find_spec('proto'))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["tiergate.v1", "None"], out.stderr
