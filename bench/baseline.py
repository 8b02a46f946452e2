"""For orientation: the reference policy's rules hand-written in Python over a dict of grants.

No validation, no reasons, no obligations — just the effect. This is roughly the floor for any
interpreted engine deciding the same rules, and a third opinion in the agreement check.
"""

from __future__ import annotations

from workload import Workload

_ELIGIBLE = frozenset({"domestic_enterprise", "university", "research_institute"})
_RESEARCH = frozenset({"university", "research_institute"})
_GOVERNMENT = frozenset({"government_agency", "public_institution", "regulator"})
_ALL_THREE = frozenset({"data_operator", "digital_office", "health_commission"})
_OPEN_ACTIONS = frozenset({"query", "copy", "download", "analyze"})
_SHARE_ACTIONS = frozenset({"query", "copy", "analyze", "share"})


class DictBaseline:
    def __init__(self, workload: Workload):
        # (grantee, tier, class) -> [(purposes, actions, datasets or None, approvers, expires)]
        self.index: dict[tuple[str, str, str], list] = {}
        for g in workload.grants:
            entry = (frozenset(g.purposes), frozenset(g.actions),
                     frozenset(g.datasets) or None, frozenset(g.approvers), g.expires)
            for tier in g.tiers:
                for catalog_class in g.catalog:
                    self.index.setdefault((g.grantee, tier, catalog_class), []).append(entry)

    def permit(self, s: dict, r: dict, action: str, purpose: str, c: dict, now: int) -> bool:
        """`now` is context.time as µs, converted by the caller once (like the Cedar request)."""
        org_type, tier = s["org_type"], r["tier"]
        personal, deidentified = r.get("personal", False), c.get("deidentified", False)
        consent = c.get("consent", False)
        if (c["storage_region"] == "overseas"
                or ((action == "export" or s["region"] == "overseas")
                    and not c.get("security_assessment", False))
                or action == "delete"
                or (action == "update" and (r.get("owner_org_id") is None
                                            or r.get("owner_org_id") != s.get("org_id")))
                or not s.get("real_name_verified", False)
                or (org_type in _RESEARCH
                    and purpose not in ("scientific_research", "education", "public_health"))
                or (personal and not consent and not deidentified)
                or (tier == "open" and personal and not deidentified)
                or (tier == "conditional" and org_type not in _ELIGIBLE and org_type not in _GOVERNMENT
                    and (r.get("owner_org_id") is None or r.get("owner_org_id") != s.get("org_id")))
                or (tier == "conditional" and org_type in _ELIGIBLE
                    and s["region"] != "southeast_park")):
            return False
        if action == "update" and r.get("owner_org_id") is not None \
                and r.get("owner_org_id") == s.get("org_id"):
            return True
        if tier == "open" and not personal and action in _OPEN_ACTIONS:
            return True
        if (org_type in _GOVERNMENT and tier != "closed" and action in _SHARE_ACTIONS
                and r.get("shareable", False) and not personal
                and purpose in ("government_administration", "public_health")):
            return True
        if tier == "open":
            return False
        for purposes, actions, datasets, approvers, expires in self.index.get(
                (s.get("org_id"), tier, r["catalog_class"]), ()):
            if (now < expires and purpose in purposes and action in actions
                    and (datasets is None or r.get("id") in datasets)):
                if tier == "conditional":
                    if (org_type in _ELIGIBLE and s["region"] == "southeast_park"
                            and "data_operator" in approvers):
                        return True
                elif _ALL_THREE <= approvers:
                    return True
        return False
