"""`tiergate report POLICY_DIR --html FILE`: one self-contained HTML page about a policy set."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_error_format, add_now_option, load_or_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write one self-contained HTML page: decision tree, coverage matrix, grants")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("--html", metavar="FILE", required=True, help="where to write the page")
    add_now_option(parser, help="the instant the timeline marks as today (default: the clock)")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from tiergate.tooling.report import render_report

    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    page = render_report(policy, now=args.now, title=args.policy_dir)
    try:
        Path(args.html).write_text(page, encoding="utf-8")
    except OSError as problem:
        print(f"error: cannot write {args.html}: {problem}", file=sys.stderr)
        return 1
    print(f"wrote {args.html} ({len(page.encode('utf-8'))} bytes)")
    return 0
