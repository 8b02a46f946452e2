"""The checked policy: every name resolved against the vocabulary, every value typed.

`check` builds these from the syntax tree; `compile` and the evaluators read only these.
Instants are integers of microseconds since the Unix epoch (UTC), so comparisons are exact and
independent of the offset they were written in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from tiergate.diagnostics import NO_SPAN, Span

from .schema import CATALOGUED

# "obligation" rules (`on permit when …`) add obligations to a permit but never decide.
Effect = Literal["permit", "deny", "obligation"]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The declared values of one enumerated attribute, with their (Chinese) labels."""

    attribute: str
    labels: dict[str, str] = field(hash=False)

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self.labels)


@dataclass(frozen=True, slots=True)
class ObligationKind:
    """A declared obligation and its typed parameters (`destroy_on_expiry(at: time)`)."""

    id: str
    label: str
    parameters: tuple[tuple[str, str], ...]  # (name, "time" | "text")


# ---- conditions: atoms and connectives ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OneOf:
    """An enumerated or boolean request attribute takes one of `values`."""

    attribute: str
    values: frozenset


@dataclass(frozen=True, slots=True)
class TextIn:
    """A text attribute equals one of the literal `values`, or (with `other`) another attribute."""

    attribute: str
    values: frozenset[str] = frozenset()
    other: str | None = None


TimeOperand = Union[str, int]  # an attribute path ("context.time", "grant.expires") or µs


@dataclass(frozen=True, slots=True)
class Before:
    """`left < right`, strictly; every time comparison is normalised to this form."""

    left: TimeOperand
    right: TimeOperand


@dataclass(frozen=True, slots=True)
class ApprovedBy:
    """The bound grant was approved by all (or any) of `approvers`."""

    approvers: frozenset[str]
    quantifier: Literal["all", "any"]


Atom = Union[OneOf, TextIn, Before, ApprovedBy]


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Condition"


@dataclass(frozen=True, slots=True)
class All:
    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class Any:
    operands: tuple["Condition", ...]


Condition = Union[Atom, Not, All, Any]

ALWAYS = All(())


def mentions_grant(condition: Condition) -> bool:
    match condition:
        case ApprovedBy():
            return True
        case TextIn(attribute=a, other=o):
            return a.startswith("grant.") or (o or "").startswith("grant.")
        case Before(left=l, right=r):
            return any(isinstance(x, str) and x.startswith("grant.") for x in (l, r))
        case Not(operand=x):
            return mentions_grant(x)
        case All(operands=xs) | Any(operands=xs):
            return any(mentions_grant(x) for x in xs)
    return False


# ---- conjunctive normal pieces, for compiling into the tree ------------------------------


@dataclass(frozen=True, slots=True)
class Residual:
    """A residual atom, possibly negated: what the tree cannot index (time, text, grant)."""

    atom: Atom
    positive: bool = True


@dataclass(frozen=True, slots=True)
class Conjunct:
    """One `and`-clause of a rule's condition in disjunctive normal form.

    `indexed` constrains enumerated and boolean attributes (the tree's index keys); the
    `residual` literals are checked at the leaf, with the bound grant where they mention one.
    """

    indexed: tuple[tuple[str, frozenset], ...]
    residual: tuple[Residual, ...]

    def allowed(self, attribute: str) -> frozenset | None:
        for name, values in self.indexed:
            if name == attribute:
                return values
        return None


