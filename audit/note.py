"""Signed checkpoints in the C2SP formats, so anyone outside can check them (a regulator, a witness).

A checkpoint (c2sp.org/tlog-checkpoint) is a signed note (c2sp.org/signed-note):

    tiergate.audit/hospital-gw-1        <- origin: the log's name
    1234                                <- tree size
    Zm9vYmFy...=                        <- root hash, base64
    time 2026-12-01T08:00:00.123456Z    <- extension line: when the checkpoint was taken
                                        <- a blank line, then one line per signature:
    — tiergate-audit Ab12cd34...        <- em dash, key name, base64(key id || Ed25519 signature)

Keys are written the way the Go sumdb/note package writes them:
`PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>` for the signing key (a file only the
server reads) and `<name>+<key id hex>+<base64(0x01 || public key)>` for the verifier key (give it
to whoever checks). The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_ED25519 = b"\x01"
_DASH = "\u2014 "
TIME_PREFIX = "time "


class NoteError(ValueError):
    """A key, a note or a checkpoint that cannot be used; the message says why."""


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"a key name is non-empty, without spaces or '+': {name!r}")
    return name


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public: bytes

    def encoded(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ED25519 + self.public).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
            return True
        except InvalidSignature:
            return False


@dataclass(frozen=True)
class Signer:
    name: str
    key_id: bytes
    _private: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, self.key_id, public)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def generate(name: str) -> tuple[str, str]:
    """A new key pair as (signer key text, verifier key text)."""
    _check_name(name)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = _key_id(name, public)
    signer = f"PRIVATE+KEY+{name}+{key_id.hex()}+{base64.b64encode(_ED25519 + seed).decode()}"
    return signer, Verifier(name, key_id, public).encoded()


def _parts(text: str, count: int, what: str) -> list[str]:
    parts = text.strip().split("+", count - 1)
    if len(parts) != count:
        raise NoteError(f"not a {what} (expected {count} '+'-separated parts)")
    return parts


def _key_bytes(encoded: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise NoteError(f"the {what} is not base64") from None
    if len(raw) != 33 or raw[:1] != _ED25519:
        raise NoteError(f"the {what} is not an Ed25519 key")
    return raw[1:]


def read_signer(text: str) -> Signer:
    private, key, name, key_id, encoded = _parts(text, 5, "signing key (PRIVATE+KEY+...)")
    if (private, key) != ("PRIVATE", "KEY"):
        raise NoteError("not a signing key (it must start with PRIVATE+KEY+)")
    seed = _key_bytes(encoded, "signing key")
    signer = Ed25519PrivateKey.from_private_bytes(seed)
    public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if _key_id(_check_name(name), public).hex() != key_id.lower():
        raise NoteError("the signing key's id does not match its name and key")
    return Signer(name, bytes.fromhex(key_id), signer)


def read_signer_file(path) -> Signer:
    """The signing key in file `path` (OSError, UnicodeDecodeError or NoteError if unusable)."""
    with open(path, encoding="utf-8") as f:
        return read_signer(f.read())


def read_verifier_file(path) -> Verifier:
    with open(path, encoding="utf-8") as f:
        return read_verifier(f.read())


def read_verifier(text: str) -> Verifier:
    name, key_id, encoded = _parts(text, 3, "verifier key (NAME+ID+KEY)")
    public = _key_bytes(encoded, "verifier key")
    if _key_id(_check_name(name), public).hex() != key_id.lower():
        raise NoteError("the verifier key's id does not match its name and key")
    return Verifier(name, bytes.fromhex(key_id), public)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str
    note: str  # the whole signed note as text (body, blank line, signature lines)

    @property
    def body(self) -> str:
        return self.note.split("\n\n", 1)[0] + "\n"


def checkpoint_body(origin: str, size: int, root: bytes, time: str) -> str:
    if "\n" in origin or not origin:
        raise NoteError("a log origin is one non-empty line")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n{TIME_PREFIX}{time}\n"


def sign_checkpoint(body: str, signer: Signer | None) -> str:
    """The signed note for `body`; a log without a key gets a note with no signature line."""
    if signer is None:
        return body + "\n"
    signature = base64.b64encode(signer.key_id + signer.sign(body.encode())).decode()
    return f"{body}\n{_DASH}{signer.name} {signature}\n"


def parse_checkpoint(note: str) -> Checkpoint:
    """Read a checkpoint's fields (without checking signatures: see `verify_note`)."""
    if "\n\n" not in note:
        raise NoteError("not a signed note: no blank line between the text and its signatures")
    body = note.split("\n\n", 1)[0]
    lines = body.split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise NoteError(f"the tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise NoteError("the root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("the root hash is not 32 bytes")
    time = next((e[len(TIME_PREFIX):] for e in extensions if e.startswith(TIME_PREFIX)), "")
    return Checkpoint(origin, int(size_text), root, time, note)


def signatures(note: str) -> list[tuple[str, bytes, bytes]]:
    """(key name, key id, signature) of every signature line of a note."""
    out = []
    for line in note.split("\n\n", 1)[1].split("\n"):
        if not line:
            continue
        if not line.startswith(_DASH):
            raise NoteError(f"not a signature line: {line[:60]!r}")
        name, _, encoded = line[len(_DASH):].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError(f"the signature of {name!r} is not base64") from None
        if len(raw) < 5:
            raise NoteError(f"the signature of {name!r} is too short")
        out.append((name, raw[:4], raw[4:]))
    return out


def is_signed_by(note: str, verifier: Verifier) -> bool:
    """Whether `note` carries a valid signature of `verifier` (other signatures are ignored)."""
    if "\n\n" not in note:
        return False
    message = (note.split("\n\n", 1)[0] + "\n").encode()
    return any(name == verifier.name and key_id == verifier.key_id
               and verifier.verify(message, signature)
               for name, key_id, signature in signatures(note))
