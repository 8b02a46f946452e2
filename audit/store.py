"""Where audit records live: SQLite (one file, WAL) or PostgreSQL (one database, many replicas).

Both keep the same tables:

    audit_records      one row per record: the indexed columns, the record's bytes, its leaf hash
    audit_rules        (chain, seq, rule_id) for every rule that decided a record
    audit_checkpoints  the signed checkpoints, with the Merkle frontier at each (to resume a chain)
    audit_prunes       what was pruned, when, by whom

A chain is written by one process only (the writer holds it); any number of readers query. A
pruned record keeps its sequence number, time and leaf hash (so the tree and every checkpoint
still verify) and loses its bytes and every column that says who asked for what.

`open_store(target)` takes a file path (SQLite) or a postgresql:// URL.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .merkle import Frontier

COLUMNS = ("chain", "seq", "time_us", "decision_id", "outcome", "subject", "org", "dataset",
           "owner", "grant_id", "body", "leaf")
# Query filters: option name -> column.
FILTERS = {"subject": "subject", "org": "org", "dataset": "dataset", "owner": "owner",
           "effect": "outcome", "grant": "grant_id", "decision_id": "decision_id",
           "chain": "chain"}

_INDEXES = (
    ("audit_by_decision", "decision_id"),
    ("audit_by_time", "time_us"),
    ("audit_by_subject", "subject, time_us"),
    ("audit_by_org", "org, time_us"),
    ("audit_by_dataset", "dataset, time_us"),
    ("audit_by_owner", "owner, time_us"),
    ("audit_by_grant", "grant_id, time_us"),
    ("audit_by_outcome", "outcome, time_us"),
)


class StoreError(RuntimeError):
    """The audit store cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class StoredCheckpoint:
    chain: str
    size: int
    time_us: int
    note: str
    frontier: bytes


@dataclass(frozen=True)
class Row:
    chain: str
    seq: int
    time_us: int
    decision_id: str | None
    outcome: str | None
    subject: str | None
    org: str | None
    dataset: str | None
    owner: str | None
    grant_id: str | None
    body: bytes | None  # None once pruned
    leaf: bytes


