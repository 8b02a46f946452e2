"""The request reader's fast path reads exactly what the careful reader reads.

`RequestReader.read` tries generated straight-line code first and falls back to the careful
reader (which words the errors). A request must get the same values, or the same errors,
whichever way it goes: these tests compare the two on well-formed and broken requests.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BASE_REQUEST, make_request
from tiergate.engine import RequestError

ODD_VALUES = [None, "", "bogus", "medical_servce", 0, 1, True, False, [], {}, ["query"],
              1.5, "2026-11-22T10:00:00", "2026-13-01T00:00:00Z", "2026-11-22T10:00:00Z",
              "query", "open", "fzu", "scientific_research", "domestic"]
PATHS = [("subject", k) for k in BASE_REQUEST["subject"]] + \
        [("resource", k) for k in BASE_REQUEST["resource"]] + \
        [("context", k) for k in BASE_REQUEST["context"]] + \
        [(None, "action"), (None, "purpose"), (None, "subject"), (None, "resource"),
         (None, "context"), ("subject", "nickname"), (None, "tenant")]


def outcome(read, request):
    try:
        return ("values", read(request))
    except RequestError as error:
        return ("error", error.to_dict())


def careful(policy, request):
    return outcome(policy._reader._read_carefully, request)


def careful_then_catalog(policy, request):
    def read(request):
        values = policy._reader._read_carefully(request)
        policy._reader._settle_dataset(values)
        return values
    return outcome(read, request)


@st.composite
def requests(draw):
    request = copy.deepcopy(BASE_REQUEST)
    for _ in range(draw(st.integers(0, 3))):
        section, key = draw(st.sampled_from(PATHS))
        target = request if section is None else request.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    return request


@settings(max_examples=1500, deadline=None)
@given(request=requests())
def test_fast_and_careful_readers_agree(policy, request):
    fast = policy._reader._fast(request)
    if fast is not None:
        assert ("values", fast) == careful(policy, request)
    assert outcome(policy.read_request, request) == careful_then_catalog(policy, request)


def test_well_formed_requests_take_the_fast_path(policy):
    for request in (BASE_REQUEST, make_request(context__time=None),
                    make_request(subject__org_id=None, resource__owner_org_id=None),
                    make_request(context=None, context__storage_region="domestic")):
        assert policy._reader._fast(request) is not None


def test_irregular_requests_go_the_careful_way(policy):
    class Request(dict):
        pass

    explicit_null = make_request()
    explicit_null["subject"]["real_name_verified"] = None  # means false, read carefully
    for request in (Request(BASE_REQUEST), explicit_null,
                    make_request(context__time="2026-11-22T10:00:00"),
                    make_request(resource__tier="genomics")):
        assert policy._reader._fast(request) is None
    # A dict subclass is still a valid request; only its reading is slower.
    assert policy.read_request(Request(BASE_REQUEST)) == policy.read_request(BASE_REQUEST)
