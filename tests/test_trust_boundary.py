"""What a caller cannot steer: empty texts, times, the server's clock, the catalog, shared
decisions, and malformed input — the same on the engine, the CLI and the gRPC server."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest
from google.protobuf import timestamp_pb2

from conftest import POLICIES, make_request
from server_support import running_server, to_proto
from tiergate.engine import RequestError, compile_sources
from tiergate.engine.timeutil import parse_instant
from tiergate.v1 import authorizer_pb2 as pb

NOW = parse_instant("2026-11-22T10:00:00+08:00")


def cli_decide(*lines: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", "decide", str(POLICIES),
                           "--now", "2026-11-22T10:00:00+08:00"],
                          input="\n".join(lines).encode("utf-8", "surrogatepass"),
                          capture_output=True)


def refused(policy, request, **options) -> dict:
    with pytest.raises(RequestError) as caught:
        policy.decide(request, **options)
    return {p.attribute: p for p in caught.value.problems}


# ---- empty texts are absent, and two absent texts are never equal ------------------------

def test_two_empty_org_ids_do_not_make_the_requester_the_owner(policy):
    # An uncatalogued dataset stated with an empty owner, asked by an empty org: tampering,
    # not the owner maintaining its data.
    request = make_request(subject__org_id="", subject__org_type="individual",
                           resource__owner_org_id="", resource__tier="closed", action="update",
                           purpose="personal_use")
    decision = policy.decide(request, now=NOW)
    assert decision.effect == "DENY"
    assert "no-tampering-or-deletion" in [r.rule_id for r in decision.reasons]
    assert "owner-maintains-own-data" not in [r.rule_id for r in decision.reasons]


def test_an_empty_subject_id_is_refused_everywhere(policy):
    request = make_request(subject__id="")
    assert refused(policy, request)["subject.id"].message == "subject.id is required"
    result = cli_decide(json.dumps(request))
    assert result.returncode == 1 and b"subject.id is required" in result.stderr
    with running_server() as (_, stub, _):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(to_proto(request), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "subject.id is required" in caught.value.details()


# ---- a time is RFC 3339 and nothing else ------------------------------------------------

@pytest.mark.parametrize("text", [
    "2026-W47-7T10+08", "20261122T100000+0800", "2026-11-22T10+08:00", "2026-11-22T10:00:00+0800",
    "2026-11-22T10:00:00+08", "2026-11-22T10:00:00+08:00:30", "2026-11-22T10:00:00 +08:00",
    "2026-11-22 10:00:00+08:00", "2026-11-22T10:00:00", "２０２６-11-22T10:00:00Z",
    "2026-11-22T24:00:00Z", "2026-02-30T10:00:00Z", "2026-11-22T10:00:60Z"])
def test_times_that_are_not_rfc_3339_are_refused(policy, text):
    problem = refused(policy, make_request(context__time=text))["context.time"]
    assert problem.value == text and ("RFC 3339" in problem.message or "range" in problem.message)


@pytest.mark.parametrize("text, same_as", [
    ("2026-11-22t02:00:00z", "2026-11-22T10:00:00+08:00"),
    ("2026-11-22T02:00:00.000000001Z", "2026-11-22T10:00:00+08:00"),
    ("2026-11-21T21:00:00-05:00", "2026-11-22T10:00:00+08:00")])
def test_every_rfc_3339_form_is_accepted(text, same_as):
    assert parse_instant(text) == parse_instant(same_as)


def test_explaining_at_the_last_instant_rfc_3339_can_write_works(policy):
    decision = policy.decide(make_request(context__time="9999-12-31T23:59:59Z"), explain=True)
    assert decision.effect == "DENY"
    assert "9999-12-31T23:59:59Z" in json.dumps(decision.to_dict(), ensure_ascii=False)
    with running_server() as (_, stub, _):
        answer = stub.Decide(to_proto(make_request(context__time="9999-12-31T23:59:59Z"),
                                      explain=True), timeout=10)
        assert answer.effect == pb.DENY


@pytest.mark.parametrize("seconds, nanos", [(1_795_312_800, -1), (-2**62, 0),
                                            (253_402_300_800, 0), (0, 1_000_000_000)])
def test_a_timestamp_outside_its_range_is_invalid_argument(seconds, nanos):
    message = to_proto(make_request(context__time=None))
    message.context.time.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    with running_server() as (_, stub, _):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(message, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "context.time" in caught.value.details()
        # In a batch, the bad item gets its error and the others are still decided.
        batch = stub.DecideBatch(pb.DecideBatchRequest(
            requests=[message, to_proto(make_request())]), timeout=10)
        assert batch.results[0].error.problems[0].attribute == "context.time"
        assert batch.results[1].decision.effect == pb.PERMIT


# ---- the server's clock decides ------------------------------------------------------------

def test_a_served_decision_refuses_a_requested_time_unless_configured():
    expired = make_request(context__time="2026-05-01T10:00:00+08:00",
                           resource__id="ds-family-2024")  # fz-2025-009 was valid then
    with running_server(accept_request_time=False, clock=lambda: NOW) as (_, stub, _):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(to_proto(expired), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "context.time" in caught.value.details()
        batch = stub.DecideBatch(pb.DecideBatchRequest(requests=[to_proto(expired)]), timeout=10)
        assert batch.results[0].error.problems[0].attribute == "context.time"
        # Without a time the server's clock decides: the grant has expired.
        now = stub.Decide(to_proto(make_request(resource__id="ds-family-2024", context__time=None)),
                          timeout=10)
        assert now.effect == pb.DENY and now.unmet[0].requirement == "grant_expired"
    with running_server(accept_request_time=True) as (_, stub, _):  # what-if deployments
        assert stub.Decide(to_proto(expired), timeout=10).effect == pb.PERMIT


def test_the_cli_keeps_accepting_a_requested_time():
    result = cli_decide(json.dumps(make_request(context__time="2027-07-01T00:00:00+08:00")))
    assert json.loads(result.stdout)["effect"] == "DENY"  # fz-2026-017 expired by then


# ---- decisions are immutable ---------------------------------------------------------------

def test_a_decision_and_what_it_holds_cannot_be_changed(policy):
    first = policy.decide(make_request(), now=NOW)
    destroy = next(o for o in first.obligations if o.id == "destroy_on_expiry")
    with pytest.raises(TypeError):
        destroy.params["at"] = "2099-01-01T00:00:00Z"
    with pytest.raises(AttributeError):
        first.effect = "PERMIT"
    explained = policy.decide(make_request(), now=NOW, explain=True)
    with pytest.raises(TypeError):
        explained.explanation["effect"] = "PERMIT"
    again = policy.decide(make_request(), now=NOW)
    assert dict(next(o for o in again.obligations if o.id == "destroy_on_expiry").params) == \
        {"at": "2027-06-30T00:00:00+08:00"}


# ---- bad input is an error naming the problem, and a short one ----------------------------

def test_a_long_bad_value_is_quoted_short(policy):
    problem = refused(policy, make_request(purpose="x" * 4000))["purpose"]
    assert len(problem.message) < 400 and "4000 characters" in problem.message
    with running_server() as (_, stub, _):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(to_proto(make_request(purpose="x" * 4000)), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(caught.value.details()) < 400


def test_json_with_a_key_twice_is_refused():
    text = json.dumps(make_request()).replace('"storage_region": "domestic"',
                                              '"storage_region": "overseas", "storage_region": "domestic"')
    result = cli_decide(text)
    assert result.returncode == 1 and b"'storage_region' appears twice" in result.stderr
    assert result.stdout == b""  # nothing decided, neither DENY nor PERMIT


def test_unreadable_lines_are_errors_in_place_and_the_rest_is_decided():
    good = json.dumps(make_request())
    deep = "[" * 1000 + "]" * 1000
    surrogate = '{"subject": {"id": "\\ud800"}}'
    result = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "decide", str(POLICIES), "--now",
         "2026-11-22T10:00:00+08:00"],
        input=b"\n".join([good.encode(), deep.encode(), surrogate.encode(), b'{"a": "\xff"}', good.encode()]),
        capture_output=True)
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o.get("effect") or o["error"] for o in outputs] == [
        "PERMIT", "unreadable_request", "unreadable_request", "unreadable_request", "PERMIT"]
    assert "nested more than" in outputs[1]["message"]
    assert "lone surrogate" in outputs[2]["message"]
    assert "not UTF-8" in outputs[3]["message"]
    assert result.returncode == 1 and b"Traceback" not in result.stderr


# ---- the catalog decides what a catalogued dataset is ---------------------------------------

def test_a_request_lying_about_a_catalogued_dataset_is_refused_naming_both_values(shipped_policy):
    problem = refused(shipped_policy, make_request(resource__id="ds-emr-2025",
                                                   resource__tier="open"))["resource.tier"]
    assert problem.value == "open" and problem.allowed == ("closed",)
    assert "'open'" in problem.message and "'closed'" in problem.message
    # ... and over gRPC, where a stated false is told apart from an unset bool.
    with running_server(POLICIES) as (_, stub, _):
        message = to_proto(make_request(resource__id="ds-cardio-cases-2025"))
        message.resource.personal = False
        with pytest.raises(grpc.RpcError) as caught:
            stub.Decide(message, timeout=10)
        assert "resource.personal" in caught.value.details()
        message.resource.ClearField("personal")
        assert stub.Decide(message, timeout=10).effect == pb.PERMIT


def test_a_catalog_data_file_is_checked_line_by_line(policy):
    sources = dict(policy.sources)
    sources["extra.catalog.csv"] = (
        "id,catalog_class,tier,personal\n"
        "ds-new-1,public_health,open,false\n"
        "ds-new-2,genomics,open,false\n"
        "ds-new-3,public_health,open,maybe\n"
        "ds-cardio-2025,public_health,open,false\n"
        "ds-new-4,public_health\n")
    sources["bad-header.catalog.csv"] = "id,tier,colour\nds-x,open,red\n"
    sources["more.catalog.jsonl"] = ('{"id": "ds-j1", "catalog_class": "basic_info", "tier": "open"}\n'
                                     '{"id": "ds-j2", "id": "ds-j3"}\n')
    from tiergate.engine import DiagnosticError
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    found = {(d.span.file, d.span.line, d.code) for d in caught.value.diagnostics if d.span}
    assert ("extra.catalog.csv", 3, "TG242") in found          # genomics is undeclared
    assert ("extra.catalog.csv", 4, "TG243") in found          # maybe is not a boolean
    assert ("extra.catalog.csv", 5, "TG240") in found          # listed twice
    assert ("extra.catalog.csv", 6, "TG244") in found          # too few fields
    assert ("bad-header.catalog.csv", 1, "TG244") in found     # no catalog_class, colour
    assert ("more.catalog.jsonl", 2, "TG244") in found         # a key twice
    # The good rows alone load, and JSON lines count as much as CSV.
    sources.pop("bad-header.catalog.csv")
    sources["extra.catalog.csv"] = "id,catalog_class,tier\nds-new-1,public_health,open\n"
    sources["more.catalog.jsonl"] = '{"id": "ds-j1", "catalog_class": "basic_info", "tier": "open"}\n'
    loaded = compile_sources(sources)
    assert loaded.catalog.datasets["ds-j1"].tier == "open"
    new = make_request(subject__org_type="individual", purpose="personal_use")
    new["resource"] = {"id": "ds-new-1"}
    assert loaded.decide(new, now=NOW).effect == "PERMIT"


def test_a_grant_must_name_a_catalogued_dataset_it_can_cover(policy):
    from tiergate.engine import DiagnosticError
    sources = dict(policy.sources)
    sources["more-grants.policy"] = """
