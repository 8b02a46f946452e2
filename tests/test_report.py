"""`tiergate report --html`: one self-contained page that shows what the policy set holds."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from tiergate.cli.main import main
from tiergate.tooling.matrix import coverage_matrix

from conftest import POLICIES, instant

NOW = "2026-11-22T10:00:00+08:00"


class Page(HTMLParser):
    """Collects ids, external references and the grant/matrix elements of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.external, self.grants, self.cells = set(), [], {}, {}
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("#"):
                self.external.append(a[key])
        if tag == "g" and "data-grant" in a:
            self.grants[a["data-grant"]] = a["data-expired"]
        if tag == "td" and "data-org" in a:
            self.cells[(a["data-class"], a["data-org"])] = a["class"]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "policy.html"
    assert main(["report", str(POLICIES), "--html", str(path), "--now", NOW]) == 0
    return path


def test_page_is_self_contained_and_holds_rules_grants_and_matrix(page_file, policy):
    text = page_file.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert page.external == [] and page.scripts == 0
    assert {f"rule-{r.id}" for r in policy.rules} <= page.ids
    assert {f"grant-{g.id}" for g in policy.grants} <= page.ids
    assert {"rules", "catalog", "matrix", "grants", "tree", "today", "node-1"} <= page.ids
    # every catalogued dataset (policy blocks and the CSV data file) has its row
    assert {f"dataset-{d}" for d in policy.catalog.datasets} <= page.ids
    assert "ds-hospitals-open" in policy.catalog.datasets and "医疗机构名录" in text
    # grants expired at NOW are marked; the others are not
    assert page.grants == {g.id: str(g.expires <= instant(NOW)).lower() for g in policy.grants}
    assert page.grants["fz-2025-009"] == "true"
    # the matrix cells agree with lint's coverage matrix (last tier table wins per class/org,
    # so compare the closed tier, drawn last)
    matrix = coverage_matrix(policy, now=instant(NOW))
    for (catalog_class, org), mark in page.cells.items():
        expected = matrix.cell(catalog_class, matrix.tiers[-1], org).mark
        assert mark == (expected if expected != "·" else "N")
    assert "授权时间线 Grants by expiry" in text and "医疗服务" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium) — the headless rendering test needs it")
def test_page_renders_in_headless_chromium(page_file, policy, tmp_path):
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    result = subprocess.run(command + ["--dump-dom", page_file.as_uri()], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    page = Page()
    page.feed(dom)
    assert {f"rule-{r.id}" for r in policy.rules} <= page.ids
    assert set(page.grants) == {g.id for g in policy.grants}
    assert len(page.cells) == len(policy.vocabularies["resource.catalog_class"].labels) * \
        len(policy.vocabularies["subject.org_type"].labels)
    assert "<svg" in dom and "conditional-with-approved-grant" in dom
    shot = tmp_path / "page.png"
    subprocess.run(command + [f"--screenshot={shot}", "--window-size=1200,1600",
                              page_file.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
