"""Why not: for a default deny, the permit rules that came closest and what each one missed.

A DENY that no deny rule decided otherwise says only "nothing permits this". That is true and
useless to the person asking: they need to hear that their grant expired (福州办法 第二十九条),
that the closed-tier grant lacks the health commission's consent (第十八条 第二款), or that the
data would have to be open. So the default deny carries `unmet`: the permit rules with the
fewest unmet requirements, each with the first one, its citation and a zh/en message.

Two cases, by what the decision tree already knows at the leaf the request reached:
- the leaf holds permit candidates (their enumerated tests hold; a grant, time or text test
  failed): those are the closest, and each is asked which of its residual tests failed — for a
  grant rule, whether the organisation has no grant here, an expired one, one for another
  purpose, action or dataset, or one without an approval the rule requires;
- the leaf holds none: every permit rule failed an enumerated test. Which ones failed depends
  only on the request's enumerated values, so the answer is remembered per those values.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Mapping

from . import model
from .compile import GrantIndex
from .semantics import specialise
from .decision import Unmet
from .request import DATASET_SLOT, SLOT, TIME_SLOT
from .timeutil import format_instant

# Grant requirements a policy set may cite its own articles for (the `unmet { … }` block);
# any other requirement cites the permit rule's own article.
GRANT_REQUIREMENTS = ("grant_missing", "grant_expired", "grant_scope", "grant_approval")
MAX_RULES = 3  # rules reported per denial: the closest few, not the whole policy
_REMEMBERED = 4096  # enumerated-value combinations remembered; past it, worked out each time
_ORG, _TIER, _CLASS = SLOT["subject.org_id"], SLOT["resource.tier"], SLOT["resource.catalog_class"]
_PURPOSE, _ACTION = SLOT["purpose"], SLOT["action"]
# The request values a leaf candidate's grant and residual tests read (texts and grant scope).
_RESIDUAL_SLOTS = tuple(SLOT[p] for p in ("subject.id", "subject.org_id", "resource.id",
                                          "resource.owner_org_id", "resource.tier",
                                          "resource.catalog_class", "purpose", "action"))


def describe_atom(atom: model.Atom) -> str:
    """A residual test in the policy language's own words."""
    match atom:
        case model.ApprovedBy(approvers=approvers, quantifier=quantifier):
            names = sorted(approvers)
            if len(names) == 1 and quantifier == "all":
                return f"grant.approved_by has {names[0]}"
            return f"grant.approved_by has {quantifier} [{', '.join(names)}]"
        case model.Before(left=left, right=right):
            show = lambda x: format_instant(x) if isinstance(x, int) else x  # noqa: E731
            return f"{show(left)} < {show(right)}"
        case model.TextIn(attribute=path, values=values, other=None):
            return f"{path} in [{', '.join(sorted(values))}]"
        case model.TextIn(attribute=path, other=other):
            return f"{path} == {other}"
    return repr(atom)


def _shown(value) -> str:
    if value is None:
        return "absent"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _choices(values: frozenset, order: Mapping[str, int], show=_shown, separator: str = ", ") -> str:
    """The first few of `values` in their vocabulary's order, each as `show` words it."""
    names = sorted(values, key=lambda v: (order.get(v, len(order)), str(v)))
    return separator.join(show(v) for v in names[:4]) + (separator + "…" if len(names) > 4 else "")


