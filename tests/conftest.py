"""Shared fixtures: the reference policy set and a request builder."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tiergate.engine import load_policy_set
from tiergate.engine.timeutil import parse_instant

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"

BASE_REQUEST = {
    "subject": {"id": "u-1042", "org_id": "fzu", "org_type": "university",
                "region": "southeast_park", "real_name_verified": True},
    "resource": {"id": "ds-cardio-2025", "catalog_class": "medical_service",
                 "tier": "conditional", "personal": False, "owner_org_id": "fz-hosp-1"},
    "action": "query",
    "purpose": "scientific_research",
    "context": {"time": "2026-11-22T10:00:00+08:00", "storage_region": "domestic",
                "deidentified": True, "consent": False, "security_assessment": False},
}


def make_request(**changes) -> dict:
    """The contract's example request with some attributes changed.

    Keys are attribute paths with `__` for the dot: make_request(resource__tier="open",
    action="copy"). A value of None removes the attribute.
    """
    request = copy.deepcopy(BASE_REQUEST)
    for key, value in changes.items():
        parts = key.split("__")
        target = request
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return request


def instant(text: str) -> int:
    return parse_instant(text)


@pytest.fixture(scope="session")
def policy():
    """The shipped reference policy set, loaded once."""
    return load_policy_set(POLICIES)
