"""`tiergate fmt`: one canonical layout that keeps meaning and comments, and is a fixed point."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiergate.cli import fmt as fmt_cli
from tiergate.engine import compile_sources
from tiergate.grammar.format import WIDTH, canonical_ast, display_width, format_text
from tiergate.grammar.parser import parse_policy

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "fmt"
UPDATE = os.environ.get("TIERGATE_UPDATE_GOLDEN") == "1"
SHIPPED = sorted((REPO / "policies").glob("*.policy"))
INPUTS = sorted(GOLDEN.glob("*.policy.input"))


def comment_texts(text: str) -> list[str]:
    return sorted(c.text.rstrip() for c in parse_policy(text, "x").comments)


def assert_faithful(text: str) -> str:
    """Format, and check what the formatter promises; returns the formatted text."""
    out = format_text(text, "x.policy")
    assert canonical_ast(parse_policy(out, "x.policy")) == canonical_ast(parse_policy(text, "x.policy"))
    assert format_text(out, "x.policy") == out, "formatting again changes the text"
    assert comment_texts(out) == comment_texts(text), "a comment was lost or changed"
    assert not any(line != line.rstrip() for line in out.splitlines()), "trailing whitespace"
    return out


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_golden(path):
    out = assert_faithful(path.read_text(encoding="utf-8"))
    golden = path.with_name(path.name.replace(".input", ".golden"))
    if UPDATE:  # TIERGATE_UPDATE_GOLDEN=1 rewrites them; review the diff
        golden.write_text(out, encoding="utf-8")
    # A missing golden file is a failure, not a file to write and then agree with.
    assert golden.exists(), f"{golden.name} is missing: run with TIERGATE_UPDATE_GOLDEN=1"
    assert out == golden.read_text(encoding="utf-8")


def test_the_catalog_and_unmet_blocks_format_and_parse_back():
    text = ('catalog{uncatalogued  refuse}\ndataset ds-1{tier open catalog basic_info label "基础"'
            ' shareable true owner fz-hosp-1 personal false}\n'
            'unmet{grant_expired "福州办法 第二十九条" grant_missing "第十八条"}\n')
    out = assert_faithful(text)
    assert "dataset ds-1 {\n  label       \"基础\"\n  catalog     basic_info\n  tier        open" in out
    assert "catalog {\n  uncatalogued refuse\n}" in out
    assert '  grant_expired  "福州办法 第二十九条"' in out


@pytest.mark.parametrize("path", SHIPPED + INPUTS, ids=lambda p: p.name)
def test_formatting_keeps_the_tree_and_is_idempotent(path):
    assert_faithful(path.read_text(encoding="utf-8"))


def test_formatted_shipped_set_decides_identically():
    """The checked model (rules, conditions, grants) of the formatted set equals the original."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in SHIPPED}
    formatted = {name: format_text(text, name) for name, text in sources.items()}
    before, after = compile_sources(sources), compile_sources(formatted)
    assert before.rules == after.rules
    assert before.grants == after.grants


def test_comments_stay_where_they_belong():
    text = ("grant g { expires 2027-01-01T00:00:00Z  # 到期\n  grantee fzu\n"
            "  # before tier\n  tier open catalog c purpose p action query approved_by x\n"
            "  agreement \"A\" }\n")
    out = format_text(text)
    lines = out.splitlines()
    assert lines[lines.index("  # before tier") + 1].startswith("  tier")
    assert next(l for l in lines if "# 到期" in l).lstrip().startswith("expires")
    assert lines[-2].lstrip().startswith("expires"), "grant clauses are in the canonical order"


def test_precedence_is_kept_and_and_groups_inside_or_stay_visible():
    text = ('rule r { cite "c" message zh "z" en "e" '
            "deny when (action == delete) and (action == copy or action == query) }")
    out = format_text(text)
    assert "deny when action == delete and (action == copy or action == query)" in out
    text = ('rule r { cite "c" message zh "z" en "e" '
            "deny when action == delete or (action == copy and action == query) }")
    # Not needed for the parser, but officers should not have to know that `and` binds tighter.
    assert "deny when action == delete or (action == copy and action == query)" in format_text(text)
    text = ('rule r { cite "c" message zh "z" en "e" '
            "deny when action == delete or action == copy and action == query }")
    assert "deny when action == delete or (action == copy and action == query)" in format_text(text)
    # A parenthesised group of the same connective is a separate node: keep it.
    text = ('rule r { cite "c" message zh "z" en "e" '
            "deny when action == delete and (context.consent and context.deidentified) }")
    assert "(context.consent and context.deidentified)" in assert_faithful(text)


