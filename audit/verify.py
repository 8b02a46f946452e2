"""Check a whole audit log: every record in place, unchanged, and every checkpoint still true.

What is checked, per chain, in one pass over its records in sequence order:

- the sequence has no gap (a deleted record) and each record says it is the record at its place
  (a record moved, inserted or renumbered says otherwise);
- each record's bytes still hash to its stored leaf hash, parse as an AuditRecord, and agree with
  the indexed columns that `audit query` searches (a changed record, or a changed column);
- each stored checkpoint's root is the root of the records up to its size (a change that was
  covered up by recomputing hashes), and it is signed by the verifier key, if one is given;
- the log still has every record its latest checkpoint covers (a truncated log); checkpoints
  kept outside the database (`--checkpoint FILE`, the ones handed to a regulator) are checked
  the same way, which is how records removed after the last stored checkpoint are caught.

A finding names the chain, the record number and, where it can be read, the decision id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .log import ORIGIN_PREFIX
from tiergate.engine.timeutil import format_instant

from .merkle import Frontier, leaf_hash
from .note import NoteError, Verifier, is_signed_by, parse_checkpoint, signatures
from .record import index_columns, parse_record
from .store import IndexRow, Store, StoredRecord

_STOP_AFTER = 100  # findings per chain before verify stops listing them


@dataclass
class Finding:
    chain: str
    seq: int | None
    decision_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"chain {self.chain}"
        if self.seq is not None:
            where += f", record {self.seq}"
        if self.decision_id:
            where += f" (decision {self.decision_id})"
        return f"{where}: {self.message}"


@dataclass
class ChainReport:
    chain: str
    records: int = 0
    pruned: int = 0
    checkpoints: int = 0
    signed_checkpoints: int = 0
    unsigned_checkpoints: int = 0  # written by a server without audit_key
    unindexed: int = 0  # committed, not yet in the query index
    findings: list[Finding] = field(default_factory=list)


def verify_chain(store: Store, chain: str, *, verifier: Verifier | None = None,
                 outside: list[str] = ()) -> ChainReport:
    report = ChainReport(chain)
    findings = report.findings

    def find(seq, decision_id, message):
        if len(findings) < _STOP_AFTER:
            findings.append(Finding(chain, seq, decision_id, message))

    checkpoints = []  # (size, note, where it came from)
    for stored in store.checkpoints(chain):
        checkpoints.append((stored.size, stored.note, "stored checkpoint"))
    for note in outside:
        try:
            c = parse_checkpoint(note)
        except NoteError as problem:
            find(None, None, f"a checkpoint given with --checkpoint cannot be read: {problem}")
            continue
        if c.origin == ORIGIN_PREFIX + chain:
            checkpoints.append((c.size, note, "checkpoint given with --checkpoint"))
    checkpoints.sort(key=lambda item: item[0])
    report.checkpoints = len(checkpoints)
    pending = list(checkpoints)
    last_good = 0  # the largest checkpoint size whose root matched

    def check_roots(frontier: Frontier) -> None:
        while pending and pending[0][0] == frontier.size:
            size, note, origin = pending.pop(0)
            check_checkpoint(size, note, origin, frontier.root())

    def check_checkpoint(size, note, origin, root) -> None:
        nonlocal last_good
        try:
            c = parse_checkpoint(note)
        except NoteError as problem:
            find(None, None, f"{origin} at size {size} cannot be read: {problem}")
            return
        try:
            unsigned = not signatures(note)
        except NoteError:
            unsigned = False
        report.unsigned_checkpoints += unsigned
        if verifier is not None:
            if is_signed_by(note, verifier):
                report.signed_checkpoints += 1
            else:
                find(None, None, f"{origin} at size {size} ({c.time}) is not signed by "
                                 f"{verifier.name}: it was forged or changed")
        if c.root != root:
            find(None, None, f"{origin} at size {size} ({c.time}) does not match the records: "
                             f"a record between {last_good} and {size - 1} was changed, "
                             "inserted or removed and the hashes were rewritten to hide it")
        else:
            last_good = size

    frontier = Frontier()
    rules = _Cursor(store.rules_of(chain))
    index = _Cursor((row.seq, row) for row in store.index_rows(chain))
    indexed_size = store.indexed_size(chain)
    check_roots(frontier)
    for row in store.records(chain):
        expected = frontier.size
        if row.seq != expected:
            find(expected, None, f"records {expected} to {row.seq - 1} are missing (deleted); "
                                 f"the next record stored is {row.seq}")
            # Continue with the tree as stored, so later findings still say something.
            while frontier.size < row.seq:
                frontier.append(b"\0" * 32)
        report.records += 1
        if row.body is None:
            report.pruned += 1  # its bytes are gone; its stored hash stands in for them
            frontier.append(row.leaf)
        else:
            indexed = index.of(row.seq)
            if not indexed and row.seq >= indexed_size:
                report.unindexed += 1  # written in the last moment, or by a killed server
            elif not indexed:
                find(row.seq, None, "the record is missing from the query index (its index row "
                                    "was deleted): `audit query` would not find it")
            _check_row(row, indexed[0] if indexed else None, rules, find)
            frontier.append(leaf_hash(row.body))
        check_roots(frontier)
    size = frontier.size
    for checkpoint_size, _note, origin in pending:
        find(None, None, f"the log is truncated: a {origin} covers {checkpoint_size} records, "
                         f"only {size} are stored")
    return report


def _check_row(row: StoredRecord, indexed: IndexRow | None, rules: "_Cursor", find) -> None:
    try:
        record = parse_record(row.body)
    except ValueError:
        find(row.seq, None, "the record is not a valid audit record (changed)")
        return
    if leaf_hash(row.body) != row.leaf:
        find(row.seq, record.decision_id, "the record was changed after it was written "
                                          "(its bytes no longer match its hash)")
    if record.seq != row.seq or record.chain != row.chain:
        find(row.seq, record.decision_id,
             f"the record says it is record {record.seq} of chain {record.chain}: records were "
             "moved, inserted or renumbered")
    if format_instant(row.time_us) != record.time:
        find(row.seq, record.decision_id, f"the stored time column says "
             f"{format_instant(row.time_us)}, the record says {record.time}")
    if indexed is None:
        return
    columns = {"time_us": row.time_us, **index_columns(record)}
    for name, value in columns.items():
        if getattr(indexed, name) != value:
            find(row.seq, record.decision_id,
                 f"the indexed column {name} says {getattr(indexed, name)!r}, the record says "
                 f"{value!r}: `audit query` would find the wrong records")
    expected_rules = sorted(r.rule_id for r in record.reasons)
    if sorted(rules.of(row.seq)) != expected_rules:
        find(row.seq, record.decision_id, "the rule index does not match the record's reasons")


class _Cursor:
    """Walks (seq, item) pairs in sequence order alongside the records."""

    def __init__(self, pairs):
        self._pairs = iter(pairs)
        self._next = next(self._pairs, None)

    def of(self, seq: int) -> list:
        out = []
        while self._next is not None and self._next[0] < seq:
            self._next = next(self._pairs, None)
        while self._next is not None and self._next[0] == seq:
            out.append(self._next[1])
            self._next = next(self._pairs, None)
        return out


def verify_store(store: Store, *, verifier: Verifier | None = None,
                 outside: list[str] = (), chain: str | None = None) -> list[ChainReport]:
    chains = [chain] if chain else store.chains()
    for note in outside:
        try:
            origin = parse_checkpoint(note).origin
        except NoteError:
            continue
        name = origin.removeprefix(ORIGIN_PREFIX)
        if name not in chains and chain is None:
            chains.append(name)
    return [verify_chain(store, name, verifier=verifier, outside=outside) for name in chains]
