"""The audit log a server writes: group commit, fail closed, signed checkpoints.

INVARIANT: an answer is sent only after its record is committed: for SQLite, appended to the
chain's journal (journal.py), which the writer moves into the database in bulk a moment later;
for PostgreSQL, committed to the database. A handler hands its records to
`AuditLog.record` and waits; whoever commits next (the first handler to find no commit under
way, or the writer thread) takes everything handed in meanwhile, gives each record its place in
the chain, and commits the lot in one transaction (group commit: one commit for many concurrent
calls, not one each). If the commit fails, every waiting handler gets
`AuditUnavailable` and answers with an error, never an unrecorded decision; while the store keeps
failing, new calls fail at once and `on_health(False)` tells the health service, until a probe
write succeeds again.

The records' query index is written after the answers, many records at a time (store.py says
why), so a record is searchable within `_INDEX_DELAY` seconds of being answered; a writer that
starts indexes whatever its chain left unindexed.

Every `checkpoint_interval` seconds (and when the log closes) the writer stores a checkpoint of the
chain: its size and Merkle root, signed with the operator's key when one is configured.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from tiergate.engine.timeutil import format_instant, now_micros

from .journal import Journal, journal_path, read_frames
from .merkle import Frontier, leaf_hash
from .note import Signer, checkpoint_body, sign_checkpoint
from .record import Entry, index_columns, parse_record
from .store import Store, StoreError, StoredCheckpoint

log = logging.getLogger("tiergate.audit")

ORIGIN_PREFIX = "tiergate.audit/"
_PROBE_EVERY = 0.5  # seconds between probe writes while the store is failing
# Index rows wait at most this long, or until this many have gathered (store.py: why).
_INDEX_DELAY = 0.2
_INDEX_BATCH = 5000


class AuditUnavailable(RuntimeError):
    """The record of an answer could not be committed: the answer must not be given."""


class _Ticket:
    """One group commit: whether it has ended, and why it failed if it did."""

    __slots__ = ("finished", "error")

    def __init__(self) -> None:
        self.finished = False
        self.error: str | None = None


class AuditLog:
    """One chain of one store, written by one thread. Thread-safe `record`."""

    def __init__(self, store_factory: Callable[[], Store], chain: str, *,
                 signer: Signer | None = None, checkpoint_interval: float = 10.0,
                 wait_seconds: float = 5.0, max_pending: int = 100_000,
                 on_health: Callable[[bool], None] | None = None,
                 clock: Callable[[], int] = now_micros):
        self.chain = chain
        self.origin = ORIGIN_PREFIX + chain
        self._chain_json = json.dumps(chain, ensure_ascii=False)
        self._store_factory = store_factory
        self._signer = signer
        self._interval = checkpoint_interval
        self._wait = wait_seconds
        self._max_pending = max_pending
        self._on_health = on_health or (lambda ok: None)
        self._clock = clock
        mutex = threading.Lock()
        self._lock = threading.Condition(mutex)  # the writer thread waits on this one
        self._pending: list[Entry] = []
        self._ticket = _Ticket()
        self._committing = False  # a caller (or the writer) has the turn to commit
        self._turn = threading.Condition(mutex)  # callers wait here for their commit
        # The store is used by one thread at a time: a leading handler or the writer thread.
        self._store_lock = threading.Lock()
        self._closing = False
        self.healthy = True
        self.failure: str | None = None
        self._next_warning = 0.0
        self.committed = 0  # records committed by this process (for metrics and tests)
        self.batches = 0
        self._listeners: list[Callable[[], None]] = []
        self._commit_observers: list[Callable[[float], None]] = []
        # The writer thread opens the store: a SQLite connection belongs to its thread.
        self._store: Store | None = None
        self._frontier: Frontier | None = None
        self._checkpointed_size = -1
        self._journal: Journal | None = None  # SQLite: records are durable here first
        self._unflushed: list[tuple] = []  # journaled records not yet in the database
        self._unindexed: list[tuple] = []  # index rows of committed records
        self._unindexed_rules: list[tuple] = []
        self._flush_due: float | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tiergate-audit", daemon=True)

    def start(self) -> "AuditLog":
        """Open the store and resume the chain; raises StoreError when it cannot be used."""
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        return self

    @property
    def size(self) -> int:
        return self._frontier.size if self._frontier is not None else 0

    @property
    def pending(self) -> int:
        """Records handed in and not yet committed."""
        return len(self._pending)

    def on_commit_timed(self, observer: Callable[[float], None]) -> None:
        """Call `observer(seconds)` with the time of every group commit (metrics)."""
        self._commit_observers.append(observer)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever records reach the database (the Audit service's stream
        wakes on it)."""
        self._listeners.append(listener)

    # -- the handlers' side
    def record(self, entries: list[Entry]) -> None:
        """Commit `entries` (in order) or raise AuditUnavailable. Blocks until committed.

        PERF: there is no hand-off to a writer thread. The first caller to find no commit under
        way commits everything pending (its own records and those of whoever is waiting); the
        others wait for that commit, and when it ends one of those still waiting takes the
        next turn. Handing each record to another thread and back cost two thread switches per
        call, more than the write itself.
        """
        deadline = time.monotonic() + self._wait
        with self._lock:
            if self._closing:
                raise AuditUnavailable("the audit log is closed")
            if not self.healthy:
                raise AuditUnavailable(f"the audit log cannot be written: {self.failure}")
            if len(self._pending) + len(self._unflushed) + len(entries) > self._max_pending:
                raise self._unavailable("the audit log is behind (too many records waiting)")
            ticket = self._ticket
            self._pending.extend(entries)
            while not ticket.finished:
                if not self._committing:
                    self._committing = True  # this caller's turn
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._unavailable(
                        f"the audit log did not commit within {self._wait:g}s")
                self._turn.wait(remaining)
        if not ticket.finished:
            self._take_turn()
        if ticket.error is not None:
            raise AuditUnavailable(f"the audit log cannot be written: {ticket.error}")

    def _unavailable(self, message: str) -> AuditUnavailable:
        """The error for a call refused while the log is healthy (slow, or behind): logged, at
        most once every 10 s, since nothing else would say why calls fail."""
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + 10
            log.warning("audit log: refusing calls: %s", message)
        return AuditUnavailable(message)

    def _take_turn(self) -> None:
        """Commit everything pending (the caller set _committing), then pass the turn on."""
        with self._lock:
            batch, ticket = self._pending, self._ticket
            self._pending, self._ticket = [], _Ticket()
        try:
            with self._store_lock:
                self._commit(batch, ticket)
        finally:
            with self._lock:
                ticket.finished = True
                self._committing = False
                self._turn.notify_all()

    # -- the writer thread
    def _run(self) -> None:
        try:
            self._store = self._store_factory()
            if self._store.kind == "sqlite":
                path = journal_path(self._store.path, self.chain)
                self._move_journal(path)
                self._journal = Journal(path, fsync=self._store.fsync)
            self._frontier = self._store.resume(self.chain)
            latest = self._store.latest_checkpoint(self.chain)
            self._checkpointed_size = latest.size if latest is not None else -1
            self._index_leftovers()
        except BaseException as problem:  # noqa: BLE001 — reported by start()
            self._start_error = problem
            self._started.set()
            return
        self._started.set()
        next_checkpoint = time.monotonic() + self._interval
        while True:
            with self._lock:
                while (not self._pending or self._committing) and not self._closing:
                    due = next_checkpoint if self._flush_due is None else min(
                        next_checkpoint, self._flush_due)
                    timeout = (_PROBE_EVERY if not self.healthy
                               else max(0.0, due - time.monotonic()))
                    if not self._lock.wait(timeout):
                        break
                # Records nobody is waiting to commit (their callers timed out), or left at
                # close: the writer takes the turn.
                take = bool(self._pending) and not self._committing
                if take:
                    self._committing = True
                closing = self._closing
            if take:
                self._take_turn()
            with self._store_lock:
                if not take and not self.healthy:
                    self._probe()
                checkpoint_due = closing or time.monotonic() >= next_checkpoint
                if self._unindexed and (checkpoint_due or len(self._unindexed) >= _INDEX_BATCH
                                        or time.monotonic() >= self._flush_due):
                    self._flush()
                if checkpoint_due:
                    if self.healthy and not self._unflushed:
                        self._checkpoint()
                    next_checkpoint = time.monotonic() + self._interval
            if closing:
                with self._lock:
                    if not self._pending and not self._committing:
                        break

    def _commit(self, batch: list[Entry], ticket: _Ticket) -> None:
        chain, chain_json = self.chain, self._chain_json
        rows, index, rules = [], [], []
        for seq, entry in enumerate(batch, start=self._frontier.size):
            body = entry.body(chain_json, seq)
            rows.append((chain, seq, entry.time_us, body, leaf_hash(body)))
            d = entry.decided
            index.append((chain, seq, entry.time_us, entry.decision_id, d.outcome, d.subject,
                          d.org, d.dataset, d.owner, d.grant_id))
            rules.extend((chain, seq, rule) for rule in d.rules)
        began = time.perf_counter()
        try:
            if self._journal is not None:
                self._journal.append(rows)
            else:
                self._store.append(rows)
        except (StoreError, OSError) as problem:
            ticket.error = str(problem)
            self._failed(str(problem))
            return
        for observer in self._commit_observers:
            observer(time.perf_counter() - began)
        append = self._frontier.append  # only once the records are durable
        for row in rows:
            append(row[4])
        self.committed += len(batch)
        self.batches += 1
        if not self._unindexed:
            self._flush_due = time.monotonic() + _INDEX_DELAY
        if self._journal is not None:
            self._unflushed.extend(rows)
        self._unindexed.extend(index)
        self._unindexed_rules.extend(rules)
        if self._journal is None:
            # A commit to the database proves it works again; one to the journal does not.
            if not self.healthy:
                self._recovered()
            self._announce()

    def _flush(self) -> bool:
        """Move journaled records into the database, then index what was committed."""
        if self._unflushed:
            try:
                self._store.append(self._unflushed)
            except StoreError as problem:
                # SECURITY: the journal holds them, but a log the database cannot take is a
                # log that cannot be written: stop answering until it can (fail closed).
                self._failed(str(problem))
                self._flush_due = time.monotonic() + _PROBE_EVERY
                return False
            self._journal.clear()
            self._unflushed = []
            self._announce()
        try:
            self._store.add_index(self._unindexed, self._unindexed_rules)
        except StoreError as problem:
            # The records are in the log; only finding them waits. Try again shortly.
            log.error("audit log: indexing %d records failed, will retry: %s",
                      len(self._unindexed), problem)
            self._flush_due = time.monotonic() + _PROBE_EVERY
            return True
        self._unindexed, self._unindexed_rules, self._flush_due = [], [], None
        return True

    def _announce(self) -> None:
        for listener in self._listeners:
            listener()

    def _move_journal(self, path) -> None:
        """Put the records a previous writer of this chain journaled, and the database lacks,
        into the database (a server killed before it moved them)."""
        size = self._store.size(self.chain)
        frames = [f for f in read_frames(path) if f[0] >= size]
        for expected, (seq, _, _) in enumerate(frames, start=size):
            if seq != expected:
                raise StoreError(f"the journal {path} does not continue chain {self.chain} "
                                 f"(record {expected} is missing); run `tiergate audit verify`")
        if frames:
            self._store.append([(self.chain, seq, time_us, body, leaf_hash(body))
                                for seq, time_us, body in frames])
            log.warning("audit log: moved %d records of chain %s from its journal into the "
                        "database", len(frames), self.chain)
        if path.exists():
            path.unlink()

    def _index_leftovers(self) -> None:
        """Index the records a previous writer of this chain committed but did not index."""
        start = max(self._store.indexed_size(self.chain), self._store.pruned_below(self.chain))
        rows, rules = [], []
        for stored in self._store.records(self.chain, start):
            if stored.body is None:
                continue
            record = parse_record(stored.body)
            columns = index_columns(record)
            rows.append((self.chain, stored.seq, stored.time_us, *columns.values()))
            rules.extend((self.chain, stored.seq, r.rule_id) for r in record.reasons)
        if rows:
            self._store.add_index(rows, rules)
            log.info("audit log: indexed %d records chain %s had left unindexed", len(rows),
                     self.chain)

    def _probe(self) -> None:
        if self._unflushed:
            if self._flush():
                self._recovered()
            return
        try:
            self._store.probe()
        except StoreError as problem:
            self.failure = str(problem)
            return
        self._recovered()

    def _failed(self, message: str) -> None:
        with self._lock:
            was_healthy, self.healthy, self.failure = self.healthy, False, message
        if was_healthy:
            log.error("audit log cannot be written; refusing decisions until it can: %s", message)
            self._on_health(False)

    def _recovered(self) -> None:
        with self._lock:
            self.healthy, self.failure = True, None
        log.warning("audit log writable again; serving decisions")
        self._on_health(True)

    def _checkpoint(self) -> None:
        frontier = self._frontier
        if frontier.size == self._checkpointed_size:
            return
        now = self._clock()
        body = checkpoint_body(self.origin, frontier.size, frontier.root(), format_instant(now))
        stored = StoredCheckpoint(self.chain, frontier.size, now,
                                  sign_checkpoint(body, self._signer), frontier.to_bytes())
        try:
            self._store.add_checkpoint(stored)
        except StoreError as problem:
            self._failed(str(problem))
            return
        self._checkpointed_size = frontier.size

    def close(self) -> None:
        """Commit what is waiting, write a last checkpoint, stop the writer. Closing twice is
        closing once."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout=30)
        if self._journal is not None:
            self._journal.close()
        if self._store is not None:
            self._store.close()
