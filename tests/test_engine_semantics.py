"""One meaning for a condition (engine/semantics.py): the compiled closures the decision path
runs answer exactly as the evaluator explanations use, and the three-valued answers the
analyses use are never contradicted by a request that fills in what they did not know."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tiergate.engine import model
from tiergate.engine.request import SLOT
from tiergate.engine.semantics import (UNKNOWN, evaluate, evaluate_atom, request_reader,
                                       specialise)

TEXTS = st.sampled_from([None, "", "fzu", "xmu", "fz-hosp-1"])
TIMES = st.integers(0, 10)
APPROVERS = st.frozensets(st.sampled_from(["data_operator", "digital_office",
                                            "health_commission"]))

atoms = st.one_of(
    st.builds(model.OneOf, st.just("subject.real_name_verified"),
              st.frozensets(st.booleans(), min_size=1)),
    st.builds(model.OneOf, st.just("action"),
              st.frozensets(st.sampled_from(["query", "update", "export"]), min_size=1)),
    st.builds(lambda texts: model.TextIn("subject.org_id", texts),
              st.frozensets(st.sampled_from(["fzu", "xmu", ""]))),
    st.builds(lambda a, b: model.TextIn(a, other=b),
              st.sampled_from(["subject.org_id", "resource.owner_org_id", "grant.grantee"]),
              st.sampled_from(["subject.org_id", "resource.owner_org_id", "grant.grantee"])),
    st.builds(model.Before, st.just("context.time"), TIMES),
    st.builds(model.Before, TIMES, st.just("context.time")),
    st.builds(model.Before, st.sampled_from(["context.time", "grant.expires"]),
              st.sampled_from(["context.time", "grant.expires"])),
    st.builds(model.ApprovedBy, APPROVERS, st.sampled_from(["all", "any"])),
)


def conditions(depth: int = 2):
    if depth == 0:
        return atoms
    inner = conditions(depth - 1)
    return st.one_of(atoms, st.builds(model.Not, inner),
                     st.builds(lambda xs: model.All(tuple(xs)), st.lists(inner, max_size=3)),
                     st.builds(lambda xs: model.Any(tuple(xs)), st.lists(inner, max_size=3)))


@st.composite
def requests(draw):
    values = [None] * len(SLOT)
    values[SLOT["subject.real_name_verified"]] = draw(st.booleans())
    values[SLOT["action"]] = draw(st.sampled_from(["query", "update", "export"]))
    values[SLOT["subject.org_id"]] = draw(TEXTS)
    values[SLOT["resource.owner_org_id"]] = draw(TEXTS)
    values[SLOT["context.time"]] = draw(TIMES)
    grant = None
    if draw(st.booleans()):
        grant = model.Grant("g", draw(st.sampled_from(["fzu", "xmu"])), frozenset(), frozenset(),
                            None, frozenset(), frozenset(), draw(APPROVERS), "A",
                            draw(TIMES), "t")
    return values, grant


@settings(max_examples=600, deadline=None)
@given(atom=atoms, request=requests())
def test_the_compiled_closure_answers_as_the_evaluator(atom, request):
    values, grant = request
    assert specialise(atom)(values, grant) is evaluate_atom(atom, request_reader(values, grant))


@settings(max_examples=600, deadline=None)
@given(condition=conditions(), request=requests(),
       hidden=st.frozensets(st.sampled_from(["subject.real_name_verified", "action",
                                             "subject.org_id", "resource.owner_org_id",
                                             "context.time", "grant.*"])))
def test_what_an_analysis_settles_no_request_contradicts(condition, request, hidden):
    values, grant = request
    full = request_reader(values, grant)

    def partial(path: str):
        if path in hidden or (path.startswith("grant.") and "grant.*" in hidden):
            return UNKNOWN
        return full(path)

    known = evaluate(condition, full)
    assert known in (True, False)
    settled = evaluate(condition, partial)
    assert settled is None or settled is known
