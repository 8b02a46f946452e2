"""Where audit records live: SQLite (one file, WAL) or PostgreSQL (one database, many replicas).

Both keep the same tables:

    audit_records      the log: one row per record, its bytes and leaf hash (and its time)
    audit_index        the columns `audit query` searches, one row per record, indexed
    audit_rules        (chain, seq, rule_id) for every rule that decided a record
    audit_checkpoints  the signed checkpoints, with the Merkle frontier at each (to resume a chain)
    audit_prunes       what was pruned, and when

Why two tables for one record: an answer waits for its record's commit, and a commit that also
updates eight indexes writes several times the pages. So the writer commits `audit_records`
(the log) before answering, and adds the index rows of many records at once a moment later
(log.py). A record is durable once it is answered, and searchable within a second. A server
that restarts indexes whatever its chain left unindexed.

A chain is written by one process only; any number of readers query. A pruned record keeps its
sequence number, time and leaf hash (so the tree and every checkpoint still verify) and loses its
bytes, its index row and its rules.

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

RECORD_COLUMNS = ("chain", "seq", "time_us", "body", "leaf")
INDEX_COLUMNS = ("chain", "seq", "time_us", "decision_id", "outcome", "subject", "org",
                 "dataset", "owner", "grant_id")
# Query filters: option name -> audit_index column.
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
class StoredRecord:
    chain: str
    seq: int
    time_us: int
    body: bytes | None  # None once pruned
    leaf: bytes


@dataclass(frozen=True)
class IndexRow:
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


@dataclass(frozen=True)
class Found:
    """A record found by a query: where it is, its bytes, and its index columns."""

    chain: str
    seq: int
    body: bytes
    index: IndexRow


def _ddl(blob: str, big: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS audit_records (
            chain TEXT NOT NULL, seq {big} NOT NULL, time_us {big} NOT NULL, body {blob},
            leaf {blob} NOT NULL, PRIMARY KEY (chain, seq))""",
        f"""CREATE TABLE IF NOT EXISTS audit_index (
            chain TEXT NOT NULL, seq {big} NOT NULL, time_us {big} NOT NULL,
            decision_id TEXT, outcome TEXT, subject TEXT, org TEXT, dataset TEXT, owner TEXT,
            grant_id TEXT, PRIMARY KEY (chain, seq))""",
        f"""CREATE TABLE IF NOT EXISTS audit_rules (
            chain TEXT NOT NULL, seq {big} NOT NULL, rule_id TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS audit_rules_by_rule ON audit_rules (rule_id, chain, seq)",
        f"""CREATE TABLE IF NOT EXISTS audit_checkpoints (
            chain TEXT NOT NULL, size {big} NOT NULL, time_us {big} NOT NULL, note TEXT NOT NULL,
            frontier {blob} NOT NULL, PRIMARY KEY (chain, size))""",
        f"""CREATE TABLE IF NOT EXISTS audit_prunes (
            chain TEXT NOT NULL, below_seq {big} NOT NULL, before_us {big} NOT NULL,
            at_us {big} NOT NULL)""",
        *(f"CREATE INDEX IF NOT EXISTS {name} ON audit_index ({columns})"
          for name, columns in _INDEXES),
    ]


def _bytes(value) -> bytes | None:
    # An edit made with SQL text functions stores text where bytes were: read it as its bytes.
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _index_row(values) -> IndexRow:
    chain, seq, time_us, *rest = values
    return IndexRow(chain, int(seq), int(time_us), *rest)


class Store:
    """The SQL both back ends share; subclasses connect and say how parameters are written."""

    placeholder = "?"
    kind = "?"

    def __init__(self, target: str):
        self.target = target

    # -- subclass hooks
    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _transaction(self):
        raise NotImplementedError
        yield

    def _execute(self, sql: str, params: Sequence = ()):
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _insert(self, table: str, columns: Sequence[str]) -> str:
        return self._sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                         f"({', '.join('?' * len(columns))})")

    # -- writing (the chain's one writer)
    def append(self, records: list[tuple]) -> None:
        """Insert records (tuples in RECORD_COLUMNS order) in one transaction: all or none."""
        with self._transaction() as cursor:
            cursor.executemany(self._insert("audit_records", RECORD_COLUMNS), records)

    def add_index(self, rows: list[tuple], rules: list[tuple]) -> None:
        """Insert index rows (INDEX_COLUMNS order) and (chain, seq, rule_id) rows."""
        with self._transaction() as cursor:
            cursor.executemany(self._insert("audit_index", INDEX_COLUMNS), rows)
            if rules:
                cursor.executemany(self._insert("audit_rules", ("chain", "seq", "rule_id")),
                                   rules)

    def add_checkpoint(self, c: StoredCheckpoint) -> None:
        with self._transaction() as cursor:
            cursor.execute(self._sql(
                "INSERT INTO audit_checkpoints (chain, size, time_us, note, frontier) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain, size) DO NOTHING"),
                (c.chain, c.size, c.time_us, c.note, c.frontier))

    def probe(self) -> None:
        """Raise StoreError unless the store takes a write transaction now."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("DELETE FROM audit_prunes WHERE chain = ?"), ("",))

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

    def indexed_size(self, chain: str) -> int:
        """1 + the highest sequence number of `chain` in the index."""
        row = self._execute("SELECT MAX(seq) FROM audit_index WHERE chain = ?",
                            (chain,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def leaves(self, chain: str, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        cursor = self._execute("SELECT seq, leaf FROM audit_records WHERE chain = ? AND seq >= ? "
                               "AND seq < ? ORDER BY seq", (chain, start, end))
        for seq, leaf in cursor:
            yield int(seq), _bytes(leaf)

    def records(self, chain: str, start: int = 0) -> Iterator[StoredRecord]:
        cursor = self._execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records "
                               "WHERE chain = ? AND seq >= ? ORDER BY seq", (chain, start))
        for chain_, seq, time_us, body, leaf in cursor:
            yield StoredRecord(chain_, int(seq), int(time_us), _bytes(body), _bytes(leaf))

    def index_rows(self, chain: str) -> Iterator[IndexRow]:
        cursor = self._execute(f"SELECT {', '.join(INDEX_COLUMNS)} FROM audit_index "
                               "WHERE chain = ? ORDER BY seq", (chain,))
        for values in cursor:
            yield _index_row(values)

    def rules_of(self, chain: str, start: int = 0) -> Iterator[tuple[int, str]]:
        cursor = self._execute("SELECT seq, rule_id FROM audit_rules WHERE chain = ? AND seq >= ? "
                               "ORDER BY seq, rule_id", (chain, start))
        for seq, rule in cursor:
            yield int(seq), rule

    def checkpoints(self, chain: str) -> list[StoredCheckpoint]:
        rows = self._execute("SELECT chain, size, time_us, note, frontier FROM audit_checkpoints "
                             "WHERE chain = ? ORDER BY size", (chain,)).fetchall()
        return [StoredCheckpoint(r[0], int(r[1]), int(r[2]), r[3], _bytes(r[4])) for r in rows]

    def latest_checkpoint(self, chain: str) -> StoredCheckpoint | None:
        row = self._execute("SELECT chain, size, time_us, note, frontier FROM audit_checkpoints "
                            "WHERE chain = ? ORDER BY size DESC LIMIT 1", (chain,)).fetchone()
        return None if row is None else StoredCheckpoint(row[0], int(row[1]), int(row[2]),
                                                          row[3], _bytes(row[4]))

    def find(self, decision_id: str) -> list[Found]:
        return self.query(filters={"decision_id": decision_id})

    def query(self, *, filters: dict[str, str], rule: str | None = None,
              since_us: int | None = None, until_us: int | None = None,
              limit: int | None = None, after: tuple[str, int] | None = None) -> list[Found]:
        """Records matching every filter, oldest first (by time, then chain and seq); with
        `after` (chain, seq), only those that come after that record in this order (paging)."""
        where, params = ["r.body IS NOT NULL"], []
        if after is not None:
            row = self._execute("SELECT time_us FROM audit_records WHERE chain = ? AND seq = ?",
                                after).fetchone()
            if row is None:
                return []
            chain, seq = after
            where.append("(i.time_us > ? OR (i.time_us = ? AND (i.chain > ? OR "
                         "(i.chain = ? AND i.seq > ?))))")
            params += [int(row[0]), int(row[0]), chain, chain, seq]
        for name, value in filters.items():
            where.append(f"i.{FILTERS[name]} = ?")
            params.append(value)
        if rule is not None:
            where.append("EXISTS (SELECT 1 FROM audit_rules u WHERE u.rule_id = ? AND "
                         "u.chain = i.chain AND u.seq = i.seq)")
            params.append(rule)
        if since_us is not None:
            where.append("i.time_us >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("i.time_us < ?")
            params.append(until_us)
        columns = ", ".join(f"i.{c}" for c in INDEX_COLUMNS)
        sql = (f"SELECT {columns}, r.body FROM audit_index i JOIN audit_records r "
               f"ON r.chain = i.chain AND r.seq = i.seq WHERE {' AND '.join(where)} "
               "ORDER BY i.time_us, i.chain, i.seq")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for values in self._execute(self._sql(sql), params):
            index = _index_row(values[:-1])
            out.append(Found(index.chain, index.seq, _bytes(values[-1]), index))
        return out

    def after(self, chain: str | None, positions: dict[str, int],
              limit: int = 1000) -> list[StoredRecord]:
        """Records past `positions` (chain -> next seq wanted), for streaming new records."""
        out: list[StoredRecord] = []
        for name in ([chain] if chain else self.chains()):
            cursor = self._execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records "
                                   "WHERE chain = ? AND seq >= ? ORDER BY seq LIMIT ?",
                                   (name, positions.get(name, 0), limit))
            out.extend(StoredRecord(c, int(q), int(t), _bytes(b), _bytes(leaf))
                       for c, q, t, b, leaf in cursor)
        return out

    # -- pruning
    def prune(self, chain: str, below_seq: int, before_us: int, at_us: int) -> int:
        """Drop the bytes, index row and rules of records [0, below_seq) of `chain`."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("UPDATE audit_records SET body = NULL WHERE chain = ? "
                                     "AND seq < ? AND body IS NOT NULL"), (chain, below_seq))
            count = cursor.rowcount
            for table in ("audit_index", "audit_rules"):
                cursor.execute(self._sql(f"DELETE FROM {table} WHERE chain = ? AND seq < ?"),
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

    def pruned_below(self, chain: str) -> int:
        row = self._execute("SELECT MAX(below_seq) FROM audit_prunes WHERE chain = ?",
                            (chain,)).fetchone()
        return 0 if row[0] is None else int(row[0])

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


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, create: bool = True, fsync: bool = False,
                 busy_timeout: float = 2.0):
        super().__init__(str(path))
        self.path = Path(path)
        self.fsync = fsync
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
            self._discard()
            raise StoreError(f"audit log {_redacted(self._url)}: {problem}") from None

    @contextmanager
    def _transaction(self):
        try:
            db = self._connection()
            with db.transaction():
                with db.cursor() as cursor:
                    yield cursor
        except self._psycopg.Error as problem:
            self._discard()
            raise StoreError(f"audit log {_redacted(self._url)}: {problem}") from None

    def _discard(self) -> None:
        """Drop the connection after an error: the next use connects afresh (a connection that
        failed mid-statement may be left unusable without saying so)."""
        if self._db is not None:
            try:
                self._db.close()
            except Exception:  # noqa: BLE001 — it is being thrown away
                pass
            self._db = None

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
