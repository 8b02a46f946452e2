"""The opening of `tiergate explain`: two to five lines a compliance officer reads without help.

What was decided and by which rule, in the rule's own words; what would have to change for the
answer to change (the grant to obtain or renew, the approval that is missing, the attribute that
would have to differ); the articles. Built from the explanation dict (engine/explain.py), in zh
or en. The decision-tree path and every condition's value are for `--verbose`.
"""

from __future__ import annotations

# How a true/false attribute reads, so that `not subject.real_name_verified` becomes
# "real-name verified: no" rather than a double negative.
BOOLEAN_LABELS = {
    "subject.real_name_verified": ("实名认证", "real-name verified"),
    "resource.personal": ("含个人信息", "personal data"),
    "resource.shareable": ("可共享", "shareable"),
    "context.deidentified": ("已去标识化", "de-identified"),
    "context.consent": ("已获同意", "consent given"),
    "context.security_assessment": ("已通过安全评估", "security assessment passed"),
}
_YES_NO = {True: ("是", "yes"), False: ("否", "no")}


def _pick(zh: str, en: str, lang: str) -> str:
    return zh if lang == "zh" else en


def fact(attribute: str, value, lang: str) -> str:
    """One attribute's value in words: "real-name verified: no", "purpose = commercial"."""
    if attribute in BOOLEAN_LABELS and isinstance(value, bool):
        label = _pick(*BOOLEAN_LABELS[attribute], lang)
        return f"{label}{_pick('：', ': ', lang)}{_pick(*_YES_NO[value], lang)}"
    if isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value)) or "—"
    return f"{attribute} = {value if value is not None else '—'}"


def _holding_facts(conditions: list[dict], lang: str) -> list[str]:
    """The attribute values that made a rule's conditions hold (for a rule that decided)."""
    out: list[str] = []
    for condition in conditions:
        if not condition["holds"]:
            continue
        parts = condition.get("parts")
        if parts:
            out.extend(_holding_facts(parts, lang))
            continue
        for attribute, value in condition["values"].items():
            if attribute.startswith("grant."):
                continue
            text = fact(attribute, value, lang)
            if text not in out:
                out.append(text)
    return out


def _citations(explanation: dict, lang: str) -> str:
    seen: list[str] = []
    for citation in explanation["citations"]:
        for article in citation["citation"].replace("；", ";").split(";"):
            article = article.strip()
            if article and article not in seen:
                seen.append(article)
    return _pick("依据：", "Articles: ", lang) + ("；".join(seen) if lang == "zh"
                                                else "; ".join(seen)) if seen else ""


def summary_lines(explanation: dict, lang: str) -> list[str]:
    """Two to five lines, in `lang` ("zh" or "en")."""
    e = explanation
    lines: list[str] = []
    rules = {rule["rule_id"]: rule for rule in e["rules"]}
    deciding = [rules[c["rule_id"]] for c in e["citations"]
                if c["rule_id"] in rules and rules[c["rule_id"]]["decided"]
                and rules[c["rule_id"]]["effect"] != "obligation"]
    if e["effect"] == "PERMIT":
        rule = deciding[0] if deciding else None
        words = _pick(rule["message_zh"], rule["message_en"], lang) if rule else ""
        lines.append(_pick(f"许可：{words}（规则 {rule['rule_id']}）",
                           f"Permitted: {words} (rule {rule['rule_id']}).", lang) if rule
                     else _pick("许可", "Permitted.", lang))
        grant = next((g for g in e["grants"] if g["bound"]), None)
        if grant is not None:
            approvers = ", ".join(grant["approved_by"]) or "—"
            lines.append(_pick(
                f"依据授权 {grant['grant_id']}（协议 {grant['agreement']}，批准：{approvers}），"
                f"{grant['expires']} 到期；到期后须续签新的授权方可继续使用。",
                f"Under grant {grant['grant_id']} (agreement {grant['agreement']}, approved by "
                f"{approvers}), which expires {grant['expires']}: after that a renewed grant is "
                "needed.", lang))
        if e["obligations"]:
            names = ", ".join(o["id"] for o in e["obligations"])
            lines.append(_pick(f"使用时须履行：{names}", f"On condition of: {names}.", lang))
    else:
        denying = [r for r in deciding if r["effect"] == "deny" and not r["fallback"]]
        if denying:
            rule = denying[0]
            words = _pick(rule["message_zh"], rule["message_en"], lang)
            lines.append(_pick(f"拒绝：{words}（规则 {rule['rule_id']}）",
                               f"Denied: {words} (rule {rule['rule_id']}).", lang))
            facts = _holding_facts(rule["conditions"], lang)
            if facts:
                joined = "；".join(facts) if lang == "zh" else "; ".join(facts)
                several = len(facts) > 1
                lines.append(_pick(
                    f"原因：{joined}。" + ("只有其中一项改变" if several else "只有这一点改变")
                    + "，结论才会改变。",
                    f"Why: {joined}. The answer changes only if "
                    + ("one of these changes." if several else "this changes."), lang))
            if len(denying) > 1:
                others = ", ".join(r["rule_id"] for r in denying[1:])
                lines.append(_pick(f"另有规则同样拒绝：{others}", f"Also denied by: {others}.",
                                   lang))
        else:
            fallback = deciding[0] if deciding else None
            words = _pick(fallback["message_zh"], fallback["message_en"], lang) if fallback else ""
            lines.append(_pick(f"拒绝：没有任何规则许可此请求。{words}",
                               f"Denied: no rule permits this request. {words}".rstrip(), lang))
            for unmet in e.get("unmet", [])[:2]:
                missing = _pick(unmet["message_zh"], unmet["message_en"], lang)
                lines.append(_pick(f"最接近的许可规则 {unmet['rule_id']} 未满足：{missing}"
                                   f"（{unmet['citation']}）",
                                   f"The closest permit, rule {unmet['rule_id']}, is missing "
                                   f"this: {missing} ({unmet['citation']}).", lang))
    citations = _citations(e, lang)
    if citations:
        lines.append(citations)
    return lines[:5]
