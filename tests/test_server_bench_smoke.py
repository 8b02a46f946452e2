"""The service benchmark still runs end to end (its quickest mode; speed is not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from h2load_client import find_h2load, grpc_frame, parse_output  # noqa: E402

H2LOAD_OUTPUT = """finished in 4.00s, 8116.00 req/s, 5.67MB/s
requests: 24348 total, 24348 started, 24348 done, 24300 succeeded, 48 failed, 0 errored, 0 timeout
status codes: 24300 2xx, 0 3xx, 0 4xx, 48 5xx
traffic: 17.01MB (17832696) total, 94.93KB (97212) headers (space savings 96.28%), \
20.85MB (21865443) data
"""


def test_h2load_summary_and_grpc_frame_are_read_and_written_as_h2load_and_grpc_expect():
    summary = parse_output(H2LOAD_OUTPUT)
    assert (summary.req_s, summary.done, summary.succeeded, summary.failed) == (
        8116.0, 24348, 24300, 48)
    assert (summary.status_2xx, summary.data_bytes) == (24300, 21865443)
    with pytest.raises(ValueError):
        parse_output("http://127.0.0.1:1: connection refused")
    assert grpc_frame(b"\x0a\x01x") == b"\x00\x00\x00\x00\x03\x0a\x01x"


def test_server_bench_quick_run_measures_every_section(tmp_path):
    out, data = tmp_path / "server.md", tmp_path / "server.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "server_bench.py"), "--quick", "--duration", "0.5",
         "--no-envoy",
         "--out", str(out), "--json", str(data)],
        capture_output=True, text=True, encoding="utf-8", timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text(encoding="utf-8")
    assert table.strip() == done.stdout.strip()  # what is printed is what is written
    for row in ("echo server, unary", "Decide, mix (80% with context.time)",
                "echo server answering with decide_one, mix",
                "Decide, no context.time (cached)", "Decide, mix, --workers 2",
                "echo server, batches of 100", "DecideBatch, batches of 1000"):
        assert f"| {row} |" in table
    assert "≥ 80% of the echo ceiling" in table and "≥ 1.5× --workers 1" in table
    assert "≥ 90% of the echo ceiling (issue 12)" in table and "(the bound)" in table
    if find_h2load():
        for row in ("echo server, unary (h2load)", "Decide, all with context.time (h2load)",
                    "Decide, all with context.time, --workers 2 (h2load)"):
            assert f"| {row} |" in table
        assert "(Decide all with context.time, h2load client)" in table
    else:  # the native client is optional: its sections are skipped, saying why
        assert "h2load sections skipped: h2load not found (apt-get install nghttp2-client)" in table
    summary = json.loads(data.read_text(encoding="utf-8"))["summary"]
    # Every section completed calls, and batch sections count decisions per call.
    assert all(section["calls_s"] > 0 for section in summary.values())
    assert summary["batch1000"]["items_s"] == pytest.approx(summary["batch1000"]["calls_s"] * 1000)
