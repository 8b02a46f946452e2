"""`tiergate decide POLICY_DIR [FILE|-]`: decide one request or many, print decisions as JSON.

Input is one JSON request, a JSON array of requests, or JSON lines. One request prints one
indented decision; many print one decision per line, in order. A bad request prints an error
object in its place (naming the attribute, the value and the allowed values) and the command
exits 1 after deciding the rest.
"""

from __future__ import annotations

import json
import sys

from tiergate.engine import RequestError

from .common import add_error_format, add_now_option, load_or_report, read_input


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


def read_requests(text: str) -> tuple[list, bool]:
    """(requests, whether the input was a single request)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("the input holds no request")
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        requests = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if line.strip():
                try:
                    requests.append(json.loads(line))
                except json.JSONDecodeError as problem:
                    raise ValueError(f"line {number} is not JSON: {problem}") from None
        return requests, False
    if isinstance(document, list):
        return document, False
    return [document], True


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    try:
        requests, single = read_requests(read_input(args.input))
    except (OSError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    failed = 0
    for index, request in enumerate(requests):
        try:
            out = policy.decide(request, now=args.now, explain=args.explain).to_dict()
        except RequestError as error:
            failed += 1
            out = error.to_dict()
            where = "" if single else f"request {index + 1}: "
            print(f"error: {where}{error}", file=sys.stderr)
        print(json.dumps(out, ensure_ascii=False, indent=2 if single else None))
    return 1 if failed else 0
