"""The benchmark's workload: generated grants (as policy text) and a mix of requests.

Deterministic for a given seed, so every engine in one run sees the same grants and requests.
Grants look like the ones compliance officers write: many grantees, a few grants each, mixed
tiers, catalog classes, purposes, actions, approvers and expiries (some already expired at the
requests' time), written in the policy language next to a copy of the reference policies.

The copy decides datasets its catalog does not list on the attributes the request states
(`uncatalogued as_stated`), so that the request mix can range over every tier and class; the
datasets grants name are catalogued (generated.catalog.csv), with as many filler datasets as
asked for, to measure what a large catalog costs.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tiergate.engine.timeutil import format_instant, parse_instant

CLASSES = ["basic_info", "public_health", "family_planning", "medical_service",
           "medical_insurance", "drug_management", "general_management", "new_business"]
PURPOSES = ["scientific_research", "education", "public_health", "clinical_care",
            "government_administration", "commercial", "personal_use"]
GRANT_PURPOSES = ["scientific_research"] * 4 + ["education"] * 2 + ["commercial"] * 2 + [
    "public_health", "clinical_care"]
GRANT_ACTIONS = ["query"] * 3 + ["analyze"] * 2 + ["copy", "download", "share"]
ACTIONS = ["query", "copy", "download", "analyze", "share", "update", "delete", "export"]
# Grantees are mostly the eligible kinds (第十五条), with some that rules will refuse anyway.
GRANTEE_TYPES = (["university"] * 4 + ["research_institute"] * 3 + ["domestic_enterprise"] * 4
                 + ["government_agency", "medical_institution", "foreign_enterprise"])
ORG_TYPES = ["government_agency", "public_institution", "social_group", "medical_institution",
             "domestic_enterprise", "foreign_enterprise", "university", "research_institute",
             "individual", "data_operator", "tech_service", "regulator"]
REGIONS = ["southeast_park", "fuzhou", "fujian", "mainland", "overseas"]
NOW_TEXT = "2026-11-22T10:00:00+08:00"  # around which requests are asked
NOW = parse_instant(NOW_TEXT)
DAY = 86_400_000_000


@dataclass(frozen=True)
class Org:
    id: str
    org_type: str
    region: str


@dataclass(frozen=True)
class GrantSpec:
    id: str
    grantee: str
    tiers: tuple[str, ...]
    catalog: tuple[str, ...]
    datasets: tuple[str, ...]  # empty: every dataset of the classes
    purposes: tuple[str, ...]
    actions: tuple[str, ...]
    approvers: tuple[str, ...]
    expires: int
    expires_text: str

    def text(self) -> str:
        lines = [f"grant {self.id} {{",
                 f"  grantee     {self.grantee}",
                 f"  tier        {', '.join(self.tiers)}",
                 f"  catalog     {', '.join(self.catalog)}"]
        if self.datasets:
            lines.append(f"  dataset     {', '.join(self.datasets)}")
        lines += [f"  purpose     {', '.join(self.purposes)}",
                  f"  action      {', '.join(self.actions)}",
                  f"  approved_by {', '.join(self.approvers)}",
                  f'  agreement   "{self.id.upper()}"',
                  f"  expires     {self.expires_text}",
                  "}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Workload:
    orgs: tuple[Org, ...]
    grants: tuple[GrantSpec, ...]


def _pick(rng: random.Random, pool: list[str], low: int, high: int) -> tuple[str, ...]:
    """low..high distinct values from a (possibly weighted) pool, in pool order."""
    count = rng.randint(low, high)
    chosen: set[str] = set()
    while len(chosen) < count:
        chosen.add(rng.choice(pool))
    return tuple(sorted(chosen, key=pool.index))


def generate(grant_count: int, seed: int = 7) -> Workload:
    rng = random.Random(seed * 1_000_003 + grant_count)
    org_count = max(1, grant_count // 3)  # a few grants per grantee (1..5, about 3 on average)
    orgs = tuple(Org(f"org-{i:05d}", rng.choice(GRANTEE_TYPES),
                     "southeast_park" if rng.random() < 0.85 else rng.choice(REGIONS[1:]))
                 for i in range(org_count))
    grants = []
    for i in range(grant_count):
        org = orgs[i % org_count] if i < org_count else rng.choice(orgs)
        closed = rng.random() < 0.25
        tiers = ("closed",) if closed else (("conditional", "closed") if rng.random() < 0.05
                                            else ("conditional",))
        catalog = _pick(rng, CLASSES, 1, 3)
        datasets = (tuple(f"ds-{i:05d}-{k}" for k in range(rng.randint(1, 2)))
                    if rng.random() < 0.15 else ())
        if closed:
            approvers = (("data_operator", "digital_office", "health_commission")
                         if rng.random() < 0.6 else ("data_operator", "digital_office"))
        else:
            approvers = ("data_operator",) if rng.random() < 0.9 else ("digital_office",)
        # Expiries from ~1 year before to ~2 years after the requests' time; ~20% expired.
        expires = NOW + rng.randint(-80, 700) * DAY + rng.randint(0, DAY - 1) // 1_000_000 * 1_000_000
        offset = rng.choice([480, 0, -300])
        grants.append(GrantSpec(f"gen-{i:05d}", org.id, tiers, catalog, datasets,
                                _pick(rng, GRANT_PURPOSES, 1, 3), _pick(rng, GRANT_ACTIONS, 1, 4),
                                approvers, expires, format_instant(expires, offset)))
    return Workload(orgs, tuple(grants))


def dataset_class_and_tier(grant: GrantSpec) -> tuple[str, str]:
    """What the catalog says of a dataset a grant names: the grant's first class and tier."""
    return grant.catalog[0], grant.tiers[0]


