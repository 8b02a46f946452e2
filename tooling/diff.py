"""What a policy change does: the request classes whose decision differs between two policy sets.

Every enumerated attribute has a finite declared domain, texts matter only as "one of the
literals the policies name (grantees, datasets, rule literals) or any other", and time matters
only between the instants where either policy can change (grant expiries, rule time literals).
So the request space splits into finitely many classes. Enumerating their product naively is
millions of classes; instead we walk both compiled decision trees together. Each joint path is a
region where both sides' leaves are fixed; a region whose two leaves hold the same candidates and
whose grants are the same cannot change and is skipped. The others are expanded only along the
dimensions their leaves' residual tests and grants depend on (texts, time, the grant's scope
attributes), and each sub-class is decided on both sides with `PolicySet.decide_values`.
Changed classes with the same change are then merged into cubes (attribute ∈ value set) so the
report reads as a few lines rather than thousands.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import product
from typing import Iterator

from tiergate.engine import PolicySet
from tiergate.engine.analysis import (REQUEST_ATTRIBUTES, SLOT, TIME_SLOT, Branch, Kind, Leaf,
                                      model, time_literals)
from tiergate.engine.timeutil import format_instant

OTHER = "(other)"  # a text class: any value the policies do not name
TIME = "context.time"
DAY = 86_400_000_000
# The request attributes a grant's scope reads (besides the grantee and the time).
GRANT_SCOPE = ("resource.tier", "resource.catalog_class", "purpose", "action")
INDEXED = tuple(a.path for a in REQUEST_ATTRIBUTES if a.kind in (Kind.ENUM, Kind.BOOL))
TEXTS = tuple(a.path for a in REQUEST_ATTRIBUTES if a.kind is Kind.TEXT)
KIND_TITLES = {
    "newly_permitted": "newly permitted 新增许可",
    "newly_denied": "newly denied 新增拒绝",
    "changed_details": "changed obligations/reasons 义务或理由变化",
}
INVALID = "INVALID"  # the side does not declare a value the request uses: refused, not decided


@dataclass(frozen=True)
class Outcome:
    """What one side answers for a class, reduced to what a reviewer compares."""

    effect: str  # PERMIT, DENY or INVALID
    grant_id: str | None
    rules: tuple[str, ...]  # deciding rule ids, sorted (order of declaration is not a change)
    obligations: tuple[str, ...]  # "id(param=value)", sorted

    def without_obligations(self) -> "Outcome":
        return Outcome(self.effect, self.grant_id, self.rules, ())

    def to_dict(self) -> dict:
        return {"effect": self.effect, "grant_id": self.grant_id, "rules": list(self.rules),
                "obligations": list(self.obligations)}


INVALID_OUTCOME = Outcome(INVALID, None, (), ())


@dataclass(frozen=True)
class Change:
    """A merged set of classes (a cube: each dimension ∈ its value set) and how it changed."""

    cube: dict  # dimension -> tuple of values (only dimensions not left at "any")
    classes: int  # how many elementary classes the cube holds (entries' cubes may overlap)
    old: Outcome
    new: Outcome
    example: dict  # a request (contract JSON) inside the cube
    example_old: Outcome  # how each side decides the example, in full
    example_new: Outcome

    @property
    def kind(self) -> str:
        return _kind(self.old, self.new)


def _kind(old: Outcome, new: Outcome) -> str:
    if old.effect != "PERMIT" and new.effect == "PERMIT":
        return "newly_permitted"
    if old.effect == "PERMIT" and new.effect != "PERMIT":
        return "newly_denied"
    return "changed_details"


@dataclass(frozen=True)
class PolicyDiff:
    changes: tuple[Change, ...]
    vocabulary: dict  # vocabulary -> {"added": [...], "removed": [...]}
    # dataset id -> {"change": "added" | "removed" | "changed", attribute: [old, new], …}:
    # a request about a catalogued dataset is decided on its entry, so an edited entry changes
    # its decisions even where no rule changed.
    catalog: dict
    dimensions: dict  # dimension -> its classes, for reading cubes
    regions: int  # joint tree regions visited
    decided: int  # sub-classes decided on both sides
    space: "Space"
    totals: dict  # kind -> number of elementary classes (disjoint, unlike the entries' cubes)
    group_totals: dict = None  # (old outcome, new outcome) -> its classes (disjoint)
    compared: int = 0  # classes in the whole space (every combination the sides tell apart)

    def kind_of(self, values: list) -> str | None:
        """The kind of change reported for a request (values by slot), or None: no change."""
        cell = self.space.cell_of(values)
        for change in self.changes:
            if all(cell[d] in allowed for d, allowed in change.cube.items()):
                return change.kind
        return None

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.vocabulary or self.catalog)


# ---- the partition ----------------------------------------------------------------------


class Space:
    """The dimensions of the request space shared by both sides, and their classes."""

    def __init__(self, old: PolicySet, new: PolicySet, now: int | None = None):
        self.sides = (old, new)
        self.now = now
        self.domains: dict[str, tuple] = {}
        self.one_sided: set[str] = set()  # attributes with a value only one side declares
        for path in INDEXED:
            attribute = next(a for a in REQUEST_ATTRIBUTES if a.path == path)
            if attribute.kind is Kind.BOOL:
                self.domains[path] = (False, True)
                continue
            a, b = (list(p.vocabularies[path].labels) for p in self.sides)
            self.domains[path] = tuple(a + [v for v in b if v not in a])
            if set(a) != set(b):
                self.one_sided.add(path)
        grants = old.grants + new.grants
        self.grants = grants
        literals: dict[str, set] = {path: set() for path in TEXTS}
        equals: dict[str, set] = {path: set() for path in TEXTS}
        for rule in old.rules + new.rules:
            for conjunct in rule.conjuncts:
                for literal in conjunct.residual:
                    atom = literal.atom
                    if isinstance(atom, model.TextIn) and atom.attribute in literals:
                        literals[atom.attribute] |= atom.values
                        if atom.other in literals:
                            equals[atom.attribute].add(atom.other)
        literals["subject.org_id"] |= {g.grantee for g in grants}
        literals["resource.id"] |= {d for g in grants for d in (g.datasets or ())}
        self.text_rep: dict[str, dict] = {}
        for path in TEXTS:
            classes = sorted(literals[path]) + [f"={other}" for other in sorted(equals[path])]
            self.domains[path] = tuple(classes) + (OTHER,)
        instants = {g.expires for g in grants} | set(time_literals(old.rules)) \
            | set(time_literals(new.rules))
        self.boundaries = tuple(sorted(instants))
        # With `now`, the past is not compared: only the interval holding it and later ones.
        first = bisect_right(self.boundaries, now) if now is not None else 0
        self.domains[TIME] = tuple(range(first, len(self.boundaries) + 1))
        self.dimensions = INDEXED + TEXTS + (TIME,)
        # Grant-scope values no grant tells apart are one class (catalog classes, mostly).
        self.scope_groups = {path: self._scope_groups(path) for path in GRANT_SCOPE}

    def _scope_groups(self, path: str) -> list[frozenset]:
        field = {"resource.tier": "tiers", "resource.catalog_class": "catalog",
                 "purpose": "purposes", "action": "actions"}[path]
        groups: dict[tuple, list] = {}
        for value in self.domains[path]:
            signature = tuple(value in getattr(g, field) for g in self.grants)
            groups.setdefault(signature, []).append(value)
        return [frozenset(values) for values in groups.values()]

    def first(self, dimension: str, values) -> object:
        """The class's representative: the first of `values` in the dimension's order, or for
        a text, "any other" when the class allows it (examples then name no stray dataset)."""
        if dimension in TEXTS and OTHER in values:
            return OTHER
        return next(v for v in self.domains[dimension] if v in values)

    def instant(self, interval: int) -> int:
        """An instant inside a time interval: before the first boundary, or at a boundary
        (every time test is `t < c`, so [b_i, b_i+1) decides as b_i does)."""
        if self.now is not None and interval == self.domains[TIME][0]:
            return self.now  # the interval holding now decides as now does
        if not self.boundaries:
            return 1_767_196_800_000_000  # 2026-01-01T00:00:00+08:00; time decides nothing
        return self.boundaries[0] - DAY if interval == 0 else self.boundaries[interval - 1]

    def text_value(self, path: str, cls: str, chosen: dict) -> str | None:
        if cls == OTHER:
            return {"subject.org_id": "org-other", "resource.id": "ds-other",
                    "resource.owner_org_id": "owner-other", "subject.id": "u-example"}[path]
        if cls.startswith("="):
            return self.text_value(cls[1:], chosen.get(cls[1:], OTHER), chosen)
        return cls

    def values(self, cell: dict) -> list:
        """The request values (by slot) of one representative of a cell {dimension: class}."""
        values: list = [None] * len(REQUEST_ATTRIBUTES)
        for path in INDEXED:
            values[SLOT[path]] = cell.get(path, self.domains[path][0])
        for path in TEXTS:
            values[SLOT[path]] = self.text_value(path, cell.get(path, OTHER), cell)
        values[TIME_SLOT] = self.instant(cell.get(TIME, self.domains[TIME][0]))
        return values

    def cell_of(self, values: list) -> dict:
        """The class {dimension: class} a request (values by slot, time set) falls in."""
        cell = {path: values[SLOT[path]] for path in INDEXED}
        for path in TEXTS:
            value, cls = values[SLOT[path]], OTHER
            for candidate in self.domains[path]:
                if candidate.startswith("="):
                    other = values[SLOT[candidate[1:]]]
                    if value is not None and value == other:
                        cls = candidate
                        break
                elif value == candidate:
                    cls = candidate
                    break
            cell[path] = cls
        cell[TIME] = bisect_right(self.boundaries, values[TIME_SLOT])
        return cell

    def request(self, cell: dict) -> dict:
        """The contract JSON of a cell's representative."""
        values = self.values(cell)
        out: dict = {"subject": {}, "resource": {}, "action": None, "purpose": None, "context": {}}
        for attribute in REQUEST_ATTRIBUTES:
            value = values[SLOT[attribute.path]]
            if attribute.kind is Kind.TIME:
                value = format_instant(value, 480)
            section = attribute.section
            (out[section] if section else out)[attribute.key] = value
        return out


