"""`tiergate lint POLICY_DIR`: rules that never take effect, unusable and lapsing grants, and
the coverage matrix (catalog class × tier × org type).

Exit 0 when clean, 2 when there are error findings (with --strict, warnings too), 1 when the
policy set does not load.
"""

from __future__ import annotations

import json

from tiergate.engine.timeutil import now_micros
from tiergate.diagnostics import render_human
from tiergate.tooling.lint import lint_policy
from tiergate.tooling.matrix import render_matrix

from .common import add_error_format, add_now_option, load_or_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lint", help="find rules that never take effect, unusable or expiring grants; "
                     "print the coverage matrix")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("--expiring-days", type=int, default=30, metavar="N",
                        help="warn about grants expiring within N days (default 30)")
    add_now_option(parser, help="the instant to judge expiry at (default: the clock)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 2)")
    parser.add_argument("--no-matrix", action="store_true",
                        help="text output: leave out the coverage matrix")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    now = args.now if args.now is not None else now_micros()
    result = lint_policy(policy, now=now, expiring_days=args.expiring_days)
    if args.format == "json":
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        if result.diagnostics:
            print(render_human(result.diagnostics, policy.sources))
            print()
        print(f"{result.errors} error{'s' if result.errors != 1 else ''}, "
              f"{result.warnings} warning{'s' if result.warnings != 1 else ''}")
        if not args.no_matrix:
            print()
            print(render_matrix(result.matrix))
    failing = result.errors + (result.warnings if args.strict else 0)
    return 2 if failing else 0
