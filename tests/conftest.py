"""Shared fixtures: the reference policy set and a request builder."""

from __future__ import annotations

import atexit
import copy
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tiergate.engine import compile_sources, load_policy_set
from tiergate.engine.load import read_policy_sources, revision_of
from tiergate.engine.timeutil import parse_instant

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
# Every server the tests start records into this session's own audit log (never the work
# tree): ServeConfig(audit_log=TEST_AUDIT_LOG) in process, TIERGATE_AUDIT_LOG for `tiergate serve`.
_AUDIT_DIRECTORY = Path(tempfile.mkdtemp(prefix="tiergate-test-audit-"))
atexit.register(shutil.rmtree, _AUDIT_DIRECTORY, True)
TEST_AUDIT_LOG = str(_AUDIT_DIRECTORY / "audit.db")
os.environ.setdefault("TIERGATE_AUDIT_LOG", TEST_AUDIT_LOG)
# A dataset id the shipped catalog does not list: requests that vary a dataset's attributes
# name it, and the `policy` fixture decides such requests on the attributes they state.
UNCATALOGUED = "ds-uncatalogued"
_CATALOGUED_KEYS = ("catalog_class", "tier", "personal", "owner_org_id", "shareable")

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


@functools.lru_cache(maxsize=1)
def _shipped_datasets() -> frozenset[str]:
    return frozenset(load_policy_set(POLICIES).catalog.datasets)


def make_request(**changes) -> dict:
    """The contract's example request with some attributes changed.

    Keys are attribute paths with `__` for the dot: make_request(resource__tier="open",
    action="copy"). A value of None removes the attribute. Changing a dataset attribute the
    catalog states (tier, catalog class, personal, owner, shareable) without naming a dataset
    names an uncatalogued one instead of contradicting the catalog's ds-cardio-2025.
    """
    request = copy.deepcopy(BASE_REQUEST)
    if changes.get("resource__id") in _shipped_datasets():
        request["resource"] = {}  # another catalogued dataset: the catalog says the rest
    elif any(f"resource__{k}" in changes for k in _CATALOGUED_KEYS):
        request["resource"]["id"] = UNCATALOGUED
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


def as_stated_sources(directory: Path = POLICIES) -> dict[str, str]:
    """The shipped policy texts, deciding uncatalogued datasets on their stated attributes."""
    sources = read_policy_sources(directory)
    name = str(directory / "catalog.policy")
    assert "uncatalogued refuse" in sources[name]
    sources[name] = sources[name].replace("uncatalogued refuse", "uncatalogued as_stated")
    return sources


@functools.lru_cache(maxsize=1)
def as_stated_directory() -> Path:
    """A copy of the shipped policy directory that decides uncatalogued datasets as stated:
    what the `policy` fixture is, on disk, for tests of servers and commands (same revision)."""
    directory = Path(tempfile.mkdtemp(prefix="tiergate-as-stated-")) / "policies"
    shutil.copytree(POLICIES, directory)
    atexit.register(shutil.rmtree, directory.parent, True)
    for name, text in as_stated_sources().items():
        (directory / Path(name).relative_to(POLICIES)).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def policy():
    """The shipped rules, grants and catalog, loaded once — deciding a dataset the catalog does
    not list on the attributes the request states, so that tests can vary them (make_request).
    Catalogued datasets are decided on the catalog's attributes as always."""
    sources = as_stated_sources()
    return compile_sources(sources, revision=revision_of(sources, POLICIES))


@pytest.fixture(scope="session")
def shipped_policy():
    """The shipped reference policy set exactly as it is on disk."""
    return load_policy_set(POLICIES)