grant g-typo { grantee fzu tier closed catalog public_health dataset ds-epidemc-2025
  purpose scientific_research action query approved_by data_operator agreement "G"
  expires 2027-01-01T00:00:00Z }
grant g-wrong-tier { grantee fzu tier conditional catalog public_health dataset ds-epidemic-2025
  purpose scientific_research action query approved_by data_operator agreement "G"
  expires 2027-01-01T00:00:00Z }
"""
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    by_code = {d.code: d for d in caught.value.diagnostics}
    assert "ds-epidemc-2025" in by_code["TG245"].message
    assert "did you mean ds-epidemic-2025" in by_code["TG245"].help
    assert "closed" in by_code["TG246"].help


def test_a_dataset_block_is_checked_like_a_grant(policy):
    from tiergate.engine import DiagnosticError
    sources = dict(policy.sources)
    sources["more.policy"] = ("dataset ds-b1 {\n  catalog genomic\n  personal yes\n}\n"
                              "catalog {\n  uncatalogued ignore\n}\n")
    with pytest.raises(DiagnosticError) as caught:
        compile_sources(sources)
    found = {(d.code, d.span.line) for d in caught.value.diagnostics}
    assert {("TG241", 1), ("TG242", 2), ("TG243", 3), ("TG247", 5), ("TG247", 6)} <= found
    messages = " ".join(d.message + " " + (d.help or "") for d in caught.value.diagnostics)
    assert "has no tier" in messages and "'genomic' is not a declared" in messages
    assert "the catalog settings are declared twice" in messages  # catalog.policy has one


def test_a_failed_time_or_text_test_is_named_as_an_unmet_condition(policy):
    vocabulary = policy.sources[str(POLICIES / "vocabulary.policy")]
    pilot = compile_sources({"vocabulary.policy": vocabulary, "rules.policy": """
