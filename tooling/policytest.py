"""Policy tests: TOML files of requests and expected decisions, kept beside the policies.

A test file is any `*_test.toml` under the policy directory (by convention `tests/`):

    [defaults]                       # optional; every case starts from this request
    now = "2026-11-22T10:00:00+08:00"
    [defaults.request]
    action = "query"
    subject = { id = "u-1", org_id = "fzu", org_type = "university", region = "southeast_park" }

    [[case]]
    name = "conditional data is permitted with the grant in the park"
    request.resource = { tier = "conditional", catalog_class = "medical_service" }
    unset = ["context.consent"]      # optional: attribute paths removed from the defaults
    expect.effect = "PERMIT"
    expect.grant_id = "fz-2026-017"
    expect.rules = ["conditional-with-approved-grant"]
    expect.obligations = ["audit", { id = "destroy_on_expiry", params = { at = "…" } }]

A case's request is the defaults' request with the case's tables merged in, key by key.
`expect.rules` must be among the decision's reasons and `expect.not_rules` must not be;
`expect.obligations`, when given, is the exact set of obligation ids (with params checked
where given); `expect.grant_id = ""` expects no grant. Instants may be TOML datetimes or text. The runner (this module) only produces results; tooling/reporters.py prints them.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tiergate.engine import Decision, RequestError
from tiergate.engine.timeutil import parse_instant
from tiergate.diagnostics import did_you_mean

TEST_SUFFIX = "_test.toml"


# ---- the file format, validated at the edge --------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedObligation(_Strict):
    id: str
    params: dict[str, str] | None = None


class ExpectedUnmet(_Strict):
    """A permit rule the denial names as closest, and what it missed (any field may be left out)."""

    rule: str | None = None
    requirement: str | None = None
    grant_id: str | None = None


class Expect(_Strict):
    effect: Literal["PERMIT", "DENY"] | None = None
    # The attributes a request must be refused for (a bad request: no decision at all).
    error: list[str] | None = None
    grant_id: str | None = None  # "" expects no grant
    obligations: list[Union[str, ExpectedObligation]] | None = None
    rules: list[str] = Field(default_factory=list)
    not_rules: list[str] = Field(default_factory=list)
    # Texts each found in some citation of the decision (its reasons' or its unmet's).
    citations: list[str] = Field(default_factory=list)
    # Requirement kinds ("grant_expired") or tables; [] expects none. None: not checked.
    unmet: list[Union[str, ExpectedUnmet]] | None = None

    @field_validator("effect", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _effect_or_error(self) -> "Expect":
        if (self.effect is None) == (self.error is None):
            raise ValueError("say either expect.effect (a decision) or expect.error (the "
                             "attributes the request is refused for)")
        return self


Instant = Union[str, datetime]


def _instant_micros(value: Instant | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("it has no UTC offset (add one such as +08:00 or Z)")
        value = value.isoformat()
    return parse_instant(value)


class _HasNow(_Strict):
    now: Instant | None = None

    @field_validator("now")
    @classmethod
    def _valid_now(cls, value: Instant | None) -> Instant | None:
        _instant_micros(value)  # raises ValueError, which pydantic reports with the location
        return value


class Defaults(_HasNow):
    request: dict[str, Any] = Field(default_factory=dict)


class CaseModel(_HasNow):
    name: str = Field(min_length=1)
    request: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    expect: Expect


class TestFileModel(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    case: list[CaseModel] = Field(min_length=1)


# ---- loaded tests ----------------------------------------------------------------------


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class, despite the name

    name: str
    file: str
    line: int  # of the case's `[[case]]` header; 0 when it cannot be found
    request: dict
    now: int | None
    expect: Expect

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class TestSuite:
    __test__ = False  # not a pytest class, despite the name

    file: str
    cases: tuple[TestCase, ...]


class TestFileError(Exception):
    """One or more test files are malformed; `problems` are lines naming file, line and case."""

    __test__ = False

    def __init__(self, problems: list[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


def discover(policy_dir: str | Path) -> list[Path]:
    """The test files under a policy directory, in a stable order."""
    return sorted(p for p in Path(policy_dir).rglob(f"*{TEST_SUFFIX}") if p.is_file())


_CASE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*case[ \t]*\]\]", re.MULTILINE)


def _case_lines(text: str) -> list[int]:
    return [text.count("\n", 0, m.start()) + 1 for m in _CASE_HEADER.finditer(text)]


def load_suite(path: str | Path) -> TestSuite:
    """Read and validate one test file; TestFileError says what is wrong and where."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as problem:
        raise TestFileError([f"{name}: cannot read: {problem}"]) from None
    except tomllib.TOMLDecodeError as problem:
        raise TestFileError([f"{name}: not valid TOML: {problem}"]) from None
    lines = _case_lines(text)
    raw_cases = document.get("case") if isinstance(document.get("case"), list) else []

    def where(loc: tuple) -> str:
        if len(loc) >= 2 and loc[0] == "case" and isinstance(loc[1], int):
            index = loc[1]
            line = f":{lines[index]}" if index < len(lines) else ""
            label = raw_cases[index].get("name") if isinstance(raw_cases[index], dict) else None
            rest = ".".join(map(str, loc[2:]))
            return (f"{name}{line}: case {index + 1}" + (f" '{label}'" if label else "")
                    + (f": {rest}" if rest else ""))
        return f"{name}: " + (".".join(map(str, loc)) or "file")

    try:
        model = TestFileModel.model_validate(document)
    except ValidationError as error:
        raise TestFileError([f"{where(e['loc'])}: {e['msg']}" for e in error.errors()]) from None

    problems: list[str] = []
    cases = []
    base = model.defaults.request
    names: dict[str, int] = {}
    for index, case in enumerate(model.case):
        here = ("case", index)
        if case.name in names:
            problems.append(f"{where(here)}: the name is already used by case {names[case.name] + 1}")
        names.setdefault(case.name, index)
        try:
            request = _merge(base, case.request)
            for path in case.unset:
                _unset(request, path)
            request = _instants_as_text(request, "request")
        except ValueError as problem:
            problems.append(f"{where(here)}: {problem}")
            continue
        cases.append(TestCase(case.name, name, lines[index] if index < len(lines) else 0,
                              request, _instant_micros(case.now or model.defaults.now),
                              case.expect))
    if problems:
        raise TestFileError(problems)
    return TestSuite(name, tuple(cases))


