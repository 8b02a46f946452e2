"""`tiergate gateway`: check the mapping, or try one HTTP request as Envoy would send it."""

from __future__ import annotations

import json

from tiergate.cli.main import main

from conftest import POLICIES

DATASET = "/datasets/ds-cardio-2025"
HEADERS = ["-H", "x-subject-id: u-1042", "-H", "x-org-type: university",
           "-H", "x-region: southeast_park", "-H", "x-purpose: scientific_research",
           "-H", "x-storage-region: domestic", "-H", "x-real-name-verified: true",
           "-H", "x-deidentified: true"]


def test_checks_the_shipped_mapping(capsys):
    assert main(["gateway", str(POLICIES)]) == 0
    assert "4 routes" in capsys.readouterr().out


def test_bad_mapping_exits_1_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "gateway.toml"
    bad.write_text("[[routes]]\nname = 'x'\npth = '/x'\n", encoding="utf-8")
    assert main(["gateway", str(POLICIES), "--mapping", str(bad), "--error-format", "plain"]) == 1
    assert f"{bad}:3:1: error[TG703]: routes[1].pth: unknown field" in capsys.readouterr().err


def test_undeclared_value_in_mapping_exits_2(tmp_path, capsys):
    text = (POLICIES / "gateway.toml").read_text(encoding="utf-8")
    mapping = tmp_path / "gateway.toml"
    mapping.write_text(text.replace('GET    = "query"', 'GET    = "read"'), encoding="utf-8")
    assert main(["gateway", str(POLICIES), "--mapping", str(mapping)]) == 2
    assert "action 'read' is not declared" in capsys.readouterr().err


def test_tries_a_request_and_shows_the_upstream_headers(capsys):
    argv = ["gateway", str(POLICIES), "GET", DATASET, *HEADERS, "--claims", '{"org_id": "fzu"}',
            "--now", "2026-11-22T10:00:00+08:00", "--format", "json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["request"]["subject"]["org_id"] == "fzu"
    headers = {h["header"]["key"]: h["header"]["value"]
               for h in out["response"]["ok_response"]["headers"]}
    assert headers["x-tiergate-grant-id"] == "fz-2026-017"


def test_tries_a_request_the_mapping_cannot_complete(capsys):
    assert main(["gateway", str(POLICIES), "GET", DATASET, "-H", "x-org-type: university"]) == 0
    out = capsys.readouterr().out
    assert "HTTP 403" in out and "mapping: header x-region is missing" in out