# ---- walking both trees -----------------------------------------------------------------


def _settle(node, assigned: dict, domain: frozenset | None = None):
    while node.__class__ is Branch and node.attribute in assigned:
        node = node.children.get(assigned[node.attribute])
        if node is None:  # a value this side does not declare
            return None
    return node


def joint_regions(space: Space) -> Iterator[tuple[Leaf | None, Leaf | None, dict]]:
    """(old leaf, new leaf, the indexed values fixed on the way) for every joint region.

    None stands for a side that does not declare a value the region fixes. Attributes with a
    value only one side declares are fixed first, so every other attribute has the same domain
    on both sides and "any value" means the same set.
    """
    forced = [a for a in INDEXED if a in space.one_sided]
    old, new = space.sides
    declared = [{a: p.vocabularies[a].values for a in forced} for p in space.sides]

    def walk(nodes: tuple, assigned: dict):
        nodes = tuple(None if n is None or any(assigned[a] not in known[a] for a in forced
                                               if a in assigned)
                      else _settle(n, assigned) for n, known in zip(nodes, declared))
        attribute = next((a for a in forced if a not in assigned), None)
        if attribute is None:
            branching = next((n for n in nodes if n.__class__ is Branch), None)
            if branching is None:
                yield nodes[0], nodes[1], assigned
                return
            attribute = branching.attribute
        for value in space.domains[attribute]:
            yield from walk(nodes, {**assigned, attribute: value})

    yield from walk((old.tree.root, new.tree.root), {})


