"""The engine's analysis interface: what lint, diff, the report and the matrix may read.

The officer's tools analyse a compiled policy set without deciding requests one by one. They
read it through these names only, so the engine can change how it compiles and decides
without the tools reaching into its modules:

The decision tree (`policy.tree.root`, `policy.tree.order`)
    Branch      a node testing one enumerated or boolean attribute: `.attribute`,
                `.children` {value: node}
    Leaf        where a request ends: `.denies`, `.permits`, `.obligers`, each a tuple of
                Candidate in rule order
    Candidate   a rule that may apply in its leaf: `.rule`, `.conjuncts` (the `and`-clauses
                still possible there), `.checks` (None when it applies with no further test)
    is_leaf(node)

The request space
    REQUEST_ATTRIBUTES, Kind   the contract's attributes and their kinds
    SLOT, TIME_SLOT            where each attribute sits in a request's values
    time_literals(rules)       the instants at which some rule's time test changes

The meaning of a condition (semantics.py)
    evaluate, evaluate_atom, evaluate_literal   True, False, or None when not settled
    UNKNOWN, request_reader, grant_reader, approvers_reader   what an analysis knows

The checked policy (model.py)
    model       Rule, Grant, Conjunct, Residual and the condition atoms
    describe_atom(atom)   an atom in words, for findings
"""

from __future__ import annotations

from . import model
from .compile import Branch, Candidate, Leaf, time_literals
from .request import SLOT, TIME_SLOT
from .schema import REQUEST_ATTRIBUTES, Kind
from .semantics import (UNKNOWN, approvers_reader, evaluate, evaluate_atom, evaluate_literal,
                        grant_reader, request_reader)
from .whynot import describe_atom


def is_leaf(node) -> bool:
    return node.__class__ is Leaf


__all__ = ["Branch", "Candidate", "Leaf", "is_leaf", "REQUEST_ATTRIBUTES", "Kind", "SLOT",
           "TIME_SLOT", "time_literals", "evaluate", "evaluate_atom", "evaluate_literal",
           "UNKNOWN", "request_reader", "grant_reader", "approvers_reader", "model",
           "describe_atom"]
