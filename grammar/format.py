"""The canonical layout of a policy file: what `tiergate fmt` writes.

One layout, so that a diff between two versions of a policy shows what changed in meaning and
nothing else:

- declarations separated by one blank line; two-space indentation; one clause per line;
- rule clauses in the order cite, message, effect, `requires grant`, oblige;
- grant clauses in the order grantee, tier, catalog, dataset, purpose, action, approved_by,
  agreement, expires, with the values in one column;
- vocabulary labels aligned in one column per block;
- a condition longer than WIDTH is broken before `and` / `or`, the operator right-aligned so
  the operands start in one column; a value list that still does not fit is wrapped under its
  first value;
- parentheses only where the tree needs them (`a and (b or c)`, and a nested group of the same
  connective, which the parser would otherwise flatten);
- strings re-escaped (only `\\`, `"`, newline and tab are escaped; Chinese stays as it is).

Comments are kept: a full-line comment stays before the line (declaration, clause, value or
condition operand) that follows it in the source; a trailing comment stays at the end of the
line that holds the code before it, in COMMENT_COLUMN where it fits. Placement is decided from
source positions, so the result is a fixed point: formatting is repeated until nothing moves
(comments are the only thing that can move on a second pass).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace

from . import ast
from .parser import parse_policy

WIDTH = 100
INDENT = 2
COMMENT_COLUMN = 52  # 0-based column where trailing comments start when the code is shorter
GRANT_ORDER = ("grantee", "tier", "catalog", "dataset", "purpose", "action", "approved_by",
               "agreement", "expires")
DATASET_ORDER = ("label", "catalog", "tier", "personal", "owner", "shareable")
_GRANT_KEY_WIDTH = max(len(k) for k in GRANT_ORDER) + 1
_MAX_PASSES = 5

Position = tuple[int, int]  # (line, column) in the source being formatted


def display_width(text: str) -> int:
    """Terminal cells: Chinese characters take two, which is what a reader sees as width."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_policy(file: ast.PolicyFile, text: str) -> str:
    """The canonical text of a parsed file (`text` is the source it was parsed from)."""
    out = _Formatter(file, text).render()
    for _ in range(_MAX_PASSES):
        again = _Formatter(parse_policy(out, file.path), out).render()
        if again == out:
            break
        out = again
    return out


def format_text(text: str, path: str = "<text>") -> str:
    """Parse and format in one step; raises DiagnosticError on a syntax error."""
    return format_policy(parse_policy(text, path), text)


def canonical_ast(file: ast.PolicyFile) -> tuple[ast.Declaration, ...]:
    """The declarations with grant clauses in canonical order: what formatting must preserve.

    Grant clause order carries no meaning (`check` reads them by keyword), and the formatter
    sorts them, so this is the equality the formatter promises.
    """
    out = []
    for declaration in file.declarations:
        order = {ast.Grant: GRANT_ORDER, ast.Dataset: DATASET_ORDER}.get(type(declaration))
        if order is not None:
            clauses = sorted(declaration.clauses, key=lambda c: _rank(c.keyword, order))
            declaration = replace(declaration, clauses=tuple(clauses))
        out.append(declaration)
    return tuple(out)


def _rank(keyword: str, order: tuple[str, ...]) -> int:
    return order.index(keyword) if keyword in order else len(order)


# ---- operands and atoms ------------------------------------------------------------------


def quote(value: str) -> str:
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\t", "\\t"))
    return f'"{escaped}"'


def operand_text(operand: ast.Operand) -> str:
    match operand:
        case ast.Symbol(name=name):
            return name
        case ast.Text(value=value):
            return quote(value)
        case ast.Instant(text=text):
            return text
        case ast.AttributeRef(path=path):
            return path
    raise AssertionError(f"unknown operand {operand!r}")


def _list_head(expression) -> tuple[str, tuple[ast.Operand, ...]] | None:
    """For atoms holding a `[..]` list: the text before `[` and the values."""
    match expression:
        case ast.Membership(attribute=ref, negated=negated, operands=operands):
            return f"{ref.path} {'not in' if negated else 'in'} ", operands
        case ast.Has(attribute=ref, quantifier=quantifier, operands=operands):
            if quantifier == "all" and len(operands) == 1:
                return None
            return f"{ref.path} has {quantifier} ", operands
    return None


