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
    failed = 0
    for index, item in enumerate(items):
        where = "" if single else f"request {index + 1}: "
        if item.problem is not None:
            failed += 1
            out = {"error": "unreadable_request", "message": item.problem}
            print(f"error: {where}{item.problem}", file=sys.stderr)
        else:
            try:
                out = policy.decide(item.request, now=args.now, explain=args.explain).to_dict()
            except RequestError as error:
                failed += 1
                out = error.to_dict()
                print(f"error: {where}{error}", file=sys.stderr)
        print(json.dumps(out, ensure_ascii=False, indent=2 if single else None))
    return 1 if failed else 0