def copy_as_stated(reference: Path, target: Path) -> Path:
    """The reference policy set in `target`, deciding uncatalogued datasets as stated."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted([*reference.glob("*.policy"), *reference.glob("*.catalog.*")]):
        shutil.copyfile(source, target / source.name)
    catalog = target / "catalog.policy"
    text = catalog.read_text(encoding="utf-8")
    assert "uncatalogued refuse" in text
    catalog.write_text(text.replace("uncatalogued refuse", "uncatalogued as_stated"),
                       encoding="utf-8")
    return target


def write_policy_dir(workload: Workload, reference: Path, target: Path, *,
                     extra_datasets: int = 0) -> Path:
    """A copy of the reference policies plus the generated grants and their catalog, in
    `target`; `extra_datasets` more catalogued datasets that no request names."""
    copy_as_stated(reference, target)
    with open(target / "generated_grants.policy", "w", encoding="utf-8") as out:
        out.write("# 基准测试生成的授权 — generated grants for the benchmark\n\n")
        for grant in workload.grants:
            out.write(grant.text())
            out.write("\n")
    with open(target / "generated.catalog.csv", "w", encoding="utf-8") as out:
        out.write("id,label,catalog_class,tier,personal,owner_org_id,shareable\n")
        for grant in workload.grants:
            catalog_class, tier = dataset_class_and_tier(grant)
            for dataset in grant.datasets:
                out.write(f"{dataset},数据集 {dataset},{catalog_class},{tier},false,fz-hosp-1,false\n")
        for i in range(extra_datasets):
            out.write(f"ds-extra-{i:06d},目录数据集 {i},{CLASSES[i % len(CLASSES)]},"
                      f"{('open', 'conditional', 'closed')[i % 3]},{'true' if i % 5 == 0 else 'false'},"
                      f"org-{i % 997:05d},{'true' if i % 2 else 'false'}\n")
    return target


def _request(org: str, org_type: str, region: str, tier: str, catalog_class: str, dataset: str,
             action: str, purpose: str, when: int, *, real_name: bool = True,
             personal: bool = False, deidentified: bool = True, consent: bool = False,
             storage: str = "domestic", assessed: bool = False, owner: str = "fz-hosp-1",
             catalogued: bool = False, shareable: bool = False) -> dict:
    # A catalogued dataset states only what its catalog entry says too (the baselines read
    # them; the owner is left to the catalog); an uncatalogued one states everything.
    resource = {"id": dataset, "catalog_class": catalog_class, "tier": tier,
                "personal": False} if catalogued else {
        "id": dataset, "catalog_class": catalog_class, "tier": tier, "personal": personal,
        "owner_org_id": owner, "shareable": shareable}
    return {
        "subject": {"id": f"u-{org}", "org_id": org, "org_type": org_type, "region": region,
                    "real_name_verified": real_name},
        "resource": resource,
        "action": action, "purpose": purpose,
        "context": {"time": format_instant(when, 480), "storage_region": storage,
                    "deidentified": deidentified, "consent": consent,
                    "security_assessment": assessed},
    }


def requests(workload: Workload, count: int, seed: int = 11) -> list[dict]:
    """A mix aimed at permits through grants, deny rules, open data and default denies."""
    rng = random.Random(seed)
    by_id = {org.id: org for org in workload.orgs}
    out = []
    for i in range(count):
        when = NOW + rng.randint(-3, 3) * DAY
        roll = rng.random()
        if roll < 0.45 and workload.grants:  # within (or at the edge of) some grant
            grant = rng.choice(workload.grants)
            org = by_id[grant.grantee]
            tier, catalog_class = rng.choice(grant.tiers), rng.choice(grant.catalog)
            catalogued = bool(grant.datasets) and rng.random() < 0.8
            if catalogued:
                dataset = rng.choice(grant.datasets)
                catalog_class, tier = dataset_class_and_tier(grant)
            else:
                dataset = f"ds-{rng.randint(0, 99999):05d}"
            if rng.random() < 0.1:  # right at the expiry instant or just before it
                when = grant.expires - rng.choice([0, 1])
            out.append(_request(
                org.id, org.org_type, org.region, tier, catalog_class,
                dataset, rng.choice(grant.actions) if rng.random() < 0.9 else rng.choice(ACTIONS),
                rng.choice(grant.purposes) if rng.random() < 0.9 else rng.choice(PURPOSES), when,
                personal=rng.random() < 0.2, deidentified=rng.random() < 0.8,
                consent=rng.random() < 0.3, catalogued=catalogued))
        elif roll < 0.60:  # open data, any requester
            out.append(_request(
                f"org-open-{i % 50}", rng.choice(ORG_TYPES), rng.choice(REGIONS), "open",
                rng.choice(CLASSES), f"ds-open-{i % 200}", rng.choice(ACTIONS), rng.choice(PURPOSES),
                when, personal=rng.random() < 0.2, deidentified=rng.random() < 0.7))
        elif roll < 0.70:  # government sharing
            out.append(_request(
                f"gov-{i % 20}", rng.choice(["government_agency", "public_institution", "regulator"]),
                rng.choice(REGIONS), rng.choice(["open", "conditional", "closed"]),
                rng.choice(CLASSES), f"ds-gov-{i % 100}", rng.choice(ACTIONS),
                rng.choice(["government_administration", "public_health", "commercial"]), when,
                shareable=rng.random() < 0.7))
        elif roll < 0.85:  # deny rules: overseas storage, export, tampering, no real name
            org = rng.choice(workload.orgs) if workload.orgs else Org("org-x", "university", "fuzhou")
            kind = rng.randrange(4)
            out.append(_request(
                org.id, org.org_type, org.region, rng.choice(["open", "conditional", "closed"]),
                rng.choice(CLASSES), f"ds-{i:05d}",
                {0: "query", 1: "export", 2: rng.choice(["delete", "update"]), 3: "query"}[kind],
                "scientific_research", when, storage="overseas" if kind == 0 else "domestic",
                real_name=kind != 3, owner=org.id if rng.random() < 0.3 else "fz-hosp-1"))
        else:  # nothing applies: unknown organisations, classes nobody was granted
            out.append(_request(
                f"nobody-{i % 500}", rng.choice(["university", "domestic_enterprise",
                                                  "research_institute", "individual"]),
                "southeast_park", rng.choice(["conditional", "closed"]), rng.choice(CLASSES),
                f"ds-{i:05d}", rng.choice(ACTIONS[:5]), rng.choice(PURPOSES), when))
    return out
