"""Regenerate the committed Python stubs for proto/tiergate/v1/*.proto.

    python proto/generate.py            # rewrite the stubs next to the .proto files
    python proto/generate.py OUT_DIR    # write them under OUT_DIR instead (the test diffs these)

Why committed stubs: reviewers see the generated API change in the diff, installs need no
protoc, and the runtime never parses .proto text. The .proto sits at tiergate/v1/ under this
folder so the generated `from tiergate.v1 import ...` lines resolve through the package-dir
mapping in pyproject (tiergate.v1 -> proto/tiergate/v1); nothing is importable as `proto`.

Use a grpcio-tools no newer than the lowest grpcio pyproject allows: the generated
*_pb2_grpc.py refuses to run on an older grpcio than the one that generated it.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent


def proto_files() -> list[str]:
    """The .proto files, relative to PROTO_ROOT (their import paths)."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path = PROTO_ROOT) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every .proto; return the paths written."""
    from grpc_tools import protoc  # a dev/test dependency only

    well_known = str(resources.files("grpc_tools") / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            *files]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {files}")
    written = []
    for name in files:
        stem = name[: -len(".proto")]
        written += [out_dir / f"{stem}_pb2.py", out_dir / f"{stem}_pb2.pyi",
                    out_dir / f"{stem}_pb2_grpc.py"]
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    for path in generate(target):
        print(path)
