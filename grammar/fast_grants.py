"""A quick reader for well-formed `grant { … }` blocks; Lark parses everything else.

A policy set can hold tens of thousands of grants, and building Lark's parse tree for them
dominated loading (seconds for 10,000 grants). Grant blocks have a flat shape — keyword, then
values separated by commas — so a regular-expression scan reads them into the same `ast.Grant`
nodes, spans included. It accepts a strict subset of the grammar: anything unexpected (an
unknown word, a value where a keyword belongs, a stray character) leaves the block to Lark,
which then reports it exactly as it would have. tests/test_grammar_fast_grants.py checks that
both readers build identical trees and spans.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right

from . import ast
from tiergate.diagnostics import Span

# SECURITY: policy text is untrusted input; every pattern here runs in linear time. Possessive
# quantifiers (*+, ++) never give back what they matched, so no pattern backtracks, and an
# unterminated string is skipped to the end of its line in one step (Lark then reports it)
# instead of being retried from every quote inside it.
# Top-level scan: strings and comments are skipped so braces inside them do not count.
_SCAN = re.compile(r'"(?:[^"\\\n]|\\.)*+"?|#[^\r\n]*+|[{}]|(?<![\w.\-])grant\b')
_HEAD = re.compile(r"grant([ \t\f\r\n]+)([A-Za-z][A-Za-z0-9_.\-]*)[ \t\f\r\n]*\{")
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\f\r\n]+)
  | (?P<comment>\#[^\r\n]*+)
  | (?P<string>"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*+")
  | (?P<instant>\d{4}-\d{2}-\d{2}[0-9T:.+\-Z]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<comma>,)
  | (?P<close>\})
""", re.VERBOSE)
_ONLY_LAYOUT = re.compile(r"(?:[ \t\f\r\n]++|#[^\r\n]*+)*+")
_SYMBOL = re.compile(r"[a-z_][a-z0-9_]*")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")

# keyword -> (token kind, one value only?)
_CLAUSES = {
    "grantee": ("ident", True), "tier": ("symbol", False), "catalog": ("symbol", False),
    "dataset": ("ident", False), "purpose": ("symbol", False), "action": ("symbol", False),
    "approved_by": ("symbol", False), "agreement": ("string", True),
    "expires": ("instant", True),
}


class _NotSimple(Exception):
    """This block is not in the simple shape; Lark reads it."""


class _Positions:
    def __init__(self, text: str, file: str):
        self.file = file
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1

    def span(self, start: int, end: int) -> Span:
        line, column = self.at(start)
        end_line, end_column = self.at(end)
        return Span(self.file, line, column, end_line, end_column)

    def token_span(self, start: int, end: int) -> Span:
        """The span of a token that holds no newline."""
        line, column = self.at(start)
        return Span(self.file, line, column, line, column + end - start)


def _value(kind: str, text: str, span: Span, decode) -> ast.Operand:
    if kind == "string":
        return ast.Text(decode(text), span)
    if kind == "instant":
        return ast.Instant(text, span)
    # Ten thousand grants name the same few values; one string each keeps memory down.
    return ast.Symbol(sys.intern(text), span)


def _read_block(text: str, start: int, positions: _Positions, decode):
    """(grant, comments, end offset) for the block at `start`, or raise _NotSimple."""
    head = _HEAD.match(text, start)
    if head is None:
        raise _NotSimple()
    ident_start, ident_end = head.start(2), head.end(2)
    clauses: list[ast.GrantClause] = []
    comments: list[ast.Comment] = []
    keyword = None  # (name, start offset, kind, single)
    values: list = []
    last_end = 0
    expecting_value = False
    position = head.end()

    def close_clause():
        name, clause_start, _, _ = keyword
        clauses.append(ast.GrantClause(name, tuple(values), positions.span(clause_start, last_end)))

    while True:
        token = _TOKEN.match(text, position)
        if token is None:
            raise _NotSimple()
        kind, lexeme = token.lastgroup, token.group()
        position = token.end()
        if kind == "ws":
            continue
        if kind == "comment":
            line, column = positions.at(token.start())
            comments.append(ast.Comment(lexeme, line, column))
            continue
        if expecting_value:
            value_kind = keyword[2]
            if value_kind == "symbol" and kind == "word" and _SYMBOL.fullmatch(lexeme) \
                    and lexeme not in _CLAUSES:
                pass
            elif value_kind == "ident" and kind == "word" and _IDENT.fullmatch(lexeme) \
                    and lexeme not in _CLAUSES:
                pass
            elif value_kind == kind and kind in ("string", "instant"):
                pass
            else:
                raise _NotSimple()
            values.append(_value(value_kind, lexeme,
                                 positions.token_span(token.start(), token.end()), decode))
            last_end = token.end()
            expecting_value = False
            continue
        if kind == "comma" and keyword is not None and not keyword[3]:
            expecting_value = True
            continue
        if kind == "close":
            if keyword is not None:
                close_clause()
            grant = ast.Grant(head.group(2), tuple(clauses), positions.span(start, token.end()),
                              positions.token_span(ident_start, ident_end))
            return grant, comments, token.end()
        if kind == "word" and lexeme in _CLAUSES:
            if keyword is not None:
                close_clause()
            keyword = (lexeme, token.start(), *_CLAUSES[lexeme])
            values = []
            expecting_value = True
            continue
        raise _NotSimple()


def _blank(text: str, start: int, end: int) -> str:
    """What stands in for a block read here: its newlines, then spaces up to its end column,
    so every line and column after it is where Lark expects it."""
    newlines = text.count("\n", start, end)
    if not newlines:
        return " " * (end - start)
    return "\n" * newlines + " " * (end - text.rfind("\n", start, end) - 1)


def read_simple_grants(text: str, file: str, decode):
    """Grant blocks read quickly, and the text with them blanked out for Lark.

    Returns (grants, comments inside them, remaining text). The remaining text keeps every
    newline and column, so Lark's positions for the rest of the file stay right.
    """
    positions = None
    grants: list[ast.Grant] = []
    comments: list[ast.Comment] = []
    pieces: list[str] = []
    copied = 0
    depth = 0
    scan_from = 0
    boundary = 0  # where the last top-level declaration ended
    while True:
        match = _SCAN.search(text, scan_from)
        if match is None:
            break
        lexeme = match.group()
        scan_from = match.end()
        if lexeme == "{":
            depth += 1
        elif lexeme == "}":
            depth -= 1
            if depth == 0:
                boundary = match.end()
        # INVARIANT: only a block that starts a declaration (nothing but layout since the last
        # one ended) is read here; anywhere else Lark might read `grant` differently.
        elif lexeme == "grant" and depth == 0 and _ONLY_LAYOUT.fullmatch(text, boundary, match.start()):
            positions = positions or _Positions(text, file)
            try:
                grant, inner, end = _read_block(text, match.start(), positions, decode)
            except _NotSimple:
                continue
            grants.append(grant)
            comments.extend(inner)
            pieces.append(text[copied:match.start()])
            pieces.append(_blank(text, match.start(), end))
            copied = scan_from = boundary = end
    if not grants:
        return [], [], text
    pieces.append(text[copied:])
    return grants, comments, "".join(pieces)
