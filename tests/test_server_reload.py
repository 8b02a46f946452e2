"""Policy changes while serving, and the decision cache: never a failed call, never a stale answer."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import grpc

from conftest import make_request
from server_support import (copy_policies, engine_summary, proto_summary, running_server,
                            to_proto, write_atomically)
from tiergate.engine import load_policy_set
from tiergate.engine.timeutil import parse_instant
from tiergate.server.reload import PolicyWatcher
from tiergate.v1 import authorizer_pb2 as pb

GRANT_LINE = "  action      query, analyze\n  approved_by data_operator\n  agreement   \"FZ-2026-017\""
EXPIRY_LINE = "  expires     2027-06-30T00:00:00+08:00\n}\n\ngrant fz-2026-021"
EXPIRY = parse_instant("2027-06-30T00:00:00+08:00")  # fz-2026-017's expiry

TIMED = [make_request(), make_request(action="delete"), make_request(action="analyze"),
         make_request(resource__tier="open", action="copy")]
TIMELESS = [make_request(context__time=None), make_request(context__time=None, action="analyze")]
SERVER_NOW = parse_instant("2026-11-22T10:00:00.250+08:00")


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, f"the reference policy changed: {old!r} not found"
    return text.replace(old, new, 1)


def _wait_for(condition, what: str, limit: float = 15.0) -> None:
    """Poll until condition() holds; a bounded wait, not a timing assertion."""
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.02)


def _files(policies: Path) -> dict[str, str]:
    """Every file of a policy set: policy files and catalog data files."""
    return {p.name: p.read_text(encoding="utf-8")
            for p in [*policies.glob("*.policy"), *policies.glob("*.catalog.csv")]}


def _states(policies: Path) -> dict[str, dict[str, str]]:
    """Whole policy sets to deploy one after another: {state: {file name: text}}."""
    original = _files(policies)
    fewer_actions = dict(original, **{"grants.policy": _edit(
        original["grants.policy"], GRANT_LINE, GRANT_LINE.replace("query, analyze", "analyze"))})
    broken = dict(fewer_actions, **{"access.policy": original["access.policy"]
                                    + "\nrule half-written {\n  permit when resource.tier ==\n"})
    later_expiry = dict(original, **{"grants.policy": _edit(
        original["grants.policy"], EXPIRY_LINE, EXPIRY_LINE.replace("2027-06-30", "2027-09-30"))})
    return {"fewer_actions": fewer_actions, "broken": broken, "later_expiry": later_expiry}


def _deploy(policies: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        if (policies / name).read_text(encoding="utf-8") != text:
            write_atomically(policies / name, text)


def test_reloads_under_load_never_fail_a_call_nor_mix_policies(tmp_path):
    policies = copy_policies(tmp_path)
    states = _states(policies)
    # The engine's own answer for every policy set that compiles, keyed by revision.
    engines = {}
    for name, files in [("original", _files(policies)),
                        ("fewer_actions", states["fewer_actions"]),
                        ("later_expiry", states["later_expiry"])]:
        directory = tmp_path / "states" / name
        directory.mkdir(parents=True)
        for file_name, text in files.items():
            (directory / file_name).write_text(text, encoding="utf-8")
        engine = load_policy_set(directory)
        engines[engine.revision] = engine
    assert len(engines) == 3

    answers: list = []  # (request, decision) from every call
    batches: list = []  # the revisions within each batch
    failures: list = []
    stop = threading.Event()

    def client(stub, offset: int) -> None:
        for turn in range(4000):  # bounded; normally stopped by `stop` long before
            if stop.is_set():
                return
            try:
                if turn % 5 == 4:
                    requests = TIMED + TIMELESS
                    response = stub.DecideBatch(pb.DecideBatchRequest(
                        requests=[to_proto(r) for r in requests]), timeout=10)
                    decisions = [r.decision for r in response.results]
                    answers.extend(zip(requests, decisions))
                    batches.append({d.policy_revision for d in decisions})
                else:
                    request = (TIMED + TIMELESS)[(turn + offset) % 6]
                    answers.append((request, stub.Decide(to_proto(request), timeout=10)))
            except grpc.RpcError as error:
                failures.append((error.code(), error.details()))

    # A fixed server clock: the timeless requests' decisions (cite_source shows the second
    # decided at) are then the engine's at the same instant.
    with running_server(policies, reload_interval=0.02, clock=lambda: SERVER_NOW) as (_, stub, _):
        threads = [threading.Thread(target=client, args=(stub, i)) for i in range(3)]
        for thread in threads:
            thread.start()

        def revision() -> pb.PolicyInfo:
            return stub.GetPolicyInfo(pb.GetPolicyInfoRequest())

        def calls_continue() -> None:
            seen = len(answers)
            _wait_for(lambda: len(answers) >= seen + 30, "calls after a reload")

        try:
            calls_continue()
            for name in ("fewer_actions", "broken", "later_expiry"):
                _deploy(policies, states[name])
                if name == "broken":
                    _wait_for(lambda: revision().HasField("last_reload_error"), "the reload error")
                    info = revision()
                    assert info.policy_revision in engines  # the last good one still serves
                    assert any("access.policy" in line for line in info.last_reload_error.diagnostics)
                else:
                    target = next(r for r, e in engines.items()
                                  if e.sources and _same_texts(e, states[name]))
                    _wait_for(lambda: revision().policy_revision == target, f"state {name}")
                    assert not revision().HasField("last_reload_error")
                calls_continue()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

    assert failures == []
    assert {d.policy_revision for _, d in answers} == set(engines)  # every state was served
    for request, decision in answers:
        engine = engines[decision.policy_revision]  # KeyError: a revision never loaded whole
        assert proto_summary(decision) == engine_summary(engine.decide(request, now=SERVER_NOW)), \
            request
    assert all(len(revisions) == 1 for revisions in batches)


def _same_texts(engine, files: dict[str, str]) -> bool:
    return {Path(name).name: text for name, text in engine.sources.items()} == files


class FakeClock:
    """The server's clock for requests without context.time (µs)."""

    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_cache_never_serves_past_a_grants_expiry():
    clock = FakeClock(EXPIRY - 1_000_000)
    request = to_proto(make_request(context__time=None))
    with running_server(clock=clock) as (running, stub, _):
        first = stub.Decide(request)
        second = stub.Decide(request)
        cache = running.holder.current.cache
        assert (first.effect, second.effect) == (pb.PERMIT, pb.PERMIT)
        assert cache.hits == 1  # the second answer came from the cache
        clock.now = EXPIRY  # the grant no longer applies from this instant on
        after = stub.Decide(request)
        assert after.effect == pb.DENY
        assert after.grant_id == ""