# ---- what a region depends on ------------------------------------------------------------


def _atom_dimensions(atom) -> set[str]:
    match atom:
        case model.TextIn(attribute=a, other=o):
            return {x for x in (a, o) if x in TEXTS}
        case model.Before(left=l, right=r):
            return {TIME} if TIME in (l, r) else set()
    return set()


def _candidate_dimensions(candidate) -> set[str]:
    found: set[str] = set()
    for conjunct in candidate.conjuncts:
        for literal in conjunct.residual:
            found |= _atom_dimensions(literal.atom)
    return found


def _needs(leaf: Leaf | None, has_grants: bool) -> tuple[set[str], bool]:
    """(text/time dimensions the leaf's residual tests read, whether grants can matter)."""
    if leaf is None:
        return set(), False
    dims: set[str] = set()
    for candidate in leaf.denies:
        dims |= _candidate_dimensions(candidate)
    if any(c.checks is None for c in leaf.denies):
        return dims, False  # an unconditional deny: permits and grants cannot matter
    for candidate in leaf.permits + leaf.obligers:
        dims |= _candidate_dimensions(candidate)
    return dims, has_grants and any(c.rule.needs_grant for c in leaf.permits)


def _rule_key(rule: model.Rule) -> tuple:
    return (rule.id, rule.effect, rule.conjuncts, rule.needs_grant, rule.citation,
            rule.message_zh, rule.message_en, rule.obligations)