def test_long_conditions_break_before_and_with_aligned_operands():
    text = ('rule r { cite "c" message zh "z" en "e" permit when '
            + " and ".join(f"resource.tier != t{i}" for i in range(12)) + " }")
    out = assert_faithful(text)
    lines = [l for l in out.splitlines() if "resource.tier" in l]
    assert len(lines) > 1 and all(display_width(l) <= WIDTH for l in lines)
    assert lines[0].startswith("  permit when resource.tier")
    assert all(l.startswith("          and resource.tier") for l in lines[1:])


def test_strings_are_reescaped_and_chinese_kept():
    text = 'rule r { cite "第一条 \\"引\\" \\\\" message zh "中文" en "e" deny always }'
    out = assert_faithful(text)
    assert 'cite "第一条 \\"引\\" \\\\"' in out


# ---- hypothesis: any tree, any layout ---------------------------------------------------

ATOMS = [
    "action == delete", "resource.tier in [open, closed]", "context.consent",
    'subject.org_id != "fz hosp"', "grant.approved_by has any [data_operator, digital_office]",
    "grant.approved_by has data_operator", "context.time < 2027-01-01T00:00:00+08:00",
    "purpose not in [scientific_research, education, public_health, clinical_care, "
    "government_administration, commercial, personal_use]",
]


def expressions():
    atom = st.sampled_from(ATOMS).map(lambda a: ("atom", a))
    return st.recursive(atom, lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=4))),
        max_leaves=12)


def messy(node, draw) -> str:
    """Some valid text for the tree: every group parenthesised, random spacing and comments."""
    kind = node[0]
    if kind == "atom":
        return node[1]
    if kind == "not":
        return "not " + wrap(node[1], draw)
    gap = draw(st.sampled_from([" ", "\n   ", "  # note\n ", "\n # 说明\n  "]))
    return f"{gap}{kind} ".join(wrap(part, draw) for part in node[1])


def wrap(node, draw) -> str:
    text = messy(node, draw)
    return text if node[0] == "atom" else f"({text})"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_condition_in_any_layout(data):
    tree = data.draw(expressions())
    effect = data.draw(st.sampled_from(["permit", "deny", "on permit"]))
    text = (f'# top\nrule r {{  # header\n cite "c"\n  message en "e"\n zh "中"\n'
            f"{effect} when {messy(tree, data.draw)}\n oblige audit }}\n")
    assert_faithful(text)


# ---- the command ------------------------------------------------------------------------


def run_fmt(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    fmt_cli.register(parser.add_subparsers())
    args = parser.parse_args(["fmt", *argv])
    return args.run(args)


UGLY = 'rule a { cite "x" message zh "一" en "one"   deny always }\n'


def test_check_lists_unformatted_files_and_rewrites_nothing(tmp_path, capsys):
    (tmp_path / "a.policy").write_text(UGLY, encoding="utf-8")
    (tmp_path / "b.policy").write_text(format_text(UGLY), encoding="utf-8")
    assert run_fmt("--check", "--diff", str(tmp_path)) == 2
    out = capsys.readouterr().out
    assert "a.policy: not formatted" in out and "b.policy" not in out.replace("a.policy", "")
    assert "+  deny always" in out
    assert (tmp_path / "a.policy").read_text(encoding="utf-8") == UGLY


def test_fmt_rewrites_in_place_then_check_passes(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "a.policy"
    target.write_text(UGLY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_fmt() == 0
    assert target.read_text(encoding="utf-8") == format_text(UGLY)
    assert run_fmt("--check") == 0


def test_syntax_error_is_reported_and_file_left_alone(tmp_path, capsys):
    bad = tmp_path / "bad.policy"
    bad.write_text("rule x {\n  deny whenn action == delete\n}\n", encoding="utf-8")
    assert run_fmt(str(bad)) == 1
    err = capsys.readouterr().err
    assert "bad.policy:2:" in err and "TG100" in err
    assert "whenn" in bad.read_text(encoding="utf-8")
