"""The Merkle tree over the audit log, as Certificate Transparency defines it (RFC 9162 §2.1).

A leaf's hash is SHA-256(0x00 || record bytes), an interior node's SHA-256(0x01 || left ||
right), and the tree over n leaves splits at the largest power of two below n. Inclusion and
consistency proofs, and their verification, follow the RFC's algorithms (§2.1.3, §2.1.4), so any
CT-literate verifier can check what `tiergate audit` hands out.

Two shapes of tree are used: a `Frontier` (the roots of the perfect subtrees of the log so far,
O(log n) hashes) that the writer extends record by record, and a `Tree` of every level, built
from stored leaf hashes, that answers proofs.
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class ProofError(ValueError):
    """A proof does not prove what it claims."""


class Frontier:
    """The compact form of a log: enough to extend it and to compute its root.

    `hashes[i]` is the root of a perfect subtree; their sizes are the binary digits of `size`,
    largest (leftmost) first.
    """

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None):
        if bin(size).count("1") != len(hashes or []):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes, "
                             f"not {len(hashes or [])}")
        self.size = size
        self.hashes = list(hashes or [])

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        size = self.size
        # Each trailing one bit of the old size is a subtree the new leaf completes.
        while size & 1:
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> "Frontier":
        return cls(size, [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])


class Tree:
    """Every level of the tree over `leaves` (leaf hashes), for proofs. Memory: ~64 bytes a leaf.

    Levels are built by pairing nodes and carrying an unpaired last node up unchanged, which
    gives exactly the RFC's tree (the split at the largest power of two).
    """

    def __init__(self, leaves: list[bytes]):
        self.size = len(leaves)
        self.levels = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            self.levels.append(up)
            level = up

    def root(self, size: int | None = None) -> bytes:
        return self.subtree(0, self.size if size is None else size)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC's proofs ask for."""
        count = end - start
        if count <= 0:
            return EMPTY_ROOT
        if count & (count - 1) == 0 and start % count == 0 and end <= self.size:
            height = count.bit_length() - 1
            return self.levels[height][start >> height]
        split = 1 << ((count - 1).bit_length() - 1)  # the largest power of two below count
        return node_hash(self.subtree(start, start + split), self.subtree(start + split, end))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), nearest the leaf first."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        count = end - start
        if count == 1:
            return []
        split = 1 << ((count - 1).bit_length() - 1)
        if index < start + split:
            return self._path(index, start, start + split) + [self.subtree(start + split, end)]
        return self._path(index, start + split, end) + [self.subtree(start, start + split)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) (RFC 9162 §2.1.4.1)."""
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return self._subproof(m, start, start + k, complete) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError unless `leaf` is entry `index` of the tree `root`."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the record is not in the tree the checkpoint signs "
                         "(the proof leads to another root)")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError unless tree `new_root` extends tree `old_root`."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency between sizes {old_size} and {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("two checkpoints of the same size have different roots: the log "
                             "was forked or rewritten")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        proof = [old_root] + list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than it can be")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than it must be")
    if fr != old_root:
        raise ProofError("the proof does not lead to the earlier checkpoint's root: the later "
                         "log does not extend it")
    if sr != new_root:
        raise ProofError("the proof does not lead to the later checkpoint's root")