rule pilot {
  cite "试点通知 第三条"
  message zh "试点期内开放" en "Open during the pilot"
  permit when resource.tier == open and context.time < 2026-01-01T00:00:00+08:00
}
"""})
    request = make_request(resource__tier="open", context__time=None)
    decision = pilot.decide(request, now=NOW)
    assert decision.effect == "DENY"
    [unmet] = decision.unmet
    assert (unmet.rule_id, unmet.requirement, unmet.citation) == ("pilot", "condition", "试点通知 第三条")
    assert "context.time < 2025-12-31T16:00:00Z" in unmet.message_en and unmet.message_zh
    assert pilot.decide(request, now=NOW - 400 * 86_400_000_000).effect == "PERMIT"


def test_a_default_rule_whose_obligations_read_the_request_keeps_them(policy):
    sources = dict(policy.sources)
    name = str(POLICIES / "prohibitions.policy")
    sources[name] = sources[name].replace(
        "  deny otherwise\n}", "  deny otherwise\n  oblige audit, cite_source(dataset: resource.id, "
        "owner: resource.owner_org_id, obtained: context.time)\n}")
    decision = compile_sources(sources).decide(make_request(resource__id="ds-drug-2026"), now=NOW)
    assert [r.rule_id for r in decision.reasons] == ["not-authorised"]
    assert {o.id: dict(o.params) for o in decision.obligations}["cite_source"] == {
        "dataset": "ds-drug-2026", "owner": "fz-drug-admin", "obtained": "2026-11-22T02:00:00Z"}
    assert [u.requirement for u in decision.unmet] == ["grant_missing"]
