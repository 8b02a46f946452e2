"""What a condition means: one definition, that deciding, explaining and analysing derive from.

`evaluate(condition, read)` is the meaning. `read(path)` gives an attribute's value — a request
attribute (`subject.org_id`), the time (`context.time`), or the bound grant's (`grant.expires`,
`grant.approved_by`) — or UNKNOWN. With every value known the answer is True or False; with some
UNKNOWN it is three-valued (Kleene): None where the known values do not settle it. So:

- explanations read the request and the grant being considered: a plain True/False;
- the analyses (lint's matrix, `tooling/regions.py`) read what a region of the decision tree
  or a grant fixes and leave the rest UNKNOWN: "may this hold?";
- the compiled tree calls `specialise(atom)`, a closure for the same atom written for speed.
  tests/test_engine_semantics.py checks on generated atoms and values that each closure
  answers exactly as `evaluate` does.

The rules of the language live here once (docs/language.md says them in words):
- an absent text (None) is in no set and equals nothing, not even another absent text;
- a time comparison with an absent side is false;
- `grant.approved_by has all [...]` needs every approver, `has any [...]` one of them, and
  neither holds without a bound grant.

tests/reference_evaluator.py stays the independent oracle, written from the language
reference, not from this module.
"""

from __future__ import annotations

from typing import Any, Callable

from . import model
from .request import SLOT, TIME_SLOT


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()  # a value an analysis does not know
Reader = Callable[[str], Any]
Predicate = Callable[[list, "model.Grant | None"], bool]  # (request values, grant) -> bool


# ---- the atoms ------------------------------------------------------------------------------

def text_in(value, texts: frozenset) -> bool:
    return value is not None and value in texts


def texts_equal(mine, other) -> bool:
    return mine is not None and mine == other


def before(left, right) -> bool:
    return left is not None and right is not None and left < right


def approved(needed: frozenset, granted: frozenset | None, quantifier: str) -> bool:
    if granted is None:  # no grant bound
        return False
    return needed <= granted if quantifier == "all" else not needed.isdisjoint(granted)


def _time(operand: model.TimeOperand, read: Reader):
    return operand if isinstance(operand, int) else read(operand)


def evaluate_atom(atom: model.Atom, read: Reader) -> bool | None:
    """One atom's value, or None when it depends on something UNKNOWN."""
    match atom:
        case model.OneOf(attribute=path, values=allowed):
            value = read(path)
            return None if value is UNKNOWN else value in allowed
        case model.TextIn(attribute=path, values=texts, other=None):
            value = read(path)
            return None if value is UNKNOWN else text_in(value, texts)
        case model.TextIn(attribute=path, other=other):
            mine, theirs = read(path), read(other)
            if mine is UNKNOWN or theirs is UNKNOWN:
                # Known to be absent: equal to nothing, whatever the other side is.
                return False if mine is None or theirs is None else None
            return texts_equal(mine, theirs)
        case model.Before(left=left, right=right):
            a, b = _time(left, read), _time(right, read)
            if a is None or b is None:
                return False
            if a is UNKNOWN or b is UNKNOWN:
                return None
            return a < b
        case model.ApprovedBy(approvers=needed, quantifier=quantifier):
            granted = read("grant.approved_by")
            return None if granted is UNKNOWN else approved(needed, granted, quantifier)
    raise AssertionError(f"unknown atom {atom!r}")


def evaluate(condition: model.Condition, read: Reader) -> bool | None:
    """The condition's value under `read`: True, False, or None (not settled by what is known)."""
    match condition:
        case model.All(operands=parts) | model.Any(operands=parts):
            # `and` is settled by a False part, `or` by a True one; an unsettled part leaves
            # the whole unsettled unless a settling part comes.
            settling = isinstance(condition, model.Any)
            result: bool | None = not settling
            for part in parts:
                value = evaluate(part, read)
                if value is settling:
                    return settling
                if value is None:
                    result = None
            return result
        case model.Not(operand=inner):
            value = evaluate(inner, read)
            return None if value is None else not value
    return evaluate_atom(condition, read)


def evaluate_literal(literal: model.Residual, read: Reader) -> bool | None:
    value = evaluate_atom(literal.atom, read)
    return value if value is None or literal.positive else not value


# ---- readers ----------------------------------------------------------------------------------

def request_reader(values: list, grant: model.Grant | None) -> Reader:
    """Everything known: the request's values (by slot) and the bound grant (or none)."""
    def read(path: str):
        if path.startswith("grant."):
            return None if grant is None else grant.attribute(path)
        return values[SLOT[path]]
    return read


def grant_reader(grant: model.Grant | None) -> Reader:
    """Only a grant known (the request UNKNOWN): what a grant alone settles."""
    def read(path: str):
        if path.startswith("grant."):
            return None if grant is None else grant.attribute(path)
        return UNKNOWN
    return read


def approvers_reader(approvers: frozenset) -> Reader:
    """Only the approvers of a grant that could be written known."""
    return lambda path: approvers if path == "grant.approved_by" else UNKNOWN


# ---- the compiled form ------------------------------------------------------------------------

def _operand(operand: model.TimeOperand):
    if isinstance(operand, int):
        return lambda values, grant: operand
    if operand == "context.time":
        return lambda values, grant: values[TIME_SLOT]
    return lambda values, grant, path=operand: None if grant is None else grant.attribute(path)


def _text(path: str):
    if path.startswith("grant."):
        return lambda values, grant: None if grant is None else grant.attribute(path)
    slot = SLOT[path]
    return lambda values, grant: values[slot]


def specialise(atom: model.Atom) -> Predicate:
    """`evaluate_atom` for one atom as a closure over (request values, grant): the decision
    path's form (no reader, no dispatch), same answers."""
    match atom:
        case model.OneOf(attribute=path, values=allowed):
            slot = SLOT[path]
            return lambda values, grant: values[slot] in allowed
        case model.Before(left=left, right=right):
            if left == "context.time" and isinstance(right, int):
                return lambda values, grant: values[TIME_SLOT] < right
            if right == "context.time" and isinstance(left, int):
                return lambda values, grant: left < values[TIME_SLOT]
            get_left, get_right = _operand(left), _operand(right)
            return lambda values, grant: before(get_left(values, grant), get_right(values, grant))
        case model.TextIn(attribute=path, values=texts, other=None):
            get = _text(path)
            return lambda values, grant: get(values, grant) in texts
        case model.TextIn(attribute=path, other=other):
            get, get_other = _text(path), _text(other)
            return lambda values, grant: texts_equal(get(values, grant), get_other(values, grant))
        case model.ApprovedBy(approvers=needed, quantifier="all"):
            return lambda values, grant: grant is not None and needed <= grant.approvers
        case model.ApprovedBy(approvers=needed):
            return lambda values, grant: (grant is not None
                                          and not needed.isdisjoint(grant.approvers))
    raise AssertionError(f"cannot specialise {atom!r}")


def specialise_residual(residual: tuple[model.Residual, ...]) -> Predicate:
    """The `and` of a clause's residual literals, compiled."""
    tests = []
    for literal in residual:
        test = specialise(literal.atom)
        if not literal.positive:
            test = (lambda inner: lambda values, grant: not inner(values, grant))(test)
        tests.append(test)
    if len(tests) == 1:
        return tests[0]
    return lambda values, grant: all(t(values, grant) for t in tests)
