"""`tiergate`: one entry point, one module per subcommand.

Exit codes: 0 ok, 1 error (bad policy, bad request, bad usage), 2 findings or failures
(a failing policy test, a lint warning treated as failure, a file not formatted).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `register(subparsers)`, which adds its parser and sets `run(args) -> int`.
SUBCOMMANDS = (
    "check",
    "decide",
    "serve",
    "explain",
    "test",
    "diff",
    "report",
    "fmt",
    "lint",
    "gateway",
    "bundle",
    "audit",
    "policy-info",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; here 2 means findings, so bad usage is 1."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tiergate", description="Policy-as-code authorization for tiered health data.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"tiergate.cli.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
