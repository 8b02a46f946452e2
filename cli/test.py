"""`tiergate test POLICY_DIR`: run the policy tests kept beside the policies (`*_test.toml`).

Prints one line per failing case (the decision and its reasons next to what was expected),
the summary `N passed, M failed`, then rule and grant coverage. Exit 0 when every case passes
(and coverage meets --min-coverage), 2 on a failing case or coverage below the threshold,
1 on a bad policy, a bad test file, or no test files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tiergate.tooling.policytest import TEST_SUFFIX, TestFileError, discover, load_suites, run_suites
from tiergate.tooling.reporters import render_text, to_json, to_junit

from .common import add_error_format, load_or_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "test", help="run the policy tests (*_test.toml) kept beside the policies")
    parser.add_argument("policy_dir", metavar="POLICY_DIR")
    parser.add_argument("tests", metavar="TEST", nargs="*",
                        help=f"test files or directories (default: every *{TEST_SUFFIX} "
                        "under POLICY_DIR)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    parser.add_argument("--min-coverage", metavar="PCT", type=float,
                        help="fail (exit 2) when rule or grant coverage is below PCT percent")
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    add_error_format(parser)
    parser.set_defaults(run=run)


def _test_files(args) -> list[Path]:
    if not args.tests:
        return discover(args.policy_dir)
    files: list[Path] = []
    for name in args.tests:
        path = Path(name)
        files.extend(discover(path) if path.is_dir() else [path])
    return files


def run(args) -> int:
    policy = load_or_report(args.policy_dir, args.error_format)
    if policy is None:
        return 1
    files = _test_files(args)
    if not files:
        print(f"error: no *{TEST_SUFFIX} test files under {args.policy_dir}", file=sys.stderr)
        return 1
    try:
        suites = load_suites(files)
    except TestFileError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    result = run_suites(policy, suites)
    coverage = result.coverage
    below = (args.min_coverage is not None
             and min(coverage.rule_percent, coverage.grant_percent) < args.min_coverage)
    if args.junit:
        try:
            Path(args.junit).write_bytes(to_junit(result))
        except OSError as problem:
            print(f"error: cannot write {args.junit}: {problem}", file=sys.stderr)
            return 1
    if args.format == "json":
        out = to_json(result, min_coverage=args.min_coverage)
        out["coverage"]["below_minimum"] = below
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(render_text(result, verbose=args.verbose))
        if below:
            print(f"coverage below the minimum of {args.min_coverage:g}%")
    if result.failed or below:
        return 2
    return 0

