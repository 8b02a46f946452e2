"""A loaded policy set and the decision function: deny overrides, default deny."""

from __future__ import annotations

import itertools
import os
from bisect import bisect_right
from dataclasses import replace
from typing import Any, Mapping

from . import model
from .compile import Branch, CompiledPolicy, CompiledTree, GrantIndex, Leaf
from .decision import DEFAULT_DENY, DENY, PERMIT, Decision, Obligation, Reason
from .request import SLOT, TIME_SLOT, RequestReader, decided_request, requested_time_refused
from .timeutil import format_instant, now_micros
from .whynot import WhyNot

_ORG, _TIER, _CLASS = SLOT["subject.org_id"], SLOT["resource.tier"], SLOT["resource.catalog_class"]
_DATASET, _PURPOSE, _ACTION = SLOT["resource.id"], SLOT["purpose"], SLOT["action"]


class _DecisionIds:
    """Unique decision ids without a uuid per call: a random prefix and a counter."""

    def __init__(self) -> None:
        self.reset()
        # SECURITY: forked server workers must not repeat each other's ids.
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


_ids = _DecisionIds()


def _keyed(obligations: tuple[Obligation, ...]) -> tuple[tuple[Any, Obligation], ...]:
    """Each obligation with the key that makes equal obligations from several rules one."""
    return tuple(((o.id, tuple(o.params.items())) if o.params else o.id, o) for o in obligations)


class _RuleOutput:
    """A rule's reason and obligations, prepared once; grant-dependent parts once per grant.

    Obligations are kept keyed (see `_keyed`) so that merging several rules' outputs is a
    dictionary update per obligation.
    """

    __slots__ = ("reason", "keyed", "templates", "per_request", "decides", "_by_grant")

    def __init__(self, rule: model.Rule):
        effect = PERMIT if rule.effect == "permit" else DENY
        self.reason = Reason(rule.id, effect, rule.citation, rule.message_zh, rule.message_en)
        self.templates = tuple(t for t in rule.obligations if not t.from_request)
        # Obligations whose parameters read the request (cite_source(obtained: context.time)):
        # made per decision, after the prepared parts are merged.
        self.per_request = tuple(t for t in rule.obligations if t.from_request)
        # None: the obligations take parameters from the bound grant (none without a grant).
        self.keyed = (_keyed(tuple(Obligation(t.id, dict(t.parameters)) for t in self.templates))
                      if not any(t.from_grant for t in self.templates) else None)
        self.decides = rule.effect != "obligation"  # `on permit` rules give no reason
        # PERF: grant id -> (reason, keyed obligations); bounded by the policy's grants.
        self._by_grant: dict[str, tuple[Reason, tuple]] = {}

    def with_grant(self, grant: model.Grant | None) -> tuple[Reason, tuple[tuple[Any, Obligation], ...]]:
        """The reason and keyed obligations this rule gives when it decides with `grant`."""
        if grant is None:
            return self.reason, self.keyed or ()
        found = self._by_grant.get(grant.id)
        if found is None:
            found = self._by_grant[grant.id] = self._for_grant(grant)
        return found

    def _for_grant(self, grant: model.Grant) -> tuple[Reason, tuple]:
        reason = Reason(self.reason.rule_id, self.reason.effect, self.reason.citation,
                        self.reason.message_zh, self.reason.message_en, grant.id)
        if self.keyed is not None:
            return reason, self.keyed
        obligations = []
        for template in self.templates:
            params = {}
            for name, value in template.parameters:
                if name in template.from_grant:
                    value = _grant_parameter(grant, value)
                params[name] = value
            obligations.append(Obligation(template.id, params))
        return reason, _keyed(tuple(obligations))


def _grant_parameter(grant: model.Grant, path: str) -> str:
    return grant.expires_text if path == "grant.expires" else grant.attribute(path)


def _request_obligation(template: model.ObligationTemplate, values: list,
                        grant: model.Grant | None) -> Obligation:
    """An obligation whose parameters read the request (and perhaps the bound grant)."""
    params = {}
    for name, value in template.parameters:
        if name in template.from_request:
            value = values[SLOT[value]]
            if value is None:
                continue  # an absent text gives no parameter rather than an empty one
            if isinstance(value, int):  # context.time: to the second, as a date obtained is
                value = format_instant(value - value % 1_000_000)
        elif name in template.from_grant:
            value = _grant_parameter(grant, value)
        params[name] = value
    return Obligation(template.id, params)


# How many distinct (rules, grants) outcomes a policy set remembers; past it, outcomes are
# merged on every call. Bounds memory for policy sets with very many grants.
_MERGED_LIMIT = 4096


