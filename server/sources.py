"""Where a server's policy set comes from: a directory, or a signed bundle (a file or a URL).

Each source's `read()` gives (sources {name: text}, revision) of a set that was read whole and,
for a bundle, verified (engine/bundle.py), or raises DiagnosticError saying why not. The
watcher (reload.py) polls it; nothing here compiles.

A bundle URL is polled the way OPA's bundle service is: with the last ETag in If-None-Match, so
an unchanged bundle costs a 304 and no download. Only http and https URLs are fetched.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tiergate.engine import DiagnosticError
from tiergate.engine.bundle import MAX_BUNDLE_BYTES, read_bundle
from tiergate.engine.load import policy_files, read_policy_sources, revision_of
from tiergate.diagnostics import Diagnostic

FETCH_TIMEOUT_S = 10.0
SWAP_RETRIES = 3


def _fetch_error(message: str) -> DiagnosticError:
    return DiagnosticError([Diagnostic("TG009", message, None)])


class DirectorySource:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def __str__(self) -> str:
        return str(self.directory)

    def read(self) -> tuple[dict[str, str], str]:
        """The set as one revision. Deploy tools swap a whole directory behind a link (git-sync
        its worktree, Kubernetes a ConfigMap's `..data`); a swap between two files' reads would
        mix revisions, so the links are resolved before and after, and a set read across a
        swap is read again."""
        for _ in range(SWAP_RETRIES):
            before = self._resolved()
            sources = read_policy_sources(self.directory)
            if self._resolved() == before:
                return sources, revision_of(sources, self.directory)
        raise _fetch_error(f"{self.directory}: the policy files kept changing while they were "
                           f"read ({SWAP_RETRIES} times); trying again at the next poll")

    def _resolved(self) -> tuple[str, ...]:
        try:
            files = policy_files(self.directory)
        except DiagnosticError:
            return ()  # read_policy_sources reports it
        return (os.path.realpath(self.directory), *(os.path.realpath(f) for f in files))


class BundleSource:
    """A bundle file or http(s) URL, verified with an Ed25519 public key on every change."""

    def __init__(self, location: str, public_key_pem: bytes):
        self.location = location
        self.public_key_pem = public_key_pem
        self.is_url = urlparse(location).scheme in ("http", "https")
        self._etag: str | None = None
        self._digest: str | None = None
        self._last: tuple[dict[str, str], str] | None = None

    def __str__(self) -> str:
        return self.location

    def read(self) -> tuple[dict[str, str], str]:
        data = self._fetch() if self.is_url else self._read_file()
        if data is None:  # 304 Not Modified: the bundle verified last time is still current
            return self._last
        digest = hashlib.sha256(data).hexdigest()
        if digest != self._digest or self._last is None:
            sources, revision, _manifest = read_bundle(data, self.public_key_pem)
            self._digest, self._last = digest, (sources, revision)
        return self._last

    def _read_file(self) -> bytes:
        try:
            with open(self.location, "rb") as file:
                data = file.read(MAX_BUNDLE_BYTES + 1)
        except OSError as problem:
            raise _fetch_error(f"{self.location}: the bundle cannot be read "
                               f"({problem.strerror})") from None
        return data

    def _fetch(self) -> bytes | None:
        request = urllib.request.Request(self.location)
        if self._etag is not None and self._last is not None:
            request.add_header("If-None-Match", self._etag)
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
                data = response.read(MAX_BUNDLE_BYTES + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as error:
            if error.code == 304 and self._last is not None:
                return None
            raise _fetch_error(f"{self.location}: the bundle server answered {error.code} "
                               f"{error.reason}") from None
        except (urllib.error.URLError, OSError) as problem:
            raise _fetch_error(f"{self.location}: the bundle cannot be fetched "
                               f"({getattr(problem, 'reason', problem)})") from None
        self._etag = etag
        return data


def source_for(config) -> DirectorySource | BundleSource:
    """The source a ServeConfig names: its bundle (with its verify key) or its directory."""
    if config.bundle:
        return BundleSource(config.bundle, Path(config.verify_key).read_bytes())
    return DirectorySource(config.policy_dir)
