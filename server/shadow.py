"""Trying a candidate policy on real traffic: `tiergate serve POLICY_DIR --shadow CANDIDATE_DIR`.

Every call is answered with the served policy, as without the flag. Each decided request is
decided again by the candidate, at the same instant; when the effect or the obligations differ,
the call is counted (GetPolicyInfo, `tiergate_shadow_differences_total`), logged with the
request's class and both sides' deciding rules, and written into the call's audit record
(`shadow`). The candidate directory is watched and reloaded like the served one; an edit that
does not compile keeps the last candidate that did. Without the flag none of this runs.

A request the candidate refuses (its vocabulary or catalog no longer allow it) is a difference
too, with the candidate's effect "REFUSED". Requests the served policy refuses are not compared.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tiergate.engine import RequestError

from .holder import PolicyHolder

log = logging.getLogger("tiergate.shadow")

# What a difference is reported by: the attributes the rules are written against, as asked.
CLASS_ATTRIBUTES = (("subject", "org_type"), ("subject", "region"), ("resource", "id"),
                    ("resource", "tier"), ("resource", "catalog_class"), ("action",),
                    ("purpose",), ("context", "storage_region"))


def request_class(request: dict) -> dict[str, Any]:
    """The request's class: the attributes above that it gives, by contract name."""
    out = {}
    for path in CLASS_ATTRIBUTES:
        value: Any = request
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[".".join(path)] = value
    return out


def _side(decision) -> dict:
    return {"revision": decision.policy_revision, "effect": decision.effect,
            "obligations": sorted(o.id for o in decision.obligations),
            "rules": [r.rule_id for r in decision.reasons], "grant_id": decision.grant_id}


def _obligations(decision) -> tuple:
    return tuple(sorted((o.id, tuple(sorted(o.params.items()))) for o in decision.obligations))


class Shadow:
    """The candidate policy (its own holder, reloaded by its own watcher) and the tallies."""

    def __init__(self, holder: PolicyHolder, metrics=None, source=None):
        self.holder = holder
        self.source = source  # where the candidate is read from (sources.DirectorySource)
        self.metrics = metrics
        self.compared = 0
        self.differences = 0
        self._lock = threading.Lock()

    @property
    def revision(self) -> str:
        return self.holder.current.policy.revision

    def compare(self, method: str, request: dict, served, now: int) -> dict | None:
        """The difference between `served` (the Decision given for `request`) and what the
        candidate decides at `now`, as the audit record's `shadow` field; None when they agree
        on the effect and the obligations."""
        candidate_policy = self.holder.current.policy
        try:
            candidate = candidate_policy.decide(request, now=now, requested_time=True)
        except RequestError as error:
            other = {"revision": candidate_policy.revision, "effect": "REFUSED",
                     "obligations": [], "rules": [], "grant_id": None,
                     "problems": [p.attribute for p in error.problems]}
            differs = True
        else:
            other = _side(candidate)
            differs = (candidate.effect != served.effect
                       or _obligations(candidate) != _obligations(served))
        with self._lock:
            self.compared += 1
            if differs:
                self.differences += 1
        if self.metrics is not None:
            self.metrics.shadow_compared(method, served.effect, other["effect"], differs)
        if not differs:
            return None
        difference = {"class": request_class(request), "served": _side(served),
                      "candidate": other}
        log.info("shadow: %s %s would be %s under %s (served %s by %s; candidate %s)", method,
                 difference["class"], other["effect"], other["revision"], served.effect,
                 ",".join(difference["served"]["rules"]) or "-",
                 ",".join(other["rules"]) or ",".join(other.get("problems", [])) or "-")
        return difference
