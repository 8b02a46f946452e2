"""Check a parsed policy set against the vocabulary it declares; build the checked model.

Every problem found is collected as a diagnostic (with the spot and, where it can, a "did you
mean"); the policy set is accepted only when there is none. Runs once at load, never on the
decision path.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from tiergate.grammar import ast
from tiergate.diagnostics import Diagnostic, DiagnosticError, Span, did_you_mean
from tiergate.grammar.format import flat

from . import model
from .catalog import check_catalog, check_grant_datasets
from .conditions import ConditionChecker
from .normalize import TooComplex, to_conjuncts
from .schema import OBLIGATION_PARAMETER_TYPES, VOCABULARIES
from .whynot import GRANT_REQUIREMENTS
from .timeutil import parse_instant

_GRANT_CLAUSES = ("grantee", "tier", "catalog", "dataset", "purpose", "action", "approved_by",
                  "agreement", "expires")
_GRANT_REQUIRED = tuple(c for c in _GRANT_CLAUSES if c != "dataset")
# Request attributes an obligation parameter may take, with the parameter type each fills.
_REQUEST_PARAMETER_KINDS = {"subject.id": "text", "subject.org_id": "text", "resource.id": "text",
                            "resource.owner_org_id": "text", "context.time": "time"}
_GRANT_VOCABULARY = {"tier": "resource.tier", "catalog": "resource.catalog_class",
                     "purpose": "purpose", "action": "action", "approved_by": "approver"}


def check_policy(files: Sequence[ast.PolicyFile],
                 catalog_data: Mapping[str, str] | None = None) -> model.CheckedPolicy:
    """The checked policy, or DiagnosticError with every problem in the set.

    `catalog_data` holds the texts of the set's catalog data files ({name: text}).
    """
    checker = _Checker()
    policy = checker.run(files, catalog_data or {})
    errors = [d for d in checker.diagnostics if d.severity == "error"]
    if errors:
        raise DiagnosticError(errors)
    return policy


class _Checker:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, span: Span | None, help: str | None = None,
              owner: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, help, owner))

    def run(self, files: Sequence[ast.PolicyFile],
            catalog_data: Mapping[str, str]) -> model.CheckedPolicy:
        declarations = [d for f in files for d in f.declarations]
        vocabularies, obligations = self.vocabularies(
            [d for d in declarations if isinstance(d, ast.Vocabulary)])
        conditions = ConditionChecker(vocabularies, self.error)
        rules = self.rules([d for d in declarations if isinstance(d, ast.Rule)],
                           vocabularies, obligations, conditions)
        grants = self.grants([d for d in declarations if isinstance(d, ast.Grant)], vocabularies)
        catalog = check_catalog([d for d in declarations if isinstance(d, ast.Dataset)],
                                [d for d in declarations if isinstance(d, ast.CatalogSettings)],
                                catalog_data, vocabularies, self.error)
        check_grant_datasets(grants, catalog, self.error)
        citations = self.unmet_citations(
            [d for d in declarations if isinstance(d, ast.UnmetCitations)])
        return model.CheckedPolicy(vocabularies, obligations, tuple(rules), tuple(grants),
                                   catalog, citations)

    def unmet_citations(self, blocks: list[ast.UnmetCitations]) -> dict[str, str]:
        citations: dict[str, str] = {}
        for entry in (e for block in blocks for e in block.entries):
            if entry.requirement not in GRANT_REQUIREMENTS:
                self.error("TG248", f"'{entry.requirement}' is not a grant requirement a denial "
                           "can cite for", entry.span,
                           did_you_mean(entry.requirement, GRANT_REQUIREMENTS)
                           or "requirements: " + ", ".join(GRANT_REQUIREMENTS))
            elif entry.requirement in citations:
                self.error("TG248", f"'{entry.requirement}' is given a citation twice",
                           entry.span, "keep one")
            elif not entry.citation.value.strip():
                self.error("TG248", f"the citation for '{entry.requirement}' is empty",
                           entry.citation.span, 'e.g. grant_expired "福州办法 第二十九条"')
            else:
                citations[entry.requirement] = entry.citation.value
        return citations

    # ---- vocabulary ---------------------------------------------------------------------

    def vocabularies(self, declared: list[ast.Vocabulary]):
        vocabularies: dict[str, model.Vocabulary] = {}
        obligations: dict[str, model.ObligationKind] = {}
        first_span: dict[str, Span] = {}
        for vocabulary in declared:
            name = vocabulary.attribute
            if name not in VOCABULARIES:
                self.error("TG200", f"'{name}' has no vocabulary to declare",
                           vocabulary.span, did_you_mean(name, VOCABULARIES)
                           or "vocabularies: " + ", ".join(VOCABULARIES))
                continue
            if name in first_span:
                self.error("TG201", f"vocabulary {name} is declared twice (first at "
                           f"{first_span[name]})", vocabulary.span,
                           "merge the two blocks into one")
                continue
            first_span[name] = vocabulary.span
            labels: dict[str, str] = {}
            for value in vocabulary.values:
                if value.name in labels:
                    self.error("TG202", f"'{value.name}' is declared twice in {name}", value.span)
                    continue
                labels[value.name] = value.label or value.name
                if name == "obligation":
                    obligations[value.name] = model.ObligationKind(
                        value.name, value.label or value.name, self.parameters(value))
                elif value.parameters:
                    self.error("TG204", f"only obligations take parameters, not {name} values",
                               value.parameters[0].span)
            vocabularies[name] = model.Vocabulary(name, labels)
        for name in VOCABULARIES:
            if name not in first_span:
                self.error("TG203", f"the policy set declares no vocabulary {name}", None,
                           f"add `vocabulary {name} {{ ... }}` listing its values")
        return vocabularies, obligations

    def parameters(self, value: ast.VocabularyValue) -> tuple[tuple[str, str], ...]:
        out = []
        for parameter in value.parameters:
            if parameter.type not in OBLIGATION_PARAMETER_TYPES:
                self.error("TG204", f"parameter type '{parameter.type}' is unknown",
                           parameter.span, "parameter types: " + ", ".join(OBLIGATION_PARAMETER_TYPES))
            out.append((parameter.name, parameter.type))
        return tuple(out)

    # ---- rules --------------------------------------------------------------------------

    def rules(self, declared: list[ast.Rule], vocabularies, obligations,
              conditions: ConditionChecker) -> list[model.Rule]:
        out: list[model.Rule] = []
        seen: dict[str, Span] = {}
        for order, rule in enumerate(declared):
            if rule.id in seen:
                self.error("TG220", f"rule id '{rule.id}' is used twice (first at {seen[rule.id]})",
                           rule.id_span, "give each rule its own id", rule.id)
                continue
            seen[rule.id] = rule.id_span
            checked = self.rule(rule, order, vocabularies, obligations, conditions)
            if checked is not None:
                out.append(checked)
        fallbacks = [r for r in out if r.fallback]
        for extra in fallbacks[1:]:
            self.error("TG229", f"rules {fallbacks[0].id} and {extra.id} both say `deny otherwise`",
                       extra.span, "keep one default-deny rule", extra.id)
        return out

    def rule(self, rule: ast.Rule, order: int, vocabularies, obligations,
             conditions: ConditionChecker) -> model.Rule | None:
        ok = True
        if not rule.citations:
            self.error("TG221", f"rule {rule.id} cites no article", rule.id_span,
                       'add a line such as: cite "福州办法 第十八条"', rule.id)
            ok = False
        messages = {}
        for translation in rule.messages:
            if translation.language in messages:
                self.error("TG222", f"rule {rule.id} has two {translation.language} messages",
                           translation.span, owner=rule.id)
                ok = False
            messages[translation.language] = translation.text
        for language in ("zh", "en"):
            if language not in messages:
                self.error("TG222", f"rule {rule.id} has no {language} message", rule.id_span,
                           'add: message zh "…" en "…"', rule.id)
                ok = False
        if len(rule.effects) != 1:
            where = rule.effects[1].span if rule.effects else rule.id_span
            self.error("TG223", f"rule {rule.id} must say exactly once whether it permits or "
                       f"denies (it says so {len(rule.effects)} times)", where,
                       "write one line: permit when … / deny when …", rule.id)
            return None
        effect = rule.effects[0]
        kind = {"permit": "permit", "deny": "deny", "on permit": "obligation"}[effect.effect]
        condition = model.ALWAYS
        if effect.condition is not None:
            condition = conditions.check(effect.condition, rule.id, grants_allowed=kind == "permit")
            if condition is None:
                return None
        if rule.requires_grant and kind != "permit":
            self.error("TG214", f"rule {rule.id} cannot require a grant: only permit rules can",
                       effect.span, "grants can only make a permit rule apply", rule.id)
            ok = False
        if effect.otherwise and kind != "deny":
            self.error("TG229", "only a deny rule can be the default: write `deny otherwise`",
                       effect.span, owner=rule.id)
            ok = False
        if kind == "obligation" and not rule.obligations:
            self.error("TG228", f"rule {rule.id} says `on permit` but obliges nothing",
                       effect.span, "add a line: oblige audit, …", rule.id)
            ok = False
        needs_grant = rule.requires_grant or model.mentions_grant(condition)
        templates = tuple(t for t in (self.obligation(o, rule.id, needs_grant, obligations)
                                      for o in rule.obligations) if t is not None)
        if len(templates) != len(rule.obligations):
            ok = False
        conjuncts: tuple = ()
        if not effect.otherwise:
            try:
                conjuncts = to_conjuncts(condition, lambda a: model.domain_of(vocabularies, a))
            except TooComplex:
                self.error("TG227", f"the condition of rule {rule.id} is too complex to index",
                           effect.span, "split it into several rules", rule.id)
                return None
            if not conjuncts:
                self.never_holds(rule.id, effect, condition, vocabularies)
                ok = False
        if not ok:
            return None
        return model.Rule(rule.id, kind, condition, conjuncts, needs_grant,
                          " ".join(c.value for c in rule.citations), messages["zh"],
                          messages["en"], templates, order, effect.otherwise, rule.span)

    def never_holds(self, rule_id: str, effect, condition: model.Condition,
                    vocabularies) -> None:
        """TG226, naming the tests that contradict each other when two of the condition's
        `and` parts do (or the one part that can never hold by itself)."""
        domain = lambda a: model.domain_of(vocabularies, a)  # noqa: E731
        written = effect.condition
        parts = list(zip(written.operands, condition.operands)) if (
            isinstance(written, ast.AllOf) and isinstance(condition, model.All)) else []
        found = None
        for index, (text, part) in enumerate(parts):
            if not to_conjuncts(part, domain):
                found = (text,)
                break
            for other_text, other in parts[index + 1:]:
                if not to_conjuncts(model.All((part, other)), domain):
                    found = (text, other_text)
                    break
            if found:
                break
        if found is None:
            self.error("TG226", f"the condition of rule {rule_id} can never hold, so the rule "
                       "never applies", effect.span,
                       "look for tests on one attribute that contradict each other", rule_id)
        elif len(found) == 1:
            self.error("TG226", f"the condition of rule {rule_id} can never hold: `{flat(found[0])}`"
                       " is never true, so the rule never applies", found[0].span,
                       "remove or correct that test", rule_id)
        else:
            first, second = found
            self.error("TG226", f"the condition of rule {rule_id} can never hold: "
                       f"`{flat(first)}` (line {first.span.line}) and `{flat(second)}` (line "
                       f"{second.span.line}) contradict each other, so the rule never applies",
                       first.span, "keep the one you mean and remove or change the other",
                       rule_id)

    def obligation(self, ref: ast.ObligationRef, rule_id: str, needs_grant: bool,
                   obligations) -> model.ObligationTemplate | None:
        kind = obligations.get(ref.name)
        if kind is None:
            self.error("TG224", f"obligation '{ref.name}' is not declared", ref.span,
                       did_you_mean(ref.name, obligations) or "declare it in vocabulary obligation",
                       rule_id)
            return None
        declared = dict(kind.parameters)
        given: dict[str, object] = {}
        from_grant, from_request = [], []
        ok = True
        for argument in ref.arguments:
            expected = declared.get(argument.name)
            if expected is None:
                self.error("TG225", f"obligation {ref.name} has no parameter '{argument.name}'",
                           argument.span, "parameters: " + (", ".join(declared) or "none"), rule_id)
                ok = False
                continue
            value = self.obligation_argument(argument, expected, needs_grant, rule_id)
            if value is None:
                ok = False
                continue
            if isinstance(argument.value, ast.AttributeRef):
                (from_grant if value.startswith("grant.") else from_request).append(argument.name)
            given[argument.name] = value
        for name in declared:
            if name not in given and ok:
                self.error("TG225", f"obligation {ref.name} needs its parameter '{name}'",
                           ref.span, f"write {ref.name}({name}: …)", rule_id)
                ok = False
        if not ok:
            return None
        return model.ObligationTemplate(ref.name, tuple(given.items()), tuple(from_grant),
                                        tuple(from_request))

    def obligation_argument(self, argument: ast.Argument, expected: str, needs_grant: bool,
                            rule_id: str):
        value = argument.value
        if isinstance(value, ast.AttributeRef) and value.path in _REQUEST_PARAMETER_KINDS:
            if _REQUEST_PARAMETER_KINDS[value.path] != expected:
                self.error("TG225", f"parameter '{argument.name}' takes a {expected}; "
                           f"{value.path} is not one", value.span, owner=rule_id)
                return None
            return value.path
        if isinstance(value, ast.AttributeRef):
            if not value.path.startswith("grant."):
                self.error("TG225", "an obligation parameter can take a literal, a grant "
                           f"attribute or a request text or time, not {value.path}", value.span,
                           "request attributes: " + ", ".join(_REQUEST_PARAMETER_KINDS),
                           rule_id)
                return None
            if not needs_grant:
                self.error("TG225", f"{value.path} is used, but rule {rule_id} does not require a "
                           "grant", value.span, "add `requires grant` or a grant condition", rule_id)
                return None
            kinds = {"grant.expires": "time", "grant.agreement": "text", "grant.id": "text",
                     "grant.grantee": "text"}
            if kinds.get(value.path) != expected:
                self.error("TG225", f"parameter '{argument.name}' takes a {expected}; "
                           f"{value.path} is not one", value.span, owner=rule_id)
                return None
            return value.path
        if expected == "time" and isinstance(value, ast.Instant):
            instant = self.instant(value)
            return value.text if instant is not None else None
        if expected == "text" and isinstance(value, ast.Text):
            return value.value
        self.error("TG225", f"parameter '{argument.name}' takes a {expected}", value.span,
                   owner=rule_id)
        return None

    def instant(self, value: ast.Instant) -> int | None:
        try:
            return parse_instant(value.text)
        except ValueError as problem:
            self.error("TG215", f"'{value.text}' is not an instant: {problem}", value.span,
                       "write a full instant with its offset, e.g. 2027-06-30T00:00:00+08:00")
            return None

    # ---- grants -------------------------------------------------------------------------

    def grants(self, declared: list[ast.Grant], vocabularies) -> list[model.Grant]:
        out = []
        seen: dict[str, Span] = {}
        for grant in declared:
            if grant.id in seen:
                self.error("TG230", f"grant id '{grant.id}' is used twice (first at "
                           f"{seen[grant.id]})", grant.id_span, "give each grant its own id",
                           grant.id)
                continue
            seen[grant.id] = grant.id_span
            checked = self.grant(grant, vocabularies)
            if checked is not None:
                out.append(checked)
        return out

    def grant(self, grant: ast.Grant, vocabularies) -> model.Grant | None:
        clauses: dict[str, ast.GrantClause] = {}
        ok = True
        for clause in grant.clauses:
            if clause.keyword in clauses:
                self.error("TG232", f"grant {grant.id} says '{clause.keyword}' twice", clause.span,
                           "list all values on one line, separated by commas", grant.id)
                ok = False
            clauses[clause.keyword] = clause
        for keyword in _GRANT_REQUIRED:
            if keyword not in clauses:
                self.error("TG231", f"grant {grant.id} has no '{keyword}'", grant.id_span,
                           f"every grant names: {', '.join(_GRANT_REQUIRED)}", grant.id)
                ok = False
        sets: dict[str, frozenset[str]] = {}
        for keyword, vocabulary in _GRANT_VOCABULARY.items():
            if keyword not in clauses:
                continue
            declared = vocabularies.get(vocabulary)
            names = []
            for value in clauses[keyword].values:
                if declared is not None and value.name not in declared.labels:
                    what = "approver" if vocabulary == "approver" else vocabulary
                    self.error("TG233", f"grant {grant.id}: '{value.name}' is not a declared "
                               f"{what}", value.span,
                               did_you_mean(value.name, declared.labels)
                               or "declared: " + ", ".join(declared.labels), grant.id)
                    ok = False
                names.append(value.name)
            sets[keyword] = frozenset(names)
        expires = None
        if "expires" in clauses:
            expires = self.instant(clauses["expires"].values[0])
            ok = ok and expires is not None
        if not ok:
            return None
        datasets = clauses.get("dataset")
        return model.Grant(
            grant.id, clauses["grantee"].values[0].name, sets["tier"], sets["catalog"],
            frozenset(v.name for v in datasets.values) if datasets else None,
            sets["purpose"], sets["action"], sets["approved_by"],
            clauses["agreement"].values[0].value, expires, clauses["expires"].values[0].text,
            grant.span)
