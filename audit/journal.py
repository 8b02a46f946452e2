"""The writer's journal: where a SQLite log's records are durable before they reach the database.

Why: an answer waits for its record to be durable, and a SQLite transaction per group commit
(BEGIN, INSERT, COMMIT in WAL mode) costs several times what the decision does. Appending the
group's records to a file is one write(2); once it returns, the records survive the process
being killed (and, with fsync on, the machine losing power). The writer moves journaled records
into the database many at a time, a moment later, then empties the journal.

One journal per chain, beside the database: `<database>.journal.<chain>`, created 0600. A frame is

    length (4 bytes, big-endian) | seq (8) | time_us (8) | CRC-32 of the record (4) | record

A writer that starts (log.py, resume) first moves every complete frame its chain's journal holds
and the database lacks into the database; a torn last frame can only be a record that was never
acknowledged (its write did not return), and is dropped.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

_HEADER = struct.Struct(">IQqI")
MAX_RECORD = 16 * 1024 * 1024


def journal_path(database: str | Path, chain: str) -> Path:
    return Path(f"{database}.journal.{chain}")


class Journal:
    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = path
        self._fsync = fsync
        self._fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o600)
        os.fchmod(self._fd, 0o600)

    def append(self, records: list[tuple]) -> None:
        """Make (chain, seq, time_us, body, leaf) records durable; raises OSError."""
        frames = b"".join(
            _HEADER.pack(len(body), seq, time_us, zlib.crc32(body)) + body
            for _, seq, time_us, body, _ in records)
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            written = os.write(self._fd, frames)
            if written != len(frames):  # a full disk can take part of it
                raise OSError(f"the journal {self.path} took {written} of {len(frames)} bytes")
            if self._fsync:
                os.fdatasync(self._fd)
        except OSError:
            # INVARIANT: no torn frame before a later good one (reading stops at a torn frame).
            try:
                os.ftruncate(self._fd, end)
            except OSError:
                pass
            raise

    def clear(self) -> None:
        """Empty the journal: every record in it is in the database now."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)


def read_frames(path: Path) -> list[tuple[int, int, bytes]]:
    """(seq, time_us, record) of every complete frame; stops at a torn or damaged one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out, offset = [], 0
    while offset + _HEADER.size <= len(data):
        length, seq, time_us, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        body = data[start:start + length]
        if length > MAX_RECORD or len(body) != length or zlib.crc32(body) != crc:
            break
        out.append((seq, time_us, body))
        offset = start + length
    return out
