"""The example CI for a policy repository (docs/policy-repo-ci/ci.sh) gates what it should."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tiergate.cli.main import SUBCOMMANDS

from conftest import POLICIES, REPO

CI = REPO / "docs" / "policy-repo-ci" / "ci.sh"
NEEDED = ("check", "fmt", "lint", "test", "diff", "report")
missing = [name for name in NEEDED if name not in SUBCOMMANDS]
pytestmark = pytest.mark.skipif(bool(missing) or shutil.which("bash") is None,
                                reason=f"tiergate lacks subcommands {missing} (or no bash)")


def run_ci(tmp_path, policy_dir, base_dir=None):
    tiergate = shutil.which("tiergate") or f"{sys.executable} -m tiergate.cli.main"
    env = dict(os.environ, POLICY_DIR=str(policy_dir), REPORTS=str(tmp_path / "reports"),
               TIERGATE=tiergate, BASE_DIR=str(base_dir or ""))
    return subprocess.run(["bash", str(CI)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def copy_policies(tmp_path, name="policies"):
    target = tmp_path / name
    shutil.copytree(POLICIES, target)
    return target


def test_the_shipped_policies_are_formatted():
    # The CI below runs `fmt --check`; an unformatted shipped set fails here, saying so.
    result = subprocess.run([sys.executable, "-m", "tiergate.cli.main", "fmt", "--check",
                             str(POLICIES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_passes_on_the_shipped_policies(tmp_path):
    base = copy_policies(tmp_path, "base")
    head = copy_policies(tmp_path)
    # A comment-only change: every gate passes and the diff finds no changed decision.
    text = (head / "grants.policy").read_text(encoding="utf-8")
    (head / "grants.policy").write_text("# reviewed 2026-11\n" + text, encoding="utf-8")
    result = run_ci(tmp_path, head, base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all policy checks passed" in result.stdout
    assert "no change" in result.stdout and "review required" not in result.stdout
    assert (tmp_path / "reports" / "policy-tests.xml").exists()
    assert (tmp_path / "reports" / "policy-report.html").exists()


def test_ci_fails_on_a_syntax_error(tmp_path):
    broken = copy_policies(tmp_path)
    path = broken / "access.policy"
    path.write_text(path.read_text(encoding="utf-8").replace("permit when", "permit wen", 1),
                    encoding="utf-8")
    result = run_ci(tmp_path, broken)
    assert result.returncode == 1
    assert "!! check failed" in result.stdout and "FAILED:" in result.stdout


def test_ci_fails_on_a_failing_policy_test(tmp_path):
    broken = copy_policies(tmp_path)
    path = broken / "tests" / "access_test.toml"
    text = path.read_text(encoding="utf-8")
    assert 'expect.effect = "PERMIT"' in text
    path.write_text(text.replace('expect.effect = "PERMIT"', 'expect.effect = "DENY"', 1),
                    encoding="utf-8")
    result = run_ci(tmp_path, broken)
    assert result.returncode == 1
    assert "!! test failed" in result.stdout
    assert "!! check failed" not in result.stdout
