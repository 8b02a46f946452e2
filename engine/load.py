"""Load a policy set: read every *.policy file (and catalog data file), parse, check, compile —
all or nothing."""

from __future__ import annotations

import gc
import hashlib
import os
import stat
from pathlib import Path
from typing import Mapping

from tiergate.diagnostics import Diagnostic, DiagnosticError, Span
from tiergate.grammar.parser import parse_policy

from .bundle import DIRECTORY_MANIFEST, check_directory_manifest, read_bundle
from .catalog import DATA_SUFFIXES, is_catalog_data
from .check import check_policy
from .compile import compile_policy
from .policy import PolicySet

POLICY_SUFFIX = ".policy"
SUFFIXES = (POLICY_SUFFIX, *DATA_SUFFIXES)
# Limits on what a load reads: a policy set is reviewed text, not bulk data. A catalog of
# 100,000 datasets is about 8 MB.
MAX_FILE_BYTES = 32 * 2**20
MAX_SET_BYTES = 128 * 2**20


def _error(code: str, message: str, help: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, None, help)


def policy_files(directory: str | Path) -> list[Path]:
    """The files of a set — policy files and catalog data files — in a stable order (by path).

    Every entry under the directory (sub-directories included, symbolic links followed) whose
    name ends in .policy, .catalog.csv or .catalog.jsonl is one; anything among them that is not
    a readable regular file (a dangling link, a FIFO, a directory so named), and any directory
    that cannot be listed, is an error naming the path: a load never goes on without a file.
    Directories whose names start with a dot are not part of the set: `.git`, and the `..data`
    and `..2026_…` directories through which Kubernetes swaps a mounted ConfigMap (its files
    are links into them; reading both would declare everything twice).
    """
    root = Path(directory)
    if not root.is_dir():
        raise DiagnosticError([_error("TG001", f"{directory} is not a directory",
                                      "name the directory that holds the *.policy files")])
    found, problems, seen = [], [], set()
    pending = [root]
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in seen:
            problems.append(_error("TG004", f"{folder} leads back to a directory already read "
                                   "(a symbolic link cycle)", "remove the link"))
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as problem:
            problems.append(_error("TG004", f"{folder}: the directory cannot be read "
                                   f"({problem.strerror})", "make it readable by the server, "
                                   "or move it out of the policy directory"))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if is_dir and entry.name.endswith(SUFFIXES):
                problems.append(_error("TG004", f"{path} is a directory, not a policy file",
                                       "rename it: a name ending in .policy is a policy file"))
            elif is_dir:
                if not entry.name.startswith("."):
                    pending.append(path)
            elif entry.name.endswith(SUFFIXES):
                try:
                    regular = stat.S_ISREG(os.stat(path).st_mode)
                except OSError as problem:
                    problems.append(_error("TG004", f"{path} cannot be read ({problem.strerror}"
                                           + (": a dangling symbolic link" if entry.is_symlink()
                                              else "") + ")", "fix or remove it"))
                    continue
                if not regular:
                    problems.append(_error("TG004", f"{path} is not a regular file",
                                           "a policy file must be a plain file"))
                    continue
                found.append(path)
    if problems:
        raise DiagnosticError(problems)
    return sorted(found)


