"""The policy language's syntax tree, as written: no name is resolved and no value checked yet.

One frozen dataclass per construct. Source spans ride along for error messages but never take
part in equality, so a reformatted file parses to an equal tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from tiergate.diagnostics import NO_SPAN, Span


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


# ---- operands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Symbol:
    """A bare name: a declared value such as `medical_service`, or `true` / `false`."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Text:
    """A quoted string, escapes already decoded."""

    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Instant:
    """A point in time as written (RFC 3339 with a UTC offset); `check` parses it."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AttributeRef:
    """A request or grant attribute: `resource.tier`, `action`, `grant.expires`."""

    path: str
    span: Span = _span()


Operand = Union[Symbol, Text, Instant, AttributeRef]


# ---- conditions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """`attribute OP operand` with OP one of == != < <= > >=."""

    attribute: AttributeRef
    operator: str
    operand: Operand
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Membership:
    """`attribute in [..]` or `attribute not in [..]`."""

    attribute: AttributeRef
    negated: bool
    operands: tuple[Operand, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Has:
    """`grant.approved_by has x`, `... has all [x, y]`, `... has any [x, y]`."""

    attribute: AttributeRef
    quantifier: Literal["all", "any"]
    operands: tuple[Operand, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Truth:
    """A boolean attribute on its own: `context.deidentified`."""

    attribute: AttributeRef
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Expression"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AllOf:
    """Conditions joined by `and`."""

    operands: tuple["Expression", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Conditions joined by `or`."""

    operands: tuple["Expression", ...]
    span: Span = _span()


Expression = Union[Comparison, Membership, Has, Truth, Not, AllOf, AnyOf]


# ---- declarations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parameter:
    """A declared obligation parameter: `at: time`."""

    name: str
    type: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class VocabularyValue:
    name: str
    label: str | None
    parameters: tuple[Parameter, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """`vocabulary resource.tier { open "普遍开放类" ... }`."""

    attribute: str
    values: tuple[VocabularyValue, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Translation:
    language: Literal["zh", "en"]
    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    value: Operand
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ObligationRef:
    """`destroy_on_expiry(at: grant.expires)` in a rule's `oblige` clause."""

    name: str
    arguments: tuple[Argument, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Effect:
    """`permit when <condition>`, `deny always`, `on permit when …`, `deny otherwise`.

    `condition` None means always; `otherwise` marks the default-deny rule.
    """

    effect: Literal["permit", "deny", "on permit"]
    condition: Expression | None
    otherwise: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as written. Clauses may repeat or be missing here; `check` says so."""

    id: str
    citations: tuple[Text, ...]
    messages: tuple[Translation, ...]
    effects: tuple[Effect, ...]
    requires_grant: bool
    obligations: tuple[ObligationRef, ...]
    span: Span = _span()
    id_span: Span = _span()


@dataclass(frozen=True, slots=True)
class GrantClause:
    """One line of a grant: `tier conditional`, `expires 2027-...`; `values` as written."""

    keyword: str
    values: tuple[Operand, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant as written; `check` turns its clauses into a typed, validated grant."""

    id: str
    clauses: tuple[GrantClause, ...]
    span: Span = _span()
    id_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Dataset:
    """`dataset ds-cardio-2025 { label "…" catalog medical_service tier conditional … }`.

    One entry of the data resource catalog; clauses as written, `check` types them.
    """

    id: str
    clauses: tuple[GrantClause, ...]
    span: Span = _span()
    id_span: Span = _span()


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    """`catalog { uncatalogued refuse }`: what a request naming an unlisted dataset gets."""

    clauses: tuple[GrantClause, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class UnmetCitation:
    """`grant_expired "福州办法 第二十九条"` inside an `unmet { … }` block."""

    requirement: str
    citation: Text
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class UnmetCitations:
    """`unmet { … }`: the article a default deny cites for each kind of grant requirement."""

    entries: tuple[UnmetCitation, ...]
    span: Span = _span()


Declaration = Union[Vocabulary, Rule, Grant, Dataset, CatalogSettings, UnmetCitations]


@dataclass(frozen=True, slots=True)
class Comment:
    """A `#` comment, kept so the formatter can put it back."""

    text: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: str
    declarations: tuple[Declaration, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
