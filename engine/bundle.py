"""Policy bundles: the reviewed policy set as one signed archive, served only if it verifies.

A bundle is an (uncompressed) tar archive holding

    manifest.json    {"format": "tiergate-bundle/1", "revision": "sha256:…", "built_at": "…",
                      "built_by": "…", "files": {"access.policy": "sha256:…", …}}
    manifest.sig     an Ed25519 signature over the exact bytes of manifest.json (optional)
    files/<path>     every file of the policy set, byte for byte

`read_bundle` accepts a bundle only when the archive holds nothing else (no links, no
directories, no path leaving files/), every file is listed with its hash and every listed file
is there, the revision recomputed over the files is the manifest's, and — when a public key is
given — the signature verifies. This is how a compliance officer's approval travels to every
replica unchanged: sign the bundle that was reviewed; replicas serve nothing else.

A directory can carry the same manifest (`tiergate-manifest.json`): then a file that appears,
disappears or changes outside it fails the load (`check_directory_manifest`).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Mapping

from tiergate.diagnostics import Diagnostic, DiagnosticError

from .strict_json import parse_json

FORMAT = "tiergate-bundle/1"
MANIFEST, SIGNATURE, FILES = "manifest.json", "manifest.sig", "files/"
DIRECTORY_MANIFEST = "tiergate-manifest.json"
MAX_BUNDLE_BYTES = 160 * 2**20  # the policy set's own limit (load.MAX_SET_BYTES) and room


def _bad(message: str, help: str | None = None) -> DiagnosticError:
    return DiagnosticError([Diagnostic("TG008", message, None, help)])


def file_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_for(sources: Mapping[str, str], revision: str, *, built_by: str) -> bytes:
    """The manifest of a policy set ({relative path: text}), as canonical JSON bytes."""
    files = {name: file_hash(text.encode("utf-8")) for name, text in sorted(sources.items())}
    built_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    document = {"format": FORMAT, "revision": revision, "built_at": built_at,
                "built_by": built_by, "files": files}
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def sign(manifest: bytes, private_key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise _bad("the signing key is not an Ed25519 private key",
                   "make one with: tiergate bundle keygen KEY")
    return key.sign(manifest)


def verify(manifest: bytes, signature: bytes | None, public_key_pem: bytes) -> None:
    """DiagnosticError unless `signature` is the public key's over `manifest`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(public_key_pem)
    except ValueError as problem:
        raise _bad(f"the verify key is not a PEM public key: {problem}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _bad("the verify key is not an Ed25519 public key")
    if signature is None:
        raise _bad("the bundle is not signed, and a verify key was given",
                   "build it with --sign KEY")
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise _bad("the bundle's signature does not verify with the verify key: it was not "
                   "signed by that key, or its manifest was changed after signing") from None


def build_bundle(sources: Mapping[str, str], revision: str, *, built_by: str,
                 private_key_pem: bytes | None = None) -> bytes:
    """A bundle of a policy set given as {path relative to its directory: text}."""
    manifest = manifest_for(sources, revision, built_by=built_by)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
        add(MANIFEST, manifest)
        if private_key_pem is not None:
            add(SIGNATURE, sign(manifest, private_key_pem))
        for name in sorted(sources):
            add(FILES + name, sources[name].encode("utf-8"))
    return out.getvalue()


def _safe_relative(name: str) -> bool:
    path = PurePosixPath(name)
    return (bool(name) and not path.is_absolute() and "\\" not in name
            and all(part not in ("", ".", "..") for part in name.split("/")))


def read_bundle(data: bytes, public_key_pem: bytes | None) -> tuple[dict[str, str], str, dict]:
    """(sources {relative path: text}, revision, manifest) of a bundle that verifies.

    DiagnosticError (TG008) naming the first thing wrong otherwise; nothing is half-read.
    """
    from .load import revision_of

    if len(data) > MAX_BUNDLE_BYTES:
        raise _bad(f"the bundle is larger than {MAX_BUNDLE_BYTES // 2**20} MiB")
    members: dict[str, bytes] = {}
    try:
        # Uncompressed only: what is read is what was sent, never a bomb that expands.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                if not member.isreg():
                    raise _bad(f"the bundle holds {member.name!r}, which is not a regular file")
                if member.name in members:
                    raise _bad(f"the bundle holds {member.name!r} twice")
                if member.name not in (MANIFEST, SIGNATURE) and not (
                        member.name.startswith(FILES) and _safe_relative(member.name[len(FILES):])):
                    raise _bad(f"the bundle holds {member.name!r}, which is not a manifest, a "
                               "signature or a file under files/")
                members[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as problem:
        raise _bad(f"the bundle is not a readable tar archive: {problem}") from None
    if MANIFEST not in members:
        raise _bad("the bundle has no manifest.json")
    manifest_bytes = members.pop(MANIFEST)
    signature = members.pop(SIGNATURE, None)
    if public_key_pem is not None:
        verify(manifest_bytes, signature, public_key_pem)
    try:
        manifest = parse_json(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as problem:
        raise _bad(f"the bundle's manifest is not JSON: {problem}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise _bad(f"the bundle's manifest is not a {FORMAT} manifest")
    files = {name[len(FILES):]: content for name, content in members.items()}
    listed = manifest["files"]
    problems = [f"{name} is in the bundle but not in its manifest" for name in sorted(files.keys() - listed.keys())]
    problems += [f"{name} is in the manifest but not in the bundle" for name in sorted(listed.keys() - files.keys())]
    problems += [f"{name} does not match its hash in the manifest" for name in sorted(files.keys() & listed.keys())
                 if file_hash(files[name]) != listed[name]]
    if problems:
        raise DiagnosticError([Diagnostic("TG008", p, None) for p in problems])
    try:
        sources = {name: content.decode("utf-8") for name, content in files.items()}
    except UnicodeDecodeError as problem:
        raise _bad(f"a file in the bundle is not UTF-8: {problem}") from None
    revision = revision_of(sources)
    if revision != manifest.get("revision"):
        raise _bad(f"the bundle's files have revision {revision}, not the manifest's "
                   f"{manifest.get('revision')}")
    return sources, revision, manifest


def check_directory_manifest(sources: Mapping[str, bytes], manifest_bytes: bytes,
                             where: str) -> list[Diagnostic]:
    """What in a directory differs from the manifest it carries ({relative path: bytes})."""
    try:
        manifest = parse_json(manifest_bytes.decode("utf-8"))
        listed = manifest["files"]
        assert isinstance(listed, dict)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AssertionError) as problem:
        return [Diagnostic("TG007", f"{where}: {DIRECTORY_MANIFEST} is not a manifest ({problem})",
                           None, "rebuild it with: tiergate bundle manifest DIR")]
    out = []
    for name in sorted(sources.keys() - listed.keys()):
        out.append(Diagnostic("TG007", f"{where}/{name} is not in {DIRECTORY_MANIFEST}", None,
                              "a file that was not reviewed is not loaded: remove it, or "
                              "rebuild the manifest after review"))
    for name in sorted(listed.keys() - sources.keys()):
        out.append(Diagnostic("TG007", f"{where}/{name} is in {DIRECTORY_MANIFEST} but missing",
                              None, "restore it, or rebuild the manifest after review"))
    for name in sorted(sources.keys() & listed.keys()):
        if file_hash(sources[name]) != listed[name]:
            out.append(Diagnostic("TG007", f"{where}/{name} changed since {DIRECTORY_MANIFEST} "
                                  "was built", None, "restore the reviewed file, or rebuild the "
                                  "manifest after review"))
    return out
