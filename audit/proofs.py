"""Proofs as files someone outside can check with only the log's public key.

Three kinds, each a JSON document with a "type":

    tiergate-inclusion-proof/v1    one record, its index, a checkpoint, the audit path
    tiergate-consistency-proof/v1  two checkpoints of one chain and the proof the later extends
                                   the earlier
    tiergate-audit-export/v1       records for a producing unit or the data operator (福州办法
                                   第二十七条): per chain, a checkpoint and each record with its
                                   audit path, so every record can be checked on its own

`check_document` verifies any of them: the checkpoint signatures with the verifier key, the
record bytes against the leaf hash, and the proofs against the signed roots.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .log import ORIGIN_PREFIX
from .merkle import ProofError, Tree, leaf_hash, verify_consistency, verify_inclusion
from .note import NoteError, Verifier, is_signed_by, parse_checkpoint
from .record import parse_record
from .store import Store, StoredCheckpoint

INCLUSION = "tiergate-inclusion-proof/v1"
CONSISTENCY = "tiergate-consistency-proof/v1"
EXPORT = "tiergate-audit-export/v1"


class ProofUnavailable(LookupError):
    """The log cannot give the proof asked for; the message says why."""


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in items]


def _tree(store: Store, chain: str, size: int) -> Tree:
    leaves = [leaf for _, leaf in store.leaves(chain, 0, size)]
    if len(leaves) != size:
        raise ProofUnavailable(f"chain {chain} has {len(leaves)} records below {size}: the log "
                               "is damaged; run `tiergate audit verify`")
    return Tree(leaves)


def covering_checkpoint(store: Store, chain: str, seq: int) -> StoredCheckpoint:
    latest = store.latest_checkpoint(chain)
    if latest is None or latest.size <= seq:
        raise ProofUnavailable(
            f"record {seq} of chain {chain} is not covered by a checkpoint yet (the server writes "
            "one every checkpoint_interval seconds and when it stops); try again later")
    return latest


def inclusion_document(store: Store, decision_id: str) -> dict:
    rows = store.find(decision_id)
    if not rows:
        raise ProofUnavailable(f"no record with decision id {decision_id!r}")
    if len(rows) > 1:
        raise ProofUnavailable(f"{len(rows)} records carry decision id {decision_id!r}; the log "
                               "is damaged or was written by two servers with one chain name")
    row = rows[0]
    checkpoint = covering_checkpoint(store, row.chain, row.seq)
    tree = _tree(store, row.chain, checkpoint.size)
    return {"type": INCLUSION, "chain": row.chain, "index": row.seq,
            "record": row.body.decode(), "checkpoint": checkpoint.note,
            "proof": _b64(tree.inclusion_proof(row.seq, checkpoint.size))}


def consistency_document(store: Store, chain: str, old_note: str, new_note: str) -> dict:
    old, new = parse_checkpoint(old_note), parse_checkpoint(new_note)
    if old.size > new.size:
        old, new, old_note, new_note = new, old, new_note, old_note
    if old.size == 0:
        raise ProofUnavailable("an empty log is extended by every log; nothing to prove")
    tree = _tree(store, chain, new.size)
    return {"type": CONSISTENCY, "chain": chain, "old": old_note, "new": new_note,
            "proof": _b64(tree.consistency_proof(old.size, new.size))}


def export_document(store: Store, *, owner: str | None, operator: bool,
                    since_us: int | None = None, until_us: int | None = None) -> dict:
    """Every record for `owner` (resource.owner_org_id) or, for the operator, every record, up to
    each chain's latest checkpoint, with the proofs that tie them to it."""
    filters = {} if operator else {"owner": owner}
    segments = []
    for chain in store.chains():
        checkpoint = store.latest_checkpoint(chain)
        if checkpoint is None:
            continue
        rows = [r for r in store.query(filters={**filters, "chain": chain}, since_us=since_us,
                                       until_us=until_us) if r.seq < checkpoint.size]
        if not rows:
            continue
        tree = _tree(store, chain, checkpoint.size)
        segments.append({"chain": chain, "checkpoint": checkpoint.note, "records": [
            {"index": r.seq, "record": r.body.decode(),
             "proof": _b64(tree.inclusion_proof(r.seq, checkpoint.size))} for r in rows]})
    return {"type": EXPORT, "selection": {"owner": owner} if not operator else {"operator": True},
            "segments": segments}


@dataclass
class Checked:
    kind: str
    records: int
    checkpoints: list[str]  # "origin size" of each checkpoint relied on

    def summary(self) -> str:
        return (f"ok: {self.kind}, {self.records} record(s) proved against "
                + ", ".join(self.checkpoints))


def _signed(note: str, verifier: Verifier | None, chain: str | None = None):
    try:
        checkpoint = parse_checkpoint(note)
    except NoteError as problem:
        raise ProofError(f"the checkpoint cannot be read: {problem}") from None
    if chain is not None and checkpoint.origin != ORIGIN_PREFIX + chain:
        raise ProofError(f"the checkpoint is of log {checkpoint.origin!r}, not of chain {chain}")
    if verifier is not None and not is_signed_by(note, verifier):
        raise ProofError(f"the checkpoint ({checkpoint.origin} {checkpoint.size}) is not signed "
                         f"by {verifier.name}")
    return checkpoint


def _hashes(items) -> list[bytes]:
    try:
        return [base64.b64decode(h, validate=True) for h in items]
    except Exception:  # noqa: BLE001 — any undecodable entry is the same finding
        raise ProofError("a proof hash is not base64") from None


def _check_record(text: str, index: int, checkpoint, proof, chain: str) -> None:
    data = text.encode()
    record = parse_record(data)
    if record.seq != index or record.chain != chain:
        raise ProofError(f"the record says it is record {record.seq} of {record.chain}, the "
                         f"proof is for record {index} of {chain}")
    verify_inclusion(leaf_hash(data), index, checkpoint.size, _hashes(proof), checkpoint.root)


def check_document(document: dict, verifier: Verifier | None) -> Checked:
    """Raise ProofError (or ValueError for a malformed document) unless it proves what it says."""
    kind = document.get("type")
    if kind == INCLUSION:
        checkpoint = _signed(document["checkpoint"], verifier, document["chain"])
        _check_record(document["record"], document["index"], checkpoint, document["proof"],
                      document["chain"])
        return Checked(kind, 1, [f"{checkpoint.origin} {checkpoint.size}"])
    if kind == CONSISTENCY:
        old = _signed(document["old"], verifier, document["chain"])
        new = _signed(document["new"], verifier, document["chain"])
        verify_consistency(old.size, new.size, old.root, new.root, _hashes(document["proof"]))
        return Checked(kind, 0, [f"{old.origin} {old.size}", f"{new.origin} {new.size}"])
    if kind == EXPORT:
        records, relied = 0, []
        for segment in document["segments"]:
            checkpoint = _signed(segment["checkpoint"], verifier, segment["chain"])
            for item in segment["records"]:
                _check_record(item["record"], item["index"], checkpoint, item["proof"],
                              segment["chain"])
                records += 1
            relied.append(f"{checkpoint.origin} {checkpoint.size}")
        return Checked(kind, records, relied)
    raise ProofError(f"not a Tiergate proof document (type {kind!r})")
