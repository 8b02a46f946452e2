"""`tiergate check` and `tiergate decide` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import POLICIES, REPO, make_request


def tiergate(*args, input: str | None = None):
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", *map(str, args)],
                          input=input, capture_output=True, text=True, encoding="utf-8")


def test_check_prints_a_summary(shipped_policy):
    result = tiergate("check", POLICIES)
    assert result.returncode == 0, result.stderr
    assert f"{len(shipped_policy.rules)} rules" in result.stdout
    assert f"{len(shipped_policy.catalog.datasets)} catalogued datasets" in result.stdout
    assert shipped_policy.revision in result.stdout


def test_check_reports_errors_with_the_line_and_exits_1(tmp_path):
    shutil.copytree(POLICIES, tmp_path / "p", ignore=shutil.ignore_patterns("tests"))
    grants = tmp_path / "p" / "grants.policy"
    grants.write_text(grants.read_text(encoding="utf-8").replace(
        "catalog     medical_service, public_health", "catalog     medical_servce, public_health"),
        encoding="utf-8")
    result = tiergate("check", tmp_path / "p")
    assert result.returncode == 1
    assert "grants.policy:8:15: error[TG233]" in result.stderr
    assert "did you mean medical_service?" in result.stderr
    assert "^^^^^^^^^^^^^^" in result.stderr


def test_check_json_errors(tmp_path):
    (tmp_path / "a.policy").write_text("rule x {\n", encoding="utf-8")
    result = tiergate("check", tmp_path, "--error-format", "json")
    assert result.returncode == 1
    (error,) = json.loads(result.stderr)
    # The block left open is named at its own line (TG105), not where the file ended.
    assert error["code"] == "TG105" and error["line"] == 1 and "end of the file" in error["message"]


def test_decide_the_example_request(shipped_policy):
    result = tiergate("decide", POLICIES, REPO / "examples" / "request.json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["effect"] == "PERMIT"
    assert decision["grant_id"] == "fz-2026-017"
    assert {"id": "destroy_on_expiry", "params": {"at": "2027-06-30T00:00:00+08:00"}} in decision["obligations"]
    assert decision["policy_revision"] == shipped_policy.revision


def test_decide_many_as_json_lines_keeps_order_and_flags_bad_ones():
    lines = "\n".join(json.dumps(r) for r in [
        make_request(), make_request(resource__catalog_class="genomics"),
        make_request(context__storage_region="overseas")])
    result = tiergate("decide", POLICIES, "-", input=lines)
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o.get("effect", o.get("error")) for o in out] == ["PERMIT", "invalid_request", "DENY"]
    problem = out[1]["problems"][0]
    assert problem["attribute"] == "resource.catalog_class" and problem["value"] == "genomics"
    assert "medical_service" in problem["allowed"]
    assert "request 2: resource.catalog_class 'genomics'" in result.stderr


def test_decide_a_json_array():
    result = tiergate("decide", POLICIES, input=json.dumps([make_request(), make_request(action="delete")]))
    assert result.returncode == 0
    assert [json.loads(l)["effect"] for l in result.stdout.splitlines()] == ["PERMIT", "DENY"]


def test_decide_uses_now_for_requests_without_time():
    request = json.dumps(make_request(context__time=None))
    before = tiergate("decide", POLICIES, "--now", "2027-06-29T00:00:00+08:00", input=request)
    after = tiergate("decide", POLICIES, "--now", "2027-07-01T00:00:00+08:00", input=request)
    assert json.loads(before.stdout)["effect"] == "PERMIT"
    assert json.loads(after.stdout)["effect"] == "DENY"


def test_decide_rejects_input_that_is_not_json():
    result = tiergate("decide", POLICIES, input="{not json")
    assert result.returncode == 1 and "the input is not a JSON request" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("decide",), ("check",)])
def test_usage_errors_exit_1(args):
    # README: usage errors exit 1 (argparse's own 2 would read as "findings").
    assert tiergate(*args).returncode == 1


@pytest.mark.parametrize("command", ["decide", "lint"])
def test_bad_now_is_a_usage_error_exit_1(command):
    result = tiergate(command, POLICIES, "--now", "2026-11-22", input=json.dumps(make_request()))
    assert result.returncode == 1
    assert "argument --now: '2026-11-22' is not an instant: it is not RFC 3339" in result.stderr
