"""Render an explanation (engine/explain.py's dict) as text for people, in zh, en or both."""

from __future__ import annotations

from typing import Iterable

from .explain_plain import BOOLEAN_LABELS, summary_lines

LANGS = ("zh", "en", "both")

_HEADINGS = {
    "decision": ("决定", "Decision"),
    "path": ("决策树路径", "Path through the decision tree"),
    "rules": ("规则", "Rules"),
    "not_considered": ("决策树已排除的规则", "Rules the decision tree ruled out"),
    "grants": ("授权", "Grants"),
    "obligations": ("义务", "Obligations"),
    "citations": ("依据", "Citations"),
    "unmet": ("最接近的许可规则及其未满足的条件", "Closest permit rules and what they missed"),
    "dataset": ("数据资源目录中的数据集", "The dataset, as the catalog lists it"),
}
_EFFECT = {"permit": ("许可", "permit"), "deny": ("拒绝", "deny"),
           "obligation": ("义务", "on permit")}


def _pick(zh: str, en: str, lang: str) -> str:
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return f"{zh} / {en}" if zh != en else zh


def _say(message: dict, lang: str) -> str:
    return _pick(message.get("zh", ""), message.get("en", ""), lang)


def _heading(key: str, lang: str) -> str:
    return _pick(*_HEADINGS[key], lang)


def _value(value) -> str:
    if value is None:
        return "—"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _condition_lines(condition: dict, depth: int, lang: str = "en") -> Iterable[str]:
    mark = "✓" if condition["holds"] else "✗"
    plain = _plain_truth(condition, lang)
    if plain is not None:
        yield f"{'    ' * depth}{mark} {plain}"
    else:
        values = ", ".join(f"{k} = {_value(v)}" for k, v in condition["values"].items())
        yield f"{'    ' * depth}{mark} {condition['text']}" + (f"    ({values})" if values else "")
    for part in condition.get("parts", ()):
        yield from _condition_lines(part, depth + 1, lang)


def _plain_truth(condition: dict, lang: str) -> str | None:
    """A test of a true/false attribute without a double negative: `not X` that fails reads
    "real-name verified: yes — the rule needs no", `X` that fails "…: no — required: yes"."""
    text = condition["text"]
    negated = text.startswith("not ")
    attribute = text[4:] if negated else text
    value = condition["values"].get(attribute)
    if attribute not in BOOLEAN_LABELS or not isinstance(value, bool) or len(condition["values"]) != 1:
        return None
    needed = not negated
    zh_label, en_label = BOOLEAN_LABELS[attribute]
    actual_zh, actual_en = ("是", "yes") if value else ("否", "no")
    need_zh, need_en = ("是", "yes") if needed else ("否", "no")
    if condition["holds"]:
        return _pick(f"{zh_label}：{actual_zh}", f"{en_label}: {actual_en}", lang)
    return _pick(f"{zh_label}：{actual_zh}——要求：{need_zh}",
                 f"{en_label}: {actual_en} — required: {need_en}", lang)


def render_explanation(explanation: dict, lang: str = "both", *, verbose: bool = False) -> str:
    """The explanation as readable text: a few plain lines (explain_plain.py), then with
    `verbose` the decision, path, rules, grants and obligations in full."""
    out = summary(explanation, lang)
    if not verbose:
        out.append("")
        out.append(_pick("（--verbose：决策树路径、考虑过的每条规则及每个条件的取值）",
                         "(--verbose: the decision-tree path, every rule considered and each "
                         "condition's value)", lang))
        return "\n".join(out) + "\n"
    out.append("")
    return "\n".join(out) + "\n" + _full(explanation, lang)


def summary(explanation: dict, lang: str) -> list[str]:
    if lang == "both":
        return summary_lines(explanation, "zh") + summary_lines(explanation, "en")
    return summary_lines(explanation, lang)


