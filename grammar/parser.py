"""Parse policy text into the syntax tree (`ast`), or into diagnostics a person can act on."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ast
from tiergate.diagnostics import Diagnostic, DiagnosticError, Span, did_you_mean, span_of
from .fast_grants import read_simple_grants


# Lark calls lexer callbacks for ignored terminals too; that is how comments survive. The
# parser is built once, so the callbacks use the state of whichever parse is running on this
# thread: the comments found so far and the text being read.
_lexing = threading.local()
# How deep `not`, `and` and `or` may nest in one condition. Deeper is a diagnostic, never a
# RecursionError (the later phases walk conditions recursively).
MAX_NESTING = 64


class _GluedKeyword(Exception):
    """A keyword runs into the word after it (`granteefzu`, `denywhen`)."""

    def __init__(self, token: Token, following: str):
        self.token, self.following = token, following


def _collect_comment(token: Token) -> Token:
    _lexing.comments.append(ast.Comment(str(token), token.line, token.column))
    return token


def _keyword_ends(token: Token) -> Token:
    text, end = _lexing.text, token.end_pos
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        raise _GluedKeyword(token, text[end])
    return token


def _grammar() -> str:
    return resources.files(__package__).joinpath("tiergate.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    options = dict(parser="lalr", lexer="contextual", propagate_positions=True,
                   maybe_placeholders=False)
    # Every keyword (an alphabetic literal of the grammar: grantee, tier, when, not, …) must be
    # followed by something that is not part of a word; Lark alone would read `granteefzu` as
    # `grantee fzu`.
    keywords = [t.name for t in Lark(_grammar(), **options).terminals
                if t.pattern.type == "str" and t.pattern.value.replace("_", "").isalpha()]
    callbacks = {"COMMENT": _collect_comment, **{name: _keyword_ends for name in keywords}}
    return Lark(_grammar(), **options, lexer_callbacks=callbacks)


def _token_span(token: Token, file: str) -> Span:
    return Span(file, token.line, token.column, token.end_line, token.end_column)


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _decode_string(token: str) -> str:
    body = str(token)[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _effect_name(token: Token) -> str:
    return " ".join(str(token).split())  # "on   permit" -> "on permit"


@v_args(meta=True)
class _ToAst(Transformer):
    """One method per grammar rule; each builds one `ast` node with its span."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta) -> Span:
        return span_of(meta, self.file)

    # -- operands
    def symbol(self, meta, children):
        return ast.Symbol(str(children[0]), self._span(meta))

    def text(self, meta, children):
        return ast.Text(_decode_string(children[0]), self._span(meta))

    def instant(self, meta, children):
        return ast.Instant(str(children[0]), self._span(meta))

    def attribute(self, meta, children):
        return ast.AttributeRef(str(children[0]), self._span(meta))

    def value_list(self, meta, children):
        return tuple(children)

    # -- conditions
    def _attr(self, token: Token) -> ast.AttributeRef:
        return ast.AttributeRef(str(token), _token_span(token, self.file))

    def comparison(self, meta, children):
        attribute, operator, operand = children
        return ast.Comparison(self._attr(attribute), str(operator), operand, self._span(meta))

    def membership(self, meta, children):
        attribute, keyword, operands = children
        negated = str(keyword).startswith("not")
        return ast.Membership(self._attr(attribute), negated, operands, self._span(meta))

    def has(self, meta, children):
        attribute, operand = children
        return ast.Has(self._attr(attribute), "all", (operand,), self._span(meta))

    def has_quantified(self, meta, children):
        attribute, quantifier, operands = children
        return ast.Has(self._attr(attribute), str(quantifier), operands, self._span(meta))

    def truth(self, meta, children):
        return ast.Truth(self._attr(children[0]), self._span(meta))

    def negated(self, meta, children):
        return ast.Not(children[0], self._span(meta))

    def all_of(self, meta, children):
        return ast.AllOf(tuple(children), self._span(meta))

    def any_of(self, meta, children):
        return ast.AnyOf(tuple(children), self._span(meta))

    # -- vocabulary
    def parameter(self, meta, children):
        name, type_name = children
        return ast.Parameter(str(name), str(type_name), self._span(meta))

    def parameters(self, meta, children):
        return tuple(children)

    def vocabulary_value(self, meta, children):
        name = str(children[0])
        label = None
        parameters: tuple = ()
        for child in children[1:]:
            if isinstance(child, tuple):
                parameters = child
            else:
                label = _decode_string(child)
        return ast.VocabularyValue(name, label, parameters, self._span(meta))

    def vocabulary(self, meta, children):
        name, *values = children
        return ast.Vocabulary(str(name), tuple(values), self._span(meta))

    # -- rules
    def cite(self, meta, children):
        return ("cite", ast.Text(_decode_string(children[0]), self._span(meta)))

    def translation(self, meta, children):
        language, text = children
        return ast.Translation(str(language), _decode_string(text), self._span(meta))

    def message(self, meta, children):
        return ("message", tuple(children))

    def effect(self, meta, children):
        effect, condition = children
        return ("effect", ast.Effect(_effect_name(effect), condition, False, self._span(meta)))

    def effect_always(self, meta, children):
        return ("effect", ast.Effect(_effect_name(children[0]), None, False, self._span(meta)))

    def effect_otherwise(self, meta, children):
        return ("effect", ast.Effect(_effect_name(children[0]), None, True, self._span(meta)))

    def requires_grant(self, meta, children):
        return ("requires_grant", True)

    def argument(self, meta, children):
        name, value = children
        return ast.Argument(str(name), value, self._span(meta))

    def obligation(self, meta, children):
        name, *arguments = children
        return ast.ObligationRef(str(name), tuple(arguments), self._span(meta))

    def oblige(self, meta, children):
        return ("oblige", tuple(children))

    def rule(self, meta, children):
        ident, *clauses = children
        citations, messages, effects, obligations = [], [], [], []
        requires_grant = False
        for kind, value in clauses:
            if kind == "cite":
                citations.append(value)
            elif kind == "message":
                messages.extend(value)
            elif kind == "effect":
                effects.append(value)
            elif kind == "oblige":
                obligations.extend(value)
            elif kind == "requires_grant":
                requires_grant = True
        return ast.Rule(str(ident), tuple(citations), tuple(messages), tuple(effects),
                        requires_grant, tuple(obligations), self._span(meta),
                        _token_span(ident, self.file))

    # -- grants: every clause becomes a GrantClause named by its keyword
    def _clause(keyword: str, operand_kind):  # noqa: N805 - a method factory
        def build(self, meta, children):
            values = tuple(operand_kind(self, token) for token in children)
            return ast.GrantClause(keyword, values, self._span(meta))
        return build

    def _as_symbol(self, token: Token) -> ast.Symbol:
        return ast.Symbol(str(token), _token_span(token, self.file))

    def _as_text(self, token: Token) -> ast.Text:
        return ast.Text(_decode_string(token), _token_span(token, self.file))

    def _as_instant(self, token: Token) -> ast.Instant:
        return ast.Instant(str(token), _token_span(token, self.file))

    grantee = _clause("grantee", _as_symbol)
    tiers = _clause("tier", _as_symbol)
    catalog = _clause("catalog", _as_symbol)
    datasets = _clause("dataset", _as_symbol)
    purposes = _clause("purpose", _as_symbol)
    actions = _clause("action", _as_symbol)
    approved_by = _clause("approved_by", _as_symbol)
    agreement = _clause("agreement", _as_text)
    expires = _clause("expires", _as_instant)

    def grant(self, meta, children):
        ident, *clauses = children
        return ast.Grant(str(ident), tuple(clauses), self._span(meta), _token_span(ident, self.file))

    # -- the catalog: dataset clauses are GrantClauses too (keyword and values as written)
    label = _clause("label", _as_text)
    personal = _clause("personal", _as_symbol)
    owner = _clause("owner", _as_symbol)
    shareable = _clause("shareable", _as_symbol)
    uncatalogued = _clause("uncatalogued", _as_symbol)

    def dataset(self, meta, children):
        ident, *clauses = children
        return ast.Dataset(str(ident), tuple(clauses), self._span(meta),
                           _token_span(ident, self.file))

    def catalog_settings(self, meta, children):
        return ast.CatalogSettings(tuple(children), self._span(meta))

    def unmet_citation(self, meta, children):
        requirement, text = children
        return ast.UnmetCitation(str(requirement), self._as_text(text), self._span(meta))

    def unmet_citations(self, meta, children):
        return ast.UnmetCitations(tuple(children), self._span(meta))

    def start(self, meta, children):
        return tuple(children)


