"""A plain rule-by-rule evaluator: the oracle the compiled decision tree is checked against.

Deliberately naive: it reads attributes straight from the request dict, parses times with
datetime, and evaluates every rule's whole condition (not its normal form) against every grant.
It shares only the checked model with the engine, never the tree, the grant index or the
request reader.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tiergate.engine import RequestError, model

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(text: str) -> int:
    delta = datetime.fromisoformat(text) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_CATALOGUED = ("catalog_class", "tier", "personal", "owner_org_id", "shareable")


def _without_empty_texts(request: dict) -> dict:
    """language.md: an empty text is the same as an absent attribute."""
    out = {}
    for key, value in request.items():
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if v != ""}
        elif value != "":
            out[key] = value
    return out


def settle(policy: model.CheckedPolicy, request: dict) -> tuple[dict, list[str]]:
    """The request as decided, and the attributes it must be refused for (catalog, subject.id).

    Written from the language reference: for a dataset the catalog lists, the catalog's
    attributes are decided on and a request stating others is refused; an unlisted dataset is
    refused when the catalog says `uncatalogued refuse` (the default once datasets exist).
    """
    request = _without_empty_texts(request)
    if not request.get("subject", {}).get("id"):
        return request, ["subject.id"]  # the catalog is asked about well-formed requests only
    errors = []
    catalog = policy.catalog
    if catalog.datasets or catalog.uncatalogued == "refuse":
        resource = dict(request.get("resource", {}))
        dataset = catalog.datasets.get(resource.get("id"))
        if dataset is not None:
            for key in _CATALOGUED:
                listed = getattr(dataset, key)
                if key in resource and resource[key] != listed:
                    errors.append(f"resource.{key}")
                resource[key] = listed
        elif catalog.uncatalogued == "refuse":
            errors.append("resource.id")
        request["resource"] = resource
    return request, errors


class _Request:
    def __init__(self, request: dict, now: int):
        self.request = request
        time_text = request.get("context", {}).get("time")
        self.time = _micros(time_text) if time_text is not None else now

    def get(self, path: str):
        if path == "context.time":
            return self.time
        if "." not in path:
            return self.request.get(path)
        section, key = path.split(".", 1)
        value = self.request.get(section, {}).get(key)
        booleans = {"subject.real_name_verified", "resource.personal", "resource.shareable",
                    "context.deidentified", "context.consent", "context.security_assessment"}
        if value is None and path in booleans:
            return False
        return value


def decide_or_error(policy, request: dict, **options):
    """The engine's decision, or the RequestError it raised (for `summarise`)."""
    try:
        return policy.decide(request, **options)
    except RequestError as error:
        return error


def _operand(operand, request: _Request, grant):
    if isinstance(operand, int):
        return operand
    if operand.startswith("grant."):
        return grant.attribute(operand)
    return request.get(operand)


def holds(condition: model.Condition, request: _Request, grant: model.Grant | None) -> bool:
    match condition:
        case model.All(operands=parts):
            return all(holds(p, request, grant) for p in parts)
        case model.Any(operands=parts):
            return any(holds(p, request, grant) for p in parts)
        case model.Not(operand=inner):
            return not holds(inner, request, grant)
        case model.OneOf(attribute=attribute, values=values):
            return request.get(attribute) in values
        case model.TextIn(attribute=attribute, values=values, other=other):
            mine = _operand(attribute, request, grant)
            if other is not None:
                return mine is not None and mine == _operand(other, request, grant)
            return mine in values
        case model.Before(left=left, right=right):
            return _operand(left, request, grant) < _operand(right, request, grant)
        case model.ApprovedBy(approvers=approvers, quantifier=quantifier):
            if quantifier == "all":
                return approvers <= grant.approvers
            return bool(approvers & grant.approvers)
    raise AssertionError(condition)


def _grant_applies(grant: model.Grant, request: _Request) -> bool:
    return (grant.grantee == request.get("subject.org_id")
            and request.time < grant.expires
            and request.get("resource.tier") in grant.tiers
            and request.get("resource.catalog_class") in grant.catalog
            and (grant.datasets is None or request.get("resource.id") in grant.datasets)
            and request.get("purpose") in grant.purposes
            and request.get("action") in grant.actions)


def _obligations(rule: model.Rule, grant: model.Grant | None, request: _Request) -> list[tuple]:
    out = []
    for template in rule.obligations:
        params = []
        for name, value in template.parameters:
            if name in template.from_grant:
                value = grant.expires_text if value == "grant.expires" else grant.attribute(value)
            elif name in template.from_request:
                value = request.get(value)
                if value is None:
                    continue  # an absent text gives no parameter
                if isinstance(value, int):  # context.time, to the second, in UTC
                    value = datetime.fromtimestamp(value // 1_000_000, timezone.utc).strftime(
                        "%Y-%m-%dT%H:%M:%SZ")
            params.append((name, value))
        out.append((template.id, tuple(params)))
    return out


def reference_decide(policy: model.CheckedPolicy, request: dict, now: int) -> dict:
    """{effect, grant_id, rules: [rule ids in order], obligations: [(id, params)]}, or
    {error: [attributes]} for a request that must be refused."""
    request, errors = settle(policy, request)
    if errors:
        return {"error": sorted(errors)}
    req = _Request(request, now)
    grants = sorted((g for g in policy.grants if _grant_applies(g, req)),
                    key=lambda g: (-g.expires, g.id))
    rules = [r for r in policy.rules if not r.fallback]
    denies = [r for r in rules if r.effect == "deny" and holds(r.condition, req, None)]
    if denies:
        obligations = [o for r in denies for o in _obligations(r, None, req)]
        return _result("DENY", None, [(r, None) for r in denies], obligations)
    permits = []
    for rule in (r for r in rules if r.effect == "permit"):
        if not rule.needs_grant:
            if holds(rule.condition, req, None):
                permits.append((rule, None))
            continue
        for grant in grants:
            if holds(rule.condition, req, grant):
                permits.append((rule, grant))
                break
    if permits:
        obligers = [r for r in rules if r.effect == "obligation" and holds(r.condition, req, None)]
        obligations = [o for r, g in permits for o in _obligations(r, g, req)]
        obligations += [o for r in obligers for o in _obligations(r, None, req)]
        grant_id = next((g.id for _, g in permits if g is not None), None)
        return _result("PERMIT", grant_id, permits, obligations)
    fallback = [r for r in policy.rules if r.fallback]
    return _result("DENY", None, [(r, None) for r in fallback],
                   [o for r in fallback for o in _obligations(r, None, req)],
                   default=not fallback)


def _result(effect, grant_id, deciding, obligations, default=False) -> dict:
    unique = []
    for o in obligations:
        if o not in unique:
            unique.append(o)
    return {"effect": effect, "grant_id": grant_id,
            "rules": ["default-deny"] if default else [r.id for r, _ in deciding],
            "obligations": unique}


def summarise(decision) -> dict:
    """The engine's decision in the oracle's shape, for comparison."""
    if isinstance(decision, RequestError):
        return {"error": sorted({p.attribute for p in decision.problems})}
    return {"effect": decision.effect, "grant_id": decision.grant_id,
            "rules": [r.rule_id for r in decision.reasons],
            "obligations": [(o.id, tuple(o.params.items())) for o in decision.obligations]}
