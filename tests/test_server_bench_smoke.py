"""The service benchmark still runs end to end (its quickest mode; speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_server_bench_quick_run_measures_every_section(tmp_path):
    out, data = tmp_path / "server.md", tmp_path / "server.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "server_bench.py"), "--quick", "--duration", "0.5",
         "--out", str(out), "--json", str(data)],
        capture_output=True, text=True, encoding="utf-8", timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text(encoding="utf-8")
    assert table.strip() == done.stdout.strip()  # what is printed is what is written
    for row in ("echo server, unary", "Decide, mix (80% with context.time)",
                "Decide, no context.time (cached)", "Decide, mix, --workers 2",
                "echo server, batches of 100", "DecideBatch, batches of 1000"):
        assert f"| {row} |" in table
    assert "≥ 80% of the echo ceiling" in table and "≥ 1.5× --workers 1" in table
    summary = json.loads(data.read_text(encoding="utf-8"))["summary"]
    # Every section completed calls, and batch sections count decisions per call.
    assert all(section["calls_s"] > 0 for section in summary.values())
    assert summary["batch1000"]["items_s"] == pytest.approx(summary["batch1000"]["calls_s"] * 1000)