# ---- rules and grants --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObligationTemplate:
    """An obligation as a rule states it; parameters are literals, grant or request attributes."""

    id: str
    parameters: tuple[tuple[str, str | int], ...]  # value: text, "grant.<attr>" or a request path
    from_grant: tuple[str, ...] = ()  # parameter names whose value is a grant attribute
    from_request: tuple[str, ...] = ()  # parameter names whose value is a request attribute

    @property
    def reads_time(self) -> bool:
        """Whether a parameter takes context.time (the decision then shows the second)."""
        return any(value == "context.time" for _, value in self.parameters)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: Effect
    condition: Condition
    conjuncts: tuple[Conjunct, ...]
    needs_grant: bool
    citation: str
    message_zh: str
    message_en: str
    obligations: tuple[ObligationTemplate, ...]
    order: int  # position in the policy set; reasons are listed in this order
    fallback: bool = False  # `deny otherwise`: the reason given when nothing permits
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    grantee: str
    tiers: frozenset[str]
    catalog: frozenset[str]
    datasets: frozenset[str] | None  # None: every dataset of the covered classes
    purposes: frozenset[str]
    actions: frozenset[str]
    approvers: frozenset[str]
    agreement: str
    expires: int  # µs since the epoch; the grant no longer applies from this instant on
    expires_text: str  # as written, offset and all, for obligations and messages
    span: Span = field(default=NO_SPAN, compare=False)

    def covers(self, tier: str, catalog_class: str, dataset: str | None, purpose: str,
               action: str) -> bool:
        """Whether the request falls inside this grant's scope (time is checked apart)."""
        return (tier in self.tiers and catalog_class in self.catalog
                and (self.datasets is None or dataset in self.datasets)
                and purpose in self.purposes and action in self.actions)

    def attribute(self, path: str):
        return {
            "grant.id": self.id, "grant.grantee": self.grantee, "grant.agreement": self.agreement,
            "grant.expires": self.expires, "grant.approved_by": self.approvers,
        }[path]


@dataclass(frozen=True, slots=True)
class Dataset:
    """One entry of the data resource catalog (数据资源目录, 福州办法 第九条)."""

    id: str
    label: str
    catalog_class: str
    tier: str
    personal: bool
    owner_org_id: str | None
    shareable: bool  # may be shared with government users (福州办法 第十四条)
    # Where it is listed: a Span (a dataset block), or (file, line) of a data file's row — a
    # Span is made only when asked for, since a catalog may hold 100,000 rows.
    location: "Span | tuple[str, int]" = field(default=NO_SPAN, compare=False)

    @property
    def span(self) -> Span:
        if isinstance(self.location, Span):
            return self.location
        file, line = self.location
        return Span(file, line, 1, line, 2)

    @property
    def decided(self) -> tuple:
        """The values a request about this dataset is decided on, in schema.CATALOGUED order
        (each catalogued attribute's key is the name of the field that holds it)."""
        return tuple(getattr(self, attribute.key) for attribute in CATALOGUED)


# What a request naming a dataset the catalog does not list gets: refused (the default once a
# catalog exists), or decided on the attributes it states itself.
Uncatalogued = Literal["refuse", "as_stated"]


@dataclass(frozen=True, slots=True)
class Catalog:
    """The datasets a policy set declares, and what an uncatalogued dataset id gets."""

    datasets: dict[str, Dataset] = field(hash=False)
    uncatalogued: Uncatalogued = "as_stated"

    @property
    def exists(self) -> bool:
        return bool(self.datasets) or self.uncatalogued == "refuse"


NO_CATALOG = Catalog({}, "as_stated")


@dataclass(frozen=True, slots=True)
class CheckedPolicy:
    """A policy set that passed every check: what the compiler and evaluators consume."""

    vocabularies: dict[str, Vocabulary] = field(hash=False)
    obligations: dict[str, ObligationKind] = field(hash=False)
    rules: tuple[Rule, ...]
    grants: tuple[Grant, ...]
    catalog: Catalog = NO_CATALOG
    # The articles a default deny cites when a grant was missing, expired, out of scope or
    # lacked an approval (`unmet { grant_expired "福州办法 第二十九条" … }`).
    unmet_citations: dict[str, str] = field(default_factory=dict, hash=False)

    def domain(self, attribute: str) -> frozenset:
        """The finite set of values an indexed (enumerated or boolean) attribute can take."""
        return domain_of(self.vocabularies, attribute)


def domain_of(vocabularies: dict[str, Vocabulary], attribute: str) -> frozenset:
    """An indexed attribute's values: its vocabulary's, or true and false for a boolean."""
    if attribute in vocabularies:
        return vocabularies[attribute].values
    return frozenset((True, False))