def _needs_parens(parent, child) -> bool:
    """Whether `child` must be parenthesised inside `parent` to parse back to the same tree."""
    if isinstance(parent, ast.Not):
        return isinstance(child, (ast.AllOf, ast.AnyOf))
    if isinstance(parent, ast.AllOf):
        return isinstance(child, (ast.AllOf, ast.AnyOf))
    if isinstance(parent, ast.AnyOf):
        # `and` binds tighter, but officers should not need to know that: keep `(a and b) or c`.
        return isinstance(child, (ast.AnyOf, ast.AllOf))
    return False


def flat(expression: ast.Expression) -> str:
    """A condition on one line."""
    match expression:
        case ast.Comparison(attribute=ref, operator=operator, operand=operand):
            return f"{ref.path} {operator} {operand_text(operand)}"
        case ast.Has(attribute=ref, quantifier="all", operands=(single,)):
            return f"{ref.path} has {operand_text(single)}"
        case ast.Membership() | ast.Has():
            head, operands = _list_head(expression)
            return head + "[" + ", ".join(operand_text(o) for o in operands) + "]"
        case ast.Truth(attribute=ref):
            return ref.path
        case ast.Not(operand=inner):
            return "not " + _child(expression, inner)
        case ast.AllOf(operands=parts):
            return " and ".join(_child(expression, p) for p in parts)
        case ast.AnyOf(operands=parts):
            return " or ".join(_child(expression, p) for p in parts)
    raise AssertionError(f"unknown condition {expression!r}")


def _child(parent, child) -> str:
    text = flat(child)
    return f"({text})" if _needs_parens(parent, child) else text


# ---- output lines ------------------------------------------------------------------------


@dataclass
class _Piece:
    """Part of a condition's layout: `indent` None continues the line it starts on."""

    indent: int | None
    text: str
    anchor: Position | None = None


@dataclass
class _Line:
    indent: int
    text: str
    anchor: Position | None  # where its code starts in the source; comments attach here
    top: bool = False  # a declaration's first line (blank lines before comments are kept)
    blank: bool = False
    leading: list = field(default_factory=list)
    trailing: list = field(default_factory=list)


def _start(node) -> Position:
    return (node.span.line, node.span.column)


