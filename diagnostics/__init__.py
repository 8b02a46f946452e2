"""Source positions and diagnostics: the one error type every phase reports with.

A compliance officer reads these, so each diagnostic carries the column as well as the line,
a plain-words message, and where possible a help line ("did you mean medical_service?").
Diagnostics are collected, sorted by position and rendered as human text (the source line with
a caret under the spot), plain one-liners, or JSON.
"""

from __future__ import annotations

import difflib
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True, slots=True)
class Span:
    """A region of a policy file; lines and columns count from 1, columns in characters."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_SPAN = Span("<none>", 0, 0, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    """One finding: a stable code, a message, where, what to do, and whose it is."""

    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    owner: str | None = None  # the rule or grant it belongs to
    severity: Severity = "error"

    def sort_key(self) -> tuple:
        span = self.span or NO_SPAN
        return (span.file, span.line, span.column, self.code, self.message)

    def to_dict(self) -> dict:
        out: dict = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.span is not None:
            out.update(file=self.span.file, line=self.span.line, column=self.span.column)
        if self.help:
            out["help"] = self.help
        if self.owner:
            out["owner"] = self.owner
        return out


class DiagnosticError(Exception):
    """Raised when a phase finds errors; carries every diagnostic it collected, sorted."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(sorted(diagnostics, key=Diagnostic.sort_key))
        first = self.diagnostics[0] if self.diagnostics else None
        summary = f"{first.span}: {first.message}" if first and first.span else "policy errors"
        more = len(self.diagnostics) - 1
        super().__init__(summary + (f" (and {more} more)" if more > 0 else ""))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest declared name to a misspelt one, as a help line, or None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None


def _display_width(text: str) -> int:
    # Chinese characters take two terminal cells; the caret must line up under them.
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_human(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str]) -> str:
    """Render as a compiler would: location, message, the source line, a caret, help."""
    blocks = []
    for d in diagnostics:
        head = f"{d.severity}[{d.code}]: {d.message}"
        if d.span is None:
            blocks.append(head + (f"\n  help: {d.help}" if d.help else ""))
            continue
        lines = [f"{d.span}: {head}"]
        text = sources.get(d.span.file)
        if text is not None and d.span.line >= 1:
            source_lines = text.splitlines()
            if d.span.line <= len(source_lines):
                src = source_lines[d.span.line - 1].expandtabs(4)
                gutter = f"{d.span.line:>5} | "
                lines.append(gutter + src)
                start = _display_width(src[: d.span.column - 1])
                if d.span.end_line == d.span.line and d.span.end_column > d.span.column:
                    width = _display_width(src[d.span.column - 1 : d.span.end_column - 1])
                else:
                    width = 1
                lines.append(" " * (len(gutter) - 2) + "| " + " " * start + "^" * max(width, 1))
        if d.help:
            lines.append(f"  help: {d.help}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_plain(diagnostics: Sequence[Diagnostic]) -> str:
    out = []
    for d in diagnostics:
        where = f"{d.span}: " if d.span else ""
        tail = f" ({d.help})" if d.help else ""
        out.append(f"{where}{d.severity}[{d.code}]: {d.message}{tail}")
    return "\n".join(out)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], ensure_ascii=False, indent=2)


def span_of(meta, file: str) -> Span:
    """A Span from Lark's propagated positions (meta or token)."""
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


@dataclass(frozen=True)
class SourceFile:
    """A policy file's path (as shown in messages) and its text."""

    path: str
    text: str = field(repr=False)
