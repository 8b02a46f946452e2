"""`tiergate lint`: what in a policy set can never take effect, and what is about to lapse.

Decided exactly over the decision tree's regions (see `regions`), not by sampling:

- TG501 error   a permit rule is shadowed: wherever it could apply, a deny rule applies
                unconditionally, so it never permits anything;
- TG502 error   a permit rule needs a grant that no grant could satisfy (its grant tests
                contradict each other for every set of approvers);
- TG503 error   an `on permit` rule never fires: wherever it could apply, no permit can;
- TG504 warning a permit rule needs a grant, and none of the grants present (unexpired)
                can make it apply: it is dormant until one is written;
- TG510 warning a grant has expired (at --now);
- TG511 warning a grant can never be used: no request in its scope (by its grantee, any org
                type, region, …) is one a grant-needing permit rule accepts with it bound
                and no deny rule closes — e.g. a closed-tier grant lacking the approvals the
                rule requires, or a scope outside what any permit rule allows;
- TG512 warning a grant expires within --expiring-days (re-apply before expiry,
                福州办法 第二十九条);
- TG513 warning a catalogued dataset no permit rule can ever permit (with any requester,
                purpose, action or grant): its catalog entry and the rules disagree.

Residual tests (time, texts, grant tests that depend on the request) count as "may hold":
a rule is reported only when it can *never* take effect, so there are no false alarms;
a deny rule counts against a permit only where it applies with no further test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tiergate.engine import PolicySet
from tiergate.engine.analysis import describe_atom, model
from tiergate.diagnostics import Diagnostic

from .matrix import ORG, Matrix, coverage_matrix
from .regions import (candidate_may_apply, conjunct_may_hold, grant_fits, regions,
                      unconditional_denies)

DAY = 86_400 * 1_000_000  # µs


@dataclass(frozen=True)
class GrantUse:
    """What lint found about one grant: for the report and for --format json."""

    id: str
    grantee: str
    expires: str
    expired: bool
    days_left: float
    usable: bool
    rules: tuple[str, ...]  # permit rules that can apply with it bound
    org_types: tuple[str, ...]  # grantee org types under which some request could use it

    def to_dict(self) -> dict:
        return {"id": self.id, "grantee": self.grantee, "expires": self.expires,
                "expired": self.expired, "days_left": round(self.days_left, 1),
                "usable": self.usable, "rules": list(self.rules),
                "org_types": list(self.org_types)}


@dataclass(frozen=True)
class LintResult:
    diagnostics: tuple[Diagnostic, ...]
    grants: tuple[GrantUse, ...]
    matrix: Matrix

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == "warning" for d in self.diagnostics)

    def to_dict(self) -> dict:
        return {"findings": [d.to_dict() for d in self.diagnostics],
                "errors": self.errors, "warnings": self.warnings,
                "grants": [g.to_dict() for g in self.grants],
                "matrix": self.matrix.to_dict()}


@dataclass
class _RuleSeen:
    regions: int = 0
    denied: int = 0  # regions where an unconditional deny applies too
    denies: set = field(default_factory=set)
    some_grant: bool = False  # a grant that could be written satisfies it somewhere
    present_grant: bool = False  # a present, unexpired grant does, where no deny closes
    fires: bool = False  # (on permit rules) some permit may apply beside it


@dataclass
class _GrantSeen:
    rules: set = field(default_factory=set)
    org_types: set = field(default_factory=set)
    in_scope: bool = False  # some region of its scope has a grant-needing permit rule
    denied_by: set = field(default_factory=set)  # unconditional denies over its scope's rules
    failed: dict = field(default_factory=dict)  # rule id -> the grant tests it failed


def lint_policy(policy: PolicySet, *, now: int, expiring_days: int = 30) -> LintResult:
    approvers = policy.vocabularies["approver"].values
    org_domain = policy.vocabularies[ORG].values
    live = {g.id for g in policy.grants if now < g.expires}
    # Datasets by what the tree can tell apart of them; a handful of kinds however large the
    # catalog is. A kind is permittable when some region that may permit admits it.
    kinds = _dataset_kinds(policy.catalog)
    permittable: set[tuple] = set()
    rules: dict[str, _RuleSeen] = {}
    grants = {g.id: _GrantSeen() for g in policy.grants}
    for region in regions(policy.tree.root):
        leaf = region.leaf
        denies = unconditional_denies(leaf)
        permit_possible = False
        for candidate in leaf.permits:
            rule = candidate.rule
            seen = rules.setdefault(rule.id, _RuleSeen())
            seen.regions += 1
            if denies:
                seen.denied += 1
                seen.denies.update(r.id for r in denies)
            if not rule.needs_grant:
                permit_possible = permit_possible or not denies
                continue
            if candidate_may_apply(candidate, approvers=approvers):
                seen.some_grant = True
                permit_possible = permit_possible or not denies
            for grant in policy.grants:
                if not grant_fits(grant, region):
                    continue
                use = grants[grant.id]
                use.in_scope = True
                if denies:
                    use.denied_by.update(r.id for r in denies)
                    continue
                if candidate_may_apply(candidate, grant=grant):
                    use.rules.add(rule.id)
                    use.org_types |= region.values(ORG, org_domain)
                    if grant.id in live:
                        seen.present_grant = True
                else:
                    use.failed.setdefault(rule.id, _failed_tests(candidate.conjuncts, grant))
        for candidate in leaf.obligers:
            seen = rules.setdefault(candidate.rule.id, _RuleSeen())
            seen.regions += 1
            seen.fires = seen.fires or permit_possible
        if permit_possible:
            permittable.update(kind for kind in kinds if kind not in permittable and all(
                region.allows(path, (value,)) for path, value in zip(_DATASET_KIND, kind)))
    diagnostics = _rule_findings(policy, rules) + _grant_findings(
        policy, grants, now=now, expiring_days=expiring_days) + _dataset_findings(
        kinds, permittable)
    uses = tuple(_grant_use(g, grants[g.id], now, org_domain, policy) for g in policy.grants)
    return LintResult(tuple(sorted(diagnostics, key=Diagnostic.sort_key)), uses,
                      coverage_matrix(policy, now=now))


# The catalogued attributes the decision tree can branch on.
_DATASET_KIND = ("resource.catalog_class", "resource.tier", "resource.personal",
                 "resource.shareable")


def _dataset_kinds(catalog: model.Catalog) -> dict[tuple, list[model.Dataset]]:
    kinds: dict[tuple, list[model.Dataset]] = {}
    for dataset in catalog.datasets.values():
        kind = (dataset.catalog_class, dataset.tier, dataset.personal, dataset.shareable)
        kinds.setdefault(kind, []).append(dataset)
    return kinds


def _dataset_findings(kinds: dict[tuple, list[model.Dataset]], permittable: set) -> list:
    out = []
    for kind, datasets in kinds.items():
        if kind in permittable:
            continue
        catalog_class, tier, personal, _ = kind
        for dataset in datasets:
            out.append(Diagnostic(
                "TG513", f"catalogued dataset {dataset.id} ({catalog_class} / {tier}"
                + (", personal" if personal else "") + ") can never be permitted: no permit "
                "rule's conditions hold for it, whoever asks and whatever grant exists",
                dataset.span, "correct its catalog entry, or write the rule that should "
                "permit it", dataset.id, "warning"))
    return out


def _failed_tests(conjuncts, grant: model.Grant) -> tuple[str, ...]:
    """The grant tests that keep a rule from applying with this grant, in words."""
    out = []
    for conjunct in conjuncts:
        for literal in conjunct.residual:
            probe = model.Conjunct((), (literal,))
            if not conjunct_may_hold(probe, grant):
                text = describe_atom(literal.atom)
                out.append(text if literal.positive else f"not ({text})")
    return tuple(dict.fromkeys(out))


def _ordered(policy: PolicySet, ids) -> list[str]:
    order = {r.id: r.order for r in policy.rules}
    return sorted(ids, key=lambda i: order.get(i, 0))


def _rule_findings(policy: PolicySet, seen: dict[str, _RuleSeen]) -> list[Diagnostic]:
    out = []
    for rule in policy.rules:
        info = seen.get(rule.id)
        if info is None or rule.fallback:
            continue
        if rule.effect == "permit":
            if rule.needs_grant and not info.some_grant:
                out.append(Diagnostic(
                    "TG502", f"rule {rule.id} can never permit: no grant could satisfy its "
                    "grant conditions", rule.span,
                    "its tests on grant.approved_by contradict each other", rule.id, "error"))
            elif info.denied == info.regions:
                denies = ", ".join(_ordered(policy, info.denies))
                out.append(Diagnostic(
                    "TG501", f"rule {rule.id} is shadowed: wherever it applies, a deny rule "
                    f"applies too ({denies}), so it never permits anything", rule.span,
                    "narrow the deny rules or remove this rule", rule.id, "error"))
            elif rule.needs_grant and not info.present_grant:
                out.append(Diagnostic(
                    "TG504", f"rule {rule.id} needs a grant, and no grant in the set (unexpired) "
                    "can make it apply", rule.span,
                    "it permits nothing until such a grant is added", rule.id, "warning"))
        elif rule.effect == "obligation" and not info.fires:
            out.append(Diagnostic(
                "TG503", f"`on permit` rule {rule.id} never fires: no permit rule can apply "
                "where it does", rule.span, "its obligations are never added", rule.id, "error"))
    return out


def _grant_findings(policy: PolicySet, seen: dict[str, _GrantSeen], *, now: int,
                    expiring_days: int) -> list[Diagnostic]:
    out = []
    for grant in policy.grants:
        info = seen[grant.id]
        if grant.expires <= now:
            out.append(Diagnostic(
                "TG510", f"grant {grant.id} expired at {grant.expires_text}", grant.span,
                "remove it, or record the renewed grant under a new id", grant.id, "warning"))
        elif grant.expires - now <= expiring_days * DAY:
            days = (grant.expires - now) / DAY
            out.append(Diagnostic(
                "TG512", f"grant {grant.id} expires at {grant.expires_text}, in {days:.0f} days",
                grant.span, "re-apply before it expires (福州办法 第二十九条)", grant.id, "warning"))
        if info.rules:
            continue
        if info.failed:
            reasons = "; ".join(f"rule {rule} requires {' and '.join(tests)}"
                                for rule, tests in ((r, info.failed[r])
                                                    for r in _ordered(policy, info.failed)))
            message = (f"grant {grant.id} can never be used: in its scope, {reasons}; the grant "
                       f"is approved by {', '.join(sorted(grant.approvers)) or 'no one'} only")
            help_line = "obtain the missing approvals, or correct the grant's scope"
        elif info.denied_by:
            message = (f"grant {grant.id} can never be used: every request in its scope is "
                       f"denied ({', '.join(_ordered(policy, info.denied_by))})")
            help_line = "correct the grant's scope"
        else:
            message = (f"grant {grant.id} can never be used: no permit rule that takes a grant "
                       f"allows its scope (tier {', '.join(sorted(grant.tiers))}; catalog "
                       f"{', '.join(sorted(grant.catalog))}; purpose "
                       f"{', '.join(sorted(grant.purposes))}; action "
                       f"{', '.join(sorted(grant.actions))})")
            help_line = "correct the grant's scope, or add the permit rule it was meant for"
        out.append(Diagnostic("TG511", message, grant.span, help_line, grant.id, "warning"))
    return out


def _grant_use(grant: model.Grant, info: _GrantSeen, now: int, org_domain,
               policy: PolicySet) -> GrantUse:
    orgs = [o for o in policy.vocabularies[ORG].labels if o in info.org_types]
    return GrantUse(grant.id, grant.grantee, grant.expires_text, grant.expires <= now,
                    (grant.expires - now) / DAY, bool(info.rules),
                    tuple(_ordered(policy, info.rules)), tuple(orgs))