# What a person should read instead of a terminal's name.
_TERMINAL_WORDS = {
    "SYMBOL": "a name such as medical_service",
    "IDENT": "an id such as fz-2026-017",
    "STRING": 'a quoted text such as "福州办法 第十八条"',
    "INSTANT": "an instant such as 2027-06-30T00:00:00+08:00",
    "ATTRIBUTE": "an attribute such as resource.tier",
    "VOCABULARY_NAME": "an attribute to declare values for, such as resource.catalog_class",
    "COMPARATOR": "a comparison (==, !=, <, <=, >, >=)",
    "EFFECT": "permit, deny or on permit",
    "LANGUAGE": "zh or en",
    "IN": "in / not in",
    "QUANTIFIER": "all or any",
    "$END": "the end of the file",
}


def _describe_expected(parser: Lark, names) -> list[str]:
    words = []
    for name in sorted(set(names)):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.append(name)
            continue
        words.append(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
    return sorted(set(words))


def _literal_keywords(parser: Lark, names) -> list[str]:
    out = []
    for name in names:
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.replace("_", "").isalpha():
            out.append(pattern.value)
    if "EFFECT" in names:
        out += ["permit", "deny"]
    return out


def _odd_character(rest: str) -> tuple[str, str, str, int] | None:
    """A non-ASCII space where a token should start, or a control character in the text there
    (inside a quoted text): (code, message, help, offset into `rest`), else None."""
    first = rest[:1]
    for offset, char in enumerate(rest[:40]):  # in or right after the word where reading stopped
        if char in " \t\"#":
            break
        if not char.isascii() and (char.isspace() or unicodedata.category(char) == "Zs"):
            name = unicodedata.name(char, "")
            return ("TG102", f"a non-ASCII space (U+{ord(char):04X} {name}) outside a text",
                    "use an ordinary space", offset)
    if first == '"':
        end = rest.find('"', 1)
        for offset, char in enumerate(rest[1:end if end > 0 else None], 1):
            if ord(char) < 0x20 or ord(char) == 0x7F:
                return ("TG102", f"a control character (U+{ord(char):04X}) inside a text",
                        "write \\n or \\t for a line break or tab; remove other control "
                        "characters", offset)
    return None


# Where a top-level declaration starts: its keyword first on a line, its name, its `{`. Syntax
# errors are recovered from at the next one, so that every error in a file is reported.
# SECURITY: possessive quantifiers only; the scan is linear in the text.
_DECLARATION = re.compile(
    r"^[ \t]*+(?P<head>(?P<keyword>vocabulary|rule|grant|dataset)[ \t]++"
    r"(?P<name>[A-Za-z][A-Za-z0-9_.\-]*+)|(?P<bare>catalog|unmet))[ \t]*+\{", re.M)
MAX_SYNTAX_ERRORS = 20


class _Declarations:
    """The declaration heads of a text, found once, for recovery and for naming open blocks."""

    def __init__(self, text: str):
        self.heads = []
        line, counted = 1, 0
        for match in _DECLARATION.finditer(text):  # lines counted once, front to back
            line += text.count("\n", counted, match.start())
            counted = match.start()
            self.heads.append((match.start(), line, match))

    def after_line(self, line: int, *, inclusive: bool):
        """The first head on a line after `line` (or on it, when inclusive)."""
        for head in self.heads:
            if head[1] > line or (inclusive and head[1] == line):
                return head
        return None

    def open_at(self, line: int):
        """The last head on a line before `line`: the block a parse error there is inside."""
        last = None
        for head in self.heads:
            if head[1] >= line:
                break
            last = head
        return last


# The parser shares states between grant and dataset blocks, so it would offer a grant the
# clauses only a dataset has, and the other way round.
_CLAUSES = {"grant": {"grantee", "tier", "catalog", "dataset", "purpose", "action",
                      "approved_by", "agreement", "expires"},
            "dataset": {"label", "catalog", "tier", "personal", "owner", "shareable"}}


def _other_blocks_clauses(heads: "_Declarations | None", line: int) -> set[str]:
    """Clause keywords that belong only to the other kind of block than the one open at
    `line` (nothing when no grant or dataset is open there)."""
    opened = heads.open_at(line + 1) if heads is not None else None
    keyword = opened[2].group("keyword") if opened is not None else None
    if keyword not in _CLAUSES:
        return set()
    other = _CLAUSES["dataset" if keyword == "grant" else "grant"]
    return other - _CLAUSES[keyword]


def _unclosed_block(error: UnexpectedInput, file: str, text: str, line: int,
                    heads: _Declarations) -> Diagnostic | None:
    """A block left open: the end of the file, or the next declaration, where `}` could still
    come. Points at the open block's first line, not at where the parser noticed."""
    if not isinstance(error, UnexpectedToken) or "RBRACE" not in (error.expected or ()):
        return None
    at_end = error.token.type == "$END"
    if not at_end:
        head = heads.after_line(line - 1, inclusive=False)
        if head is None or head[1] != line or head[2].group("keyword", "bare") == (None, None):
            return None
        keyword = head[2].group("keyword") or head[2].group("bare")
        if str(error.token) != keyword:
            return None
    opened = heads.open_at(line if not at_end else len(text.splitlines()) + 1)
    if opened is None:
        return None
    _, open_line, match = opened
    what = match.group("head")
    column = match.start("head") - match.start() + 1
    where = "the end of the file" if at_end else f"line {line}"
    return Diagnostic(
        "TG105", f"{what} (line {open_line}) is not closed: its `}}` is missing before {where}",
        Span(file, open_line, column, open_line, column + len(what)),
        f"add }} at the end of {what}" + ("" if at_end else f", before line {line}"))


def _syntax_diagnostic(error: UnexpectedInput, file: str, text: str, line_offset: int = 0,
                       heads: _Declarations | None = None) -> Diagnostic:
    parser = _lark()
    line, column = error.line + line_offset, error.column
    if heads is not None:
        unclosed = _unclosed_block(error, file, text, line, heads)
        if unclosed is not None:
            return unclosed
    if line >= 1 and not (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        lines = text.splitlines()
        odd = _odd_character(lines[line - 1][column - 1:] if line <= len(lines) else "")
        if odd is not None:
            code, message, help_line, offset = odd
            return Diagnostic(code, message, Span(file, line, column + offset, line,
                                                  column + offset + 1), help_line)
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        found, width = "the end of the file", 1
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    elif isinstance(error, UnexpectedToken):
        token = str(error.token)
        found, width = f"'{token[:60]}{'…' if len(token) > 60 else ''}'", max(min(len(token), 60), 1)
    elif isinstance(error, UnexpectedCharacters):
        rest = text.splitlines()[line - 1][column - 1:] if line >= 1 else ""
        word = re.match(r"\S{1,60}", rest)  # enough to recognise it; never a whole long line
        found = f"'{word.group(0)}'" if word else "a character it cannot read"
        width = len(word.group(0)) if word else 1
    else:
        found, width = "the end of the file", 1
    expected_names = getattr(error, "expected", None) or getattr(error, "allowed", None) or set()
    foreign = _other_blocks_clauses(heads, line)
    expected = [w for w in _describe_expected(parser, expected_names) if w.strip("'") not in foreign]
    help_line = None
    if found.startswith("'"):
        help_line = did_you_mean(found.strip("'"), [k for k in _literal_keywords(
            parser, expected_names) if k not in foreign])
    if found == "'='":
        help_line = "to compare, write == (two equals signs)"
    if not help_line and '"' in found and found.count('"') % 2:
        help_line = "a text is missing its closing quote"
    message = f"unexpected {found}"
    if expected:
        message += "; expected " + (expected[0] if len(expected) == 1 else "one of: " + ", ".join(expected))
    span = Span(file, line, column, line, column + width)
    return Diagnostic("TG100", message, span, help_line)


def text_problems(text: str, file: str) -> list[Diagnostic]:
    """What makes a text unreadable before any token: a lone carriage return (a line break in
    some readers and not in others, so it could hide a rule inside a comment)."""
    problems = []
    for match in re.finditer(r"\r(?!\n)", text):
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        problems.append(Diagnostic(
            "TG101", "a carriage return (CR) not followed by a line feed", Span(
                file, line, column, line, column + 1),
            "save the file with LF (or CRLF) line endings"))
        if len(problems) >= 10:
            break
    return problems


def _too_deep(tree, file: str) -> Diagnostic | None:
    """The first condition nested deeper than MAX_NESTING, walked without recursion."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not hasattr(node, "data"):
            continue
        if node.data in ("negated", "all_of", "any_of"):
            depth += 1
            if depth > MAX_NESTING:
                meta = node.meta
                return Diagnostic("TG104", f"a condition nests not/and/or more than "
                                  f"{MAX_NESTING} deep", Span(file, meta.line, meta.column,
                                                              meta.line, meta.column + 1),
                                  "split it into several rules")
        stack.extend((child, depth) for child in node.children)
    return None


def _glued_diagnostic(glued: _GluedKeyword, segment: str, file: str,
                      line_offset: int) -> Diagnostic:
    token = glued.token
    word = re.match(r"\w{1,60}", segment[token.start_pos:]).group(0)
    line = token.line + line_offset
    return Diagnostic(
        "TG100", f"unexpected '{word}': the keyword '{token}' runs into the word after it",
        Span(file, line, token.column, line, token.column + len(word)),
        f"put a space after {token} ({token} {word[len(str(token)):]}), or correct the word")


def _every_syntax_error(rest: str, file: str, text: str) -> list[Diagnostic]:
    """Every syntax error of a text that does not parse: after each, parsing starts again at
    the next top-level declaration (at most MAX_SYNTAX_ERRORS, each segment read once)."""
    # The heads of the text as written: where blocks the quick grant reader took out of
    # `rest` begin too, so recovery restarts where it would without that reader.
    heads = _Declarations(text)
    # Lines and columns of `rest` are those of `text` (its offsets are not): restart by line.
    line_starts = [0] + [m.end() for m in re.finditer("\n", rest)]
    problems: list[Diagnostic] = []
    start, line_offset = 0, 0
    while len(problems) < MAX_SYNTAX_ERRORS:
        segment = rest[start:]
        _lexing.comments, _lexing.text = [], segment
        try:
            _lark().parse(segment)
            break
        except UnexpectedInput as error:
            problem = _syntax_diagnostic(error, file, text, line_offset, heads)
            error_line = (error.line if error.line >= 1 else segment.count("\n") + 1) + line_offset
            if isinstance(error, UnexpectedToken) and error.token.type == "$END":
                error_line = len(text.splitlines()) + 1
        except _GluedKeyword as glued:
            problem = _glued_diagnostic(glued, segment, file, line_offset)
            error_line = glued.token.line + line_offset
        problems.append(problem)
        # A missing `}` is noticed at the next declaration: parse again from that one.
        restart = heads.after_line(error_line, inclusive=problem.code == "TG105")
        if restart is None:
            break
        line_offset = restart[1] - 1
        start = line_starts[line_offset]
    return problems


def parse_policy(text: str, file: str) -> ast.PolicyFile:
    """Parse one policy file. Raises DiagnosticError on a syntax error."""
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark is not part of the text (editors show no column)
    problems = text_problems(text, file)
    if problems:
        raise DiagnosticError(problems)
    grants, grant_comments, rest = read_simple_grants(text, file, _decode_string)
    _lexing.comments = comments = []
    _lexing.text = rest
    try:
        tree = _lark().parse(rest)
    except (UnexpectedInput, _GluedKeyword):
        raise DiagnosticError(_every_syntax_error(rest, file, text)) from None
    deep = _too_deep(tree, file)
    if deep is not None:
        raise DiagnosticError([deep])
    declarations = _ToAst(file).transform(tree)
    if grants:
        declarations = tuple(sorted(declarations + tuple(grants),
                                    key=lambda d: (d.span.line, d.span.column)))
        comments = sorted(comments + grant_comments, key=lambda c: (c.line, c.column))
    return ast.PolicyFile(file, declarations, tuple(comments))
