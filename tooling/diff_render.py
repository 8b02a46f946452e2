"""Presenting a policy diff: compact cube descriptions, text for reviewers, JSON for machines."""

from __future__ import annotations

import json

from tiergate.engine.timeutil import format_instant

from .diff import KIND_TITLES, OTHER, TIME, Change, PolicyDiff, Space
from .diff_edits import explains



def _time_runs(space: Space, intervals: list[int]) -> list[str]:
    """Adjacent time intervals merged: ['< a', '[b, c)', '>= d']."""
    runs, start = [], None
    for i in sorted(intervals) + [None]:
        if start is None:
            start = previous = i
        elif i is not None and i == previous + 1:
            previous = i
            continue
        else:
            runs.append((start, previous))
            start = previous = i
    out, b = [], space.boundaries
    for first, last in runs:
        if first is None:
            continue
        lower = format_instant(b[first - 1], 480) if first > 0 else None
        upper = format_instant(b[last], 480) if last < len(b) else None
        out.append(f"[{lower}, {upper})" if lower and upper
                   else f"< {upper}" if upper else f">= {lower}" if lower else "any time")
    return out


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith("="):
        return value[1:]  # equal to another attribute
    return str(value)


def describe_values(space: Space, dimension: str, values: list) -> str:
    """`attribute = v`, `attribute ∈ {…}` or, when shorter, `attribute ∉ {…}`."""
    if dimension == TIME:
        return f"{TIME} " + " or ".join(_time_runs(space, values))
    domain = space.domains[dimension]
    missing = [v for v in domain if v not in values]
    if len(values) == 1:
        return f"{dimension} = {_literal(values[0])}" if values[0] != OTHER else \
            f"{dimension} ∉ {{{', '.join(_literal(v) for v in missing)}}}"
    if len(missing) == 1 and missing[0] != OTHER:
        return f"{dimension} ≠ {_literal(missing[0])}"
    if len(missing) < len(values) and OTHER not in missing:
        return f"{dimension} ∉ {{{', '.join(_literal(v) for v in missing)}}}"
    return f"{dimension} ∈ {{{', '.join(_literal(v) for v in values)}}}"


def describe_cube(space: Space, cube: dict) -> list[str]:
    return [describe_values(space, d, cube[d]) for d in space.dimensions if d in cube] \
        or ["every request"]


def diff_to_dict(diff: PolicyDiff) -> dict:
    space = diff.space
    summary = {kind: {"entries": len(diff.of_kind(kind)), "classes": diff.totals[kind]}
               for kind in KIND_TITLES}
    return {
        "changed": diff.changed,
        "summary": summary,
        "vocabulary": diff.vocabulary,
        "catalog": diff.catalog,
        "changes": [{
            "kind": c.kind,
            "where": describe_cube(space, c.cube),
            "cube": c.cube,
            "classes": c.classes,
            # effect changes: the deciding rules on each side; same effect: what left (old)
            # and what joined (new) the reasons, grant and obligations.
            "old": c.old.to_dict(),
            "new": c.new.to_dict(),
            "example_old": c.example_old.to_dict(),
            "example_new": c.example_new.to_dict(),
            "example": c.example,
        } for c in diff.changes],
        "dimensions": diff.dimensions,
        "time_boundaries": [format_instant(b, 480) for b in space.boundaries],
        "regions": diff.regions,
        "decided": diff.decided,
    }


def _detail_lines(c: Change) -> list[str]:
    """A same-effect change: what left and what joined the reasons, grant and obligations."""
    lines = []
    if c.old.rules:
        lines.append(f"    reasons no longer  {', '.join(c.old.rules)}")
    if c.new.rules:
        lines.append(f"    reasons now also   {', '.join(c.new.rules)}")
    if c.old.grant_id or c.new.grant_id:
        lines.append(f"    grant              {c.old.grant_id or '-'} → {c.new.grant_id or '-'}")
    if c.old.obligations:
        lines.append(f"    obligations no longer  {', '.join(c.old.obligations)}")
    if c.new.obligations:
        lines.append(f"    obligations now        {', '.join(c.new.obligations)}")
    return lines


def render_text(diff: PolicyDiff, old_name: str, new_name: str, *, edits=(),
                verbose: bool = False) -> str:
    """The report a reviewer reads: each edit (this grant, this rule) with the request classes
    it changes, described by the attributes it touches; then changes no single edit explains;
    then, with `verbose`, every changed cube in detail."""
    space = diff.space
    when = f"  (requests at {format_instant(space.now, 480)} or later)" if space.now else ""
    lines = [f"tiergate diff {old_name} → {new_name}{when}"]
    lines.extend(_vocabulary_and_catalog_lines(diff))
    claimed: set[int] = set()
    for edit in edits:
        groups: dict[tuple, list] = {}
        for index, change in enumerate(diff.changes):
            if index not in claimed and explains(edit, change.old, change.new):
                claimed.add(index)
                groups.setdefault((change.old, change.new), []).append(change)
        lines.append("")
        lines.append(f"== {edit.title()}" + (f"   ({edit.where})" if edit.where else ""))
        if not groups:
            lines.append("   no request is decided differently because of it 未改变任何决定")
        for (old, new), changes in groups.items():
            lines.extend(_edit_entry(diff, edit, old, new, changes))
    rest = [c for i, c in enumerate(diff.changes) if i not in claimed]
    if rest:
        lines.append("")
        lines.append("== changes no single edit explains 其他变化" if edits else
                     "== changes 变化")
        lines.extend(_detail(diff, rest))
    if verbose and claimed:
        lines.append("")
        lines.append("== every changed class, in detail 全部变化明细")
        lines.extend(_detail(diff, list(diff.changes)))
    lines.append("")
    lines.append(_summary(diff))
    return "\n".join(lines)


