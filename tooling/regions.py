"""The request space as regions of the compiled decision tree, for analyses that must be exact.

Every enumerated and boolean attribute has a finite domain, and the tree branches only on
those, so its leaves partition the whole request space into boxes: a box fixes, for each
attribute the tree branches on, a set of values (attributes it never branches on are free).
Inside a box every candidate rule's indexed constraints hold at every point; what is left
undecided is each candidate's residual tests (time, text, grant). Those are three-valued
here: True, False, or None ("may hold", for tests on the time or on free texts).

Children that share a subtree are walked once with their values merged, so the walk visits
far fewer boxes than the raw product of domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Iterator, Mapping

from tiergate.engine.analysis import (UNKNOWN, Branch, Candidate, Leaf, approvers_reader,
                                      evaluate_literal, grant_reader, model)

Box = Mapping[str, frozenset]  # attribute -> allowed values; absent attribute: any value


@dataclass(frozen=True)
class Region:
    box: Box
    leaf: Leaf

    def allows(self, attribute: str, values) -> bool:
        """Whether some point of the box has `attribute` in `values`."""
        allowed = self.box.get(attribute)
        return allowed is None or not allowed.isdisjoint(values)

    def values(self, attribute: str, domain: frozenset) -> frozenset:
        allowed = self.box.get(attribute)
        return domain if allowed is None else allowed


def regions(root: Branch | Leaf) -> Iterator[Region]:
    """Every leaf of the tree with the box of requests that reach it."""
    def walk(node, box: dict):
        if isinstance(node, Leaf):
            yield Region(dict(box), node)
            return
        groups: dict[int, tuple[object, list]] = {}
        for value, child in node.children.items():
            groups.setdefault(id(child), (child, []))[1].append(value)
        for child, values in groups.values():
            box[node.attribute] = frozenset(values)
            yield from walk(child, box)
        del box[node.attribute]
    yield from walk(root, {})


# ---- residual tests, three-valued -------------------------------------------------------

def conjunct_may_hold(conjunct: model.Conjunct, grant: model.Grant | None) -> bool:
    """Whether some request in the box, with `grant` bound (None: any grant, or none), could
    satisfy the conjunct: no residual literal is settled False by what is known."""
    read = grant_reader(grant) if grant is not None else (lambda path: UNKNOWN)
    return all(evaluate_literal(literal, read) is not False for literal in conjunct.residual)


def approver_sets(approvers: frozenset) -> list[frozenset]:
    ordered = sorted(approvers)
    return [frozenset(c) for n in range(len(ordered) + 1) for c in combinations(ordered, n)]


def conjunct_may_hold_some_grant(conjunct: model.Conjunct, approvers: frozenset) -> bool:
    """Whether a grant that could be written (any approvers, any expiry) could satisfy it."""
    literals = [lit for lit in conjunct.residual if isinstance(lit.atom, model.ApprovedBy)]
    if not literals:
        return True
    for subset in approver_sets(approvers):
        read = approvers_reader(subset)
        if all(evaluate_literal(lit, read) is not False for lit in literals):
            return True
    return False


def candidate_may_apply(candidate: Candidate, *, grant: model.Grant | None = None,
                        approvers: frozenset | None = None) -> bool:
    """Whether the candidate could apply somewhere in its leaf.

    For a grant-needing permit rule pass `grant` (a grant present in the set) or `approvers`
    (the approver vocabulary: any grant that could be written).
    """
    if candidate.checks is None:
        return True
    for conjunct in candidate.conjuncts:
        if approvers is not None:
            if conjunct_may_hold_some_grant(conjunct, approvers):
                return True
        elif conjunct_may_hold(conjunct, grant):
            return True
    return False


def unconditional_denies(leaf: Leaf) -> tuple[model.Rule, ...]:
    """Deny rules that apply to every request reaching the leaf."""
    return tuple(c.rule for c in leaf.denies if c.checks is None)


def grant_fits(grant: model.Grant, region: Region) -> bool:
    """Whether some request in the region lies inside the grant's scope."""
    return (region.allows("resource.tier", grant.tiers)
            and region.allows("resource.catalog_class", grant.catalog)
            and region.allows("purpose", grant.purposes)
            and region.allows("action", grant.actions))