def _leaf_key(leaf: Leaf) -> tuple:
    # INVARIANT: rule order is left out: declaring rules in another order changes no decision.
    return tuple(frozenset((_rule_key(c.rule), c.conjuncts) for c in group)
                 for group in (leaf.denies, leaf.permits, leaf.obligers))


def outcome(policy: PolicySet, values: list) -> Outcome:
    decision = policy.decide_values(values)
    obligations = sorted(
        o.id + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(o.params.items())) + ")"
                if o.params else "")
        for o in decision.obligations)
    return Outcome(decision.effect, decision.grant_id,
                   tuple(sorted(r.rule_id for r in decision.reasons)), tuple(obligations))


# ---- the diff ---------------------------------------------------------------------------


def diff_policies(old: PolicySet, new: PolicySet, *, now: int | None = None) -> PolicyDiff:
    """The changed request classes; with `now`, only requests at `now` or later."""
    space = Space(old, new, now)
    grants_same = frozenset(old.grants) == frozenset(new.grants)
    has_grants = (bool(old.grants), bool(new.grants))
    cells: dict[tuple[Outcome, Outcome], list[tuple]] = {}
    memo: dict[tuple, list] = {}
    regions = decided = 0
    for old_leaf, new_leaf, assigned in joint_regions(space):
        regions += 1
        if old_leaf is None and new_leaf is None:
            continue
        dims_old, grants_old = _needs(old_leaf, has_grants[0])
        dims_new, grants_new = _needs(new_leaf, has_grants[1])
        if (old_leaf is not None and new_leaf is not None and _leaf_key(old_leaf) == _leaf_key(new_leaf)
                and (grants_same or not (grants_old or grants_new))):
            continue
        dims = dims_old | dims_new
        scope: list[str] = []
        if grants_old or grants_new:
            dims |= {"subject.org_id", "resource.id", TIME}
            scope = [a for a in GRANT_SCOPE if a not in assigned]
        key = (id(old_leaf), id(new_leaf), tuple(sorted(dims)),
               tuple(assigned.get(a) for a in GRANT_SCOPE) if scope or grants_old or grants_new else ())
        found = memo.get(key)
        if found is None:
            found = memo[key] = []
            axes = [[(a, g) for g in space.scope_groups[a]] for a in scope]
            axes += [[(d, frozenset((c,))) for c in space.domains[d]] for d in sorted(dims)]
            for combination in product(*axes):
                cell = {**assigned, **{d: space.first(d, s) for d, s in combination}}
                values = space.values(cell)
                decided += 1
                a = INVALID_OUTCOME if old_leaf is None else outcome(old, values)
                b = INVALID_OUTCOME if new_leaf is None else outcome(new, list(values))
                if a != b and not (INVALID in (a.effect, b.effect) and "PERMIT" not in (a.effect, b.effect)):
                    found.append((dict(combination), a, b))
        for partial, a, b in found:
            cube = tuple(partial.get(d) or (frozenset((assigned[d],)) if d in assigned
                                            else frozenset(space.domains[d]))
                         for d in space.dimensions)
            cells.setdefault(_group(a, b), []).append(cube)
    changes = []
    totals = {kind: 0 for kind in KIND_TITLES}
    group_totals: dict[tuple[Outcome, Outcome], int] = {}
    for (a, b), cubes in cells.items():
        # INVARIANT: the cells of a group are disjoint, so their sizes add up; the expanded
        # cubes shown may overlap and are not summed.
        group_totals[(a, b)] = sum(_size(c) for c in cubes)
        totals[_kind(a, b)] += group_totals[(a, b)]
        for cube in expand_cubes(merge_cubes(cubes), space):
            changes.append(_change(space, cube, a, b))
    changes.sort(key=lambda c: (["newly_permitted", "newly_denied", "changed_details"].index(c.kind),
                                c.new.rules, c.old.rules, _cube_sort_key(space, c.cube)))
    return PolicyDiff(tuple(changes), _vocabulary_changes(old, new), catalog_changes(old, new),
                      {d: [_show_class(space, d, v) for v in space.domains[d]]
                       for d in space.dimensions}, regions, decided, space, totals,
                      group_totals, _space_size(space))


