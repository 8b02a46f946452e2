"""Tiergate's audit log: every answer recorded, tamper-evident, kept at least three years.

    record.py   the record (one per answer) and how the server builds it
    store.py    SQLite or PostgreSQL tables
    log.py      the server's writer: group commit, fail closed, checkpoints
    merkle.py   RFC 9162 tree, proofs, verification
    note.py     C2SP signed notes and checkpoints, Ed25519 keys
    verify.py   checks a whole log and says where it was changed
    proofs.py   inclusion and consistency proofs, and export segments, as files
"""
