"""`tiergate fmt [PATHS...]`: rewrite policy files in the canonical layout.

With no path, every *.policy file under the current directory. `--check` rewrites nothing and
exits 2 listing the files that are not formatted (`--diff` adds a unified diff), which is what
CI runs. A file with a syntax error is reported as `tiergate check` reports it and left alone
(exit 1).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from tiergate.diagnostics import DiagnosticError
from tiergate.grammar.format import format_text

from .common import add_error_format, print_diagnostics


def register(subparsers) -> None:
    parser = subparsers.add_parser("fmt", help="rewrite policy files in the canonical layout")
    parser.add_argument("paths", metavar="PATH", nargs="*",
                        help="policy files or directories (default: the current directory)")
    parser.add_argument("--check", action="store_true",
                        help="rewrite nothing; exit 2 listing the files that are not formatted")
    parser.add_argument("--diff", action="store_true",
                        help="with --check, show what formatting would change as a unified diff")
    add_error_format(parser)
    parser.set_defaults(run=run)


def policy_paths(paths: list[str]) -> list[Path]:
    """The files named, and every *.policy file under the directories named."""
    found: list[Path] = []
    for name in paths or ["."]:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.policy") if p.is_file()))
        else:
            found.append(path)
    unique = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def run(args) -> int:
    paths = policy_paths(args.paths)
    unformatted, errors = [], []
    for path in paths:
        try:
            # The exact text, line endings kept: a lone CR is an error here as on every path.
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as problem:
            print(f"error: cannot read {path}: {problem}", file=sys.stderr)
            errors.append(path)
            continue
        try:
            formatted = format_text(text, str(path))
        except DiagnosticError as error:
            print_diagnostics(error.diagnostics, args.error_format, {str(path): text})
            errors.append(path)
            continue
        if formatted == text:
            continue
        unformatted.append(path)
        if args.check:
            print(f"{path}: not formatted")
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(
                    text.splitlines(True), formatted.splitlines(True),
                    str(path), f"{path} (formatted)"))
        else:
            path.write_text(formatted, encoding="utf-8")
            print(f"formatted {path}")
    if errors:
        return 1
    if args.check and unformatted:
        print(f"{len(unformatted)} of {len(paths)} files not formatted; run: tiergate fmt "
              + " ".join(str(p) for p in unformatted), file=sys.stderr)
        return 2
    return 0
