"""Explain one decision: the path through the tree, every rule's conditions, every grant.

Only `PolicySet.decide(..., explain=True)` imports this module, so the decision path never pays
for it. The explanation is computed beside the decision, never instead of it: the effect, grant
and reasons come from `decide_values`, and this module only walks the checked condition model
again to say *why*. The result is a JSON-ready dict; sentences meant for people carry `zh` and
`en`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from . import model
from .decision import PERMIT, Decision, frozen
from .request import SLOT, TIME_SLOT
from .semantics import evaluate, request_reader
from .timeutil import format_instant, offset_minutes_of

_ORG = SLOT["subject.org_id"]
EXPLANATION_VERSION = 1


def explain_decision(policy, values: list, *, offset_minutes: int | None = None) -> Decision:
    """The decision `policy.decide_values(values)` gives, with its `explanation` attached.

    `values` are validated request values by slot, with the time slot filled. Instants are
    shown in `offset_minutes` (default: the offset the policy's grants are written in).
    """
    decision = policy.decide_values(values)
    if offset_minutes is None:
        offset_minutes = policy_offset(policy)
    explanation = _Explainer(policy, values, decision, offset_minutes).explain()
    return replace(decision, explanation=frozen(explanation))


def policy_offset(policy) -> int:
    """The UTC offset (minutes) most of the policy's grant expiries are written in, else 0."""
    offsets: Counter = Counter()
    for grant in policy.grants:
        offsets[offset_minutes_of(grant.expires_text)] += 1
    return offsets.most_common(1)[0][0] if offsets else 0


def _zh_en(zh: str, en: str) -> dict:
    return {"zh": zh, "en": en}


class _Explainer:
    def __init__(self, policy, values: list, decision: Decision, offset: int):
        self.policy = policy
        self.values = values
        self.decision = decision
        self.offset = offset
        self.labels = {name: list(v.labels) for name, v in policy.vocabularies.items()}

    # ---- the whole explanation ----------------------------------------------------------

    def explain(self) -> dict:
        path: list = []
        leaf = self.policy.leaf_for(self.values, path)
        in_leaf = [c.rule.id for c in leaf.denies + leaf.permits + leaf.obligers]
        applicable = self.policy.applicable_grants(self.values)
        obligation_sources = self._obligation_sources()
        rules = [self._rule(rule, set(in_leaf), applicable, obligation_sources)
                 for rule in self.policy.rules]
        d = self.decision
        return {
            "version": EXPLANATION_VERSION,
            "effect": d.effect,
            "grant_id": d.grant_id,
            "time": self._instant(self.values[TIME_SLOT]),
            "tree": {"path": [{"attribute": a, "value": v} for a, v in path],
                     "rules_in_leaf": in_leaf},
            "rules": rules,
            "org_id": self.values[_ORG],
            "grants": self._grants(applicable),
            "citations": [{"rule_id": r.rule_id, "effect": r.effect, "citation": r.citation,
                           "message_zh": r.message_zh, "message_en": r.message_en}
                          for r in d.reasons],
            "obligations": [{"id": o.id, "params": dict(o.params),
                             "rules": obligation_sources.get(o.id, [])}
                            for o in d.obligations],
            "unmet": [u.to_dict() for u in d.unmet],
            "dataset": self._dataset(),
            "summary": self._summary(),
        }

    def _dataset(self) -> dict | None:
        """The catalog's entry for the dataset asked about: what it was decided on."""
        dataset = self.policy.catalog.datasets.get(self.values[SLOT["resource.id"]])
        if dataset is None:
            return None
        return {"id": dataset.id, "label": dataset.label, "catalog_class": dataset.catalog_class,
                "tier": dataset.tier, "personal": dataset.personal,
                "owner_org_id": dataset.owner_org_id, "shareable": dataset.shareable}

    def _summary(self) -> dict:
        d = self.decision
        cited = "; ".join(f"{r.rule_id} ({r.citation})" if r.citation else r.rule_id
                          for r in d.reasons)
        if d.effect == PERMIT:
            grant_zh = f"，依据授权 {d.grant_id}" if d.grant_id else ""
            grant_en = f" under grant {d.grant_id}" if d.grant_id else ""
            return _zh_en(f"许可{grant_zh}：{cited}", f"PERMIT{grant_en}: {cited}")
        return _zh_en(f"拒绝：{cited}", f"DENY: {cited}")

    def _obligation_sources(self) -> dict[str, list[str]]:
        """Which applying rules contributed each obligation id (a permit only)."""
        sources: dict[str, list[str]] = {}
        if self.decision.effect != PERMIT:
            return sources
        deciding = {r.rule_id for r in self.decision.reasons}
        for rule in self.policy.rules:
            adds = (rule.id in deciding
                    or (rule.effect == "obligation" and self._holds(rule.condition, None)))
            if adds:
                for template in rule.obligations:
                    sources.setdefault(template.id, []).append(rule.id)
        return sources

    # ---- rules ---------------------------------------------------------------------------

    def _rule(self, rule: model.Rule, in_leaf: set, applicable: list,
              obligation_sources: dict) -> dict:
        d = self.decision
        reasons = {r.rule_id: r for r in d.reasons}
        grant = None
        if rule.needs_grant:
            # The engine binds the first applicable grant (preferred first) the rule accepts.
            grant = next((g for g in applicable if self._holds(rule.condition, g)), None)
            shown = grant or (applicable[0] if applicable else None)
        else:
            shown = None
        if rule.fallback:
            applies = rule.id in reasons
        else:
            applies = self._holds(rule.condition, grant)
        added = [t.id for t in rule.obligations
                 if rule.id in obligation_sources.get(t.id, ())]
        entry = {
            "rule_id": rule.id,
            "effect": rule.effect,
            "fallback": rule.fallback,
            "citation": rule.citation,
            "message_zh": rule.message_zh,
            "message_en": rule.message_en,
            "location": self._location(rule.span),
            "considered": rule.fallback or rule.id in in_leaf,
            "applies": applies,
            "decided": rule.id in reasons,
            "needs_grant": rule.needs_grant,
            "grant_id": shown.id if shown is not None else None,
            "obligations_added": added,
            "conditions": [] if rule.fallback else self._conditions(rule.condition, shown),
        }
        entry["note"] = self._rule_note(rule, entry, applicable)
        return entry

    def _rule_note(self, rule: model.Rule, entry: dict, applicable: list) -> dict:
        permitted = self.decision.effect == PERMIT
        if rule.fallback:
            if entry["decided"]:
                return _zh_en("没有规则许可，默认拒绝", "nothing permits: default deny")
            return _zh_en("未使用：已有规则作出决定", "not used: other rules decided")
        if not entry["considered"]:
            return _zh_en("决策树已排除：其索引条件不成立",
                          "ruled out by the decision tree: an indexed condition fails")
        if rule.effect == "deny":
            return (_zh_en("适用：拒绝（拒绝优先于任何许可）",
                           "applies: denies (a deny overrides every permit)")
                    if entry["applies"] else _zh_en("不适用", "does not apply"))
        if rule.effect == "permit":
            if entry["applies"] and entry["decided"]:
                via_zh = f"，依据授权 {entry['grant_id']}" if rule.needs_grant else ""
                via_en = f" under grant {entry['grant_id']}" if rule.needs_grant else ""
                return _zh_en(f"适用：许可{via_zh}", f"applies: permits{via_en}")
            if entry["applies"]:
                return _zh_en("适用，但被拒绝规则否决", "applies, but a deny rule overrides it")
            if rule.needs_grant and not applicable:
                return _zh_en("不适用：需要授权，但没有在有效期内且覆盖本请求的授权",
                              "does not apply: it needs a grant, and no unexpired grant of "
                              "the requester covers this request")
            if rule.needs_grant:
                ids = ", ".join(g.id for g in applicable)
                return _zh_en(f"不适用：覆盖本请求的授权（{ids}）不满足其条件",
                              f"does not apply: the grants covering this request ({ids}) "
                              "fail its conditions")
            return _zh_en("不适用", "does not apply")
        ids = ", ".join(t.id for t in rule.obligations)
        if entry["applies"] and permitted:
            return _zh_en(f"适用：附加义务 {ids}", f"applies: adds obligations {ids}")
        if entry["applies"]:
            return _zh_en(f"适用，但请求被拒绝，未附加义务 {ids}",
                          f"applies, but the request is denied, so {ids} is not added")
        return _zh_en("不适用", "does not apply")

    # ---- grants --------------------------------------------------------------------------

    def _grants(self, applicable: list) -> list[dict]:
        org = self.values[_ORG]
        applicable_ids = {g.id for g in applicable}
        grant_rules = [r for r in self.policy.rules if r.needs_grant and r.effect == "permit"]
        out = []
        for grant in self.policy.grants:
            if grant.grantee != org:
                continue
            why = self._scope_problems(grant)
            accepted_by = [r.id for r in grant_rules if self._holds(r.condition, grant)]
            # A grant outside the request's scope needs no second reason; within it (even
            # expired), say which approvals or grant conditions the rules miss.
            if not any(w["code"].endswith("_out_of_scope") for w in why):
                why += self._rule_problems(grant, grant_rules)
            in_scope = grant.id in applicable_ids
            if in_scope and not accepted_by and not why:
                why.append({"code": "no_rule", **_zh_en(
                    "没有使用授权的许可规则适用于本请求",
                    "no permit rule that uses a grant applies to this request")})
            out.append({
                "grant_id": grant.id,
                "agreement": grant.agreement,
                "expires": grant.expires_text,
                "approved_by": sorted(grant.approvers, key=self._order("approver")),
                "location": self._location(grant.span),
                "in_scope": in_scope,
                "applies": in_scope and bool(accepted_by),
                "accepted_by": accepted_by if in_scope else [],
                "bound": grant.id == self.decision.grant_id,
                "why_not": [] if in_scope and accepted_by else why,
            })
        return out

    def _scope_problems(self, grant: model.Grant) -> list[dict]:
        v = self.values
        problems = []
        if v[TIME_SLOT] >= grant.expires:
            problems.append({"code": "expired", **_zh_en(
                f"已于 {grant.expires_text} 到期", f"expired at {grant.expires_text}")})
        checks = (
            ("tier", "resource.tier", grant.tiers, "数据分级", "tier"),
            ("catalog_class", "resource.catalog_class", grant.catalog, "资源目录类别",
             "catalog class"),
            ("dataset", "resource.id", grant.datasets, "数据集", "dataset"),
            ("purpose", "purpose", grant.purposes, "使用目的", "purpose"),
            ("action", "action", grant.actions, "操作", "action"),
        )
        for code, path, allowed, zh, en in checks:
            if allowed is None:
                continue
            value = v[SLOT[path]]
            if value not in allowed:
                scope = ", ".join(sorted(allowed, key=self._order(path)))
                problems.append({"code": f"{code}_out_of_scope", **_zh_en(
                    f"{zh} {value} 不在授权范围内（{scope}）",
                    f"{en} {value} is outside its scope ({scope})")})
        return problems

    def _rule_problems(self, grant: model.Grant, grant_rules: list) -> list[dict]:
        """Grant conditions a rule requires that this grant fails (approvals above all).

        Only rules whose conditions on the request itself hold are asked: for the others no
        grant could help.
        """
        problems = []
        for rule in grant_rules:
            parts = _conjuncts(rule.condition)
            request_parts = [p for p in parts if not model.mentions_grant(p)]
            if not all(self._holds(p, None) for p in request_parts):
                continue
            for part in parts:
                if not model.mentions_grant(part) or self._holds(part, grant):
                    continue
                if isinstance(part, model.ApprovedBy):
                    missing = sorted(part.approvers - grant.approvers, key=self._order("approver"))
                    lacking = ", ".join(missing) if part.quantifier == "all" else \
                        "one of " + ", ".join(sorted(part.approvers, key=self._order("approver")))
                    problems.append({"code": "lacking_approvals", "rule_id": rule.id,
                                     "missing": missing, **_zh_en(
                        f"缺少 {lacking} 的批准，规则 {rule.id} 要求 {self._text(part)}",
                        f"lacks approval by {lacking}, which rule {rule.id} requires "
                        f"({self._text(part)})")})
                else:
                    problems.append({"code": "rule_condition", "rule_id": rule.id, **_zh_en(
                        f"不满足规则 {rule.id} 的条件 {self._text(part)}",
                        f"fails rule {rule.id}'s condition {self._text(part)}")})
        return problems

    # ---- conditions: evaluation -----------------------------------------------------------

    def _value(self, path: str, grant: model.Grant | None) -> Any:
        if path.startswith("grant."):
            return None if grant is None else grant.attribute(path)
        return self.values[SLOT[path]]

    def _holds(self, condition: model.Condition, grant: model.Grant | None) -> bool:
        # Everything is known here (the request and the grant considered): True or False.
        return evaluate(condition, request_reader(self.values, grant)) is True

    # ---- conditions: as data for people --------------------------------------------------

    def _conditions(self, condition: model.Condition, grant: model.Grant | None) -> list[dict]:
        return [self._condition(part, grant) for part in _conjuncts(condition)]

    def _condition(self, condition: model.Condition, grant: model.Grant | None) -> dict:
        entry = {"text": self._text(condition), "holds": self._holds(condition, grant),
                 "values": {path: self._shown(self._value(path, grant), path)
                            for path in _attributes(condition)}}
        inner = condition.operand if isinstance(condition, model.Not) else condition
        if isinstance(inner, (model.All, model.Any)):
            entry["parts"] = [self._condition(p, grant) for p in inner.operands]
        return entry

    def _shown(self, value: Any, path: str) -> Any:
        if value is None:
            return None
        if path in ("context.time", "grant.expires"):
            return self._instant(value)
        if isinstance(value, frozenset):
            return sorted(value, key=self._order("approver"))
        return value

    def _instant(self, micros: int) -> str:
        return format_instant(micros, self.offset)

    def _order(self, vocabulary: str):
        labels = self.labels.get(vocabulary, [])
        return lambda value: (labels.index(value) if value in labels else len(labels), str(value))

    def _text(self, condition: model.Condition, nested: bool = False) -> str:
        """The condition as policy text (the checker's normal form, written back)."""
        match condition:
            case model.All(operands=()):
                return "always"
            case model.All(operands=parts) | model.Any(operands=parts):
                joiner = " and " if isinstance(condition, model.All) else " or "
                text = joiner.join(self._text(p, nested=True) for p in parts)
                return f"({text})" if nested and len(parts) > 1 else text
            case model.Not(operand=inner):
                return self._negated(inner)
            case _:
                return self._atom(condition, positive=True)

    def _negated(self, inner: model.Condition) -> str:
        if isinstance(inner, (model.All, model.Any)):
            return f"not ({self._text(inner)})"
        return self._atom(inner, positive=False)

    def _atom(self, atom: model.Atom, *, positive: bool) -> str:
        match atom:
            case model.OneOf(attribute=path, values=allowed):
                if allowed <= {True, False} and len(allowed) == 1 and path not in self.labels:
                    truth = next(iter(allowed)) is positive
                    return path if truth else f"not {path}"
                ordered = sorted(allowed, key=self._order(path))
                if len(ordered) == 1:
                    return f"{path} {'==' if positive else '!='} {ordered[0]}"
                return f"{path} {'in' if positive else 'not in'} [{', '.join(map(str, ordered))}]"
            case model.TextIn(attribute=path, other=other) if other is not None:
                return f"{path} {'==' if positive else '!='} {other}"
            case model.TextIn(attribute=path, values=texts):
                quoted = [f'"{t}"' for t in sorted(texts)]
                if len(quoted) == 1:
                    return f"{path} {'==' if positive else '!='} {quoted[0]}"
                return f"{path} {'in' if positive else 'not in'} [{', '.join(quoted)}]"
            case model.Before(left=left, right=right):
                return self._before(left, right, positive)
            case model.ApprovedBy(approvers=approvers, quantifier=quantifier):
                names = sorted(approvers, key=self._order("approver"))
                text = (f"grant.approved_by has {names[0]}" if len(names) == 1
                        else f"grant.approved_by has {quantifier} [{', '.join(names)}]")
                return text if positive else f"not {text}"
        raise AssertionError(f"unknown atom {atom!r}")

    def _before(self, left, right, positive: bool) -> str:
        # `a <= t` was checked into `a < t + 1µs` and `a >= t` into `t - 1µs < a`; undo that
        # for whole-second literals so the text reads as the officer wrote it.
        if isinstance(right, int):
            op, instant = ("<", right) if right % 1_000_000 != 1 else ("<=", right - 1)
            if not positive:
                op = {"<": ">=", "<=": ">"}[op]
            return f"{left} {op} {self._instant(instant)}"
        if isinstance(left, int):
            op, instant = (">", left) if left % 1_000_000 != 999_999 else (">=", left + 1)
            if not positive:
                op = {">": "<=", ">=": "<"}[op]
            return f"{right} {op} {self._instant(instant)}"
        return f"{left} {'<' if positive else '>='} {right}"

    @staticmethod
    def _location(span) -> dict | None:
        if span is None or span.line == 0:
            return None
        return {"file": span.file, "line": span.line, "column": span.column}


def _conjuncts(condition: model.Condition) -> tuple[model.Condition, ...]:
    """The top-level `and` parts of a condition (one part when it is not a conjunction)."""
    if isinstance(condition, model.All):
        return condition.operands
    return (condition,)


def _attributes(condition: model.Condition) -> list[str]:
    """The attribute paths a condition reads, in order of first mention."""
    found: list[str] = []

    def walk(c):
        match c:
            case model.All(operands=parts) | model.Any(operands=parts):
                for p in parts:
                    walk(p)
            case model.Not(operand=inner):
                walk(inner)
            case model.OneOf(attribute=path) | model.TextIn(attribute=path, other=None):
                found.append(path)
            case model.TextIn(attribute=path, other=other):
                found.extend((path, other))
            case model.Before(left=left, right=right):
                found.extend(x for x in (left, right) if isinstance(x, str))
            case model.ApprovedBy():
                found.append("grant.approved_by")

    walk(condition)
    return list(dict.fromkeys(found))
