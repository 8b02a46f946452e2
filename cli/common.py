"""What the subcommands share: loading a policy set and printing its errors."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tiergate.engine import DiagnosticError, PolicySet, load_policy_set
from tiergate.diagnostics import Diagnostic, render_human, render_json, render_plain


def server_extra_missing(command: str) -> bool:
    """Whether `command` cannot run because the service's packages (tiergate[server]) are not
    installed; says how to install them when so."""
    import importlib

    try:
        for module in ("grpc", "envoy.service.auth.v3", "prometheus_client"):
            importlib.import_module(module)
    except ImportError as missing:
        print(f"error: tiergate {command} needs the service's packages ({missing.name} is not "
              "installed): pip install 'tiergate[server]'", file=sys.stderr)
        return True
    return False


def add_error_format(parser) -> None:
    parser.add_argument("--error-format", choices=("human", "plain", "json"), default="human",
                        help="how to print policy errors (default: human, with the source line)")


def print_diagnostics(diagnostics: Sequence[Diagnostic], error_format: str,
                      sources: dict[str, str] | None = None) -> None:
    if error_format == "json":
        print(render_json(diagnostics), file=sys.stderr)
    elif error_format == "plain":
        print(render_plain(diagnostics), file=sys.stderr)
    else:
        print(render_human(diagnostics, sources or _read_sources(diagnostics)), file=sys.stderr)
        errors = sum(d.severity == "error" for d in diagnostics)
        print(f"\n{errors} error{'s' if errors != 1 else ''}; the policy set was not loaded",
              file=sys.stderr)


def _read_sources(diagnostics: Sequence[Diagnostic]) -> dict[str, str]:
    sources = {}
    for d in diagnostics:
        if d.span is not None and d.span.file not in sources:
            try:
                with open(d.span.file, encoding="utf-8") as f:
                    sources[d.span.file] = f.read()
            except OSError:
                pass
    return sources


def load_or_report(directory: str, error_format: str) -> PolicySet | None:
    """The loaded policy set, or None after printing every error."""
    try:
        return load_policy_set(directory)
    except DiagnosticError as error:
        print_diagnostics(error.diagnostics, error_format)
        return None


def _instant(text: str) -> int:
    from tiergate.engine.timeutil import parse_instant

    try:
        return parse_instant(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(f"{text!r} is not an instant: {problem}") from None


def add_now_option(parser, help: str) -> None:
    """`--now INSTANT`, parsed to µs since the epoch (None when not given)."""
    parser.add_argument("--now", metavar="INSTANT", type=_instant, help=help)


def read_input(path: str) -> str:
    """The text of a file, or of standard input for `-` (UTF-8; ValueError otherwise)."""
    data = read_input_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise ValueError(f"{path} is not UTF-8 (byte {problem.start + 1})") from None


def read_input_bytes(path: str) -> bytes:
    """The bytes of a file, or of standard input for `-`."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()
