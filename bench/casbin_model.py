"""The benchmark's pycasbin encoding: bench/casbin/model.conf plus policy lines from the grants.

As in the Cedar encoding, a grant's approvers are decided at generation: a line is written only
for the rule the grant can serve (data_operator for conditional data, all three for closed).
"""

from __future__ import annotations

from pathlib import Path

from tiergate.engine.timeutil import parse_instant
from workload import Workload

MODEL = Path(__file__).with_name("casbin") / "model.conf"
_ALL_THREE = {"data_operator", "digital_office", "health_commission"}
KEY_FIELDS = [0, 1, 2, 3, 4]  # org, tier, class, purpose, action: FastEnforcer's index


def policy_lines(workload: Workload) -> list[list[str]]:
    lines = []
    for g in workload.grants:
        expires = f"{g.expires:016d}"
        for tier in g.tiers:
            if tier == "conditional" and "data_operator" in g.approvers:
                rule = "conditional-with-approved-grant"
            elif tier == "closed" and _ALL_THREE <= set(g.approvers):
                rule = "closed-with-authority-consent"
            else:
                continue
            for cls in g.catalog:
                for purpose in g.purposes:
                    for action in g.actions:
                        for dataset in g.datasets or ("*",):
                            lines.append([g.grantee, tier, cls, purpose, action, rule, dataset,
                                          expires])
    return lines


def to_casbin(request: dict) -> tuple:
    """The contract's request as casbin request values (prepared ahead)."""
    s, r, c = request["subject"], request["resource"], request.get("context", {})
    return (s.get("org_id") or "", r["tier"], r["catalog_class"], request["purpose"],
            request["action"], s["org_type"], s["region"], s.get("real_name_verified", False),
            r.get("id") or "", r.get("personal", False), r.get("owner_org_id") or "",
            f"{parse_instant(c['time']):016d}", c["storage_region"], c.get("deidentified", False),
            c.get("consent", False), c.get("security_assessment", False),
            r.get("shareable", False))


class CasbinEngine:
    """pycasbin's FastEnforcer, its policy filtered by the request's first five fields."""

    def __init__(self, workload: Workload):
        import casbin

        self.enforcer = casbin.FastEnforcer(str(MODEL), cache_key_order=KEY_FIELDS)
        self.lines = policy_lines(workload)
        if self.lines:
            self.enforcer.add_policies(self.lines)

    def decide(self, values: tuple) -> bool:
        return self.enforcer.enforce(*values)
