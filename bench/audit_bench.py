"""The audit log at scale: `tiergate audit query` on millions of records, and verify's speed.

    python bench/audit_bench.py                    # 10,000,000 records (~12 GB, ~15 min)
    python bench/audit_bench.py --records 200000   # a quick run

Builds a SQLite audit log the way the server writes it (store.append, then store.add_index in
bulk, one chain), from real decisions of the reference policies over bench/workload.py's request
mix: 2,000 distinct requests (subjects, organisations, datasets, owners, effects) spread over
three years of timestamps. Then, for each filter `audit query` offers, the median time over 5
runs of the query the CLI makes (newest-first is not offered; oldest first, LIMIT 1000), and the
time `tiergate audit verify` takes per record on a 100,000-record log. Writes
bench/results/audit.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

RESULTS = BENCH / "results" / "audit.md"
THREE_YEARS_US = 3 * 365 * 86_400_000_000


def templates(count: int):
    """(Decided, index columns) for `count` real decisions of the workload mix."""
    import workload
    from server_bench import build_requests
    from tiergate.audit import record
    from tiergate.engine import load_policy_set
    from tiergate.server import convert
    from tiergate.v1 import authorizer_pb2 as pb

    served = workload.copy_as_stated(REPO / "policies", Path(tempfile.mkdtemp()))
    policy = load_policy_set(served)
    timed, _, _ = build_requests(served, count)
    out = []
    for data in timed:
        message = pb.DecideRequest.FromString(data)
        decision, settled = policy.decide_recorded(convert.request_to_dict(message))
        out.append(record.decided(decision, settled))
    return out


def build(path: Path, count: int, decided: list, start_us: int) -> float:
    """Write `count` records into a new log at `path`; the seconds it took."""
    from tiergate.audit import record
    from tiergate.audit.merkle import leaf_hash
    from tiergate.audit.store import SQLiteStore

    store = SQLiteStore(path)
    caller = record.caller_json("ipv4:10.0.0.7:51234")
    step = THREE_YEARS_US // max(count, 1)
    began = time.perf_counter()
    batch = 20_000
    for first in range(0, count, batch):
        rows, index, rules = [], [], []
        for seq in range(first, min(first + batch, count)):
            part = decided[seq % len(decided)]
            when = start_us + seq * step
            entry = record.entry(part, time_us=when, decision_id=f"b{seq:x}",
                                 entry_point="Decide", caller=caller)
            body = entry.body('"bench"', seq)
            rows.append(("bench", seq, when, body, leaf_hash(body)))
            index.append(("bench", seq, when, entry.decision_id, part.outcome, part.subject,
                          part.org, part.dataset, part.owner, part.grant_id))
            rules.extend(("bench", seq, rule) for rule in part.rules)
        store.append(rows)
        store.add_index(index, rules)
        if first // batch % 50 == 0:
            print(f"  {first + len(rows):,} records", file=sys.stderr, flush=True)
    store.close()
    return time.perf_counter() - began


def timed_query(store, runs: int = 5, **query) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(runs):
        began = time.perf_counter()
        found = len(store.query(**query))
        times.append(time.perf_counter() - began)
    return statistics.median(times), found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, help="where to build the log (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the log afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from tiergate.audit.store import SQLiteStore
    from tiergate.audit.verify import verify_store
    from tiergate.engine.timeutil import parse_instant

    directory = args.dir or Path(tempfile.mkdtemp(prefix="tiergate-audit-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    start_us = parse_instant("2024-01-01T00:00:00Z")
    decided = templates(2000)
    path = directory / "audit.db"
    print(f"building {args.records:,} records in {path}", file=sys.stderr)
    build_s = build(path, args.records, decided, start_us)
    size = sum(f.stat().st_size for f in directory.glob("audit.db*"))

    sample = decided[17]
    month = 30 * 86_400_000_000
    middle = start_us + THREE_YEARS_US // 2
    store = SQLiteStore(path, create=False)
    rule = sample.rules[0]
    cases = [
        ("--subject", {"filters": {"subject": sample.subject}}),
        ("--org", {"filters": {"org": sample.org}}),
        ("--dataset", {"filters": {"dataset": sample.dataset}}),
        ("--owner", {"filters": {"owner": sample.owner}}),
        ("--effect DENY", {"filters": {"effect": "DENY"}}),
        ("--rule", {"filters": {}, "rule": rule}),
        ("--grant", {"filters": {"grant": next(d.grant_id for d in decided if d.grant_id)}}),
        ("--decision-id", {"filters": {"decision_id": f"b{args.records // 2:x}"}}),
        ("--since/--until (one month)", {"filters": {}, "since_us": middle,
                                         "until_us": middle + month}),
        ("--subject --since/--until (one month)", {"filters": {"subject": sample.subject},
                                                   "since_us": middle,
                                                   "until_us": middle + month}),
        ("--owner --effect DENY --since (one month)",
         {"filters": {"owner": sample.owner, "effect": "DENY"}, "since_us": middle,
          "until_us": middle + month}),
    ]
    lines = ["| query (`tiergate audit query LOG ...`, first 1,000 matches) | median ms | "
             "records returned |", "|---|---:|---:|"]
    for label, query in cases:
        seconds, found = timed_query(store, limit=1000, **query)
        lines.append(f"| {label} | {seconds * 1e3:.1f} | {found:,} |")
        print(lines[-1], file=sys.stderr, flush=True)
    store.close()

    small = directory / "verify.db"
    build(small, 100_000, decided, start_us)
    store = SQLiteStore(small, create=False)
    began = time.perf_counter()
    reports = verify_store(store)
    verify_s = time.perf_counter() - began
    store.close()
    assert not reports[0].findings

    load = " ".join(open("/proc/loadavg").read().split()[:3])
    text = "\n".join([
        f"Audit log of {args.records:,} records (one chain, SQLite WAL): built in {build_s:.0f} s "
        f"({args.records / build_s:,.0f} records/s through store.append + store.add_index in "
        f"batches of 20,000), {size / 1e9:.1f} GB on disk ({size / max(args.records, 1):.0f} "
        "bytes a record with its index rows).",
        "",
        *lines,
        "",
        f"`tiergate audit verify` (every record parsed, hashed and compared with its index, the "
        f"tree rebuilt): {verify_s / 100_000 * 1e6:.0f} µs a record on a 100,000-record log, "
        f"i.e. about {verify_s / 100_000 * args.records / 60:.0f} minutes for "
        f"{args.records:,}.",
        "",
        f"`python bench/audit_bench.py --records {args.records}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average before the "
        f"queries {load}; {time.strftime('%Y-%m-%d %H:%M')}.",
    ]) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    if not args.keep:
        for f in directory.glob("*.db*"):
            f.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
