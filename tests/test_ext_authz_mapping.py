"""The gateway mapping file: a bad file is refused at load with file, line and field; a good one
translates HTTP requests with route > claim > header > default precedence."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.engine import DiagnosticError
from tiergate.server.mapping import MappingError, TranslationCache, load_mapping, parse_mapping

from conftest import POLICIES

# A minimal complete mapping; tests break one thing at a time.
GOOD = textwrap.dedent("""\
    [jwt]
    payload = "jwt_payload"

    [actions]
    GET = "query"

    [attributes]
    subject.id       = { claim = "sub", header = "x-subject-id" }
    subject.org_type = { claim = "org_type", header = "x-org-type" }
    subject.region   = { header = "x-region", default = "fuzhou" }
    purpose          = { header = "x-purpose" }
    context.storage_region = { header = "x-storage-region" }

    [[routes]]
    name = "dataset"
    path = "/datasets/{catalog_class}/{tier}/{dataset_id}"
    """)

HEADERS = {"x-subject-id": "u-1", "x-org-type": "university", "x-purpose": "education",
           "x-storage-region": "domestic"}


def errors(text: str) -> list:
    with pytest.raises(DiagnosticError) as caught:
        parse_mapping(text, "policies/gateway.toml")
    return list(caught.value.diagnostics)


def only_error(text: str):
    [diagnostic] = errors(text)
    assert diagnostic.span is None or diagnostic.span.file == "policies/gateway.toml"
    return diagnostic


def test_shipped_mapping_loads_and_uses_only_declared_values(policy):
    mapping = load_mapping(POLICIES / "gateway.toml")
    assert mapping.undeclared_values(policy.vocabularies) == []
    assert [r.name for r in mapping.routes][:2] == ["dataset-analyze", "dataset-download"]


def test_policy_loader_ignores_the_mapping(policy):
    assert not any(name.endswith(".toml") for name in policy.sources)


def test_undeclared_values_are_reported_against_a_policy(policy):
    text = GOOD.replace('GET = "query"', 'GET = "read"')
    [warning] = parse_mapping(text, "gw.toml").undeclared_values(policy.vocabularies)
    assert "action 'read' is not declared" in warning and "query" in warning


def test_toml_syntax_error_has_line_and_column():
    d = only_error(GOOD.replace('GET = "query"', 'GET = "query'))
    assert d.code == "TG702" and d.span.line == 5 and "TOML" in d.message


def test_unknown_route_field_names_field_line_and_suggestion():
    d = only_error(GOOD.replace('path = "/datasets', 'pth = "/datasets'))
    assert d.code == "TG703"
    assert d.message == "routes[1].pth: unknown field"
    assert d.help == "did you mean path?"
    assert d.span.line == 16 and d.span.column == 1


def test_unknown_attribute_is_refused_with_suggestion():
    d = only_error(GOOD.replace("subject.org_type =", "subject.org_typ ="))
    assert d.code == "TG707" and "subject.org_typ is not a request attribute" in d.message
    assert d.help == "did you mean subject.org_type?" and d.span.line == 9


def test_route_that_leaves_a_required_attribute_unset_is_refused():
    d = only_error(GOOD.replace("/{tier}/{dataset_id}", "/conditional"))
    assert d.code == "TG710"
    assert "route dataset: nothing gives resource.tier" in d.message and d.span.line == 14


def test_route_naming_the_dataset_leaves_its_class_and_tier_to_the_catalog():
    mapping = parse_mapping(GOOD.replace("/{catalog_class}/{tier}/{dataset_id}", "/{dataset_id}"))
    request = mapping.translate(method="GET", path="/datasets/ds-cardio-2025", headers=HEADERS)
    assert request["resource"] == {"id": "ds-cardio-2025"}


def test_route_constant_can_fill_the_gap():
    mapping = parse_mapping(GOOD.replace("{tier}/", "conditional/") + '[routes.set]\nresource.tier = "conditional"\n')
    request = mapping.translate(method="GET", path="/datasets/public_health/conditional/d1",
                                headers=HEADERS)
    assert request["resource"]["tier"] == "conditional"


def test_unknown_placeholder_is_refused():
    d = only_error(GOOD.replace("{catalog_class}", "{catalog}"))
    assert d.code == "TG712" and "{catalog} names no request attribute" in d.message
    assert d.help == "did you mean catalog_class?"
    assert (d.span.line, d.span.column, d.span.end_column) == (16, 19, 28)  # under {catalog}


def test_path_and_regex_together_are_refused():
    d = only_error(GOOD + "regex = '/x/(?P<tier>.*)'\n")
    assert d.code == "TG708" and "exactly one of path" in d.message


def test_bad_regex_is_refused():
    text = GOOD.replace('path = "/datasets/{catalog_class}/{tier}/{dataset_id}"',
                        "regex = '/d/(?P<catalog_class>[a-z'")
    assert any(d.code == "TG711" and "not a valid regular expression" in d.message
               for d in errors(text))


def test_claims_without_jwt_table_are_refused():
    d = only_error(GOOD.replace('[jwt]\npayload = "jwt_payload"\n', ""))
    assert d.code == "TG705" and "[jwt]" in d.message


def test_wrongly_typed_constant_is_refused():
    d = only_error(GOOD + '[routes.set]\nresource.personal = "yes"\n')
    assert d.code == "TG709" and "resource.personal = 'yes' is not true or false" in d.message


def test_source_with_an_unknown_key_is_refused():
    d = only_error(GOOD.replace('{ header = "x-purpose" }', '{ hedaer = "x-purpose" }'))
    assert d.code == "TG703" and d.message == "attributes.purpose.hedaer: unknown field"
    assert d.help == "did you mean header?" and d.span.line == 11


def test_several_errors_are_all_reported_sorted_by_line():
    text = GOOD.replace("subject.org_type =", "subject.org_typ =").replace("{tier}", "{teir}")
    found = errors(text)
    # …and not the "nothing gives" errors that follow from them.
    assert [d.code for d in found] == ["TG707", "TG712"]
    assert [d.span.line for d in found] == sorted(d.span.line for d in found)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DiagnosticError) as caught:
        load_mapping(tmp_path / "gateway.toml")
    assert "mapping file not found" in caught.value.diagnostics[0].message


def test_precedence_route_then_claim_then_header_then_default():
    mapping = parse_mapping(GOOD)
    headers = dict(HEADERS, **{"x-org-type": "individual"})
    request = mapping.translate(method="GET", path="/datasets/basic_info/open/d1?q=1",
                                headers=headers, claims={"org_type": "university"})
    assert request["subject"]["org_type"] == "university"   # claim over header
    assert request["subject"]["region"] == "fuzhou"          # default
    assert request["subject"]["id"] == "u-1"                 # header where no claim
    assert request["resource"] == {"catalog_class": "basic_info", "tier": "open", "id": "d1"}
    assert request["action"] == "query"
    assert "time" not in request.get("context", {})          # absent: the server's clock


def test_nested_claim_path_and_namespaced_claim():
    text = GOOD.replace('claim = "org_type"', 'claim = ["org", "type"]').replace(
        'claim = "sub"', 'claim = "https://idp.example.cn/uid"')
    mapping = parse_mapping(text)
    request = mapping.translate(
        method="GET", path="/datasets/basic_info/open/d1", headers={**HEADERS, "x-org-type": "x"},
        claims={"org": {"type": "regulator"}, "https://idp.example.cn/uid": "u-7"})
    assert request["subject"]["org_type"] == "regulator" and request["subject"]["id"] == "u-7"


def test_unmapped_method_is_refused_naming_it():
    with pytest.raises(MappingError) as caught:
        parse_mapping(GOOD).translate(method="PUT", path="/datasets/a/b/c", headers=HEADERS)
    [problem] = caught.value.problems
    assert problem.message_en == "mapping: no action for method PUT on route dataset"
    assert problem.attribute == "action" and "PUT" in problem.message_zh


def test_values_translate_the_gateways_words(policy):
    text = GOOD.replace('{ claim = "org_type", header = "x-org-type" }',
                        '{ claim = "org_type", header = "x-org-type", values = { "高校" = "university", UNIV = "university" } }')
    mapping = parse_mapping(text)
    path = "/datasets/basic_info/open/d1"
    by_header = mapping.translate(method="GET", path=path, headers={**HEADERS, "x-org-type": "高校"})
    by_claim = mapping.translate(method="GET", path=path, headers=HEADERS, claims={"org_type": "UNIV"})
    assert by_header["subject"]["org_type"] == by_claim["subject"]["org_type"] == "university"
    # A word not listed passes unchanged, and the policy's vocabulary then decides.
    assert mapping.translate(method="GET", path=path, headers=HEADERS)["subject"]["org_type"] == "university"
    bad = parse_mapping(text.replace('UNIV = "university"', 'UNIV = "univ"'))
    [warning] = bad.undeclared_values(policy.vocabularies)
    assert "subject.org_type 'univ' is not declared" in warning


def test_an_encoded_slash_in_a_placeholder_is_refused():
    mapping = parse_mapping(GOOD.replace("/{catalog_class}/{tier}/{dataset_id}", "/{dataset_id}"))
    with pytest.raises(MappingError) as caught:
        mapping.translate(method="GET", path="/datasets/ds-1%2F..%2Fds-2", headers=HEADERS)
    assert "decodes to a slash" in str(caught.value)
    assert mapping.translate(method="GET", path="/datasets/ds-1", headers=HEADERS)["resource"] == {"id": "ds-1"}


# -- TranslationCache: what ext_authz over HTTP reuses between requests

def _fresh_and_cached(mapping, cache, method, path, headers, claims=None):
    fresh = mapping.translate(method=method, path=path, headers=headers, claims=claims)
    cached = cache.translate(mapping, method, path, headers, lambda m: claims)
    return fresh, cached


_HEADER_VALUES = st.one_of(st.none(), st.sampled_from(["", " ", "university", "hospital",
                                                        "education", "domestic", "true",
                                                        "高校", "fuzhou"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST", "get"]),
                          st.sampled_from(["/datasets/basic_info/open/ds-1",
                                           "/datasets/basic_info/closed/ds-2",
                                           "/datasets/basic_info/open/ds-%2F1", "/other"]),
                          st.fixed_dictionaries({}, optional={
                              name: _HEADER_VALUES for name in
                              ("x-subject-id", "x-org-type", "x-region", "x-purpose",
                               "x-storage-region", "x-unread")})),
                min_size=1, max_size=12))
def test_a_cached_translation_is_always_the_one_the_mapping_would_make(requests):
    mapping, cache = parse_mapping(GOOD), TranslationCache(size=4)
    for method, path, headers in requests:
        headers = {k: v for k, v in headers.items() if v is not None}
        try:
            fresh = mapping.translate(method=method, path=path, headers=headers)
        except MappingError as error:
            with pytest.raises(MappingError) as again:
                cache.translate(mapping, method, path, headers, lambda m: None)
            assert again.value.problems == error.problems
        else:
            assert cache.translate(mapping, method, path, headers, lambda m: None) == fresh


def test_a_repeated_request_is_translated_once_and_a_new_mapping_starts_afresh():
    mapping, cache = parse_mapping(GOOD), TranslationCache()
    path = "/datasets/basic_info/open/ds-1"
    first = cache.translate(mapping, "GET", path, HEADERS, lambda m: None)
    assert cache.translate(mapping, "GET", path, dict(HEADERS), lambda m: None) is first
    unread = {**HEADERS, "x-request-id": "another"}  # a header no attribute reads
    assert cache.translate(mapping, "GET", path, unread, lambda m: None) is first
    other = cache.translate(mapping, "GET", path, {**HEADERS, "x-purpose": "research"},
                            lambda m: None)
    assert other["purpose"] == "research" and first["purpose"] == "education"
    reloaded = parse_mapping(GOOD.replace('default = "fuzhou"', 'default = "xiamen"'))
    again = cache.translate(reloaded, "GET", path, HEADERS, lambda m: None)
    assert again is not first and again["subject"]["region"] == "xiamen"


def test_the_forwarded_payload_is_part_of_what_a_translation_depends_on():
    mapping = parse_mapping(GOOD)
    assert "x-jwt-payload" in mapping.headers_read
    cache, path = TranslationCache(), "/datasets/basic_info/open/ds-1"
    one = cache.translate(mapping, "GET", path, {**HEADERS, "x-jwt-payload": "a"},
                          lambda m: {"org_type": "hospital"})
    two = cache.translate(mapping, "GET", path, {**HEADERS, "x-jwt-payload": "b"},
                          lambda m: {"org_type": "regulator"})
    assert (one["subject"]["org_type"], two["subject"]["org_type"]) == ("hospital", "regulator")


def test_deciding_does_not_change_a_shared_translation(policy):
    import copy

    mapping = load_mapping(POLICIES / "gateway.toml")
    claims = {"sub": "u-1042", "org_id": "fzu", "org_type": "university",
              "real_name_verified": True}
    translated = TranslationCache().translate(
        mapping, "GET", "/datasets/ds-cardio-2025",
        {"x-purpose": "scientific_research", "x-storage-region": "domestic",
         "x-deidentified": "true", "x-region": "southeast_park"}, lambda m: claims)
    before = copy.deepcopy(translated)
    policy.decide(translated)
    policy.decide_recorded(translated)
    assert translated == before
