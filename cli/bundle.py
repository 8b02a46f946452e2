"""`tiergate bundle`: pin and sign a reviewed policy set, and check one.

    tiergate bundle keygen officer.key                 # Ed25519 key pair: officer.key, officer.pub
    tiergate bundle build policies -o policies.bundle --sign officer.key --built-by "张三"
    tiergate bundle verify policies.bundle --verify-key officer.pub
    tiergate bundle manifest policies                  # policies/tiergate-manifest.json

Exit codes: 0 ok, 1 an error (a policy set that does not load, a bundle that does not verify).
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

from tiergate.engine import DiagnosticError
from tiergate.engine.bundle import DIRECTORY_MANIFEST, build_bundle, manifest_for, read_bundle
from tiergate.engine.load import compile_sources, read_policy_sources, revision_of

from .common import add_error_format, print_diagnostics


def register(subparsers) -> None:
    parser = subparsers.add_parser("bundle", help="build, sign and verify policy bundles")
    commands = parser.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")

    build = commands.add_parser("build", help="write a policy set as one bundle")
    build.add_argument("policy_dir", metavar="POLICY_DIR")
    build.add_argument("-o", "--output", required=True, metavar="FILE")
    build.add_argument("--sign", metavar="KEY", help="an Ed25519 private key (PEM) to sign with")
    build.add_argument("--built-by", metavar="NAME", help="who built it (default: the user)")
    add_error_format(build)
    build.set_defaults(run=run_build)

    check = commands.add_parser("verify", help="check a bundle's files, hashes and signature")
    check.add_argument("bundle", metavar="FILE")
    check.add_argument("--verify-key", metavar="PUB", help="the Ed25519 public key (PEM)")
    add_error_format(check)
    check.set_defaults(run=run_verify)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing")
    keygen.add_argument("key", metavar="KEY", help="the private key file to write (KEY.pub too)")
    keygen.set_defaults(run=run_keygen)

    manifest = commands.add_parser("manifest", help=f"write POLICY_DIR/{DIRECTORY_MANIFEST}")
    manifest.add_argument("policy_dir", metavar="POLICY_DIR")
    manifest.add_argument("--built-by", metavar="NAME")
    add_error_format(manifest)
    manifest.set_defaults(run=run_manifest)


def _relative_sources(directory: str) -> dict[str, str]:
    # The set as it is on disk, not checked against a manifest it may carry from before.
    sources = read_policy_sources(directory, check_manifest=False)
    return {Path(name).relative_to(directory).as_posix(): text for name, text in sources.items()}


def run_build(args) -> int:
    try:
        sources = _relative_sources(args.policy_dir)
        policy = compile_sources(sources)  # only a policy set that loads is bundled
        key = Path(args.sign).read_bytes() if args.sign else None
        data = build_bundle(sources, policy.revision, built_by=args.built_by or getpass.getuser(),
                            private_key_pem=key)
    except DiagnosticError as error:
        print_diagnostics(error.diagnostics, args.error_format)
        return 1
    except OSError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output}: {len(sources)} files, revision {policy.revision}"
          + (", signed" if key else ", unsigned"))
    return 0


def run_verify(args) -> int:
    try:
        data = Path(args.bundle).read_bytes()
        key = Path(args.verify_key).read_bytes() if args.verify_key else None
        sources, revision, manifest = read_bundle(data, key)
        policy = compile_sources(sources, revision=revision)
    except DiagnosticError as error:
        print_diagnostics(error.diagnostics, args.error_format, {})
        return 1
    except OSError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"ok: {args.bundle}: revision {revision}, {len(sources)} files, "
          f"{len(policy.rules)} rules, {len(policy.grants)} grants; built {manifest.get('built_at')} "
          f"by {manifest.get('built_by')}; "
          + ("signature verified" if key else "signature not checked (no --verify-key)"))
    return 0


def run_keygen(args) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path = Path(args.key)
    if path.exists():
        print(f"error: {path} exists; not overwriting a key", file=sys.stderr)
        return 1
    path.touch(mode=0o600)
    path.write_bytes(private)
    Path(str(path) + ".pub").write_bytes(public)
    print(f"wrote {path} (keep it secret) and {path}.pub (give it to every server)")
    return 0


def run_manifest(args) -> int:
    target = Path(args.policy_dir) / DIRECTORY_MANIFEST
    try:
        sources = _relative_sources(args.policy_dir)
        compile_sources(sources)
    except DiagnosticError as error:
        print_diagnostics(error.diagnostics, args.error_format)
        return 1
    manifest = manifest_for(sources, revision_of(sources), built_by=args.built_by or getpass.getuser())
    target.write_bytes(manifest)
    print(f"wrote {target}: {len(json.loads(manifest)['files'])} files")
    return 0
