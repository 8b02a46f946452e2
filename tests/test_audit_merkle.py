"""The audit log's Merkle tree against RFC 9162's definitions, and its checkpoints' signatures."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from tiergate.audit.merkle import (EMPTY_ROOT, Frontier, ProofError, Tree, leaf_hash,
                                   verify_consistency, verify_inclusion)
from tiergate.audit.note import (NoteError, checkpoint_body, generate, is_signed_by,
                                 parse_checkpoint, read_signer, read_verifier, sign_checkpoint)


def mth(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 §2.1.1 writes it: the oracle, independent of the tree under test."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


records = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(records)
def test_frontier_and_tree_roots_are_the_rfc_root_at_every_size(data):
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    hashes = [leaf_hash(d) for d in data]
    tree = Tree(hashes)
    for size in range(1, len(data) + 1):
        frontier.append(hashes[size - 1])
        expected = mth(data[:size])
        assert frontier.root() == expected
        assert tree.root(size) == expected
        resumed = Frontier.from_bytes(frontier.size, frontier.to_bytes())
        assert resumed.root() == expected


@settings(max_examples=150, deadline=None)
@given(records, st.data())
def test_inclusion_proofs_verify_and_a_changed_record_or_index_does_not(data, draw):
    hashes = [leaf_hash(d) for d in data]
    tree = Tree(hashes)
    size = draw.draw(st.integers(1, len(data)))
    index = draw.draw(st.integers(0, size - 1))
    root = mth(data[:size])
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(hashes[index], index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(data[index] + b"x"), index, size, proof, root)
    if size > 1:
        other = (index + 1) % size
        if hashes[other] != hashes[index]:
            with pytest.raises(ProofError):
                verify_inclusion(hashes[index], other, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(hashes[index], index, size, proof[:-1], root)


@settings(max_examples=150, deadline=None)
@given(records, st.data())
def test_consistency_proofs_verify_and_a_rewritten_history_does_not(data, draw):
    hashes = [leaf_hash(d) for d in data]
    tree = Tree(hashes)
    new = draw.draw(st.integers(1, len(data)))
    old = draw.draw(st.integers(1, new))
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, mth(data[:old]), mth(data[:new]), proof)
    changed = list(data)
    changed[draw.draw(st.integers(0, old - 1))] += b"!"
    with pytest.raises(ProofError):
        verify_consistency(old, new, mth(changed[:old]), mth(data[:new]), proof)


def test_checkpoints_are_c2sp_signed_notes_checked_with_the_verifier_key():
    signer_text, verifier_text = generate("tiergate-audit")
    signer, verifier = read_signer(signer_text), read_verifier(verifier_text)
    assert verifier_text.startswith("tiergate-audit+") and signer_text.startswith("PRIVATE+KEY+")
    body = checkpoint_body("tiergate.audit/gw-1", 5, mth([b"a"] * 5), "2026-12-01T00:00:00Z")
    note = sign_checkpoint(body, signer)
    lines = note.split("\n")
    assert lines[:3] == ["tiergate.audit/gw-1", "5", body.split("\n")[2]]
    assert lines[4] == "" and lines[5].startswith("\u2014 tiergate-audit ")
    assert is_signed_by(note, verifier)
    parsed = parse_checkpoint(note)
    assert (parsed.size, parsed.time, parsed.origin) == (5, "2026-12-01T00:00:00Z",
                                                         "tiergate.audit/gw-1")
    assert not is_signed_by(note.replace("\n5\n", "\n6\n"), verifier)
    assert not is_signed_by(note, read_verifier(generate("tiergate-audit")[1]))
    assert not is_signed_by(sign_checkpoint(body, None), verifier)
    with pytest.raises(NoteError):
        read_verifier(verifier_text.replace("tiergate-audit+", "other+"))
