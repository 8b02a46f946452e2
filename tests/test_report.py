"""`tiergate report --html`: one self-contained page that shows what the policy set holds."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from tiergate.cli.main import main
from tiergate.tooling.matrix import coverage_matrix

from conftest import POLICIES, instant, make_request

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
    # Self-contained and small: the tree's data and the script that draws it are inline.
    assert page.external == [] and page.scripts == 2
    assert len(text.encode("utf-8")) < 200_000
    assert {f"rule-{r.id}" for r in policy.rules} <= page.ids
    assert {f"grant-{g.id}" for g in policy.grants} <= page.ids
    assert {"rules", "catalog", "matrix", "grants", "tree", "today", "tree-root",
            "tree-data"} <= page.ids
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
def test_page_renders_in_headless_chromium_and_reads_as_text(page_file, policy, tmp_path):
    """What a reader sees, not only what the DOM holds: the page's visible text after its
    script ran (over the DevTools pipe), and a screenshot drawn with a CJK font."""
    from chromium_pipe import Chromium

    browser = Chromium(_chromium(), str(tmp_path / "profile"))
    try:
        text = browser.page_text(page_file.as_uri())
    finally:
        browser.close()
    for heading in ("规则 Rules", "数据资源目录", "覆盖矩阵 Coverage matrix",
                    "授权时间线 Grants by expiry", "决策树 Decision tree"):
        assert heading in text, heading
    assert all(rule.id in text for rule in policy.rules)
    assert all(grant.id in text for grant in policy.grants)
    assert all(dataset in text for dataset in policy.catalog.datasets)
    assert "医疗机构名录" in text and "授权开放" in text
    # The tree's top levels were drawn by the page's script; deeper ones wait to be opened.
    assert "#0 resource.tier" in text and "= query" in text
    assert text.count("#") < 200
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True)
    if os.environ.get("CI"):  # .ci/run installs fonts-noto-cjk beside chromium
        assert fonts.stdout.strip(), "no CJK font: the screenshot would show boxes"
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile-shot'}"]
    shot = tmp_path / "page.png"
    subprocess.run(command + [f"--screenshot={shot}", "--window-size=1200,1600",
                              page_file.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


def walk(data: dict, path: list[dict]) -> tuple[list[str], list]:
    """Follow a decision's path through the page's tree data as its script does: the
    attributes met on the way and the leaf reached."""
    index, met = data["root"], []
    for step in path:
        node = data["nodes"][index]
        assert isinstance(node[0], int), "reached a leaf before the path ended"
        attribute = data["attributes"][node[0]]
        met.append(attribute)
        labels = data["domains"][node[0]]
        position = next(i for i, label in enumerate(labels)
                        if label.split(" ")[0] == str(step["value"]).lower()
                        or label == str(step["value"]))
        index = next(node[k + 1] for k in range(1, len(node), 2) if node[k] & (1 << position))
    return met, data["nodes"][index]


def test_the_tree_data_leads_every_request_to_the_leaf_the_engine_uses(policy):
    from tiergate.tooling.report import tree_data

    data = tree_data(policy)
    rules = [rule_id for rule_id, _ in data["rules"]]
    for changes in ({}, {"subject__region": "fuzhou"}, {"action": "export"},
                    {"resource__id": "ds-hospitals-open", "action": "copy"},
                    {"subject__org_type": "foreign_enterprise"}, {"subject__org_id": "xmu"}):
        explained = policy.decide(make_request(**changes), explain=True).explanation
        path = explained["tree"]["path"]
        met, leaf = walk(data, path)
        assert met == [step["attribute"] for step in path]
        assert not isinstance(leaf[0], int), "the path ends at a leaf"
        in_leaf = {rules[r >> 1] for group in leaf for r in group}
        considered = {r["rule_id"] for r in explained["rules"]
                      if r["considered"] and not r["fallback"]}
        assert in_leaf == considered
