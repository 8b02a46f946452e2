"""`tiergate decide POLICY_DIR [FILE|-]`: decide one request or many, print decisions as JSON.

Input is one JSON request, a JSON array of requests, or JSON lines, read strictly
(requests_json.py: no duplicate keys, no lone surrogates, bounded nesting, UTF-8 only). One
request prints one indented decision; many print one decision per line, in order. A bad request
prints an error object in its place (naming the attribute, the value and the allowed values, or
what made the line unreadable) and the command exits 1 after deciding the rest.
"""

from __future__ import annotations

import json
import sys

from tiergate.engine import RequestError

from .common import add_error_format, add_now_option, load_or_report, read_input_bytes
from .requests_json import InputError, read_items


def register(subparsers) -> None:
    parser = subparsers.add_parser("decide", help="decide requests (JSON) against a policy set")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("input", metavar="FILE", nargs="?", default="-",
                        help="a JSON request, a JSON array, or JSON lines; - for stdin (default)")
    parser.add_argument("--explain", action="store_true",
                        help="add the path through the decision tree and each condition's value")
    add_now_option(parser, help="the time for requests without context.time (default: the clock)")
    add_error_format(parser)
    parser.add_argument("--audit-log", metavar="FILE|URL",
                        help="record every decision and refusal in this audit log (the server's "
                        "SQLite file or postgresql:// URL), as a chain of its own")
    parser.add_argument("--audit-key", metavar="KEY", help="sign the chain's checkpoint")
    parser.set_defaults(run=run)


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    try:
        items, single = read_items(read_input_bytes(args.input))
    except (OSError, InputError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        recorder = _Recorder(args.audit_log, args.audit_key) if args.audit_log else None
    except (OSError, ValueError, RuntimeError) as problem:
        print(f"error: the audit log cannot be used: {problem}", file=sys.stderr)
        return 1
    try:
        return _decide_all(policy, items, single, args, recorder)
    finally:
        if recorder is not None:
            recorder.close()


def _decide_all(policy, items, single, args, recorder) -> int:
    failed = 0
    for index, item in enumerate(items):
        where = "" if single else f"request {index + 1}: "
        if item.problem is not None:
            failed += 1
            out = {"error": "unreadable_request", "message": item.problem}
            print(f"error: {where}{item.problem}", file=sys.stderr)
        else:
            try:
                if recorder is None:
                    out = policy.decide(item.request, now=args.now, explain=args.explain).to_dict()
                else:
                    decision, settled = policy.decide_recorded(item.request, now=args.now,
                                                               explain=args.explain)
                    recorder.decided(decision, settled)
                    out = decision.to_dict()
            except RequestError as error:
                failed += 1
                out = error.to_dict()
                if recorder is not None:
                    out["decision_id"] = recorder.refused(error, item.request, policy.revision)
                print(f"error: {where}{error}", file=sys.stderr)
        print(json.dumps(out, ensure_ascii=False, indent=2 if single else None))
    return 1 if failed else 0


class _Recorder:
    """Records the CLI's answers (entry "cli", caller local:<user>) before printing them."""

    def __init__(self, target: str, key: str | None):
        import getpass

        from tiergate.audit import record
        from tiergate.audit.log import AuditLog
        from tiergate.audit.note import read_signer_file
        from tiergate.audit.store import StoreError, open_store
        from tiergate.server.config import default_chain

        self._record = record
        signer = read_signer_file(key) if key else None
        self._caller = record.caller_json(f"local:{getpass.getuser()}")
        self._log = AuditLog(lambda: open_store(target), "cli-" + default_chain(), signer=signer)
        try:
            self._log.start()
        except StoreError as problem:
            raise RuntimeError(str(problem)) from None

    def _commit(self, decided, decision_id: str) -> None:
        from tiergate.engine.timeutil import now_micros

        self._log.record([self._record.entry(decided, time_us=now_micros(),
                                             decision_id=decision_id, entry_point="cli",
                                             caller=self._caller)])

    def decided(self, decision, settled: dict) -> None:
        self._commit(self._record.decided(decision, settled), decision.decision_id)

    def refused(self, error, request, revision: str) -> str:
        import uuid

        decision_id = "cli-" + uuid.uuid4().hex[:20]
        self._commit(self._record.refused("invalid_request", str(error),
                                          self._record.problems_of(error),
                                          policy_revision=revision,
                                          claimed=self._record.claimed_by(request)),
                     decision_id)
        return decision_id

    def close(self) -> None:
        self._log.close()  # moves the journal into the database and writes a checkpoint