def load_suites(paths: list[Path]) -> list[TestSuite]:
    """Every file's suite; TestFileError lists the problems of all files together."""
    suites, problems = [], []
    for path in paths:
        try:
            suites.append(load_suite(path))
        except TestFileError as error:
            problems.extend(error.problems)
    if problems:
        raise TestFileError(problems)
    return suites


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _unset(request: dict, path: str) -> None:
    parts = path.split(".")
    target = request
    for part in parts[:-1]:
        target = target.get(part)
        if not isinstance(target, dict):
            raise ValueError(f"unset: {path} is not in the request")
    if parts[-1] not in target:
        raise ValueError(f"unset: {path} is not in the request")
    del target[parts[-1]]


def _instants_as_text(value: Any, path: str) -> Any:
    """TOML writes instants bare (2026-11-22T10:00:00+08:00); the contract wants RFC 3339 text."""
    if isinstance(value, dict):
        return {k: _instants_as_text(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_instants_as_text(v, path) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{path}: {value.isoformat()} has no UTC offset (add +08:00 or Z)")
        return value.isoformat()
    if isinstance(value, (date, time)):
        raise ValueError(f"{path}: {value.isoformat()} is not a full instant with an offset")
    return value


# ---- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: TestCase
    decision: Decision | None
    error: str | None = None  # the request could not be decided (RequestError)
    mismatches: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and not self.mismatches


@dataclass(frozen=True)
class Coverage:
    rules: tuple[str, ...]
    rules_exercised: frozenset[str]
    grants: tuple[str, ...]
    grants_exercised: frozenset[str]

    @property
    def rules_missed(self) -> list[str]:
        return [r for r in self.rules if r not in self.rules_exercised]

    @property
    def grants_missed(self) -> list[str]:
        return [g for g in self.grants if g not in self.grants_exercised]

    @staticmethod
    def _percent(done: int, total: int) -> float:
        return 100.0 if total == 0 else 100.0 * done / total

    @property
    def rule_percent(self) -> float:
        return self._percent(len(self.rules) - len(self.rules_missed), len(self.rules))

    @property
    def grant_percent(self) -> float:
        return self._percent(len(self.grants) - len(self.grants_missed), len(self.grants))


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class, despite the name

    results: tuple[CaseResult, ...]
    coverage: Coverage
    suites: tuple[TestSuite, ...] = field(default=())

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


def run_suites(policy, suites: list[TestSuite]) -> TestRun:
    """Decide every case (with explanations, for coverage) and compare with what it expects."""
    results = []
    rules_hit: set[str] = set()
    grants_hit: set[str] = set()
    for suite in suites:
        for case in suite.cases:
            try:
                decision = policy.decide(case.request, now=case.now, explain=True)
            except RequestError as error:
                refused = sorted({p.attribute for p in error.problems})
                if case.expect.error is not None and sorted(case.expect.error) == refused:
                    results.append(CaseResult(case, None))
                else:
                    results.append(CaseResult(case, None, error=str(error)))
                continue
            if case.expect.error is not None:
                results.append(CaseResult(case, decision, mismatches=(
                    f"expected the request to be refused for {', '.join(case.expect.error)}, "
                    f"but it was decided: {decision.effect}",)))
                continue
            result = CaseResult(case, decision,
                                mismatches=tuple(compare(policy, case.expect, decision)))
            results.append(result)
            if result.passed:  # only what a passing case checks counts as tested
                rules_hit.update(_rules_asserted(case.expect, decision))
                grants_hit.update(_grants_asserted(case.expect, decision))
    coverage = Coverage(tuple(r.id for r in policy.rules), frozenset(rules_hit),
                        tuple(g.id for g in policy.grants), frozenset(grants_hit))
    return TestRun(tuple(results), coverage, tuple(suites))


def _deciding_citations(decision: Decision) -> dict[str, str]:
    """{rule id: citation} of every rule that decided: the reasons, and the `on permit` rules
    whose obligations this permit added (from the explanation)."""
    cited = {r.rule_id: r.citation for r in decision.reasons}
    for rule in (decision.explanation or {}).get("rules", ()):
        if rule["effect"] == "obligation" and rule["applies"] and rule["obligations_added"]:
            cited[rule["rule_id"]] = rule["citation"]
    return cited


def _rules_asserted(expect: Expect, decision: Decision) -> set[str]:
    """The rules whose deciding side this (passing) case pins down: the rule decided, and an
    expected citation names an article of that rule that no other rule deciding here cites.
    Changing or dropping that article then fails the case: a test, not a visit."""
    cited = _deciding_citations(decision)
    unmet = [u.citation for u in decision.unmet]  # a case's citations match these too
    asserted = set()
    for rule_id, citation in cited.items():
        others = [c for other_id, c in cited.items() if other_id != rule_id] + unmet
        if any(text in citation and not any(text in other for other in others)
               for text in expect.citations):
            asserted.add(rule_id)
    return asserted


def _grants_asserted(expect: Expect, decision: Decision) -> set[str]:
    """The grants this (passing) case pins down: the one it expects a permit under, and those
    it expects named in `unmet` (an expired grant, one lacking an approval). Deleting such a
    grant, or changing what it covers, then fails the case."""
    asserted = set()
    if expect.grant_id and decision.grant_id == expect.grant_id:
        asserted.add(expect.grant_id)
    for item in expect.unmet or ():
        grant_id = getattr(item, "grant_id", None)
        if grant_id and any(u.grant_id == grant_id for u in decision.unmet):
            asserted.add(grant_id)
    return asserted


def compare(policy, expect: Expect, decision: Decision) -> list[str]:
    """What differs between the expectation and the decision, one line each."""
    problems = []
    if decision.effect != expect.effect:
        problems.append(f"effect: expected {expect.effect}, got {decision.effect}")
    cited = list(_deciding_citations(decision).values()) + [u.citation for u in decision.unmet]
    for text in expect.citations:
        if not any(text in citation for citation in cited):
            problems.append(f"citations: expected {text!r} in a citation, got "
                            + ("; ".join(dict.fromkeys(cited)) or "none"))
    if expect.unmet is not None:
        problems.extend(_compare_unmet(expect.unmet, decision.unmet))
    if expect.grant_id is not None:
        wanted = expect.grant_id or None
        if decision.grant_id != wanted:
            problems.append(f"grant: expected {wanted or 'no grant'}, "
                            f"got {decision.grant_id or 'no grant'}"
                            + _unknown(wanted, [g.id for g in policy.grants], "grant"))
    reasons = [r.rule_id for r in decision.reasons]
    for rule_id in expect.rules:
        if rule_id not in reasons:
            problems.append(f"rules: expected {rule_id} among the reasons"
                            + _unknown(rule_id, [r.id for r in policy.rules], "rule"))
    for rule_id in expect.not_rules:
        if rule_id in reasons:
            problems.append(f"rules: expected {rule_id} not among the reasons")
    if expect.obligations is not None:
        got = {o.id: dict(o.params) for o in decision.obligations}
        wanted_ids = []
        for item in expect.obligations:
            ob = item if isinstance(item, ExpectedObligation) else ExpectedObligation(id=item)
            wanted_ids.append(ob.id)
            if ob.id in got and ob.params is not None and got[ob.id] != ob.params:
                problems.append(f"obligations: {ob.id} expected params {ob.params}, "
                                f"got {got[ob.id]}")
        missing = [i for i in wanted_ids if i not in got]
        extra = [i for i in got if i not in wanted_ids]
        if missing:
            problems.append(f"obligations: missing {', '.join(missing)}")
        if extra:
            problems.append(f"obligations: unexpected {', '.join(extra)}")
    return problems


def _compare_unmet(expected: list, got) -> list[str]:
    shown = "; ".join(f"{u.rule_id}: {u.requirement}" + (f" ({u.grant_id})" if u.grant_id else "")
                      for u in got) or "none"
    if not expected and got:
        return [f"unmet: expected none, got {shown}"]
    problems = []
    for item in expected:
        want = item if isinstance(item, ExpectedUnmet) else ExpectedUnmet(requirement=item)
        if not any((want.rule is None or u.rule_id == want.rule)
                   and (want.requirement is None or u.requirement == want.requirement)
                   and (want.grant_id is None or (u.grant_id or "") == want.grant_id)
                   for u in got):
            problems.append(f"unmet: expected {want.model_dump(exclude_none=True)}, got {shown}")
    return problems


def _unknown(name: str | None, known: list[str], kind: str) -> str:
    if name is None or name in known:
        return ""
    hint = did_you_mean(name, known)
    return f" ({kind} {name} is not in the policy set" + (f"; {hint}" if hint else "") + ")"
