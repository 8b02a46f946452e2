"""Tiergate's engine: load a policy set, decide requests.

    from tiergate.engine import load_policy_set
    policy = load_policy_set("policies/")
    decision = policy.decide({"subject": {...}, "resource": {...}, "action": "query", ...})
    decision.effect        # "PERMIT" or "DENY"
    decision.obligations   # what the gateway must do with a permitted request
    decision.reasons       # every rule that decided, with its article and zh/en message
    decision.unmet         # for a default deny: the closest permit rules and what they missed

Loading is all or nothing: a policy set with any error raises `DiagnosticError` listing every
problem (file:line:col, message, help). A bad request raises `RequestError` naming the
attribute, the value and the allowed values; it is never answered with a decision.
"""

from tiergate.diagnostics import Diagnostic, DiagnosticError

from .decision import DENY, PERMIT, Decision, Obligation, Reason, Unmet
from .load import compile_sources, load_policy_set
from .policy import PolicySet
from .request import RequestError

__all__ = [
    "load_policy_set", "compile_sources", "PolicySet", "Decision", "Obligation", "Reason",
    "Unmet", "PERMIT", "DENY", "RequestError", "DiagnosticError", "Diagnostic",
]
