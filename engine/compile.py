"""Compile a checked policy into a decision tree and a grant index.

The tree branches on the enumerated and boolean attributes the rules test (most-tested first).
Each rule is split into the `and`-clauses of its condition; a clause follows every branch its
constraints allow, so the leaf a request reaches holds exactly the clauses that could apply to
it, and only their residual tests (time, text, grant) are left to run. Identical subtrees are
shared, which keeps the tree small. Grants are indexed by grantee, then tier and catalog class.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from . import model
from .request import SLOT
from .semantics import Predicate, specialise_residual


class Branch:
    __slots__ = ("attribute", "slot", "children")

    def __init__(self, attribute: str, children: dict):
        self.attribute = attribute
        self.slot = SLOT[attribute]
        self.children = children


@dataclass(frozen=True)
class Candidate:
    """A rule whose indexed constraints hold in this leaf; it applies if any check passes."""

    rule: model.Rule
    conjuncts: tuple[model.Conjunct, ...]
    checks: tuple[Predicate, ...] | None  # None: applies with no further test

    def applies(self, values: list, grant: model.Grant | None) -> bool:
        if self.checks is None:
            return True
        for check in self.checks:
            if check(values, grant):
                return True
        return False


@dataclass(frozen=True)
class Leaf:
    denies: tuple[Candidate, ...]
    permits: tuple[Candidate, ...]
    obligers: tuple[Candidate, ...]  # `on permit` rules: obligations added to a permit


@dataclass(frozen=True)
class CompiledTree:
    root: "Branch | Leaf"
    order: tuple[str, ...]  # the attributes branched on, outermost first
    node_count: int


def attribute_order(rules: tuple[model.Rule, ...]) -> tuple[str, ...]:
    """Branch first on the attribute most clauses constrain (ties: contract order)."""
    counts: dict[str, int] = defaultdict(int)
    for rule in rules:
        for conjunct in rule.conjuncts:
            for attribute, _ in conjunct.indexed:
                counts[attribute] += 1
    return tuple(sorted(counts, key=lambda a: (-counts[a], SLOT[a])))


def build_tree(policy: model.CheckedPolicy) -> CompiledTree:
    order = attribute_order(policy.rules)
    clauses = [(rule, conjunct) for rule in policy.rules if not rule.fallback
               for conjunct in rule.conjuncts]
    memo: dict[tuple[int, frozenset[int]], Branch | Leaf] = {}
    leaves: dict[frozenset[int], Leaf] = {}
    count = 0

    def node(level: int, live: frozenset[int]):
        nonlocal count
        key = (level, live)
        if key in memo:
            return memo[key]
        if level == len(order):
            result = leaves.get(live)
            if result is None:
                result = leaves[live] = _leaf([clauses[i] for i in sorted(live)])
                count += 1
        else:
            attribute = order[level]
            by_value = {}
            for value in sorted(policy.domain(attribute), key=str):
                by_value[value] = frozenset(
                    i for i in live
                    if (allowed := clauses[i][1].allowed(attribute)) is None or value in allowed)
            if all(s == live for s in by_value.values()):
                result = node(level + 1, live)
            else:
                result = Branch(attribute, {v: node(level + 1, s) for v, s in by_value.items()})
                count += 1
        memo[key] = result
        return result

    root = node(0, frozenset(range(len(clauses))))
    return CompiledTree(root, order, count)


def _leaf(live: list[tuple[model.Rule, model.Conjunct]]) -> Leaf:
    by_rule: dict[str, list] = {}
    rules: dict[str, model.Rule] = {}
    for rule, conjunct in live:
        by_rule.setdefault(rule.id, []).append(conjunct)
        rules[rule.id] = rule
    candidates = []
    for rule_id, conjuncts in by_rule.items():
        rule = rules[rule_id]
        if any(not c.residual for c in conjuncts):
            checks = None
        else:
            # The residual tests, as semantics.py means them, compiled for speed.
            checks = tuple(specialise_residual(c.residual) for c in conjuncts)
        candidates.append(Candidate(rule, tuple(conjuncts), checks))
    candidates.sort(key=lambda c: c.rule.order)
    return Leaf(*(tuple(c for c in candidates if c.rule.effect == effect)
                  for effect in ("deny", "permit", "obligation")))


# ---- grants -----------------------------------------------------------------------------


# What applicable_grants reads for one grant: (expires, purpose bits, action bits, datasets or
# None, grant). PERF: small ints and one tuple instead of the grant's frozensets, so deciding
# with 10,000 grants touches a few cache lines rather than a dozen scattered objects.
GrantEntry = tuple[int, int, int, "frozenset[str] | None", model.Grant]


@dataclass(frozen=True)
class GrantIndex:
    """Grants by grantee, then (tier, catalog class); each list latest-expiring first.

    Each grant is kept as an entry with its purposes and actions as bit sets over these
    numberings, so the per-request scope test is two integer ands.
    """

    entries: dict[str, dict[tuple[str, str], tuple[GrantEntry, ...]]]
    expiries: dict[str, tuple[int, ...]]  # each grantee's expiry instants, sorted
    purpose_bits: dict[str, int]
    action_bits: dict[str, int]

    def candidates(self, org_id: str | None, tier: str, catalog_class: str) -> tuple[model.Grant, ...]:
        """The grantee's grants for this tier and class, whatever the purpose, action or time."""
        entries = self.entries.get(org_id, {}).get((tier, catalog_class), ())
        return tuple(entry[-1] for entry in entries)