def _read_whole(path: Path) -> bytes:
    """A file's bytes, read whole; OSError or ValueError (too large, not a regular file)."""
    # O_NONBLOCK: a FIFO swapped in after the check above must not block the load.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValueError("it is not a regular file")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"it is larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def read_policy_sources(directory: str | Path, *, check_manifest: bool = True) -> dict[str, str]:
    """{path as shown in messages: text} for every file of the set, each read whole.

    The text is the file's exact bytes decoded (line endings and a byte order mark kept), so
    `revision_of` hashes what is on disk. Every unreadable, oversized or non-UTF-8 file is a
    diagnostic naming it; any one of them fails the load. A directory carrying a manifest
    (tiergate-manifest.json) must hold exactly the files it lists, unchanged.
    """
    files = policy_files(directory)
    if not any(p.name.endswith(POLICY_SUFFIX) for p in files):
        raise DiagnosticError([_error("TG002", f"{directory} holds no {POLICY_SUFFIX} files")])
    sources, problems, total = {}, [], 0
    for path in files:
        try:
            data = _read_whole(path)
        except OSError as problem:
            problems.append(_error("TG004", f"{path} cannot be read ({problem.strerror})",
                                   "make it readable by the server"))
            continue
        except ValueError as problem:
            problems.append(_error("TG005", f"{path} is not loaded: {problem}",
                                   f"a file may hold at most {MAX_FILE_BYTES // 2**20} MiB"))
            continue
        total += len(data)
        try:
            sources[str(path)] = data.decode("utf-8")
        except UnicodeDecodeError as problem:
            line = data.count(b"\n", 0, problem.start) + 1
            problems.append(Diagnostic(
                "TG003", f"{path} is not UTF-8 text: byte {problem.start + 1} (line {line}) is "
                f"{data[problem.start:problem.start + 1]!r}",
                Span(str(path), line, 1, line, 2), "save the file as UTF-8"))
    manifest = Path(directory) / DIRECTORY_MANIFEST
    if check_manifest and manifest.exists() and not problems:
        try:
            listed = _read_whole(manifest)
        except (OSError, ValueError) as problem:
            problems.append(_error("TG007", f"{manifest} cannot be read ({problem})"))
        else:
            problems.extend(check_directory_manifest(
                {Path(name).relative_to(directory).as_posix(): text.encode("utf-8")
                 for name, text in sources.items()}, listed, str(directory)))
    if total > MAX_SET_BYTES:
        problems.append(_error("TG006", f"{directory}: the policy set holds {total // 2**20} MiB, "
                               f"more than {MAX_SET_BYTES // 2**20} MiB",
                               "a policy set is reviewed text; keep bulk data out of it"))
    if problems:
        raise DiagnosticError(problems)
    return sources


def revision_of(sources: Mapping[str, str], root: str | Path | None = None) -> str:
    """A hash of the policy files: their paths relative to the set's directory and their exact
    bytes (as read: line endings included), so any change at all is a new revision."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        relative = Path(name).relative_to(root).as_posix() if root is not None else name
        digest.update(relative.encode() + b"\0" + sources[name].encode("utf-8") + b"\0")
    return "sha256:" + digest.hexdigest()


def compile_sources(sources: Mapping[str, str], *, revision: str | None = None,
                    pause_collector: bool = True) -> PolicySet:
    """Parse, check and compile policy texts given as {file name: text}.

    Loading allocates hundreds of thousands of small, long-lived objects (nodes, spans); the
    cyclic collector would rescan them again and again (half the load time at 10,000 grants),
    so it is paused meanwhile. That pause is process-wide: a server reloading while its other
    threads serve calls passes pause_collector=False and takes the slower load instead.
    """
    if not pause_collector:
        return _compile_sources(sources, revision)
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _compile_sources(sources, revision)
    finally:
        if collecting:
            gc.enable()


def _compile_sources(sources: Mapping[str, str], revision: str | None) -> PolicySet:
    parsed, diagnostics = [], []
    catalog_data = {name: text for name, text in sources.items() if is_catalog_data(name)}
    for name in sorted(sources.keys() - catalog_data.keys()):
        try:
            parsed.append(parse_policy(sources[name], name))
        except DiagnosticError as error:
            diagnostics.extend(error.diagnostics)
    if diagnostics:
        raise DiagnosticError(diagnostics)
    checked = check_policy(parsed, catalog_data)
    return PolicySet(checked, compile_policy(checked), revision=revision or revision_of(sources),
                     sources=sources)


def load_policy_set(directory: str | Path) -> PolicySet:
    """Load, check and compile the policy set in a directory.

    Raises DiagnosticError with every problem found; nothing is returned half-loaded.
    """
    sources = read_policy_sources(directory)
    return compile_sources(sources, revision=revision_of(sources, directory))


def load_bundle(data: bytes, public_key_pem: bytes | None) -> PolicySet:
    """Load a policy bundle (engine/bundle.py) that verifies; DiagnosticError otherwise."""
    sources, revision, _manifest = read_bundle(data, public_key_pem)
    return compile_sources(sources, revision=revision)
