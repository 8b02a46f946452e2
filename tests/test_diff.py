"""`tiergate diff` on real edits of copies of the reference policy set.

Each test edits a copy of policies/ in a temp dir, runs the diff, and checks the reported
classes against a brute force: every request of a restricted but relevant space is decided on
both sides with `decide`, and a request changes decision exactly when the diff reports its class.
"""

from __future__ import annotations

import json
import re
import shutil
from itertools import product


from tiergate.cli.main import main
from tiergate.engine import load_policy_set
from tiergate.engine.timeutil import parse_instant
from tiergate.tooling.diff import diff_policies

from conftest import POLICIES as REPO_POLICIES
from conftest import as_stated_directory, make_request

# The diff compares request classes that may state any tier and class: the shipped set deciding
# uncatalogued datasets as stated (catalogued ones are decided on the catalog's values).
POLICIES = as_stated_directory()

TIMES = ("2026-05-01T00:00:00+08:00", "2026-11-22T10:00:00+08:00", "2027-02-01T00:00:00+08:00",
         "2027-05-01T00:00:00+08:00", "2027-08-01T00:00:00+08:00", "2027-12-01T00:00:00+08:00")


def edited(tmp_path, name: str, edit) -> str:
    target = tmp_path / name
    shutil.copytree(POLICIES, target)
    edit(target)
    return str(target)