class _Formatter:
    def __init__(self, file: ast.PolicyFile, text: str):
        self.file = file
        self.source_lines = text.splitlines()
        self.comments = sorted(file.comments, key=lambda c: (c.line, c.column))
        self.lines: list[_Line] = []

    # -- declarations
    def render(self) -> str:
        for index, declaration in enumerate(self.file.declarations):
            if index:
                self.lines.append(_Line(0, "", None, blank=True))
            match declaration:
                case ast.Vocabulary():
                    self.vocabulary(declaration)
                case ast.Rule():
                    self.rule(declaration)
                case ast.Grant():
                    self.grant(declaration)
                case ast.Dataset():
                    self.clauses(f"dataset {declaration.id}", declaration, DATASET_ORDER)
                case ast.CatalogSettings():
                    self.clauses("catalog", declaration, ())
                case ast.UnmetCitations():
                    self.unmet_citations(declaration)
        tail = self.place_comments()
        return self.emit(tail)

    def open(self, header: str, declaration) -> None:
        self.lines.append(_Line(0, header + " {", _start(declaration), top=True))

    def close(self, declaration) -> None:
        span = declaration.span
        self.lines.append(_Line(0, "}", (span.end_line, max(span.end_column - 1, 1))))

    def clause(self, text: str, anchor: Position | None, indent: int = INDENT) -> None:
        self.lines.append(_Line(indent, text, anchor))

    def vocabulary(self, vocabulary: ast.Vocabulary) -> None:
        self.open(f"vocabulary {vocabulary.attribute}", vocabulary)
        heads = [value.name + (
            "(" + ", ".join(f"{p.name}: {p.type}" for p in value.parameters) + ")"
            if value.parameters else "") for value in vocabulary.values]
        column = max((len(h) for h, v in zip(heads, vocabulary.values) if v.label is not None),
                     default=0) + 2
        for head, value in zip(heads, vocabulary.values):
            text = head if value.label is None else head.ljust(column) + quote(value.label)
            self.clause(text, _start(value))
        self.close(vocabulary)

    def rule(self, rule: ast.Rule) -> None:
        self.open(f"rule {rule.id}", rule)
        for citation in rule.citations:
            self.clause(f"cite {quote(citation.value)}", _start(citation))
        if rule.messages:
            parts = [f"{t.language} {quote(t.text)}" for t in rule.messages]
            one_line = "message " + " ".join(parts)
            if display_width(one_line) + INDENT <= WIDTH:
                self.clause(one_line, _start(rule.messages[0]))
            else:
                self.clause("message " + parts[0], _start(rule.messages[0]))
                for part, translation in zip(parts[1:], rule.messages[1:]):
                    self.clause(part, _start(translation), INDENT * 2)
        for effect in rule.effects:
            self.effect(effect)
        if rule.requires_grant:
            self.clause("requires grant", None)
        if rule.obligations:
            refs = []
            for ref in rule.obligations:
                arguments = ", ".join(f"{a.name}: {operand_text(a.value)}" for a in ref.arguments)
                refs.append(ref.name + (f"({arguments})" if ref.arguments else ""))
            self.clause("oblige " + ", ".join(refs), _start(rule.obligations[0]))
        self.close(rule)

    def effect(self, effect: ast.Effect) -> None:
        if effect.condition is None:
            word = "otherwise" if effect.otherwise else "always"
            self.clause(f"{effect.effect} {word}", _start(effect))
            return
        prefix = f"{effect.effect} when "
        pieces = self.layout(effect.condition, INDENT + len(prefix))
        self.clause(prefix + pieces[0].text, _start(effect))
        for piece in pieces[1:]:
            self.lines.append(_Line(piece.indent, piece.text, piece.anchor))

    def grant(self, grant: ast.Grant) -> None:
        self.clauses(f"grant {grant.id}", grant, GRANT_ORDER)

    def unmet_citations(self, block: ast.UnmetCitations) -> None:
        self.open("unmet", block)
        width = max((len(e.requirement) for e in block.entries), default=0) + 2
        for entry in block.entries:
            self.clause(entry.requirement.ljust(width) + quote(entry.citation.value), _start(entry))
        self.close(block)

    def clauses(self, header: str, declaration, order: tuple[str, ...]) -> None:
        """A block of `keyword values` lines (grants, datasets, catalog settings), aligned."""
        self.open(header, declaration)
        for clause in sorted(declaration.clauses, key=lambda c: _rank(c.keyword, order)):
            values = ", ".join(operand_text(v) for v in clause.values)
            key = clause.keyword.ljust(max(_GRANT_KEY_WIDTH, len(clause.keyword) + 1))
            self.clause(key + values, _start(clause))
        self.close(declaration)

    # -- conditions
    def owns_comment(self, expression) -> bool:
        span = expression.span
        start, end = (span.line, span.column), (span.end_line, span.end_column)
        return any(start < (c.line, c.column) < end for c in self.comments)

    def layout(self, expression: ast.Expression, column: int) -> list[_Piece]:
        """The condition starting at `column`: one piece if it fits, else broken lines."""
        is_group = isinstance(expression, (ast.AllOf, ast.AnyOf))
        text = flat(expression)
        if column + display_width(text) <= WIDTH and not (is_group and self.owns_comment(expression)):
            return [_Piece(None, text)]
        match expression:
            case ast.AllOf(operands=parts) | ast.AnyOf(operands=parts):
                operator = "and" if isinstance(expression, ast.AllOf) else "or"
                out: list[_Piece] = []
                for index, part in enumerate(parts):
                    pieces = self.wrapped(expression, part, column)
                    if index == 0:
                        out.extend(pieces)
                        continue
                    out.append(_Piece(column - len(operator) - 1, f"{operator} {pieces[0].text}",
                                      _start(part)))
                    out.extend(pieces[1:])
                return out
            case ast.Not(operand=inner):
                pieces = self.wrapped(expression, inner, column + 4)
                pieces[0].text = "not " + pieces[0].text
                return pieces
        head = _list_head(expression)
        if head is None:
            return [_Piece(None, text)]
        return self.wrap_list(head[0] + "[", [operand_text(o) for o in head[1]], column)

    def wrapped(self, parent, child, column: int) -> list[_Piece]:
        if not _needs_parens(parent, child):
            return self.layout(child, column)
        pieces = self.layout(child, column + 1)
        pieces[0].text = "(" + pieces[0].text
        pieces[-1].text += ")"
        return pieces

    @staticmethod
    def wrap_list(head: str, items: list[str], column: int) -> list[_Piece]:
        """Fill values greedily, continuation lines starting under the first value."""
        item_column = column + len(head)
        rows: list[list[str]] = [[]]
        for item in items:
            candidate = ", ".join(rows[-1] + [item])
            if rows[-1] and item_column + display_width(candidate) + 1 > WIDTH:
                rows.append([item])
            else:
                rows[-1].append(item)
        pieces = []
        for index, row in enumerate(rows):
            text = ", ".join(row) + ("]" if index == len(rows) - 1 else ",")
            if index == 0:
                pieces.append(_Piece(None, head + text))
            else:
                pieces.append(_Piece(item_column, text))
        return pieces

    # -- comments
    def is_full_line(self, comment: ast.Comment) -> bool:
        if comment.line > len(self.source_lines):
            return True
        return not self.source_lines[comment.line - 1][: comment.column - 1].strip()

    def place_comments(self) -> list:
        anchored = sorted((line.anchor, index) for index, line in enumerate(self.lines)
                          if line.anchor is not None)
        tail = []
        for comment in self.comments:
            position = (comment.line, comment.column)
            if self.is_full_line(comment):
                after = [index for anchor, index in anchored if anchor > position]
                if after:
                    self.lines[min(after, key=lambda i: self.lines[i].anchor)].leading.append(comment)
                else:
                    tail.append(comment)
            else:
                before = [(anchor, index) for anchor, index in anchored if anchor <= position]
                if before:
                    self.lines[max(before)[1]].trailing.append(comment)
                elif anchored:
                    self.lines[anchored[0][1]].leading.append(comment)
                else:
                    tail.append(comment)
        # One trailing comment per line: any more become full-line comments before the next
        # line that can hold comments, so a second pass puts them back in the same place.
        carry: list = []
        for line in self.lines:
            if line.anchor is None:
                continue
            if carry:
                line.leading[:0] = carry
                carry = []
            if len(line.trailing) > 1:
                carry = line.trailing[1:]
                line.trailing = line.trailing[:1]
        return carry + tail

    def blank_between(self, first_line: int, second_line: int) -> bool:
        """Whether the source has a blank line strictly between two lines."""
        between = self.source_lines[first_line: max(second_line - 1, first_line)]
        return any(not text.strip() for text in between)

    def emit(self, tail: list) -> str:
        out: list[str] = []
        previous_line = 0  # the source line of the last thing emitted at the top level
        for line in self.lines:
            if line.blank:
                out.append("")
                continue
            pad = " " * line.indent
            for index, comment in enumerate(line.leading):
                if line.top and out and out[-1] != "" and self.blank_between(previous_line,
                                                                              comment.line):
                    out.append("")
                out.append(pad + comment.text.rstrip())
                previous_line = comment.line
            if line.top and line.leading and self.blank_between(previous_line, line.anchor[0]):
                out.append("")
            code = pad + line.text
            if line.trailing:
                width = display_width(code)
                gap = COMMENT_COLUMN - width if width < COMMENT_COLUMN - 1 else 2
                code += " " * gap + line.trailing[0].text.rstrip()
            out.append(code)
            if line.anchor is not None and line.text == "}":
                previous_line = line.anchor[0]
        for comment in tail:
            if out and out[-1] != "" and self.blank_between(previous_line, comment.line):
                out.append("")
            out.append(comment.text.rstrip())
            previous_line = comment.line
        return "\n".join(out) + "\n" if out else ""
