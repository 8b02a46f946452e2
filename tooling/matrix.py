"""The coverage matrix: for each catalog class × tier × org type, can any request be permitted?

Computed exactly from the decision tree's regions (see `regions`). A cell is answered three
ways, because a grant is data that changes more often than rules:

- `without_grant`: a permit rule that needs no grant may apply;
- `with_present_grant`: a permit rule may apply with one of the grants in the set bound (not
  expired at `now`, scope covering the cell);
- `with_some_grant`: a permit rule may apply with *some* grant that could be written (any
  scope, any approvers): what the rules allow at all.

"May": a permit rule whose residual tests (time, texts such as org ids) are not decidable from
the indexed attributes counts as possibly applying. Deny rules count only where they apply
unconditionally, so a cell marked permitted is one the rules do not close off; a cell marked
denied is denied for every request in it. The grantee of a grant is an org id, whose org type
is not known from the grant, so a present grant counts for every org type.

Marks: P a permit rule needing no grant applies with no further test somewhere in the cell;
G a present grant can make a permit rule apply; p permitted only where a text or time test
holds; o only for the data's own owner (a rule that applies only where resource.owner_org_id
is the requester's org, such as the owner maintaining its own data: the cell is not open to
anyone else); g only with a grant not yet written; · never.

"Which rules deny the rest": each deny rule's share of the cell's requests (all indexed
attributes counted by their declared values) where it applies or may apply (a deny rule with
residual tests counts as applying, "unless" its test fails), and the default-deny rule's share
where nothing applies. `denied_by` names the rules denying more than half the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from tiergate.engine import PolicySet
from tiergate.engine.analysis import model

from .regions import candidate_may_apply, grant_fits, regions, unconditional_denies

TIER, CLASS, ORG = "resource.tier", "resource.catalog_class", "subject.org_type"


@dataclass(frozen=True)
class Cell:
    catalog_class: str
    tier: str
    org_type: str
    without_grant: bool
    with_present_grant: bool
    with_some_grant: bool
    permitted_by: tuple[str, ...]  # permit rules that may apply somewhere in the cell
    grants: tuple[str, ...]  # present grants that may make a permit rule apply here
    denied_throughout_by: tuple[str, ...]  # deny rules that apply to every request in the cell
    overridden_by: tuple[str, ...]  # deny rules that override a permit somewhere in the cell
    default_denied: bool  # some requests meet no permit rule and no deny rule
    unconditional: bool = False  # a no-grant permit rule applies with no further test
    owner_only: bool = False  # permitted (without a grant) only to the data's own owner
    shares: tuple[tuple[str, float], ...] = ()  # (deny rule, share of the cell), largest first

    @property
    def permitted(self) -> bool:
        """With the grants present (or none needed)."""
        return self.without_grant or self.with_present_grant

    @property
    def possible(self) -> bool:
        """With some grant that could be written."""
        return self.without_grant or self.with_some_grant

    @property
    def mark(self) -> str:
        if self.without_grant and self.unconditional:
            return "P"
        if self.with_present_grant:
            return "G"
        if self.without_grant:
            return "p"
        if self.owner_only:
            return "o"
        if self.with_some_grant:
            return "g"
        return "·"

    def denied_by(self, fallback: str | None) -> tuple[str, ...]:
        """The rules that deny what is not permitted in this cell."""
        if self.denied_throughout_by:
            return self.denied_throughout_by
        most = tuple(rule for rule, share in self.shares if share > 0.5)
        if most or self.possible:
            return most
        out = list(self.overridden_by)
        if self.default_denied and fallback:
            out.append(fallback)
        return tuple(out)

    def to_dict(self, fallback: str | None) -> dict:
        return {"catalog_class": self.catalog_class, "tier": self.tier, "org_type": self.org_type,
                "mark": self.mark, "without_grant": self.without_grant,
                "with_present_grant": self.with_present_grant,
                "with_some_grant": self.with_some_grant, "owner_only": self.owner_only,
                "permitted_by": list(self.permitted_by),
                "grants": list(self.grants), "denied_by": list(self.denied_by(fallback)),
                "denied_throughout_by": list(self.denied_throughout_by),
                "overridden_by": list(self.overridden_by), "default_denied": self.default_denied,
                "deny_shares": {rule: round(share, 4) for rule, share in self.shares}}


@dataclass(frozen=True)
class Matrix:
    classes: tuple[str, ...]
    tiers: tuple[str, ...]
    org_types: tuple[str, ...]
    cells: dict[tuple[str, str, str], Cell]  # (class, tier, org type) -> cell
    fallback: str | None  # the `deny otherwise` rule, named for default-denied requests

    def cell(self, catalog_class: str, tier: str, org_type: str) -> Cell:
        return self.cells[(catalog_class, tier, org_type)]

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "tiers": list(self.tiers),
                "org_types": list(self.org_types),
                "cells": [c.to_dict(self.fallback) for c in self.cells.values()]}


class _Tally:
    __slots__ = ("without", "present", "some", "permitted_by", "grants", "throughout",
                 "overridden", "default", "unconditional", "volume", "denied", "owner")

    def __init__(self) -> None:
        self.without = self.present = self.some = self.default = self.unconditional = False
        self.owner = False
        self.volume = 0
        self.denied: dict[str, int] = {}
        self.permitted_by: set[str] = set()
        self.grants: set[str] = set()
        self.throughout: set[str] | None = None
        self.overridden: set[str] = set()


def owner_only(rule) -> bool:
    """Whether every way `rule` can apply requires the data's owner to be the requester's org
    (resource.owner_org_id == subject.org_id)."""
    def owner_test(literal) -> bool:
        atom = literal.atom
        return (literal.positive and isinstance(atom, model.TextIn) and atom.other is not None
                and {atom.attribute, atom.other} == {"resource.owner_org_id", "subject.org_id"})
    return bool(rule.conjuncts) and all(any(owner_test(r) for r in conjunct.residual)
                                        for conjunct in rule.conjuncts)


def coverage_matrix(policy: PolicySet, *, now: int) -> Matrix:
    """The matrix over the declared values, in vocabulary order."""
    vocabularies = policy.vocabularies
    classes = tuple(vocabularies[CLASS].labels)
    tiers = tuple(vocabularies[TIER].labels)
    orgs = tuple(vocabularies[ORG].labels)
    approvers = vocabularies["approver"].values
    live_grants = [g for g in policy.grants if now < g.expires]
    tallies = {key: _Tally() for key in product(classes, tiers, orgs)}
    fallback = next((r.id for r in policy.rules if r.fallback), None)
    for region in regions(policy.tree.root):
        leaf = region.leaf
        denies = {r.id for r in unconditional_denies(leaf)}
        volume = 1
        for attribute in policy.tree.order:
            if attribute not in (TIER, CLASS, ORG):
                volume *= len(region.values(attribute, policy.checked.domain(attribute)))
        may_deny = [c.rule.id for c in leaf.denies]
        without, some, unconditional, owner, rules = False, False, False, False, set()
        present: dict[str, set[tuple[str, str]]] = {}  # grant id -> (class, tier) it serves
        for candidate in leaf.permits:
            rule = candidate.rule
            if not rule.needs_grant:
                if candidate_may_apply(candidate) and owner_only(rule):
                    owner = True  # not "permitted": only for whoever owns the data
                    rules.add(rule.id)
                elif candidate_may_apply(candidate):
                    without = True
                    unconditional = unconditional or candidate.checks is None
                    rules.add(rule.id)
                continue
            if candidate_may_apply(candidate, approvers=approvers):
                some = True
                rules.add(rule.id)
            for grant in live_grants:
                if grant_fits(grant, region) and candidate_may_apply(candidate, grant=grant):
                    present.setdefault(grant.id, set()).update(
                        product(grant.catalog, grant.tiers))
        permit_here = without or some or owner
        region_tiers = region.values(TIER, frozenset(tiers))
        region_orgs = region.values(ORG, frozenset(orgs))
        for tier, org in product(region_tiers, region_orgs):
            for catalog_class in region.values(CLASS, frozenset(classes)):
                tally = tallies[(catalog_class, tier, org)]
                tally.throughout = denies.copy() if tally.throughout is None else tally.throughout & denies
                tally.volume += volume
                for rule_id in may_deny:
                    tally.denied[rule_id] = tally.denied.get(rule_id, 0) + volume
                if not denies and not permit_here and not may_deny and fallback:
                    tally.denied[fallback] = tally.denied.get(fallback, 0) + volume
                if denies:
                    if permit_here:
                        tally.overridden |= denies
                    continue
                if not permit_here:
                    tally.default = True
                    continue
                tally.without |= without
                tally.owner |= owner
                tally.unconditional |= unconditional
                tally.some |= some
                tally.permitted_by |= rules
                for grant_id, served in present.items():
                    if (catalog_class, tier) in served:
                        tally.present = True
                        tally.grants.add(grant_id)
    order = {rule.id: rule.order for rule in policy.rules}
    by_order = lambda ids: tuple(sorted(ids, key=lambda i: order.get(i, 0)))  # noqa: E731
    cells = {}
    for key, t in tallies.items():
        cells[key] = Cell(*key, t.without, t.present, t.some, by_order(t.permitted_by),
                          tuple(sorted(t.grants)), by_order(t.throughout or ()),
                          by_order(t.overridden), t.default, t.unconditional, t.owner,
                          tuple(sorted(((r, v / t.volume) for r, v in t.denied.items()),
                                       key=lambda item: (-item[1], order.get(item[0], 0)))))
    return Matrix(classes, tiers, orgs, cells, fallback)


def render_matrix(matrix: Matrix) -> str:
    """The matrix as a text table: rows tier × class, one column per org type."""
    numbers = [str(i + 1) for i in range(len(matrix.org_types))]
    width = max(len(n) for n in numbers) + 1
    label = max(len(f"{t} {c}") for t in matrix.tiers for c in matrix.classes) + 2
    lines = ["coverage matrix (P: permitted without a grant; G: with a grant present; "
             "p: only under a text or time condition; o: only for the data's own owner; "
             "g: only with a grant not yet written; ·: always denied)",
             " " * label + "".join(n.rjust(width) for n in numbers)]
    for tier in matrix.tiers:
        for catalog_class in matrix.classes:
            marks = "".join(matrix.cell(catalog_class, tier, o).mark.rjust(width)
                            for o in matrix.org_types)
            lines.append(f"{tier} {catalog_class}".ljust(label) + marks)
    lines.append("org types: " + ", ".join(f"{n} {o}" for n, o in zip(numbers, matrix.org_types)))
    lines.append("")
    lines.append("cells not openly permitted (p, o, g, ·), and the rules denying most of each:")
    groups: dict[tuple, list[Cell]] = {}
    for cell in matrix.cells.values():
        if cell.mark in "pog·":
            groups.setdefault((cell.mark, cell.denied_by(matrix.fallback)), []).append(cell)
    if not groups:
        lines.append("  (none)")
    for (mark, rules), cells in groups.items():
        lines.append(f"  {mark} {', '.join(rules) or 'no single rule denies most (shares: --format json)'}:")
        by_tier_org: dict[tuple[str, str], list[str]] = {}
        for cell in cells:
            by_tier_org.setdefault((cell.tier, cell.org_type), []).append(cell.catalog_class)
        for (tier, org), found in by_tier_org.items():
            missing = [c for c in matrix.classes if c not in found]
            if not missing:
                which = "every class"
            elif len(missing) < len(found):
                which = "every class but " + ", ".join(missing)
            else:
                which = ", ".join(found)
            lines.append(f"    {tier} × {org}: {which}")
    return "\n".join(lines)
