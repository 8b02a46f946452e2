"""Presenting a policy diff: compact cube descriptions, text for reviewers, JSON for machines."""

from __future__ import annotations

import json

from tiergate.engine.timeutil import format_instant

from .diff import KIND_TITLES, OTHER, TIME, Change, PolicyDiff, Space



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


def render_text(diff: PolicyDiff, old_name: str, new_name: str) -> str:
    space = diff.space
    lines = [f"tiergate diff {old_name} → {new_name}"]
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
    for kind, title in KIND_TITLES.items():
        changes = diff.of_kind(kind)
        if not changes:
            continue
        lines.append("")
        lines.append(f"== {title}: {diff.totals[kind]} classes in {len(changes)} entries")
        for c in changes:
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
    lines.append("")
    if not diff.changed:
        lines.append("no change: every request is decided as before 决定均未改变")
    else:
        lines.append(f"{diff.totals['newly_permitted']} classes newly permitted, "
                     f"{diff.totals['newly_denied']} newly denied, "
                     f"{diff.totals['changed_details']} with changed obligations/reasons "
                     "(entries may overlap; classes are counted once)")
    return "\n".join(lines)
