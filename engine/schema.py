"""The attributes of a request and of a grant: the contract with gateways.

Names and kinds are fixed here (see shared/design/request-model.md); the *values* of the
enumerated attributes are declared by each policy set in its `vocabulary` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    ENUM = "a declared value"
    BOOL = "true or false"
    TEXT = "a text"
    TIME = "an RFC 3339 instant with a UTC offset"
    APPROVERS = "a set of approvers"


@dataclass(frozen=True)
class Attribute:
    path: str
    kind: Kind
    required: bool = False
    # The vocabulary that declares the values of an ENUM attribute (or APPROVERS' members).
    vocabulary: str | None = None
    # A dataset attribute the policy set's catalog states for every catalogued dataset.
    catalogued: bool = False

    @property
    def section(self) -> str | None:
        return self.path.split(".", 1)[0] if "." in self.path else None

    @property
    def key(self) -> str:
        return self.path.split(".", 1)[-1]


# INVARIANT: every enumerated attribute is required (a catalogued dataset's come from the
# catalog). An absent org type or region must never
# let a request slip past a deny rule that tests it; booleans default to false (the contract).
REQUEST_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("subject.id", Kind.TEXT, required=True),
    Attribute("subject.org_id", Kind.TEXT),
    Attribute("subject.org_type", Kind.ENUM, required=True, vocabulary="subject.org_type"),
    Attribute("subject.region", Kind.ENUM, required=True, vocabulary="subject.region"),
    Attribute("subject.real_name_verified", Kind.BOOL),
    Attribute("resource.id", Kind.TEXT),
    Attribute("resource.catalog_class", Kind.ENUM, required=True, vocabulary="resource.catalog_class",
              catalogued=True),
    Attribute("resource.tier", Kind.ENUM, required=True, vocabulary="resource.tier", catalogued=True),
    Attribute("resource.personal", Kind.BOOL, catalogued=True),
    Attribute("resource.owner_org_id", Kind.TEXT, catalogued=True),
    # Whether the catalog marks the dataset for sharing with government users (福州办法 第十四条).
    Attribute("resource.shareable", Kind.BOOL, catalogued=True),
    Attribute("action", Kind.ENUM, required=True, vocabulary="action"),
    Attribute("purpose", Kind.ENUM, required=True, vocabulary="purpose"),
    Attribute("context.time", Kind.TIME),
    Attribute("context.storage_region", Kind.ENUM, required=True, vocabulary="context.storage_region"),
    Attribute("context.deidentified", Kind.BOOL),
    Attribute("context.consent", Kind.BOOL),
    Attribute("context.security_assessment", Kind.BOOL),
)

GRANT_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("grant.id", Kind.TEXT),
    Attribute("grant.grantee", Kind.TEXT),
    Attribute("grant.agreement", Kind.TEXT),
    Attribute("grant.expires", Kind.TIME),
    Attribute("grant.approved_by", Kind.APPROVERS, vocabulary="approver"),
)

# In the order a catalog entry lists them (model.Dataset.decided).
CATALOGUED: tuple[Attribute, ...] = tuple(a for a in REQUEST_ATTRIBUTES if a.catalogued)

ATTRIBUTES: dict[str, Attribute] = {a.path: a for a in REQUEST_ATTRIBUTES + GRANT_ATTRIBUTES}
REQUEST_SECTIONS = ("subject", "resource", "context")

# Vocabularies a policy set must declare: the enumerated attributes, approvers, obligations.
VOCABULARIES: tuple[str, ...] = tuple(
    a.path for a in REQUEST_ATTRIBUTES if a.kind is Kind.ENUM
) + ("approver", "obligation")

OBLIGATION_PARAMETER_TYPES = {"time": Kind.TIME, "text": Kind.TEXT}