def _ddl(blob: str, big: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS audit_records (
            chain TEXT NOT NULL, seq {big} NOT NULL, time_us {big} NOT NULL,
            decision_id TEXT, outcome TEXT, subject TEXT, org TEXT, dataset TEXT, owner TEXT,
            grant_id TEXT, body {blob}, leaf {blob} NOT NULL, PRIMARY KEY (chain, seq))""",
        f"""CREATE TABLE IF NOT EXISTS audit_rules (
            chain TEXT NOT NULL, seq {big} NOT NULL, rule_id TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS audit_rules_by_rule ON audit_rules (rule_id, chain, seq)",
        "CREATE INDEX IF NOT EXISTS audit_rules_by_record ON audit_rules (chain, seq)",
        f"""CREATE TABLE IF NOT EXISTS audit_checkpoints (
            chain TEXT NOT NULL, size {big} NOT NULL, time_us {big} NOT NULL, note TEXT NOT NULL,
            frontier {blob} NOT NULL, PRIMARY KEY (chain, size))""",
        f"""CREATE TABLE IF NOT EXISTS audit_prunes (
            chain TEXT NOT NULL, below_seq {big} NOT NULL, before_us {big} NOT NULL,
            at_us {big} NOT NULL)""",
        *(f"CREATE INDEX IF NOT EXISTS {name} ON audit_records ({columns})"
          for name, columns in _INDEXES),
    ]


class Store:
    """The SQL both back ends share; subclasses connect and say how parameters are written."""

    placeholder = "?"
    kind = "?"

    def __init__(self, target: str):
        self.target = target

    # -- subclass hooks
    def _connection(self):
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _transaction(self):
        raise NotImplementedError
        yield

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _execute(self, sql: str, params: Sequence = ()):
        return self._connection().execute(self._sql(sql), params)

    # -- writing (the chain's one writer)
    def append(self, rows: list[tuple], rules: list[tuple],
               checkpoint: StoredCheckpoint | None = None) -> None:
        """Insert records (tuples in COLUMNS order), their rules, and perhaps a checkpoint, in
        one transaction: all of them are stored, or none."""
        with self._transaction() as cursor:
            cursor.executemany(self._sql(
                f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join('?' * len(COLUMNS))})"), rows)
            if rules:
                cursor.executemany(self._sql(
                    "INSERT INTO audit_rules (chain, seq, rule_id) VALUES (?, ?, ?)"), rules)
            if checkpoint is not None:
                self._insert_checkpoint(cursor, checkpoint)

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        with self._transaction() as cursor:
            self._insert_checkpoint(cursor, checkpoint)

    def _insert_checkpoint(self, cursor, c: StoredCheckpoint) -> None:
        cursor.execute(self._sql(
            "INSERT INTO audit_checkpoints (chain, size, time_us, note, frontier) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain, size) DO NOTHING"),
            (c.chain, c.size, c.time_us, c.note, c.frontier))

    def probe(self) -> None:
        """Raise StoreError unless the store takes a write now (used while it is failing)."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("DELETE FROM audit_prunes WHERE chain = ?"), ("\0probe",))

    # -- reading
    def chains(self) -> list[str]:
        rows = self._execute("SELECT DISTINCT chain FROM audit_records UNION "
                             "SELECT DISTINCT chain FROM audit_checkpoints").fetchall()
        return sorted(r[0] for r in rows)

    def size(self, chain: str) -> int:
        """1 + the highest sequence number stored for `chain` (0 when it has none)."""
        row = self._execute("SELECT MAX(seq) FROM audit_records WHERE chain = ?",
                            (chain,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def leaves(self, chain: str, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        cursor = self._execute("SELECT seq, leaf FROM audit_records WHERE chain = ? AND seq >= ? "
                               "AND seq < ? ORDER BY seq", (chain, start, end))
        for seq, leaf in cursor:
            yield int(seq), _bytes(leaf)

    def rows(self, chain: str, start: int = 0) -> Iterator[Row]:
        cursor = self._execute(f"SELECT {', '.join(COLUMNS)} FROM audit_records WHERE chain = ? "
                               "AND seq >= ? ORDER BY seq", (chain, start))
        for values in cursor:
            yield _row(values)

    def rules_of(self, chain: str, start: int = 0) -> Iterator[tuple[int, str]]:
        cursor = self._execute("SELECT seq, rule_id FROM audit_rules WHERE chain = ? AND seq >= ? "
                               "ORDER BY seq, rule_id", (chain, start))
        for seq, rule in cursor:
            yield int(seq), rule

    def checkpoints(self, chain: str) -> list[StoredCheckpoint]:
        rows = self._execute("SELECT chain, size, time_us, note, frontier FROM audit_checkpoints "
                             "WHERE chain = ? ORDER BY size", (chain,)).fetchall()
        return [StoredCheckpoint(r[0], int(r[1]), int(r[2]), r[3], bytes(r[4])) for r in rows]

    def latest_checkpoint(self, chain: str) -> StoredCheckpoint | None:
        row = self._execute("SELECT chain, size, time_us, note, frontier FROM audit_checkpoints "
                            "WHERE chain = ? ORDER BY size DESC LIMIT 1", (chain,)).fetchone()
        return None if row is None else StoredCheckpoint(row[0], int(row[1]), int(row[2]),
                                                          row[3], bytes(row[4]))

    def find(self, decision_id: str) -> list[Row]:
        cursor = self._execute(f"SELECT {', '.join(COLUMNS)} FROM audit_records "
                               "WHERE decision_id = ?", (decision_id,))
        return [_row(v) for v in cursor]

    def query(self, *, filters: dict[str, str], rule: str | None = None,
              since_us: int | None = None, until_us: int | None = None,
              limit: int | None = None, after: tuple[str, int] | None = None) -> list[Row]:
        """Records matching every filter, oldest first (by time, then chain and seq)."""
        where, params = ["body IS NOT NULL"], []
        for name, value in filters.items():
            where.append(f"{FILTERS[name]} = ?")
            params.append(value)
        if rule is not None:
            where.append("EXISTS (SELECT 1 FROM audit_rules r WHERE r.rule_id = ? AND "
                         "r.chain = audit_records.chain AND r.seq = audit_records.seq)")
            params.append(rule)
        if since_us is not None:
            where.append("time_us >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("time_us < ?")
            params.append(until_us)
        sql = (f"SELECT {', '.join(COLUMNS)} FROM audit_records WHERE {' AND '.join(where)} "
               "ORDER BY time_us, chain, seq")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row(v) for v in self._execute(sql, params)]

    def after(self, chain: str | None, positions: dict[str, int], limit: int = 1000) -> list[Row]:
        """Records past `positions` (chain -> next seq wanted), for streaming new records."""
        out: list[Row] = []
        for name in ([chain] if chain else self.chains()):
            cursor = self._execute(f"SELECT {', '.join(COLUMNS)} FROM audit_records WHERE "
                                   "chain = ? AND seq >= ? ORDER BY seq LIMIT ?",
                                   (name, positions.get(name, 0), limit))
            out.extend(_row(v) for v in cursor)
        return out

    # -- pruning
    def prune(self, chain: str, below_seq: int, before_us: int, at_us: int) -> int:
        """Drop the bytes and personal columns of records [0, below_seq) of `chain`."""
        with self._transaction() as cursor:
            cursor.execute(self._sql(
                "UPDATE audit_records SET body = NULL, decision_id = NULL, outcome = NULL, "
                "subject = NULL, org = NULL, dataset = NULL, owner = NULL, grant_id = NULL "
                "WHERE chain = ? AND seq < ? AND body IS NOT NULL"), (chain, below_seq))
            count = cursor.rowcount
            cursor.execute(self._sql("DELETE FROM audit_rules WHERE chain = ? AND seq < ?"),
                           (chain, below_seq))
            cursor.execute(self._sql("INSERT INTO audit_prunes (chain, below_seq, before_us, "
                                     "at_us) VALUES (?, ?, ?, ?)"),
                           (chain, below_seq, before_us, at_us))
        return count

    def first_younger_than(self, chain: str, before_us: int) -> int:
        """The sequence number of the first record of `chain` at or after `before_us`."""
        row = self._execute("SELECT MIN(seq) FROM audit_records WHERE chain = ? AND "
                            "time_us >= ?", (chain, before_us)).fetchone()
        return self.size(chain) if row[0] is None else int(row[0])

    def prunes(self, chain: str) -> list[tuple[int, int, int]]:
        return [(int(a), int(b), int(c)) for a, b, c in self._execute(
            "SELECT below_seq, before_us, at_us FROM audit_prunes WHERE chain = ? "
            "ORDER BY at_us", (chain,))]

    def resume(self, chain: str) -> Frontier:
        """The Merkle frontier of everything stored for `chain`: from its last checkpoint,
        extended with the leaves written after it."""
        latest = self.latest_checkpoint(chain)
        frontier = (Frontier() if latest is None
                    else Frontier.from_bytes(latest.size, latest.frontier))
        for seq, leaf in self.leaves(chain, frontier.size, 1 << 62):
            if seq != frontier.size:
                raise StoreError(f"chain {chain}: record {frontier.size} is missing (the next "
                                 f"stored is {seq}); run `tiergate audit verify` before "
                                 "writing to this log again")
            frontier.append(leaf)
        return frontier


def _row(values) -> Row:
    (chain, seq, time_us, decision_id, outcome, subject, org, dataset, owner, grant_id, body,
     leaf) = values
    return Row(chain, int(seq), int(time_us), decision_id, outcome, subject, org, dataset, owner,
               grant_id, _bytes(body), _bytes(leaf))


def _bytes(value) -> bytes | None:
    # An edit made with SQL text functions stores text where bytes were: read it as its bytes.
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, create: bool = True, fsync: bool = False,
                 busy_timeout: float = 2.0):
        super().__init__(str(path))
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StoreError(f"no audit log at {self.path}")
            _create_private(self.path)
        elif stat.S_IMODE(self.path.stat().st_mode) & 0o077:
            # SECURITY: the log says who asked for which medical data; no one else reads it.
            os.chmod(self.path, 0o600)
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit is in the WAL (the OS has it) when it returns, which survives the
            # process being killed; FULL also fsyncs, which survives the machine losing power.
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            with self._transaction() as cursor:
                for statement in _ddl("BLOB", "INTEGER"):
                    cursor.execute(statement)
        except sqlite3.Error as problem:
            raise StoreError(f"audit log {self.path}: {problem}") from None

    def _connection(self):
        return self._db

    def _execute(self, sql: str, params: Sequence = ()):
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as problem:
            raise StoreError(f"audit log {self.path}: {problem}") from None

    @contextmanager
    def _transaction(self):
        try:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                self._db.rollback()
                raise
            cursor.execute("COMMIT")
        except sqlite3.Error as problem:
            if self._db.in_transaction:
                self._db.rollback()
            raise StoreError(f"audit log {self.path}: {problem}") from None

    def close(self) -> None:
        self._db.close()


def _create_private(path: Path) -> None:
    """Create the database file mode 0600 before SQLite opens it; SQLite gives its -wal and
    -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


class PostgresStore(Store):
    kind = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, *, connect_timeout: float = 5.0):
        super().__init__(url)
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL audit log needs psycopg: "
                             "pip install 'tiergate[postgres]'") from None
        self._psycopg = psycopg
        self._url = url
        self._timeout = connect_timeout
        self._db = None
        with self._transaction() as cursor:
            # One creator at a time: replicas starting together race on CREATE IF NOT EXISTS.
            cursor.execute("SELECT pg_advisory_xact_lock(7231)")
            for statement in _ddl("BYTEA", "BIGINT"):
                cursor.execute(statement)

    def _connection(self):
        if self._db is None or self._db.closed or self._db.broken:
            try:
                self._db = self._psycopg.connect(self._url, autocommit=True,
                                                 connect_timeout=max(1, int(self._timeout)))
            except self._psycopg.Error as problem:
                self._db = None
                raise StoreError(f"audit log {_redacted(self._url)}: {problem}") from None
        return self._db

    def _execute(self, sql: str, params: Sequence = ()):
        try:
            return self._connection().execute(self._sql(sql), params)
        except self._psycopg.Error as problem:
            raise StoreError(f"audit log {_redacted(self._url)}: {problem}") from None

    @contextmanager
    def _transaction(self):
        try:
            db = self._connection()
            with db.transaction():
                with db.cursor() as cursor:
                    yield cursor
        except self._psycopg.Error as problem:
            raise StoreError(f"audit log {_redacted(self._url)}: {problem}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _redacted(url: str) -> str:
    """A URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def open_store(target: str | Path, *, create: bool = True, fsync: bool = False) -> Store:
    """The store at `target`: a postgresql:// URL, or a SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    return SQLiteStore(text, create=create, fsync=fsync)
