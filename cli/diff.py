"""`tiergate diff OLD_DIR NEW_DIR`: which requests a policy change newly permits or denies.

Exit codes: 0 no change, 2 changes found (so CI can require a review), 1 a policy error.
"""

from __future__ import annotations

import json

from tiergate.tooling.diff import diff_policies
from tiergate.tooling.diff_edits import policy_edits
from tiergate.tooling.diff_render import diff_to_dict, render_text

from .common import add_error_format, add_now_option, load_or_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diff", help="list the request classes whose decision changes between two policy sets")
    parser.add_argument("old_dir", metavar="OLD_DIR")
    parser.add_argument("new_dir", metavar="NEW_DIR")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="after the edits: every changed class, with each attribute")
    add_now_option(parser, help="compare requests at this instant or later only (grants that "
                   "expired before it are past); default: every time")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    old = load_or_report(args.old_dir, args.error_format)
    new = load_or_report(args.new_dir, args.error_format)
    if old is None or new is None:
        return 1
    diff = diff_policies(old, new, now=args.now)
    edits = policy_edits(old, new)
    if args.format == "json":
        out = {"old": args.old_dir, "new": args.new_dir,
               "edits": [{"kind": e.kind, "id": e.id, "what": e.what, "details": list(e.details),
                          "where": e.where} for e in edits], **diff_to_dict(diff)}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(render_text(diff, args.old_dir, args.new_dir, edits=edits, verbose=args.verbose))
    return 2 if diff.changed else 0