class PolicySet:
    """A compiled policy set. Immutable; safe to share between threads.

    Build one with `load_policy_set` (or `compile_sources`); ask it with `decide`.
    """

    def __init__(self, checked: model.CheckedPolicy, compiled: CompiledPolicy, *,
                 revision: str, sources: Mapping[str, str]):
        # The phases before this one ran already: checked (check.py) and compiled
        # (compile.compile_policy). What follows is the decide phase's own lookup tables.
        self.checked = checked
        self.revision = revision
        self.sources = dict(sources)
        self.tree: CompiledTree = compiled.tree
        self.grant_index: GrantIndex = compiled.grant_index
        self._reader = RequestReader(checked.vocabularies, checked.catalog)
        self._outputs = {rule.id: _RuleOutput(rule) for rule in checked.rules}
        self._time_literals = compiled.time_literals
        fallback = next((r for r in checked.rules if r.fallback), None)
        self._default = self._outputs[fallback.id] if fallback else None
        if self._default is not None:
            self._default_reasons = (self._default.reason,)
            self._default_obligations = tuple(o for _, o in self._default.keyed or ())
        else:
            self._default_reasons, self._default_obligations = (DEFAULT_DENY,), ()
        self._merged_outputs: dict[tuple, tuple] = {}
        # Obligations made from requests, by (template, grant, the request values they read).
        self._made: dict[tuple, Obligation] = {}
        self._why_not = WhyNot(checked, self.grant_index, checked.unmet_citations,
                               self._time_literals)

    @property
    def rules(self) -> tuple[model.Rule, ...]:
        return self.checked.rules

    @property
    def grants(self) -> tuple[model.Grant, ...]:
        return self.checked.grants

    @property
    def vocabularies(self) -> Mapping[str, model.Vocabulary]:
        return self.checked.vocabularies

    @property
    def catalog(self) -> model.Catalog:
        return self.checked.catalog

    def read_request(self, request: Mapping[str, Any]) -> list:
        """Validated request values by slot; raises RequestError naming each bad attribute."""
        return self._reader.read(request)

    def decide(self, request: Mapping[str, Any], *, now: int | None = None,
               explain: bool = False, requested_time: bool = True) -> Decision:
        """Decide one request (the contract's JSON shape as a dict).

        `now` (µs since the epoch) stands in for the clock when the request has no
        context.time. With `requested_time=False` (what a server does), a request that
        carries a context.time is refused: only the clock decides. Raises RequestError for a
        request that names an undeclared value, lacks a required attribute, has a value of the
        wrong type, or contradicts the catalog.
        """
        return self._decide_read(self._values_at(request, now, requested_time), explain)

    def decide_recorded(self, request: Mapping[str, Any], *, now: int | None = None,
                        explain: bool = False,
                        requested_time: bool = True) -> tuple[Decision, dict]:
        """`decide`, and the request as decided (request.decided_request) for the audit log."""
        values = self._values_at(request, now, requested_time)
        return self._decide_read(values, explain), decided_request(values)

    def _decide_read(self, values: list, explain: bool) -> Decision:
        if explain:
            from .explain import explain_decision  # only the explaining path pays for it
            return explain_decision(self, values)
        return self.decide_values(values)

    def _values_at(self, request: Mapping[str, Any], now: int | None,
                   requested_time: bool) -> list:
        values = self._reader.read(request)
        if values[TIME_SLOT] is None:
            values[TIME_SLOT] = now_micros() if now is None else now
        elif not requested_time:
            raise requested_time_refused(request["context"]["time"])
        return values

    def leaf_for(self, values: list, path: list | None = None) -> Leaf:
        node = self.tree.root
        while node.__class__ is Branch:
            value = values[node.slot]
            if path is not None:
                path.append((node.attribute, value))
            node = node.children[value]
        return node

    def applicable_grants(self, values: list) -> list[model.Grant]:
        """Grants of the requester's organisation that cover this request now, preferred first."""
        index = self.grant_index
        scoped = index.entries.get(values[_ORG])
        if scoped is None:
            return []
        entries = scoped.get((values[_TIER], values[_CLASS]))
        if entries is None:
            return []
        now, dataset = values[TIME_SLOT], values[_DATASET]
        # A purpose or action no grant names has no bit (0): nothing covers it.
        purpose = index.purpose_bits.get(values[_PURPOSE], 0)
        action = index.action_bits.get(values[_ACTION], 0)
        return [grant for expires, purposes, actions, datasets, grant in entries
                if now < expires and purposes & purpose and actions & action
                and (datasets is None or dataset in datasets)]

    def decide_values(self, values: list) -> Decision:
        node = self.tree.root
        while node.__class__ is Branch:
            node = node.children[values[node.slot]]
        # Deny overrides: every applicable deny is a reason, and no permit is looked at.
        denies = [(c.rule.id, None) for c in node.denies
                  if c.checks is None or c.applies(values, None)]
        if denies:
            return self._decision(DENY, tuple(denies), values)
        permits = []
        grants = None
        for candidate in node.permits:
            if candidate.rule.needs_grant:
                if grants is None:
                    grants = self.applicable_grants(values)
                for grant in grants:
                    if candidate.applies(values, grant):
                        permits.append((candidate.rule.id, grant))
                        break
            elif candidate.checks is None or candidate.applies(values, None):
                permits.append((candidate.rule.id, None))
        if permits:
            for c in node.obligers:
                if c.checks is None or c.applies(values, None):
                    permits.append((c.rule.id, None))
            return self._decision(PERMIT, tuple(permits), values)
        unmet = self._why_not.unmet(node.permits, values)
        if self._default is not None and self._default.per_request:
            # The default rule's obligations read the request: made like any rule's.
            return replace(self._decision(DENY, ((self._default.reason.rule_id, None),), values),
                           unmet=unmet)
        return Decision(DENY, None, self._default_obligations, self._default_reasons,
                        self.revision, _ids.next(), self.stable_until(values), unmet=unmet)

    def _decision(self, effect: str, deciding: tuple, values: list) -> Decision:
        reasons, obligations, grant_id, per_request = self._merged(deciding)
        valid_until = self.stable_until(values)
        if per_request:
            obligations, valid_until = self._made_per_request(obligations, per_request, values,
                                                              valid_until)
        return Decision(effect, grant_id, obligations, reasons, self.revision, _ids.next(),
                        valid_until)

    def _made_per_request(self, merged: tuple, per_request: tuple, values: list,
                          valid_until: int | None):
        """`merged` with the (template, grant) placeholder at each index of `per_request` made
        into its obligation; equal ones are remembered and shared (they are immutable)."""
        made = list(merged)
        now = values[TIME_SLOT]
        for index in per_request:
            template, grant = merged[index]
            # PERF: the same dataset asked about in the same second gets the same obligation.
            key = (id(template), grant.id if grant is not None else None,
                   tuple(values[SLOT[path]] if path != "context.time" else now - now % 1_000_000
                         for name, path in template.parameters if name in template.from_request))
            obligation = self._made.get(key)
            if obligation is None:
                obligation = _request_obligation(template, values, grant)
                if len(self._made) < _MERGED_LIMIT:
                    self._made[key] = obligation
            made[index] = obligation
            if template.reads_time:
                # The parameter shows the second decided at: the same answer is good until
                # the next one (caches follow valid_until).
                next_second = now - now % 1_000_000 + 1_000_000
                valid_until = next_second if valid_until is None else min(valid_until, next_second)
        if len(per_request) > 1:  # two rules asking the same of the request: keep one
            made = list({(o.id, tuple(o.params.items())): o for o in made}.values())
        return tuple(made), valid_until

    def _merged(self, deciding: tuple) -> tuple[tuple[Reason, ...], tuple, str | None, tuple]:
        """Reasons, obligations (first of each id and parameters) and grant of the deciding rules,
        and the indexes of the obligations still to be made from the request.

        `deciding` is ((rule id, bound grant or None), …) in rule order, obligation rules last.
        An obligation whose parameters read the request stands as a (template, grant) pair in
        its place among the obligations; `_made_per_request` makes it.
        """
        # PERF: the same few combinations of rules decide most requests; remember their output.
        key = tuple((rule_id, grant.id if grant is not None else None)
                    for rule_id, grant in deciding)
        found = self._merged_outputs.get(key)
        if found is not None:
            return found
        reasons = []
        obligations: dict = {}
        grant_id = None
        for rule_id, grant in deciding:
            output = self._outputs[rule_id]
            reason, keyed = output.with_grant(grant)
            if output.decides:
                reasons.append(reason)
            for obligation_key, obligation in keyed:
                # Equal obligations from several rules: keep the first.
                if obligation_key not in obligations:
                    obligations[obligation_key] = obligation
            for template in output.per_request:
                obligations[(rule_id, template.id, "per request")] = (template, grant)
            if grant is not None and grant_id is None:
                grant_id = grant.id
        merged = tuple(obligations.values())
        per_request = tuple(i for i, o in enumerate(merged) if o.__class__ is tuple)
        found = (tuple(reasons), merged, grant_id, per_request)
        if len(self._merged_outputs) < _MERGED_LIMIT:
            self._merged_outputs[key] = found
        return found

    def stable_until(self, values: list) -> int | None:
        """The first instant after the request's time at which its decision could change."""
        now = values[TIME_SLOT]
        candidates = []
        literals = self._time_literals
        i = bisect_right(literals, now)
        if i < len(literals):
            candidates.append(literals[i])
        expiries = self.grant_index.expiries.get(values[_ORG])
        if expiries:
            j = bisect_right(expiries, now)
            if j < len(expiries):
                candidates.append(expiries[j])
        return min(candidates) if candidates else None
