"""Rewrite a checked condition into disjunctive normal form for the decision tree.

Negation is pushed down to the atoms. A negated enumerated or boolean test becomes the
complement within the attribute's finite domain, so every indexed constraint is a positive
"one of these values"; what the tree cannot index (text, time, grant) stays as residual
literals. Conjuncts that can never hold (an empty value set, an empty time interval) are
dropped; a rule left with none can never apply, which `check` reports.
"""

from __future__ import annotations

from itertools import product
from typing import Callable

from .model import (All, Any, Before, Condition, Conjunct, Not, OneOf, Residual)

MAX_CONJUNCTS = 512


class TooComplex(Exception):
    """The condition expands to more than MAX_CONJUNCTS `and`-clauses."""


Domain = Callable[[str], frozenset]


def _nnf(condition: Condition, negate: bool, domain: Domain):
    """Negation normal form: ('and'|'or', parts) trees over OneOf / Residual leaves."""
    match condition:
        case Not(operand=inner):
            return _nnf(inner, not negate, domain)
        case All(operands=parts):
            return ("or" if negate else "and", [_nnf(p, negate, domain) for p in parts])
        case Any(operands=parts):
            return ("and" if negate else "or", [_nnf(p, negate, domain) for p in parts])
        case OneOf(attribute=attribute, values=values):
            if negate:
                return OneOf(attribute, domain(attribute) - values)
            return condition
        case _:
            return Residual(condition, positive=not negate)


def _dnf(node) -> list[list]:
    if isinstance(node, tuple):
        kind, parts = node
        expanded = [_dnf(p) for p in parts]
        if kind == "or":
            out = [c for e in expanded for c in e]
        else:
            out = [[]]
            for e in expanded:
                out = [a + b for a, b in product(out, e)]
                if len(out) > MAX_CONJUNCTS:
                    raise TooComplex()
        if len(out) > MAX_CONJUNCTS:
            raise TooComplex()
        return out
    return [[node]]


def _time_window_empty(residual: list[Residual]) -> bool:
    """Whether literal bounds on context.time contradict: t < a and t >= b with b >= a."""
    upper, lower = None, None  # context.time < upper, context.time >= lower
    for lit in residual:
        atom = lit.atom
        if not isinstance(atom, Before):
            continue
        if atom.left == "context.time" and isinstance(atom.right, int):
            if lit.positive:
                upper = atom.right if upper is None else min(upper, atom.right)
            else:
                lower = atom.right if lower is None else max(lower, atom.right)
        elif atom.right == "context.time" and isinstance(atom.left, int):
            # c < t is t >= c + 1µs; not (c < t) is t < c + 1µs
            if lit.positive:
                lower = atom.left + 1 if lower is None else max(lower, atom.left + 1)
            else:
                upper = atom.left + 1 if upper is None else min(upper, atom.left + 1)
    return upper is not None and lower is not None and lower >= upper


def _conjunct(literals: list) -> Conjunct | None:
    indexed: dict[str, frozenset] = {}
    residual: list[Residual] = []
    for lit in literals:
        if isinstance(lit, OneOf):
            previous = indexed.get(lit.attribute)
            indexed[lit.attribute] = lit.values if previous is None else previous & lit.values
        elif lit not in residual:
            residual.append(lit)
    if any(not values for values in indexed.values()):
        return None
    if any(Residual(r.atom, not r.positive) in residual for r in residual):
        return None
    if _time_window_empty(residual):
        return None
    return Conjunct(tuple(sorted(indexed.items())), tuple(residual))


def to_conjuncts(condition: Condition, domain: Domain) -> tuple[Conjunct, ...]:
    """The satisfiable `and`-clauses of a condition; empty when it can never hold."""
    out: list[Conjunct] = []
    for literals in _dnf(_nnf(condition, False, domain)):
        conjunct = _conjunct(literals)
        if conjunct is not None and conjunct not in out:
            out.append(conjunct)
    return tuple(out)
