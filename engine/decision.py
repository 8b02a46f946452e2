"""What a decision says: effect, grant, obligations, reasons, revision, id (the contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

PERMIT: Literal["PERMIT"] = "PERMIT"
DENY: Literal["DENY"] = "DENY"


def frozen(value: Any) -> Any:
    """A read-only copy of a JSON-shaped value: mappings as mapping proxies, lists as tuples.

    Decisions are shared (by caches, by the threads of a server): nothing reachable from one
    may be changed by whoever holds it.
    """
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """A plain, JSON-ready copy of a `frozen` value: dicts and lists again."""
    # MappingProxyType and dict by name: typing.Mapping's ABC check costs per call.
    if isinstance(value, (MappingProxyType, dict)):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return value


_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Obligation:
    """Something the gateway must do with a permitted request, e.g. destroy_on_expiry(at).

    `params` is read-only: one obligation object is shared by every decision that carries it.
    """

    id: str
    params: Mapping[str, str] = field(default_factory=lambda: _NO_PARAMS)

    def __post_init__(self) -> None:
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def to_dict(self) -> dict:
        return {"id": self.id, "params": dict(self.params)} if self.params else {"id": self.id}


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule that decided, with the article it cites and its message in Chinese and English."""

    rule_id: str
    effect: str
    citation: str
    message_zh: str
    message_en: str
    grant_id: str | None = None

    @property
    def message(self) -> str:
        return f"{self.message_zh} / {self.message_en}"

    def to_dict(self) -> dict:
        out = {"rule_id": self.rule_id, "effect": self.effect, "citation": self.citation,
               "message": self.message, "message_zh": self.message_zh,
               "message_en": self.message_en}
        if self.grant_id is not None:
            out["grant_id"] = self.grant_id
        return out


@dataclass(frozen=True, slots=True)
class Unmet:
    """A permit rule that came close to permitting a denied request, and what it missed.

    `requirement` says what kind of thing was missing: "attribute" (a request attribute would
    have to differ), "grant_missing", "grant_expired", "grant_scope" (a grant exists, but not
    for this purpose, action or dataset), "grant_approval" (the grant lacks an approval the
    rule requires) or "condition" (another test of the rule).
    """

    rule_id: str
    requirement: str
    citation: str
    message_zh: str
    message_en: str
    grant_id: str | None = None
    attribute: str | None = None

    def to_dict(self) -> dict:
        out = {"rule_id": self.rule_id, "requirement": self.requirement,
               "citation": self.citation, "message_zh": self.message_zh,
               "message_en": self.message_en}
        if self.grant_id is not None:
            out["grant_id"] = self.grant_id
        if self.attribute is not None:
            out["attribute"] = self.attribute
        return out


DEFAULT_DENY = Reason(
    "default-deny", DENY, "",
    "没有适用的许可规则，默认拒绝",
    "No rule permits this request (default deny)")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request.

    `valid_until` (µs since the epoch, or None for never) is the first instant at which the same
    request, asked without `context.time`, could be decided differently: caches use it.
    `unmet` is set on a DENY no deny rule decided: the permit rules that came closest, each
    with the first requirement the request did not meet.
    """

    effect: str
    grant_id: str | None
    obligations: tuple[Obligation, ...]
    reasons: tuple[Reason, ...]
    policy_revision: str
    decision_id: str
    valid_until: int | None = None
    explanation: Mapping[str, Any] | None = None
    unmet: tuple[Unmet, ...] = ()

    @property
    def permitted(self) -> bool:
        return self.effect == PERMIT

    def to_dict(self) -> dict:
        out: dict = {
            "effect": self.effect,
            "grant_id": self.grant_id,
            "obligations": [o.to_dict() for o in self.obligations],
            "reasons": [r.to_dict() for r in self.reasons],
            "policy_revision": self.policy_revision,
            "decision_id": self.decision_id,
        }
        if self.unmet:
            out["unmet"] = [u.to_dict() for u in self.unmet]
        if self.explanation is not None:
            out["explanation"] = thawed(self.explanation)
        return out
