"""Policy text is untrusted input: loading it takes time linear in its size.

Each adversarial layout below once took exponential or quadratic time (a regular expression that
backtracked, a scan retried from every quote). The test times the same layout at sizes n and 4n,
side by side, best of three, and asserts the growth stays near linear — a ratio, not a clock, so
a busy machine cannot fail it (quadratic growth would be ~16×, exponential far more).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

LAYOUTS = {
    # blanks before a stray word, then a grant: the grant reader's layout pattern
    "blanks before a stray word": lambda n: " " * n + "x\ngrant g { }\n",
    # an unterminated string of escaped quotes
    "escaped quotes never closed": lambda n: 'rule r { cite "' + '\\"' * n + "\n",
    # comments made of hashes, then a stray word
    "hashes before a stray word": lambda n: "#" * n + "\n" + "#" * n + " x\nnot a policy\n",
    # a grant clause with very many values
    "a long list of values": lambda n: "grant g {\n  tier " + ", ".join(["open"] * n) + "\n}\n",
    # many blocks, each left open: every one is a place to recover at
    "many unclosed blocks": lambda n: "".join(
        f"rule r{i} {{\n  cite \"x\"\n" for i in range(n // 15 + 1)),
    # one declaration head followed by a very long name and no brace
    "a head without its brace": lambda n: "rule " + "a" * n + "\nrule b {\n",
    # many small grants
    "many grants": lambda n: "".join(
        f'grant g{i} {{ grantee o tier open catalog basic_info purpose education action query '
        f'approved_by data_operator agreement "A" expires 2027-01-01T00:00:00Z }}\n'
        for i in range(n // 20 + 1)),
}


# Timed in a child process: a regression to exponential time must fail the test, not hang it
# (the re module cannot be interrupted from Python).
_TIMER = """
import json, sys, time
from tiergate.diagnostics import DiagnosticError
from tiergate.grammar.parser import parse_policy
out = []
for text in json.load(sys.stdin):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        try:
            parse_policy(text, "adversarial.policy")
        except DiagnosticError:
            pass
        best = min(best, time.perf_counter() - start)
    out.append(best)
print(json.dumps(out))
"""


def _seconds(*texts: str) -> list[float]:
    try:
        done = subprocess.run([sys.executable, "-c", _TIMER], input=json.dumps(texts),
                              capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading took over a minute: {texts[0][:60]!r}…")
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", LAYOUTS)
def test_loading_time_grows_linearly(name):
    make = LAYOUTS[name]
    n = 2_000
    small, large = _seconds(make(n), make(4 * n))
    # 4× the input: linear is ~4×; allow for noise and fixed costs, refuse ~16× and worse.
    assert large < max(8 * small, 0.05), (name, small, large)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([" ", "\t", "\n", "#", '"', "\\", "x", "{", "}", "grant", "g",
                                 "\r", ",", "tier", "open"]), min_size=1, max_size=60))
def test_any_short_mix_of_tokens_is_read_quickly_and_repeated_stays_linear(pieces):
    text = "".join(pieces)
    small, large = _seconds(text * 50, text * 200)
    assert large < max(8 * small, 0.05), (text, small, large)
