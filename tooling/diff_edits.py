"""The edits between two policy sets, as a reviewer names them: this grant, this rule.

`tiergate diff` lists the changed request classes under the edit that explains them: a change
whose old or new side was decided by a rule, or under a grant, that the edit added, removed or
changed. Under each edit, one entry per change of outcome, described only by the attributes the
edit touches (a grant's scope attributes, the attributes a rule's condition reads), so a grant
that lost `query` reads as "action = query", not as three entries split on booleans it never
mentions.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.engine import PolicySet
from tiergate.engine.timeutil import format_instant

# A grant's fields, how they read, and the request attribute each one scopes.
_GRANT_FIELDS = (("grantee", "grantee", "subject.org_id"), ("tiers", "tier", "resource.tier"),
                 ("catalog", "catalog", "resource.catalog_class"),
                 ("datasets", "dataset", "resource.id"), ("purposes", "purpose", "purpose"),
                 ("actions", "action", "action"), ("approved_by", "approved_by", None),
                 ("agreement", "agreement", None), ("expires", "expires", "context.time"))


@dataclass(frozen=True)
class Edit:
    kind: str  # "grant" | "rule"
    id: str
    what: str  # "added" | "removed" | "changed"
    details: tuple[str, ...]  # "action query, analyze → analyze", …
    touches: frozenset[str]  # request attributes the edit can change decisions on
    where: str  # file:line of the edited block (the new one, unless removed)

    def title(self) -> str:
        head = {"added": "added 新增", "removed": "removed 删除", "changed": "changed 变更"}
        text = f"{self.kind} {self.id} {head[self.what]}"
        return text + (": " + "; ".join(self.details) if self.details else "")


def _shown(value) -> str:
    if isinstance(value, (frozenset, set, tuple, list)):
        return ", ".join(sorted(map(str, value))) or "—"
    if isinstance(value, int):
        return format_instant(value, 480)
    return str(value) if value is not None else "—"


def _where(span) -> str:
    return f"{span.file}:{span.line}" if span is not None and span.line else ""


def _grant_edits(old: PolicySet, new: PolicySet) -> list[Edit]:
    before, after = {g.id: g for g in old.grants}, {g.id: g for g in new.grants}
    edits = []
    for grant_id in [*before, *(i for i in after if i not in before)]:
        a, b = before.get(grant_id), after.get(grant_id)
        if a is not None and b is not None:
            details, touches = [], set()
            for field, word, attribute in _GRANT_FIELDS:
                x, y = getattr(a, field, None), getattr(b, field, None)
                if x != y:
                    details.append(f"{word} {_shown(x)} → {_shown(y)}")
                    if attribute:
                        touches.add(attribute)
            if details:
                edits.append(Edit("grant", grant_id, "changed", tuple(details),
                                  frozenset(touches), _where(b.span)))
        else:
            grant = a or b
            touches = {attr for _, _, attr in _GRANT_FIELDS if attr} - {"context.time"}
            edits.append(Edit("grant", grant_id, "removed" if b is None else "added", (),
                              frozenset(touches), _where(grant.span)))
    return edits


def _read_attributes(rule) -> set[str]:
    out: set[str] = set()
    for conjunct in rule.conjuncts:
        out.update(attribute for attribute, _ in conjunct.indexed)
        for literal in conjunct.residual:
            atom = literal.atom
            for name in ("attribute", "other", "left", "right"):
                value = getattr(atom, name, None)
                if isinstance(value, str) and not value.startswith("grant."):
                    out.add(value)
    return out


def _rule_edits(old: PolicySet, new: PolicySet) -> list[Edit]:
    before, after = {r.id: r for r in old.rules}, {r.id: r for r in new.rules}
    edits = []
    for rule_id in [*before, *(i for i in after if i not in before)]:
        a, b = before.get(rule_id), after.get(rule_id)
        if a is not None and b is not None:
            details = []
            if a.effect != b.effect:
                details.append(f"effect {a.effect} → {b.effect}")
            if a.condition != b.condition:
                details.append("condition")
            if a.citation != b.citation:
                details.append(f"cite {a.citation} → {b.citation}")
            if [o.id for o in a.obligations] != [o.id for o in b.obligations]:
                details.append("obliges " + _shown([o.id for o in a.obligations]) + " → "
                               + _shown([o.id for o in b.obligations]))
            if a.needs_grant != b.needs_grant:
                details.append("requires grant" if b.needs_grant else "no longer requires grant")
            if details:
                edits.append(Edit("rule", rule_id, "changed", tuple(details),
                                  frozenset(_read_attributes(a) | _read_attributes(b)),
                                  _where(b.span)))
        else:
            rule = a or b
            edits.append(Edit("rule", rule_id, "removed" if b is None else "added", (),
                              frozenset(_read_attributes(rule)), _where(rule.span)))
    return edits


def policy_edits(old: PolicySet, new: PolicySet) -> list[Edit]:
    """Grants first (they change most often), then rules, each in file order."""
    return _grant_edits(old, new) + _rule_edits(old, new)


def explains(edit: Edit, old_outcome, new_outcome) -> bool:
    """Whether `edit` can account for a change between these outcomes."""
    if edit.kind == "grant":
        return edit.id in (old_outcome.grant_id, new_outcome.grant_id)
    return edit.id in old_outcome.rules or edit.id in new_outcome.rules