def test_cache_is_not_served_before_the_instant_it_was_decided():
    clock = FakeClock(EXPIRY)
    request = to_proto(make_request(context__time=None))
    with running_server(clock=clock) as (running, stub, _):
        assert stub.Decide(request).effect == pb.DENY  # the grant has expired
        clock.now = EXPIRY - 1_000_000  # the clock is stepped back (NTP): the grant applies
        assert stub.Decide(request).effect == pb.PERMIT
        assert running.holder.current.cache.hits == 0


def test_requests_with_a_time_are_not_cached():
    with running_server() as (running, stub, _):
        for _ in range(2):
            stub.Decide(to_proto(make_request()))
        assert len(running.holder.current.cache) == 0


def test_reload_drops_the_cache(tmp_path):
    policies = copy_policies(tmp_path)
    clock = FakeClock(EXPIRY - 86_400_000_000)
    request = to_proto(make_request(context__time=None))
    with running_server(policies, clock=clock) as (running, stub, _):
        watcher = PolicyWatcher(running.holder, interval=1)  # polled by hand: no waiting
        before = stub.Decide(request)
        assert stub.Decide(request).effect == before.effect == pb.PERMIT
        assert running.holder.current.cache.hits == 1
        grants = policies / "grants.policy"
        text = grants.read_text(encoding="utf-8")
        write_atomically(grants, _edit(text, GRANT_LINE,
                                       GRANT_LINE.replace("query, analyze", "analyze")))
        watcher.poll()  # first sight of the change: wait for it to settle
        assert watcher.poll() is True
        after = stub.Decide(request)
        assert after.effect == pb.DENY
        assert after.policy_revision != before.policy_revision


def test_broken_edit_keeps_serving_and_is_reported_until_fixed(tmp_path, policy, caplog):
    policies = copy_policies(tmp_path)
    with running_server(policies) as (running, stub, _):
        watcher = PolicyWatcher(running.holder, interval=1)
        access = policies / "access.policy"
        good = access.read_text(encoding="utf-8")
        write_atomically(access, good.replace("permit when resource.tier == open",
                                              "permit when resource.tier === open", 1))
        watcher.poll()
        assert watcher.poll() is False
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert info.policy_revision == policy.revision
        assert "still serving" in info.last_reload_error.message
        assert any("access.policy" in line for line in info.last_reload_error.diagnostics)
        assert "policy reload failed; still serving" in caplog.text
        assert stub.Decide(to_proto(make_request())).effect == pb.PERMIT
        write_atomically(access, good)
        watcher.poll()
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert not info.HasField("last_reload_error")
        assert info.policy_revision == policy.revision


def test_policy_dir_removed_keeps_serving(tmp_path):
    policies = copy_policies(tmp_path)
    with running_server(policies) as (running, stub, _):
        watcher = PolicyWatcher(running.holder, interval=1)
        shutil.rmtree(policies)
        assert watcher.poll() is False
        info = stub.GetPolicyInfo(pb.GetPolicyInfoRequest())
        assert "not a directory" in "\n".join(info.last_reload_error.diagnostics)
        assert stub.Decide(to_proto(make_request())).effect == pb.PERMIT


def test_a_reload_while_serving_leaves_the_garbage_collector_on(tmp_path, monkeypatch):
    """The collector pause that speeds up a load is process-wide; while other threads serve
    calls, a reload must not take it from them."""
    import gc

    paused = []
    monkeypatch.setattr(gc, "disable", lambda: paused.append(True))
    policies = copy_policies(tmp_path)
    with running_server(policies) as (running, stub, _):
        paused.clear()  # the load before serving may pause it
        watcher = PolicyWatcher(running.holder, interval=1)
        grants = policies / "grants.policy"
        text = grants.read_text(encoding="utf-8")
        write_atomically(grants, _edit(text, GRANT_LINE,
                                       GRANT_LINE.replace("query, analyze", "analyze")))
        watcher.poll()
        assert watcher.poll() is True  # reloaded
    assert paused == []