def _full(explanation: dict, lang: str) -> str:
    e = explanation
    out: list[str] = []
    effect_zh = "许可" if e["effect"] == "PERMIT" else "拒绝"
    out.append(f"{_heading('decision', lang)}: {_pick(effect_zh, e['effect'], lang)}"
               + (f"  ({_pick('授权', 'grant', lang)} {e['grant_id']})" if e["grant_id"] else ""))
    out.append(f"  {_pick('请求时间', 'request time', lang)}: {e['time']}")
    out.append(f"  {_say(e['summary'], lang) if lang != 'both' else e['summary']['zh']}")
    if lang == "both":
        out.append(f"  {e['summary']['en']}")

    dataset = e.get("dataset")
    if dataset:
        out.append("")
        out.append(f"{_heading('dataset', lang)}:")
        out.append(f"  {dataset['id']} {dataset['label']}: {dataset['catalog_class']} / "
                   f"{dataset['tier']}, personal {_value(dataset['personal'])}, owner "
                   f"{dataset['owner_org_id'] or '—'}, shareable {_value(dataset['shareable'])}")
    if e.get("unmet"):
        out.append("")
        out.append(f"{_heading('unmet', lang)}:")
        for unmet in e["unmet"]:
            out.append(f"  - {unmet['rule_id']} ({unmet['citation']}): "
                       + _say({"zh": unmet["message_zh"], "en": unmet["message_en"]}, lang))

    out.append("")
    out.append(f"{_heading('path', lang)}:")
    path = e["tree"]["path"]
    out.append("  " + (" → ".join(f"{p['attribute']} = {_value(p['value'])}" for p in path)
                       or _pick("（根即叶）", "(the root is a leaf)", lang)))

    out.append("")
    out.append(f"{_heading('rules', lang)}:")
    skipped = []
    for rule in e["rules"]:
        if not rule["considered"]:
            skipped.append(rule)
            continue
        out.extend(_rule_lines(rule, lang))

    if skipped:
        out.append("")
        out.append(f"{_heading('not_considered', lang)}:")
        for rule in skipped:
            failing = [_plain_truth(c, "zh" if lang == "zh" else "en") or c["text"]
                       for c in rule["conditions"] if not c["holds"]]
            why = "; ".join(f"✗ {t}" for t in failing)
            out.append(f"  - {rule['rule_id']} [{_pick(*_EFFECT[rule['effect']], lang)}]"
                       + (f": {why}" if why else ""))

    out.append("")
    org = e.get("org_id")
    out.append(f"{_heading('grants', lang)} ({_pick('申请单位', 'organisation', lang)} "
               f"{org if org else '—'}):")
    if not e["grants"]:
        out.append("  " + _pick("该单位没有授权", "this organisation holds no grant", lang))
    for grant in e["grants"]:
        if grant["bound"]:
            state = _pick("已采用", "bound", lang)
        elif grant["applies"]:
            state = _pick("适用（未采用）", "applies (not bound)", lang)
        else:
            state = _pick("不适用", "does not apply", lang)
        out.append(f"  {'✓' if grant['applies'] else '✗'} {grant['grant_id']} "
                   f"({_pick('协议', 'agreement', lang)} {grant['agreement']}, "
                   f"{_pick('到期', 'expires', lang)} {grant['expires']}, "
                   f"{_pick('批准', 'approved by', lang)} {', '.join(grant['approved_by'])}): {state}")
        for why in grant["why_not"]:
            out.append(f"      - {_say(why, lang)}")

    if e["obligations"]:
        out.append("")
        out.append(f"{_heading('obligations', lang)}:")
        for obligation in e["obligations"]:
            params = ", ".join(f"{k}: {v}" for k, v in obligation["params"].items())
            out.append(f"  - {obligation['id']}" + (f"({params})" if params else "")
                       + f"  ← {', '.join(obligation['rules'])}")

    out.append("")
    out.append(f"{_heading('citations', lang)}:")
    for citation in e["citations"]:
        out.append(f"  - {citation['rule_id']} [{citation['effect']}] {citation['citation']}")
        if lang in ("zh", "both"):
            out.append(f"      {citation['message_zh']}")
        if lang in ("en", "both"):
            out.append(f"      {citation['message_en']}")
    return "\n".join(out) + "\n"


def _rule_lines(rule: dict, lang: str) -> Iterable[str]:
    if rule["decided"]:
        mark = "●"
    else:
        mark = "✓" if rule["applies"] else "✗"
    where = rule.get("location")
    at = f"  {where['file']}:{where['line']}" if where else ""
    yield (f"  {mark} {rule['rule_id']} [{_pick(*_EFFECT[rule['effect']], lang)}]"
           f"  {rule['citation']}{at}")
    yield f"      → {_say(rule['note'], lang)}"
    for condition in rule["conditions"]:
        for line in _condition_lines(condition, 0, "zh" if lang == "zh" else "en"):
            yield "        " + line
