"""`tiergate audit ...`: read, check and hand out the decision log.

    keygen --name NAME --out FILE     a checkpoint signing key (FILE) and its verifier (FILE.pub)
    verify LOG [--verify-key PUB] [--checkpoint FILE...]
                                      every record in place and unchanged; exit 2 on a finding
    query LOG [--subject ...] [--format jsonl|table]
    prove LOG DECISION_ID             an inclusion proof against the latest checkpoint
    consistency LOG OLD NEW           a later checkpoint extends an earlier one (sizes or files)
    check-proof FILE --verify-key PUB verify any proof or export with only the public key
    export LOG --owner ORG | --operator
    checkpoints LOG [--chain NAME]    the checkpoints, as signed notes
    prune LOG --before TIME           drop records older than the retention period

LOG is the SQLite file or the postgresql:// URL the server writes (audit_log). Exit codes: 0 ok,
1 error (unreadable log, bad arguments), 2 the log or a proof does not verify.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RETENTION_DAYS = 3 * 365 + 1  # 福州办法 第二十七条: at least three years (a leap day included)


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="check, query, prove and export the decision log")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    keygen = commands.add_parser("keygen", help="make a checkpoint signing key")
    keygen.add_argument("--name", default="tiergate-audit",
                        help="the key's name, shown in signatures (default tiergate-audit)")
    keygen.add_argument("--out", required=True, metavar="FILE",
                        help="signing key file (written 0600); the verifier key goes to FILE.pub")
    keygen.set_defaults(run=_keygen)

    def with_log(name: str, help: str):
        sub = commands.add_parser(name, help=help)
        sub.add_argument("log", metavar="LOG", help="the audit log: SQLite file or postgresql:// URL")
        return sub

    verify = with_log("verify", "check that no record was changed, removed, inserted or moved")
    verify.add_argument("--verify-key", metavar="PUB", help="the verifier key (keygen's FILE.pub)")
    verify.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                        help="a checkpoint kept outside the log (repeatable)")
    verify.add_argument("--chain", help="only this chain")
    verify.set_defaults(run=_verify)

    query = with_log("query", "find records")
    for name in ("subject", "org", "dataset", "owner", "grant", "rule", "chain", "decision-id"):
        query.add_argument(f"--{name}", metavar="ID")
    query.add_argument("--effect", choices=("PERMIT", "DENY", "REFUSED"))
    query.add_argument("--since", metavar="TIME", help="RFC 3339; records at or after it")
    query.add_argument("--until", metavar="TIME", help="RFC 3339; records before it")
    query.add_argument("--limit", type=int, default=None, metavar="N")
    query.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    query.set_defaults(run=_query)

    prove = with_log("prove", "an inclusion proof for one decision")
    prove.add_argument("decision_id", metavar="DECISION_ID")
    prove.add_argument("--out", metavar="FILE", help="write the proof here (default stdout)")
    prove.set_defaults(run=_prove)

    consistency = with_log("consistency", "prove a later checkpoint extends an earlier one")
    consistency.add_argument("old", metavar="OLD", help="a checkpoint file, or a stored size")
    consistency.add_argument("new", metavar="NEW", help="a checkpoint file, or a stored size")
    consistency.add_argument("--chain", help="the chain (needed when the log has several and "
                             "OLD/NEW are sizes)")
    consistency.add_argument("--out", metavar="FILE")
    consistency.set_defaults(run=_consistency)

    check = commands.add_parser("check-proof", help="verify a proof or export file")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--verify-key", metavar="PUB",
                       help="the verifier key; without it signatures are not checked (and the "
                       "result says so)")
    check.set_defaults(run=_check_proof)

    export = with_log("export", "the records a producing unit or the operator must receive")
    who = export.add_mutually_exclusive_group(required=True)
    who.add_argument("--owner", metavar="ORG", help="records about datasets ORG produced")
    who.add_argument("--operator", action="store_true", help="every record")
    export.add_argument("--since", metavar="TIME")
    export.add_argument("--until", metavar="TIME")
    export.add_argument("--out", metavar="FILE")
    export.set_defaults(run=_export)

    checkpoints = with_log("checkpoints", "list the stored checkpoints")
    checkpoints.add_argument("--chain")
    checkpoints.add_argument("--latest", action="store_true", help="only each chain's latest")
    checkpoints.set_defaults(run=_checkpoints)

    prune = with_log("prune", "drop records older than the retention period")
    prune.add_argument("--before", required=True, metavar="TIME",
                       help="RFC 3339: prune records older than this")
    prune.add_argument("--retention-days", type=int, default=RETENTION_DAYS, metavar="DAYS",
                       help=f"the retention period (default and minimum {RETENTION_DAYS})")
    # What "now" is, for tests that prune a log written "years ago"; not for operators.
    prune.add_argument("--now", metavar="TIME", help=argparse.SUPPRESS)
    prune.set_defaults(run=_prune)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _open(target: str):
    from tiergate.audit.store import StoreError, open_store

    if "://" not in target and not Path(target).exists():
        raise StoreError(f"no audit log at {target}")
    return open_store(target, create=False)


def _verifier(path: str | None):
    from tiergate.audit.note import read_verifier_file

    return None if path is None else read_verifier_file(path)


def _instant(text: str | None, option: str) -> int | None:
    from tiergate.engine.timeutil import parse_instant

    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not an RFC 3339 time "
                         "(e.g. 2026-12-01T00:00:00+08:00)") from None


def _write(document: dict, out: str | None) -> None:
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")


def _guarded(run):
    """Errors a user can fix are one line and exit 1; a proof that fails is exit 2."""
    def wrapped(args) -> int:
        from tiergate.audit.merkle import ProofError
        from tiergate.audit.note import NoteError
        from tiergate.audit.proofs import ProofUnavailable
        from tiergate.audit.store import StoreError

        try:
            return run(args)
        except ProofError as problem:
            print(f"FAILED: {problem}", file=sys.stderr)
            return 2
        except (StoreError, NoteError, ProofUnavailable, OSError, ValueError) as problem:
            return _fail(str(problem))
    return wrapped


@_guarded
def _keygen(args) -> int:
    from tiergate.audit.note import generate

    signer, verifier = generate(args.name)
    out = Path(args.out)
    fd = os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(signer + "\n")
    Path(f"{out}.pub").write_text(verifier + "\n", encoding="utf-8")
    print(f"signing key: {out} (keep it secret: audit_key in the server's config)")
    print(f"verifier key: {out}.pub (give it to whoever checks the log): {verifier}")
    return 0


@_guarded
def _verify(args) -> int:
    from tiergate.audit.verify import verify_store

    verifier = _verifier(args.verify_key)
    outside = [Path(f).read_text(encoding="utf-8") for f in args.checkpoint]
    store = _open(args.log)
    reports = verify_store(store, verifier=verifier, outside=outside, chain=args.chain)
    findings = 0
    for report in reports:
        if report.checkpoints and report.unsigned_checkpoints == report.checkpoints:
            signed = " (UNSIGNED: the server had no audit_key; the chain still verifies)"
        elif verifier:
            signed = f", {report.signed_checkpoints} signed by {verifier.name}"
        else:
            signed = ", signatures not checked (no --verify-key)"
        pruned = f", {report.pruned} pruned" if report.pruned else ""
        if report.unindexed:
            pruned += f", {report.unindexed} not yet in the query index"
        print(f"chain {report.chain}: {report.records} records{pruned}, "
              f"{report.checkpoints} checkpoints{signed}")
        for finding in report.findings:
            print(f"  FAILED {finding}")
        findings += len(report.findings)
    if not reports:
        print("the log is empty")
    if findings:
        print(f"{findings} finding(s): the log was changed after it was written", file=sys.stderr)
        return 2
    print("ok: every record is in place and unchanged")
    return 0


@_guarded
def _query(args) -> int:
    from tiergate.audit.record import parse_record

    filters = {name: getattr(args, attr) for name, attr in (
        ("subject", "subject"), ("org", "org"), ("dataset", "dataset"), ("owner", "owner"),
        ("grant", "grant"), ("chain", "chain"), ("decision_id", "decision_id"),
        ("effect", "effect")) if getattr(args, attr)}
    store = _open(args.log)
    rows = store.query(filters=filters, rule=args.rule,
                       since_us=_instant(args.since, "--since"),
                       until_us=_instant(args.until, "--until"), limit=args.limit)
    if args.format == "jsonl":
        for row in rows:
            sys.stdout.write(row.body.decode() + "\n")
        return 0
    print(f"{'time':<27} {'effect':<8} {'subject':<14} {'org':<12} {'dataset':<18} "
          f"{'grant':<14} rules")
    for row in rows:
        record, index = parse_record(row.body), row.index
        print(f"{record.time:<27} {record.outcome:<8} {index.subject or '-':<14} "
              f"{index.org or '-':<12} {index.dataset or '-':<18} {index.grant_id or '-':<14} "
              f"{' '.join(r.rule_id for r in record.reasons) or '-'}")
    return 0


@_guarded
def _prove(args) -> int:
    from tiergate.audit.proofs import inclusion_document

    _write(inclusion_document(_open(args.log), args.decision_id), args.out)
    return 0


def _checkpoint_note(store, chain: str | None, given: str) -> tuple[str, str]:
    """(chain, note) for OLD/NEW: a checkpoint file, or the size of a stored checkpoint."""
    from tiergate.audit.log import ORIGIN_PREFIX
    from tiergate.audit.note import parse_checkpoint

    if not given.isdigit():
        note = Path(given).read_text(encoding="utf-8")
        return parse_checkpoint(note).origin.removeprefix(ORIGIN_PREFIX), note
    chains = [chain] if chain else store.chains()
    if len(chains) != 1:
        raise ValueError(f"the log has {len(chains)} chains; name one with --chain")
    for stored in store.checkpoints(chains[0]):
        if stored.size == int(given):
            return chains[0], stored.note
    raise ValueError(f"chain {chains[0]} has no checkpoint of size {given}")


@_guarded
def _consistency(args) -> int:
    from tiergate.audit.proofs import consistency_document

    store = _open(args.log)
    old_chain, old = _checkpoint_note(store, args.chain, args.old)
    new_chain, new = _checkpoint_note(store, args.chain or old_chain, args.new)
    if old_chain != new_chain:
        raise ValueError(f"OLD is a checkpoint of chain {old_chain}, NEW of {new_chain}")
    _write(consistency_document(store, old_chain, old, new), args.out)
    return 0


@_guarded
def _check_proof(args) -> int:
    from tiergate.audit.proofs import check_document

    try:
        document = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except json.JSONDecodeError as problem:
        raise ValueError(f"{args.file} is not JSON: {problem}") from None
    try:
        checked = check_document(document, _verifier(args.verify_key))
    except (KeyError, TypeError) as problem:
        raise ValueError(f"{args.file} is not a complete proof document ({problem})") from None
    print(checked.summary() + ("" if args.verify_key else
                               " (signatures NOT checked: give --verify-key)"))
    return 0


@_guarded
def _export(args) -> int:
    from tiergate.audit.proofs import export_document

    document = export_document(_open(args.log), owner=args.owner, operator=args.operator,
                               since_us=_instant(args.since, "--since"),
                               until_us=_instant(args.until, "--until"))
    _write(document, args.out)
    count = sum(len(s["records"]) for s in document["segments"])
    print(f"{count} record(s) in {len(document['segments'])} segment(s)", file=sys.stderr)
    return 0


@_guarded
def _checkpoints(args) -> int:
    store = _open(args.log)
    for chain in ([args.chain] if args.chain else store.chains()):
        stored = store.checkpoints(chain)
        for checkpoint in (stored[-1:] if args.latest else stored):
            sys.stdout.write(checkpoint.note + "\n")
    return 0


@_guarded
def _prune(args) -> int:
    from tiergate.engine.timeutil import format_instant, now_micros

    if args.retention_days < RETENTION_DAYS:
        raise ValueError(f"--retention-days {args.retention_days} is shorter than the three years "
                         f"the regulation requires ({RETENTION_DAYS} days); it can only be longer")
    now = _instant(args.now, "--now") if args.now else now_micros()
    before = _instant(args.before, "--before")
    oldest_allowed = now - args.retention_days * 86_400_000_000
    if before > oldest_allowed:
        raise ValueError(f"--before {args.before} would prune records younger than the retention "
                         f"period ({args.retention_days} days): nothing after "
                         f"{format_instant(oldest_allowed)} may be pruned")
    store = _open(args.log)
    total = 0
    for chain in store.chains():
        below = store.first_younger_than(chain, before)
        latest = store.latest_checkpoint(chain)
        if latest is not None:
            below = min(below, latest.size)  # keep what no checkpoint covers yet
        if below > 0:
            total += store.prune(chain, below, before, now)
    print(f"pruned {total} record(s) older than {args.before}; their hashes stay, so the log "
          "still verifies")
    return 0
