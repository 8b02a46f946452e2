"""The benchmark's Cedar encoding: bench/cedar/policy.cedar plus one policy per grant.

Cedar has no "there exists a grant such that …", so each grant becomes the permit rule it can
serve, specialised to the grant (its grantee as the principal, its scope and expiry in `when`).
The rules' own conditions on the grant (who approved it) are decided here, at generation, just
as Tiergate's compiler would: a conditional-tier grant serves `conditional-with-approved-grant`
only if data_operator approved it, a closed-tier grant serves `closed-with-authority-consent`
only if all three approved it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tiergate.engine.timeutil import parse_instant
from workload import GrantSpec, Workload

POLICY = Path(__file__).with_name("cedar") / "policy.cedar"
_ELIGIBLE = '["domestic_enterprise", "university", "research_institute"]'
_ALL_THREE = {"data_operator", "digital_office", "health_commission"}


def _strings(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def grant_policies(grant: GrantSpec) -> list[str]:
    scope = [f"context.now < {grant.expires}",
             f"{_strings(grant.catalog)}.contains(context.catalog_class)",
             f"{_strings(grant.purposes)}.contains(context.purpose)"]
    if grant.datasets:
        scope.append(f"{_strings(grant.datasets)}.contains(context.resource_id)")
    head = (f"permit (principal == Org::{json.dumps(grant.grantee)}, action in "
            f"[{', '.join(f'Action::{json.dumps(a)}' for a in grant.actions)}], resource)")
    out = []
    if "conditional" in grant.tiers and "data_operator" in grant.approvers:
        when = ['context.tier == "conditional"', f"{_ELIGIBLE}.contains(context.org_type)",
                'context.region == "southeast_park"'] + scope
        out.append(f'@id("{grant.id}/conditional-with-approved-grant")\n{head}\n'
                   f"when {{ {' && '.join(when)} }};")
    if "closed" in grant.tiers and _ALL_THREE <= set(grant.approvers):
        when = ['context.tier == "closed"'] + scope
        out.append(f'@id("{grant.id}/closed-with-authority-consent")\n{head}\n'
                   f"when {{ {' && '.join(when)} }};")
    return out


def policy_text(workload: Workload) -> str:
    parts = [POLICY.read_text(encoding="utf-8"), "// ---- grants (授权), generated"]
    for grant in workload.grants:
        parts.extend(grant_policies(grant))
    return "\n".join(parts) + "\n"


def to_cedar(request: dict) -> dict:
    """The contract's request as a Cedar request (prepared ahead, like the request dicts)."""
    s, r, c = request["subject"], request["resource"], request.get("context", {})
    context = {
        "org_type": s["org_type"], "region": s["region"],
        "real_name_verified": s.get("real_name_verified", False),
        "tier": r["tier"], "catalog_class": r["catalog_class"], "resource_id": r.get("id", ""),
        "personal": r.get("personal", False), "shareable": r.get("shareable", False),
        "purpose": request["purpose"], "now": parse_instant(c["time"]),
        "storage_region": c["storage_region"], "deidentified": c.get("deidentified", False),
        "consent": c.get("consent", False),
        "security_assessment": c.get("security_assessment", False),
    }
    if s.get("org_id") is not None:
        context["org_id"] = s["org_id"]
    if r.get("owner_org_id") is not None:
        context["owner_org_id"] = r["owner_org_id"]
    return {"principal": {"type": "Org", "id": s.get("org_id") or ""},
            "action": {"type": "Action", "id": request["action"]},
            "resource": {"type": "Dataset", "id": r.get("id") or ""},
            "context": context}


class CedarEngine:
    """cedarpy with its fastest single-request inputs: pre-parsed policy set and entities."""

    def __init__(self, workload: Workload):
        import cedarpy

        self.cedarpy = cedarpy
        self.text = policy_text(workload)
        self.policies = cedarpy.PolicySet.from_str(self.text) if hasattr(cedarpy, "PolicySet") \
            else self.text
        self.entities = cedarpy.Entities.from_json_str("[]") if hasattr(cedarpy, "Entities") else []

    def decide(self, cedar_request: dict) -> bool:
        return self.cedarpy.is_authorized(cedar_request, self.policies, self.entities).allowed