def replace_in(path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def brute_force(old, new, diff, space: dict) -> tuple[set, set]:
    """(requests whose effect changes, requests the diff reports as an effect change)."""
    keys = list(space)
    changed, reported = set(), set()
    for combination in product(*(space[k] for k in keys)):
        request = make_request(**dict(zip(keys, combination)))
        a, b = old.decide(request), new.decide(request)
        values = old.read_request(request)
        kind = diff.kind_of(values)
        if a.effect != b.effect:
            changed.add((combination, b.effect))
        if kind in ("newly_permitted", "newly_denied"):
            reported.add((combination, "PERMIT" if kind == "newly_permitted" else "DENY"))
        # A class reported as changed really changes on this request too.
        if kind == "changed_details":
            assert a.effect == b.effect
    return changed, reported


GRANT_SPACE = {
    "subject__org_id": ["mindray-health", "fzu", "someone-else"],
    "subject__org_type": ["domestic_enterprise", "university", "individual"],
    "subject__region": ["southeast_park", "fuzhou"],
    "resource__catalog_class": ["drug_management", "medical_insurance", "medical_service"],
    "resource__tier": ["conditional", "closed"],
    "action": ["query", "download", "share"],
    "purpose": ["education", "commercial", "scientific_research"],
    "context__time": [TIMES[1], TIMES[3]],
}


def test_widened_grant_newly_permits_exactly_the_added_purpose(tmp_path):
    new_dir = edited(tmp_path, "new", lambda d: replace_in(
        d / "grants.policy", "purpose     commercial, scientific_research",
        "purpose     commercial, scientific_research, education"))
    old, new = load_policy_set(POLICIES), load_policy_set(new_dir)
    diff = diff_policies(old, new)
    assert diff.of_kind("newly_denied") == [] and diff.of_kind("changed_details") == []
    permitted = diff.of_kind("newly_permitted")
    assert permitted
    for change in permitted:
        assert change.cube["purpose"] == ["education"]
        assert change.cube["subject.org_id"] == ["mindray-health"]
        assert set(change.cube["resource.catalog_class"]) <= {"drug_management", "medical_insurance"}
        assert change.new.grant_id == "fz-2026-021"
        assert change.new.rules == ("conditional-with-approved-grant",)
        # the example request really is newly permitted
        assert old.decide(change.example).effect == "DENY"
        assert new.decide(change.example).effect == "PERMIT"
    changed, reported = brute_force(old, new, diff, GRANT_SPACE)
    assert changed and changed == reported
    # grant scope: 2 classes × 3 actions (query/analyze/download) × 3 eligible org types, in the
    # park, before expiry, with the other attributes of the base request.
    assert diff.totals["newly_permitted"] > 0


def test_removed_deny_rule_newly_permits_out_of_park_grantees(tmp_path):
    def remove_rule(d):
        text = (d / "prohibitions.policy").read_text(encoding="utf-8")
        without = re.sub(r"rule conditional-in-park-only \{.*?\n\}\n", "", text, flags=re.S)
        assert without != text
        (d / "prohibitions.policy").write_text(without, encoding="utf-8")
        # The permit rule itself asks for the park too: widen it as the removal intends.
        replace_in(d / "access.policy", "          and subject.region == southeast_park\n", "")

    new_dir = edited(tmp_path, "new", remove_rule)
    old, new = load_policy_set(POLICIES), load_policy_set(new_dir)
    diff = diff_policies(old, new)
    assert diff.of_kind("newly_denied") == []
    for change in diff.of_kind("newly_permitted"):
        assert "southeast_park" not in change.cube["subject.region"]
        assert change.cube["resource.tier"] == ["conditional"]
        assert set(change.cube["subject.org_type"]) <= {"domestic_enterprise", "university",
                                                       "research_institute"}
        # by a grant of an out-of-park grantee, or (update) by the owner maintaining its data
        assert (change.new.grant_id in {"fz-2026-017", "fz-2026-021", "fz-2025-009"}
                or change.new.rules == ("owner-maintains-own-data",))
    # Where other denies still apply, the park rule only leaves the reasons.
    details = diff.of_kind("changed_details")
    assert details and all(c.old.rules == ("conditional-in-park-only",) for c in details)
    space = dict(GRANT_SPACE, subject__region=["southeast_park", "fuzhou", "overseas"],
                 resource__catalog_class=["medical_service", "drug_management"],
                 action=["query", "share"])
    changed, reported = brute_force(old, new, diff, space)
    assert changed and changed == reported
    assert {c[1] for c in changed} == {"PERMIT"}


def test_changed_expiry_changes_only_the_time_between_old_and_new(tmp_path):
    new_dir = edited(tmp_path, "new", lambda d: replace_in(
        d / "grants.policy", "expires     2027-03-31T00:00:00+08:00",
        "expires     2027-09-30T00:00:00+08:00"))
    old, new = load_policy_set(POLICIES), load_policy_set(new_dir)
    diff = diff_policies(old, new)
    old_end, new_end = parse_instant("2027-03-31T00:00:00+08:00"), parse_instant("2027-09-30T00:00:00+08:00")
    permitted = diff.of_kind("newly_permitted")
    assert permitted and not diff.of_kind("newly_denied")
    for change in permitted:
        moment = parse_instant(change.example["context"]["time"])
        assert old_end <= moment < new_end
        assert change.new.grant_id == "fz-2026-030"
    # Before the old expiry the grant already applied: only destroy_on_expiry's date moves.
    for change in diff.of_kind("changed_details"):
        assert change.old.obligations == ("destroy_on_expiry(at=2027-03-31T00:00:00+08:00)",)
        assert change.new.obligations == ("destroy_on_expiry(at=2027-09-30T00:00:00+08:00)",)
    space = {"subject__org_id": ["fj-cdc-institute", "fzu"],
             "subject__org_type": ["research_institute", "government_agency"],
             "resource__tier": ["closed"], "resource__catalog_class": ["public_health"],
             "resource__id": ["ds-epidemic-2025", "ds-other"],
             "action": ["query", "copy"], "purpose": ["scientific_research"],
             "context__time": list(TIMES) + ["2027-03-30T23:59:59+08:00",
                                             "2027-03-31T00:00:00+08:00",
                                             "2027-09-29T23:59:59+08:00",
                                             "2027-09-30T00:00:00+08:00"]}
    changed, reported = brute_force(old, new, diff, space)
    assert changed and changed == reported
    times = {dict(zip(space, c))["context__time"] for c, _ in changed}
    assert times == {"2027-05-01T00:00:00+08:00", "2027-08-01T00:00:00+08:00",
                     "2027-03-31T00:00:00+08:00", "2027-09-29T23:59:59+08:00"}


def reformat(d) -> None:
    """Whitespace, comments, and a vocabulary and a rule moved to another file, reordered."""
    prohibitions = (d / "prohibitions.policy").read_text(encoding="utf-8")
    rule = re.search(r"rule real-name-required \{.*?\n\}\n", prohibitions, flags=re.S).group(0)
    (d / "prohibitions.policy").write_text(prohibitions.replace(rule, ""), encoding="utf-8")
    vocabulary = (d / "vocabulary.policy").read_text(encoding="utf-8")
    block = re.search(r"vocabulary action \{.*?\n\}\n", vocabulary, flags=re.S).group(0)
    (d / "vocabulary.policy").write_text(vocabulary.replace(block, ""), encoding="utf-8")
    (d / "moved.policy").write_text("# 移动过来的声明 — moved here\n\n" + rule.replace("  ", "    ")
                                    + "\n\n" + block, encoding="utf-8")
    grants = (d / "grants.policy").read_text(encoding="utf-8")
    (d / "grants.policy").write_text("# a new comment\n\n" + grants.replace("\n\n", "\n\n\n"),
                                     encoding="utf-8")


def test_reformatting_only_reports_no_change_and_exits_0(tmp_path, capsys):
    new_dir = edited(tmp_path, "new", reformat)
    old, new = load_policy_set(POLICIES), load_policy_set(new_dir)
    assert old.revision != new.revision
    diff = diff_policies(old, new)
    assert not diff.changed and diff.changes == ()
    assert main(["diff", str(POLICIES), new_dir]) == 0
    assert "no change" in capsys.readouterr().out


def test_cli_exit_codes_and_json(tmp_path, capsys):
    new_dir = edited(tmp_path, "new", lambda d: replace_in(
        d / "grants.policy", "action      query, analyze\n  approved_by data_operator\n  agreement   \"FZ-2026-017\"",
        "action      query, analyze, copy\n  approved_by data_operator\n  agreement   \"FZ-2026-017\""))
    assert main(["diff", str(POLICIES), new_dir, "--format", "json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] and out["summary"]["newly_permitted"]["classes"] > 0
    assert out["summary"]["newly_denied"]["classes"] == 0
    assert all(c["cube"]["action"] == ["copy"] for c in out["changes"])
    assert all(c["new"]["grant_id"] == "fz-2026-017" for c in out["changes"])
    broken = edited(tmp_path, "broken", lambda d: replace_in(d / "access.policy", "permit when", "permit wen"))
    assert main(["diff", str(POLICIES), broken]) == 1
    capsys.readouterr()
    assert main(["diff", new_dir, str(POLICIES)]) == 2
    assert "newly denied" in capsys.readouterr().out


def test_a_value_only_one_side_declares_is_reported(tmp_path):
    def add_class(d):
        replace_in(d / "vocabulary.policy", '  new_business        "新型业态"\n',
                   '  new_business        "新型业态"\n  genomics            "基因组"\n')
        replace_in(d / "grants.policy", "catalog     medical_service, public_health",
                   "catalog     medical_service, public_health, genomics")

    new_dir = edited(tmp_path, "new", add_class)
    old, new = load_policy_set(POLICIES), load_policy_set(new_dir)
    diff = diff_policies(old, new)
    assert diff.vocabulary == {"resource.catalog_class": {"added": ["genomics"], "removed": []}}
    permitted = diff.of_kind("newly_permitted")
    assert permitted and all(c.cube["resource.catalog_class"] == ["genomics"] for c in permitted)
    # Requests naming genomics were refused before; now the open-data rules and fzu's grant
    # permit some of them.
    assert all(c.old.effect == "INVALID" for c in permitted)
    assert {c.new.grant_id for c in permitted} == {None, "fz-2026-017"}
    assert {"open-data-direct", "government-sharing", "conditional-with-approved-grant"} <= {
        r for c in permitted for r in c.new.rules}
    assert not diff.of_kind("newly_denied")


def test_a_catalog_edit_is_a_change_even_where_no_rule_changed():
    from tiergate.engine import compile_sources
    from tiergate.tooling.diff_render import diff_to_dict, render_text

    vocabulary = (REPO_POLICIES / "vocabulary.policy").read_text(encoding="utf-8")
    rules = ('rule open { cite "t" message zh "开" en "open" '
             "permit when resource.tier == open }\n")

    def policy(datasets: str):
        return compile_sources({"vocabulary.policy": vocabulary, "rules.policy": rules,
                                "catalog.policy": datasets})

    old = policy("dataset ds-1 { catalog basic_info tier open }\n"
                 "dataset ds-2 { catalog basic_info tier open }\n")
    new = policy("dataset ds-1 { catalog basic_info tier closed }\n"
                 "dataset ds-3 { catalog basic_info tier open }\n")
    diff = diff_policies(old, new)
    assert diff.catalog == {"ds-1": {"change": "changed", "tier": ["open", "closed"]},
                            "ds-2": {"change": "removed"}, "ds-3": {"change": "added"}}
    assert diff.changed and diff.changes == ()  # the rules decide as before
    text = render_text(diff, "old", "new")
    assert "catalog: dataset ds-1 changed in 变更 the catalog: tier open → closed" in text
    assert diff_to_dict(diff)["catalog"] == diff.catalog
    assert not diff_policies(old, old).changed


GRANT_017_ACTIONS = '  action      query, analyze\n  approved_by data_operator\n  agreement   "FZ-2026-017"'


def test_an_edit_is_reported_under_its_own_name_by_the_attributes_it_touches(tmp_path, capsys):
    new = edited(tmp_path, "narrower", lambda d: replace_in(
        d / "grants.policy", GRANT_017_ACTIONS, GRANT_017_ACTIONS.replace("query, analyze",
                                                                           "analyze")))
    assert main(["diff", str(POLICIES), new]) == 2
    out = capsys.readouterr().out
    section = out.split("== grant fz-2026-017 changed 变更: action analyze, query → analyze")[1]
    entries = [line for line in section.splitlines() if line.startswith(("- ", "+ ", "~ "))]
    # One entry: the booleans the grant never mentions (consent, de-identification, personal
    # data) do not split it.
    assert entries == ["- PERMIT → DENY: 5,376 classes of requests"]
    where = section.split("where", 1)[1].split("now", 1)[0]
    assert where.split() == ["action", "=", "query"]
    assert "Compared 825,753,600 classes of requests" in out and "5,376 newly denied" in out
    assert main(["diff", str(POLICIES), new, "--verbose"]) == 2
    assert "every changed class, in detail" in capsys.readouterr().out


def test_now_leaves_out_what_only_the_past_would_have_decided_differently(tmp_path, capsys):
    # fz-2025-009 expired on 2026-06-30: narrowing it changes only requests before then.
    expired = '  action      query\n  approved_by data_operator\n  agreement   "FZ-2025-009"'
    new = edited(tmp_path, "past", lambda d: replace_in(
        d / "grants.policy", expired, expired.replace("query", "analyze")))
    assert main(["diff", str(POLICIES), new]) == 2
    assert "grant fz-2025-009 changed" in capsys.readouterr().out
    # As of now the edit decides nothing differently: it is shown, and the exit is 0.
    assert main(["diff", str(POLICIES), new, "--now", "2026-12-02T10:00:00+08:00"]) == 0
    out = capsys.readouterr().out
    assert "(requests at 2026-12-02T10:00:00+08:00 or later)" in out
    assert "grant fz-2025-009 changed" in out
    assert "no request is decided differently because of it" in out
    assert "no change, every request is decided as before" in out
