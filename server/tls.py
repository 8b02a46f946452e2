"""TLS and mutual TLS for the one gRPC port, with certificates re-read when their files change.

    tls_cert = "/etc/tiergate/tls/tls.crt"   # the server's chain (PEM), leaf first
    tls_key = "/etc/tiergate/tls/tls.key"    # its private key (PEM)
    tls_client_ca = "/etc/tiergate/tls/ca.crt"  # set: every caller must present a certificate
                                                # this CA issued (mutual TLS)

Rotation is what cert-manager and SPIFFE helpers do: they replace the files in place. gRPC asks
`CertificateFiles.fetch` before each new connection's handshake; when any of the three files
changed (size, mtime or inode), all three are read whole and checked — the certificates parse,
the key is the leaf's, the leaf has not expired — and only then replace the ones in use.
Anything else (a half-written file, a key that belongs to the next certificate, an expired
certificate) leaves the old ones serving and is logged once, until the files change again.
Connections already open keep the certificate they were made with.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("tiergate.server")

MAX_PEM_BYTES = 1024 * 1024  # a certificate chain or key file larger than this is refused


class TLSError(RuntimeError):
    """The TLS files cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Material:
    """One checked set of TLS files: the server's key and chain, and the client CA (or None)."""

    key_pem: bytes
    chain_pem: bytes
    client_ca_pem: bytes | None
    not_after: dt.datetime


def _read_whole(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PEM_BYTES + 1)
    except OSError as problem:
        raise TLSError(f"{path}: cannot be read ({problem.strerror})") from None
    if len(data) > MAX_PEM_BYTES:
        raise TLSError(f"{path}: larger than {MAX_PEM_BYTES} bytes; not a PEM file")
    if not data.strip():
        raise TLSError(f"{path}: empty")
    return data


def check_material(key_pem: bytes, chain_pem: bytes, client_ca_pem: bytes | None, *,
                   cert_path: Path, key_path: Path, ca_path: Path | None,
                   now: dt.datetime | None = None) -> Material:
    """The files' contents as a Material, or TLSError saying what is wrong with which file."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as problem:
        raise TLSError(f"{cert_path}: not a PEM certificate chain ({problem})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as problem:
        raise TLSError(f"{key_path}: not an unencrypted PEM private key ({problem})") from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise TLSError(f"{key_path}: this key does not belong to the certificate in {cert_path} "
                       "(a rotation may be half done: both files are read again when they change)")
    now = now or dt.datetime.now(dt.timezone.utc)
    if leaf.not_valid_after_utc <= now:
        raise TLSError(f"{cert_path}: the certificate expired at "
                       f"{leaf.not_valid_after_utc.isoformat()}")
    if client_ca_pem is not None:
        try:
            x509.load_pem_x509_certificates(client_ca_pem)
        except ValueError as problem:
            raise TLSError(f"{ca_path}: not a PEM CA certificate ({problem})") from None
    return Material(key_pem, chain_pem, client_ca_pem, leaf.not_valid_after_utc)


class CertificateFiles:
    """The server's TLS files, and the gRPC credentials that re-read them when they change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None):
        self.cert, self.key, self.client_ca = Path(cert), Path(key), client_ca and Path(client_ca)
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._refused: tuple | None = None  # the signature whose files were refused last
        self.material = self._load()  # raises TLSError: a server with bad TLS files does not start
        self._given_to_grpc = self.material  # credentials() starts gRPC with it
        self.rotations = 0

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def _paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def _stat(self) -> tuple:
        signature = []
        for path in self._paths():
            try:
                status = os.stat(path)
            except OSError:
                signature.append(None)
            else:
                signature.append((status.st_ino, status.st_size, status.st_mtime_ns))
        return tuple(signature)

    def _load(self) -> Material:
        ca = _read_whole(self.client_ca) if self.client_ca else None
        return check_material(_read_whole(self.key), _read_whole(self.cert), ca,
                              cert_path=self.cert, key_path=self.key, ca_path=self.client_ca)

    def _configuration(self, material: Material):
        return grpc.ssl_server_certificate_configuration(
            [(material.key_pem, material.chain_pem)], root_certificates=material.client_ca_pem)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self.material), self.fetch,
            require_client_authentication=self.mutual)

    def fetch(self):
        """gRPC's certificate_configuration_fetcher: a new configuration when the files changed
        and check out, else None (keep serving the current one). Runs before each handshake.
        It compares with what gRPC was last given, not with the files: another reader (the HTTP
        Check port) may have been the one that refreshed them."""
        self.refresh()
        material = self.material
        if material is self._given_to_grpc:
            return None
        self._given_to_grpc = material
        return self._configuration(material)

    def refresh(self) -> bool:
        """Read the files again if they changed; whether `material` is new. Files that changed
        but do not check out leave the current material serving, logged once."""
        signature = self._stat()
        if signature == self._signature or signature == self._refused:
            return False
        with self._lock:
            if signature == self._signature:
                return False
            try:
                material = self._load()
            except TLSError as problem:
                self._refused = signature
                log.error("TLS files changed but are not used; the previous certificate keeps "
                          "serving: %s", problem)
                return False
            self._signature, self._refused, self.material = signature, None, material
            self.rotations += 1
        log.info("TLS certificate reloaded from %s (valid until %s)", self.cert,
                 material.not_after.isoformat())
        return True
