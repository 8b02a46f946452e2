"""`tiergate explain POLICY_DIR REQUEST`: why one request is permitted or denied.

Opens with a few plain lines: the effect and the rule that decided it in its own words, what
would have to change (a grant to obtain or renew, a missing approval, an attribute), the
articles. With --verbose it then shows the path through the decision tree, every rule the tree considered with each condition
(✓/✗) and its value, the requester's grants (bound, or why not), the obligations and the
final effect with its citations — in Chinese, English or both. `--format json` prints the
decision with its `explanation` dict instead.
"""

from __future__ import annotations

import json
import sys

from tiergate.engine import RequestError
from tiergate.tooling.explain_text import LANGS, render_explanation

from .common import add_error_format, add_now_option, load_or_report, read_input
from .requests_json import parse_document


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="explain one decision: tree path, conditions, grants, citations")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("request", metavar="REQUEST",
                        help="a JSON request file, or - for stdin")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--lang", choices=LANGS, default="both",
                        help="language of the text (default: both)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="after the plain summary: the decision-tree path, every rule "
                        "considered, each condition's value, the grants")
    add_now_option(parser, help="the time for a request without context.time (default: the clock)")
    add_error_format(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    try:
        request = parse_document(read_input(args.request))
    except (OSError, ValueError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        decision = policy.decide(request, now=args.now, explain=True)
    except RequestError as error:
        if args.format == "json":
            print(json.dumps(error.to_dict(), ensure_ascii=False, indent=2))
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(decision.to_dict(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(render_explanation(decision.explanation, args.lang,
                                            verbose=args.verbose))
    return 0
