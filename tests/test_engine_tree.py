"""The decision tree visits only what could apply: the leaf a request reaches holds exactly the
rules whose indexed tests the request passes, and grants are looked up by grantee."""

from __future__ import annotations

import itertools
import random

from conftest import make_request


def indexed_match(rule, values, slot) -> bool:
    return any(all(values[slot[a]] in allowed for a, allowed in c.indexed) for c in rule.conjuncts)


def test_leaf_holds_exactly_the_rules_whose_indexed_tests_pass(policy):
    from tiergate.engine.request import SLOT
    rng = random.Random(3)
    vocab = {k: sorted(v.labels) for k, v in policy.vocabularies.items()}
    for _ in range(2000):
        request = make_request(
            subject__org_type=rng.choice(vocab["subject.org_type"]),
            subject__region=rng.choice(vocab["subject.region"]),
            resource__tier=rng.choice(vocab["resource.tier"]),
            resource__catalog_class=rng.choice(vocab["resource.catalog_class"]),
            resource__personal=rng.random() < 0.5, action=rng.choice(vocab["action"]),
            purpose=rng.choice(vocab["purpose"]),
            context__storage_region=rng.choice(vocab["context.storage_region"]),
            context__consent=rng.random() < 0.5, context__deidentified=rng.random() < 0.5)
        values = policy.read_request(request)
        path = []
        leaf = policy.leaf_for(values, path)
        in_leaf = {c.rule.id for c in itertools.chain(leaf.denies, leaf.permits, leaf.obligers)}
        expected = {r.id for r in policy.rules if not r.fallback and indexed_match(r, values, SLOT)}
        assert in_leaf == expected
        assert len(path) <= len(policy.tree.order)


def test_tree_branches_on_the_attributes_rules_test(policy):
    assert policy.tree.order[0] == "resource.tier"
    assert "subject.id" not in policy.tree.order and "context.time" not in policy.tree.order


def test_grants_are_indexed_by_grantee(policy):
    index = policy.grant_index
    assert {g.id for g in index.candidates("fzu", "conditional", "medical_service")} == {"fz-2026-017"}
    assert index.candidates("nobody", "conditional", "medical_service") == ()
    assert index.candidates(None, "conditional", "medical_service") == ()