def _edit_entry(diff: PolicyDiff, edit, old, new, changes: list) -> list[str]:
    space = diff.space
    kind = changes[0].kind
    mark = {"newly_permitted": "+", "newly_denied": "-"}.get(kind, "~")
    classes = (diff.group_totals or {}).get((old, new), sum(c.classes for c in changes))
    lines = [f"{mark} {old.effect} → {new.effect}: {classes:,} classes of requests"]
    where = []
    for dimension in space.dimensions:
        if dimension not in edit.touches:
            continue
        values = set()
        for change in changes:
            values |= set(change.cube.get(dimension, space.domains[dimension]))
        if len(values) < len(space.domains[dimension]):
            ordered = [v for v in space.domains[dimension] if v in values]
            where.append(describe_values(space, dimension, ordered))
    if where:
        lines.append(f"    where    {where[0]}")
        lines.extend(f"             {w}" for w in where[1:])
    if kind == "changed_details":
        lines.extend(_detail_lines(changes[0]))
    else:
        grant = f" (grant {new.grant_id})" if new.grant_id else ""
        lines.append(f"    now      {', '.join(new.rules) or '-'}{grant}")
        was_grant = f" (grant {old.grant_id})" if old.grant_id else ""
        lines.append(f"    was      {', '.join(old.rules) or '-'}{was_grant}")
    lines.append(f"    example  {json.dumps(changes[0].example, ensure_ascii=False)}")
    return lines


def _summary(diff: PolicyDiff) -> str:
    compared = (f"Compared {diff.compared:,} classes of requests (every combination of values "
                "the two policy sets tell apart)") if diff.compared else "Compared every class"
    if not diff.changed:
        return f"{compared}: no change, every request is decided as before 决定均未改变"
    return (f"{compared}: {diff.totals['newly_permitted']:,} newly permitted, "
            f"{diff.totals['newly_denied']:,} newly denied, "
            f"{diff.totals['changed_details']:,} with other obligations or reasons")


def _vocabulary_and_catalog_lines(diff: PolicyDiff) -> list[str]:
    lines = []
    for name, change in diff.vocabulary.items():
        if change["added"]:
            lines.append(f"vocabulary {name}: declared 新增 {', '.join(change['added'])}")
        if change["removed"]:
            lines.append(f"vocabulary {name}: no longer declared 删除 {', '.join(change['removed'])}")
    for dataset, change in diff.catalog.items():
        fields = ", ".join(f"{f} {old} → {new}" for f, (old, new) in
                           ((f, v) for f, v in change.items() if f != "change"))
        word = {"added": "added to 新增", "removed": "removed from 删除",
                "changed": "changed in 变更"}[change["change"]]
        lines.append(f"catalog: dataset {dataset} {word} the catalog" + (f": {fields}" if fields else ""))
    return lines


def _detail(diff: PolicyDiff, changes: list) -> list[str]:
    """Changed cubes by kind, each with every attribute that narrows it."""
    space = diff.space
    lines = []
    for kind, title in KIND_TITLES.items():
        of_kind = [c for c in changes if c.kind == kind]
        if not of_kind:
            continue
        lines.append(f"-- {title}: {len(of_kind)} entries")
        for c in of_kind:
            mark = {"newly_permitted": "+", "newly_denied": "-"}.get(kind, "~")
            lines.append(f"{mark} {c.old.effect} → {c.new.effect}  ({c.classes} classes)")
            where = describe_cube(space, c.cube)
            lines.append(f"    where    {where[0]}")
            lines.extend(f"             {w}" for w in where[1:])
            if kind == "changed_details":
                lines.extend(_detail_lines(c))
            else:
                grant = f" (grant {c.new.grant_id})" if c.new.grant_id else ""
                lines.append(f"    now      {', '.join(c.new.rules) or '-'}{grant}")
                was_grant = f" (grant {c.old.grant_id})" if c.old.grant_id else ""
                lines.append(f"    was      {', '.join(c.old.rules) or '-'}{was_grant}")
                if c.example_new.obligations:
                    lines.append(f"    obliges  {', '.join(c.example_new.obligations)}  (example)")
            lines.append(f"    example  {json.dumps(c.example, ensure_ascii=False)}")
    return lines