def grant_preference(grant: model.Grant) -> tuple:
    """Which applicable grant a rule binds: the latest-expiring, then the smallest id."""
    return (-grant.expires, grant.id)


def _bits(values: frozenset[str], numbering: dict[str, int]) -> int:
    mask = 0
    for value in values:
        mask |= numbering.setdefault(value, 1 << len(numbering))
    return mask


def build_grant_index(grants: tuple[model.Grant, ...]) -> GrantIndex:
    scoped: dict[str, dict[tuple[str, str], list]] = defaultdict(lambda: defaultdict(list))
    expiries: dict[str, set[int]] = defaultdict(set)
    for grant in grants:
        expiries[grant.grantee].add(grant.expires)
        for tier in grant.tiers:
            for catalog_class in grant.catalog:
                scoped[grant.grantee][(tier, catalog_class)].append(grant)
    purpose_bits: dict[str, int] = {}
    action_bits: dict[str, int] = {}
    entry = {g.id: (g.expires, _bits(g.purposes, purpose_bits), _bits(g.actions, action_bits),
                    g.datasets, g) for g in grants}
    return GrantIndex(
        {org: {key: tuple(entry[g.id] for g in sorted(gs, key=grant_preference))
               for key, gs in by_key.items()}
         for org, by_key in scoped.items()},
        {org: tuple(sorted(instants)) for org, instants in expiries.items()},
        purpose_bits, action_bits)


@dataclass(frozen=True)
class CompiledPolicy:
    """What the compile phase makes of a checked policy: the decision tree, the grant index
    and the instants where a time test changes. The decide phase (policy.PolicySet) only reads
    it."""

    tree: CompiledTree
    grant_index: "GrantIndex"
    time_literals: tuple[int, ...]


def compile_policy(checked: model.CheckedPolicy) -> CompiledPolicy:
    return CompiledPolicy(build_tree(checked), build_grant_index(checked.grants),
                          time_literals(checked.rules))


def time_literals(rules: tuple[model.Rule, ...]) -> tuple[int, ...]:
    """Every instant a rule compares context.time with: where a decision can change."""
    found: set[int] = set()
    for rule in rules:
        for conjunct in rule.conjuncts:
            for literal in conjunct.residual:
                atom = literal.atom
                if isinstance(atom, model.Before):
                    if atom.left == "context.time" and isinstance(atom.right, int):
                        found.add(atom.right)
                    elif atom.right == "context.time" and isinstance(atom.left, int):
                        found.add(atom.left + 1)
    return tuple(sorted(found))