def _space_size(space: Space) -> int:
    """How many classes of requests the two sides were compared on."""
    n = 1
    for dimension in space.dimensions:
        n *= len(space.domains[dimension])
    return n


def _group(a: Outcome, b: Outcome) -> tuple[Outcome, Outcome]:
    """What classes must share to be merged into one entry.

    A new effect: the rules and grants on both sides; obligations ride along with the new effect
    (grouping by them would split one widened grant into a dozen entries; the example shows
    them). The same effect: only what changed (rules, grant, obligations dropped or added), so
    removing a deny reads as one entry "no longer among the reasons", not one per combination
    of the other denies that still apply.
    """
    if a.effect != b.effect:
        return a.without_obligations(), b.without_obligations()
    grant_changed = a.grant_id != b.grant_id
    return (Outcome(a.effect, a.grant_id if grant_changed else None,
                    tuple(sorted(set(a.rules) - set(b.rules))),
                    tuple(sorted(set(a.obligations) - set(b.obligations)))),
            Outcome(b.effect, b.grant_id if grant_changed else None,
                    tuple(sorted(set(b.rules) - set(a.rules))),
                    tuple(sorted(set(b.obligations) - set(a.obligations)))))


def _cube_sort_key(space: Space, cube: dict) -> tuple:
    return tuple((d, tuple(str(v) for v in cube.get(d, ()))) for d in space.dimensions)


def merge_cubes(cubes: list[tuple]) -> list[tuple]:
    """Merge cubes that differ in one dimension only, until none do (a greedy cover)."""
    current = set(cubes)
    changed = True
    while changed:
        changed = False
        for index in range(len(next(iter(current))) if current else 0):
            groups: dict[tuple, frozenset] = {}
            for cube in current:
                rest = cube[:index] + cube[index + 1:]
                groups[rest] = groups.get(rest, frozenset()) | cube[index]
            if len(groups) < len(current):
                changed = True
                current = {rest[:index] + (values,) + rest[index:] for rest, values in groups.items()}
    return sorted(current, key=lambda c: tuple(sorted(map(str, s)) for s in c))


def _size(cube: tuple) -> int:
    n = 1
    for values in cube:
        n *= len(values)
    return n


def _covered(cube: tuple, disjoint: list[tuple]) -> bool:
    """Whether the union of pairwise disjoint cubes holds `cube` (sizes of intersections add up)."""
    total = 0
    for other in disjoint:
        n = 1
        for mine, theirs in zip(cube, other):
            n *= len(mine & theirs)
            if not n:
                break
        total += n
    return total == _size(cube)


