"""The quick grant reader builds exactly what Lark builds, spans included, or leaves the block
to Lark; the shipped policies and odd layouts alike."""

from __future__ import annotations

import random

import pytest

from conftest import POLICIES
from tiergate.grammar import parser
from tiergate.diagnostics import DiagnosticError


def with_spans(node):
    """A structure that compares nodes *and* their spans."""
    if isinstance(node, tuple):
        return tuple(with_spans(n) for n in node)
    fields = getattr(node, "__dataclass_fields__", None)
    if fields is None:
        return node
    return (type(node).__name__,) + tuple((name, with_spans(getattr(node, name))) for name in fields)


def lark_only(text: str, file: str):
    original = parser.read_simple_grants
    parser.read_simple_grants = lambda text, file, decode: ([], [], text)
    try:
        return parser.parse_policy(text, file)
    finally:
        parser.read_simple_grants = original


def assert_same(text: str):
    try:
        expected = lark_only(text, "f.policy")
    except DiagnosticError as error:
        with pytest.raises(DiagnosticError) as caught:
            parser.parse_policy(text, "f.policy")
        assert caught.value.diagnostics == error.diagnostics
        return
    got = parser.parse_policy(text, "f.policy")
    assert with_spans(got.declarations) == with_spans(expected.declarations)
    assert got.comments == expected.comments


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.policy")), ids=lambda p: p.name)
def test_shipped_files_read_the_same(path):
    assert_same(path.read_text(encoding="utf-8"))


GRANT = """grant fz-1 {  # 注释 {
  grantee fz-u.1
  tier conditional,closed
  catalog  medical_service ,
     public_health   # 两类
  dataset ds-1, ds_2
  purpose scientific_research
  action query
  approved_by data_operator, digital_office
  agreement "FZ \"1\" 协议"
  expires 2027-06-30T00:00:00+08:00
}"""

ODD = [
    GRANT,
    "rule r { cite \"grant x {\" }\n" + GRANT,
    GRANT.replace("tier conditional,closed", "tier conditional,"),        # trailing comma
    GRANT.replace("tier conditional", "tier Conditional"),                # not a symbol
    GRANT.replace("agreement \"", "agreement FZ \""),                     # wrong value kind
    GRANT.replace("purpose scientific_research", "purpose action"),       # keyword as value
    GRANT.replace("}", ""),                                               # unterminated
    GRANT + "\n" + GRANT.replace("fz-1", "fz-2"),
    "grant g {}",
    "grant g { tier open } rule r { deny when not (grant.approved_by has x) }",
    "# grant g { tier open }\n" + GRANT,
    GRANT.replace("expires 2027-06-30T00:00:00+08:00", "expires 2027-06-30"),
    GRANT.replace("grantee fz-u.1", "grantee fz-u.1, other"),              # one value only
]


@pytest.mark.parametrize("text", ODD)
def test_odd_layouts_read_the_same(text):
    assert_same(text)


def test_random_whitespace_and_comments_read_the_same():
    rng = random.Random(5)
    text = (POLICIES / "grants.policy").read_text(encoding="utf-8")
    for _ in range(600):
        out = []
        for ch in text:
            out.append(ch)
            if ch in " \n" and rng.random() < 0.05:
                out.append(rng.choice(["  ", "\n", "\t", " # 备注 }\n", ","]))
        assert_same("".join(out))