class WhyNot:
    """Works out `unmet` for a policy set's default denials. Immutable after construction
    except for its bounded memo, which is safe to share between threads."""

    def __init__(self, checked: model.CheckedPolicy, grant_index: GrantIndex,
                 citations: Mapping[str, str], time_literals: tuple[int, ...] = ()):
        self._rules = [r for r in checked.rules if r.effect == "permit"]
        self._time_literals = time_literals
        self._vocabularies = checked.vocabularies
        self._index = grant_index
        self._citations = citations
        self._order = {name: {v: i for i, v in enumerate(vocabulary.labels)}
                       for name, vocabulary in checked.vocabularies.items()}
        # Per rule, per conjunct: its enumerated tests as (slot, path, allowed), contract order.
        self._indexed = [
            [sorted(((SLOT[path], path, allowed) for path, allowed in conjunct.indexed))
             for conjunct in rule.conjuncts]
            for rule in self._rules]
        self._slots = tuple(sorted({slot for conjuncts in self._indexed
                                    for tests in conjuncts for slot, _, _ in tests}))
        self._tests = {}  # residual literal -> predicate, compiled once
        for rule in self._rules:
            for conjunct in rule.conjuncts:
                for literal in conjunct.residual:
                    self._tests.setdefault(literal, specialise(literal.atom))
        self._remembered: dict[tuple, tuple[Unmet, ...]] = {}

    def unmet(self, candidates: tuple, values: list) -> tuple[Unmet, ...]:
        """`candidates`: the permit candidates of the leaf the request reached."""
        if candidates:
            # What the candidates' residual tests and the grants can see of the request: its
            # texts, scope, and where its time falls among the instants that change anything.
            now = values[TIME_SLOT]
            key = (id(candidates), *(values[slot] for slot in _RESIDUAL_SLOTS),
                   bisect_right(self._index.expiries.get(values[_ORG], ()), now),
                   bisect_right(self._time_literals, now))
            return self._remember(key, lambda: [self._candidate(c, values) for c in candidates])
        key = (None, *(values[slot] for slot in self._slots))  # None: no leaf candidates
        return self._remember(key, lambda: [self._by_enumerated(i, values)
                                            for i in range(len(self._rules))])

    def _remember(self, key: tuple, scored) -> tuple[Unmet, ...]:
        """The closest of `scored()` for `key`, worked out once while the memo has room."""
        found = self._remembered.get(key)
        if found is None:
            found = self._closest(scored())
            if len(self._remembered) < _REMEMBERED:
                self._remembered[key] = found
        return found

    @staticmethod
    def _closest(scored: list) -> tuple[Unmet, ...]:
        scored = [s for s in scored if s is not None]
        if not scored:
            return ()
        nearest = min(distance for distance, _ in scored)
        return tuple(unmet for distance, unmet in scored if distance == nearest)[:MAX_RULES]

    # ---- rules whose enumerated tests failed ------------------------------------------------

    def _by_enumerated(self, index: int, values: list) -> tuple[int, Unmet] | None:
        rule = self._rules[index]
        best = None
        for tests in self._indexed[index]:
            failed = [(slot, path, allowed) for slot, path, allowed in tests
                      if values[slot] not in allowed]
            if failed and (best is None or len(failed) < len(best)):
                best = failed
        if best is None:
            return None  # every enumerated test holds: it is a leaf candidate, not asked here
        slot, path, allowed = best[0]
        value = values[slot]
        order = self._order.get(path, {})
        wanted = _choices(allowed, order)
        labels = self._vocabularies.get(path)
        wanted_zh = wanted if labels is None else _choices(
            allowed, order, lambda v: f"{labels.labels.get(v, v)}（{v}）", "、")
        return len(best), Unmet(
            rule.id, "attribute", rule.citation,
            f"规则 {rule.id} 要求 {path} 为 {wanted_zh}，本请求为 {_shown(value)}",
            f"rule {rule.id} needs {path} to be {wanted} (this request: {_shown(value)})",
            attribute=path)

    # ---- leaf candidates: a residual test failed --------------------------------------------

    def _candidate(self, candidate, values: list) -> tuple[int, Unmet] | None:
        rule = candidate.rule
        if rule.needs_grant:
            return self._grant_problem(rule, candidate.conjuncts, values)
        best = None
        for conjunct in candidate.conjuncts:
            failed = [lit for lit in conjunct.residual if not self._holds(lit, values, None)]
            if failed and (best is None or len(failed) < len(best)):
                best = failed
        if best is None:
            return None
        text = describe_atom(best[0].atom)
        text = text if best[0].positive else f"not ({text})"
        return len(best), Unmet(rule.id, "condition", rule.citation,
                                f"规则 {rule.id} 的条件 {text} 不成立",
                                f"rule {rule.id} needs {text}")

    def _holds(self, literal: model.Residual, values: list, grant) -> bool:
        return self._tests[literal](values, grant) == literal.positive

    def _grant_problem(self, rule: model.Rule, conjuncts, values: list) -> tuple[int, Unmet]:
        org, tier, catalog_class = values[_ORG], values[_TIER], values[_CLASS]
        purpose, action, dataset, now = (values[_PURPOSE], values[_ACTION], values[DATASET_SLOT],
                                         values[TIME_SLOT])
        grants = self._index.candidates(org, tier, catalog_class)
        if not grants:
            who = org if org is not None else "the requester (no subject.org_id)"
            return 1, self._grant_unmet(
                rule, "grant_missing", None,
                f"{who} 没有覆盖 {catalog_class} / {tier} 的已批准授权（使用协议）",
                f"no grant of {who} covers {catalog_class} / {tier}")
        in_scope = [g for g in grants if g.covers(tier, catalog_class, dataset, purpose, action)]
        if not in_scope:
            grant = grants[0]
            missing = [(what_zh, what, value) for what_zh, what, value, allowed in (
                ("使用目的", "purpose", purpose, grant.purposes),
                ("操作", "action", action, grant.actions),
                ("数据集", "dataset", dataset, grant.datasets)) if allowed is not None
                and value not in allowed]
            what_zh, what, value = missing[0]
            return 1, self._grant_unmet(
                rule, "grant_scope", grant.id,
                f"授权 {grant.id} 不覆盖{what_zh} {_shown(value)}",
                f"grant {grant.id} does not cover {what} {_shown(value)}")
        current = [g for g in in_scope if now < g.expires]
        if not current:
            grant = in_scope[0]  # the latest-expiring
            return 1, self._grant_unmet(
                rule, "grant_expired", grant.id,
                f"授权 {grant.id} 已于 {grant.expires_text} 到期，继续使用须在到期前重新申请",
                f"grant {grant.id} expired at {grant.expires_text}")
        grant, failed = None, None
        for candidate_grant in current:
            for conjunct in conjuncts:
                misses = [lit for lit in conjunct.residual
                          if not self._holds(lit, values, candidate_grant)]
                if misses and (failed is None or len(misses) < len(failed)):
                    grant, failed = candidate_grant, misses
        if failed is None:  # cannot happen for a denied request; say so rather than guess
            return 1, Unmet(rule.id, "condition", rule.citation,
                            f"规则 {rule.id} 未适用", f"rule {rule.id} did not apply")
        atom = failed[0].atom
        if isinstance(atom, model.ApprovedBy) and failed[0].positive:
            lacking = sorted(atom.approvers - grant.approvers) if atom.quantifier == "all" \
                else sorted(atom.approvers)
            either = "" if atom.quantifier == "all" else "one of "
            labels = self._vocabularies.get("approver")
            lacking_zh = "、".join(labels.labels.get(a, a) if labels else a for a in lacking)
            return len(failed), self._grant_unmet(
                rule, "grant_approval", grant.id,
                f"授权 {grant.id} 缺少{'以下之一' if either else ''} {lacking_zh} 的同意",
                f"grant {grant.id} lacks {either}{', '.join(lacking)}'s consent")
        text = describe_atom(atom) if failed[0].positive else f"not ({describe_atom(atom)})"
        return len(failed), Unmet(rule.id, "condition", rule.citation,
                                  f"授权 {grant.id} 不满足规则 {rule.id} 的条件 {text}",
                                  f"grant {grant.id} fails rule {rule.id}'s condition {text}",
                                  grant.id)

    def _grant_unmet(self, rule: model.Rule, requirement: str, grant_id: str | None,
                     zh: str, en: str) -> Unmet:
        citation = self._citations.get(requirement, rule.citation)
        return Unmet(rule.id, requirement, citation, zh, en, grant_id)