def expand_cubes(disjoint: list[tuple], space: Space) -> list[tuple]:
    """Grow each cube along each dimension while the group's classes still cover it, then drop
    cubes inside others: fewer, larger (possibly overlapping) descriptions of the same set."""
    domains = [frozenset(space.domains[d]) for d in space.dimensions]
    grown = []
    for cube in sorted(disjoint, key=_size, reverse=True):
        if any(all(a <= b for a, b in zip(cube, big)) for big in grown):
            continue
        cube = list(cube)
        for index, domain in enumerate(domains):
            if cube[index] == domain:
                continue
            trial = cube[:index] + [domain] + cube[index + 1:]
            if _covered(tuple(trial), disjoint):
                cube = trial
                continue
            for value in space.domains[space.dimensions[index]]:
                if value not in cube[index]:
                    trial = cube[:index] + [cube[index] | {value}] + cube[index + 1:]
                    if _covered(tuple(trial), disjoint):
                        cube = trial
        grown.append(tuple(cube))
    return [c for c in grown
            if not any(c != o and all(a <= b for a, b in zip(c, o)) for o in grown)]


def _change(space: Space, cube: tuple, old: Outcome, new: Outcome) -> Change:
    shown, classes = {}, 1
    cell = {}
    for dimension, values in zip(space.dimensions, cube):
        classes *= len(values)
        ordered = [v for v in space.domains[dimension] if v in values]
        cell[dimension] = space.first(dimension, values)
        if len(values) < len(space.domains[dimension]):
            shown[dimension] = ordered
    # The example is decided again on both sides: what the report shows is what decide says.
    values = space.values(cell)
    example_old = old if old.effect == INVALID else outcome(space.sides[0], values)
    example_new = new if new.effect == INVALID else outcome(space.sides[1], space.values(cell))
    return Change(shown, classes, old, new, space.request(cell), example_old, example_new)


def _show_class(space: Space, dimension: str, value):
    if dimension == TIME:
        return interval_text(space, value)
    return value


def interval_text(space: Space, interval: int) -> str:
    b = space.boundaries
    if not b:
        return "any time"
    if interval == 0:
        return f"< {format_instant(b[0], 480)}"
    if interval == len(b):
        return f">= {format_instant(b[-1], 480)}"
    return f"[{format_instant(b[interval - 1], 480)}, {format_instant(b[interval], 480)})"


_DATASET_FIELDS = ("catalog_class", "tier", "personal", "owner_org_id", "shareable", "label")


def catalog_changes(old: PolicySet, new: PolicySet) -> dict:
    """Datasets added to, removed from or changed in the catalog (and its uncatalogued rule)."""
    a, b = old.catalog.datasets, new.catalog.datasets
    out: dict = {}
    for dataset_id in sorted(a.keys() | b.keys()):
        if dataset_id not in a:
            out[dataset_id] = {"change": "added"}
        elif dataset_id not in b:
            out[dataset_id] = {"change": "removed"}
        else:
            fields = {f: [getattr(a[dataset_id], f), getattr(b[dataset_id], f)]
                      for f in _DATASET_FIELDS
                      if getattr(a[dataset_id], f) != getattr(b[dataset_id], f)}
            if fields:
                out[dataset_id] = {"change": "changed", **fields}
    if old.catalog.uncatalogued != new.catalog.uncatalogued:
        out["(uncatalogued)"] = {"change": "changed",
                                 "uncatalogued": [old.catalog.uncatalogued, new.catalog.uncatalogued]}
    return out


def _vocabulary_changes(old: PolicySet, new: PolicySet) -> dict:
    out = {}
    for name in sorted(set(old.vocabularies) | set(new.vocabularies)):
        a = set(old.vocabularies[name].labels) if name in old.vocabularies else set()
        b = set(new.vocabularies[name].labels) if name in new.vocabularies else set()
        if a != b:
            out[name] = {"added": sorted(b - a), "removed": sorted(a - b)}
    for name, kinds in (("obligation", None),):
        a, b = set(old.checked.obligations), set(new.checked.obligations)
        if a != b and name not in out:
            out[name] = {"added": sorted(b - a), "removed": sorted(a - b)}
    return out
