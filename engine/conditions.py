"""Type-check one rule condition and turn it into the checked condition model.

Each attribute must exist, each operator must suit the attribute's kind, each value must be
declared in the attribute's vocabulary. Time comparisons are normalised to `left < right`.
"""

from __future__ import annotations

from typing import Callable

from tiergate.grammar import ast
from tiergate.diagnostics import did_you_mean

from . import model
from .schema import ATTRIBUTES, Attribute, Kind
from .timeutil import parse_instant

_BOOLEANS = {"true": True, "false": False}


class _Invalid(Exception):
    """A problem already reported; abandon this condition."""


class ConditionChecker:
    def __init__(self, vocabularies: dict[str, model.Vocabulary], report: Callable) -> None:
        self.vocabularies = vocabularies
        self.report = report
        self.rule_id = ""
        self.grants_allowed = False

    def check(self, expression: ast.Expression, rule_id: str, *,
              grants_allowed: bool) -> model.Condition | None:
        """The checked condition, or None after reporting what is wrong with it."""
        self.rule_id, self.grants_allowed = rule_id, grants_allowed
        try:
            return self._expression(expression)
        except _Invalid:
            return None

    def _fail(self, code: str, message: str, span, help: str | None = None):
        self.report(code, message, span, help, self.rule_id)
        raise _Invalid()

    def _expression(self, expression: ast.Expression) -> model.Condition:
        match expression:
            case ast.AllOf(operands=parts):
                return model.All(tuple(self._expression(p) for p in parts))
            case ast.AnyOf(operands=parts):
                return model.Any(tuple(self._expression(p) for p in parts))
            case ast.Not(operand=inner):
                return model.Not(self._expression(inner))
            case ast.Truth(attribute=ref):
                attribute = self._attribute(ref)
                if attribute.kind is not Kind.BOOL:
                    self._fail("TG211", f"{ref.path} is not true/false, so it cannot stand alone "
                               "as a condition", ref.span,
                               f"compare it: {ref.path} == …")
                return model.OneOf(attribute.path, frozenset((True,)))
            case ast.Comparison():
                return self._comparison(expression)
            case ast.Membership(attribute=ref, negated=negated, operands=operands):
                attribute = self._attribute(ref)
                if attribute.kind is Kind.TEXT:
                    texts = frozenset(self._text(o, attribute) for o in operands)
                    atom: model.Condition = model.TextIn(attribute.path, texts)
                elif attribute.kind in (Kind.ENUM, Kind.BOOL):
                    values = frozenset(self._value(o, attribute) for o in operands)
                    atom = model.OneOf(attribute.path, values)
                else:
                    self._fail("TG211", f"`in` does not apply to {ref.path} ({attribute.kind.value})",
                               expression.span, self._operators_help(attribute))
                return model.Not(atom) if negated else atom
            case ast.Has(attribute=ref, quantifier=quantifier, operands=operands):
                attribute = self._attribute(ref)
                if attribute.kind is not Kind.APPROVERS:
                    self._fail("TG211", f"`has` applies to grant.approved_by, not {ref.path}",
                               expression.span, self._operators_help(attribute))
                return model.ApprovedBy(frozenset(self._value(o, attribute) for o in operands),
                                        quantifier)
        raise AssertionError(f"unknown condition {expression!r}")

    def _comparison(self, comparison: ast.Comparison) -> model.Condition:
        attribute = self._attribute(comparison.attribute)
        operator, operand = comparison.operator, comparison.operand
        if attribute.kind is Kind.TIME:
            if operator in ("==", "!="):
                self._fail("TG211", f"compare times with <, <=, > or >=, not {operator}",
                           comparison.span)
            return _ordered(self._time(operand), operator, attribute.path)
        if operator not in ("==", "!="):
            self._fail("TG211", f"{operator} does not apply to {attribute.path} "
                       f"({attribute.kind.value})", comparison.span,
                       self._operators_help(attribute))
        if attribute.kind is Kind.TEXT:
            if isinstance(operand, ast.AttributeRef):
                other = self._attribute(operand)
                if other.kind is not Kind.TEXT:
                    self._fail("TG213", f"{attribute.path} is a text; {other.path} is not",
                               operand.span)
                atom: model.Condition = model.TextIn(attribute.path, other=other.path)
            else:
                atom = model.TextIn(attribute.path, frozenset((self._text(operand, attribute),)))
        elif attribute.kind in (Kind.ENUM, Kind.BOOL):
            atom = model.OneOf(attribute.path, frozenset((self._value(operand, attribute),)))
        else:
            self._fail("TG211", f"{operator} does not apply to {attribute.path}", comparison.span,
                       self._operators_help(attribute))
        return model.Not(atom) if operator == "!=" else atom

    # ---- operands -----------------------------------------------------------------------

    def _attribute(self, ref: ast.AttributeRef) -> Attribute:
        attribute = ATTRIBUTES.get(ref.path)
        if attribute is None:
            self._fail("TG210", f"'{ref.path}' is not an attribute", ref.span,
                       did_you_mean(ref.path, ATTRIBUTES) or "attributes: " + ", ".join(ATTRIBUTES))
        if attribute.path.startswith("grant.") and not self.grants_allowed:
            self._fail("TG214", f"a deny rule cannot test {ref.path}", ref.span,
                       "grants only make permit rules apply; put the grant condition on the "
                       "permit rule")
        return attribute

    def _value(self, operand: ast.Operand, attribute: Attribute):
        if attribute.kind is Kind.BOOL:
            if isinstance(operand, ast.Symbol) and operand.name in _BOOLEANS:
                return _BOOLEANS[operand.name]
            self._fail("TG213", f"{attribute.path} is true or false", operand.span)
        if not isinstance(operand, ast.Symbol):
            self._fail("TG213", f"{attribute.path} takes a declared name, written without quotes",
                       operand.span)
        vocabulary = self.vocabularies.get(attribute.vocabulary or "")
        if vocabulary is None:
            self._fail("TG203", f"no vocabulary {attribute.vocabulary} is declared", operand.span)
        if operand.name not in vocabulary.labels:
            self._fail("TG212", f"'{operand.name}' is not a declared value of {vocabulary.attribute}",
                       operand.span, did_you_mean(operand.name, vocabulary.labels)
                       or "declared: " + ", ".join(vocabulary.labels))
        return operand.name

    def _text(self, operand: ast.Operand, attribute: Attribute) -> str:
        if not isinstance(operand, ast.Text):
            self._fail("TG213", f"{attribute.path} is a text; write the value in quotes",
                       operand.span)
        return operand.value

    def _time(self, operand: ast.Operand) -> model.TimeOperand:
        if isinstance(operand, ast.Instant):
            try:
                return parse_instant(operand.text)
            except ValueError as problem:
                self._fail("TG215", f"'{operand.text}' is not an instant: {problem}", operand.span,
                           "write a full instant with its offset, e.g. 2027-06-30T00:00:00+08:00")
        if isinstance(operand, ast.AttributeRef):
            other = self._attribute(operand)
            if other.kind is Kind.TIME:
                return other.path
        self._fail("TG213", "a time is compared with an instant or another time attribute",
                   operand.span, "e.g. context.time < 2027-01-01T00:00:00+08:00")

    @staticmethod
    def _operators_help(attribute: Attribute) -> str:
        return {
            Kind.ENUM: "use ==, !=, in [..] or not in [..]",
            Kind.BOOL: f"write {attribute.path} or not {attribute.path}",
            Kind.TEXT: 'use == "…", != "…", in [..] or not in [..]',
            Kind.TIME: "use <, <=, > or >=",
            Kind.APPROVERS: "use has x, has all [x, y] or has any [x, y]",
        }[attribute.kind]


def _ordered(right: model.TimeOperand, operator: str, left: str) -> model.Condition:
    """`left OP right` as a `Before` (times are integers of µs, so <= is < one µs later)."""
    if operator == "<":
        return model.Before(left, right)
    if operator == ">":
        return model.Before(right, left)
    if operator == "<=":
        return model.Before(left, right + 1) if isinstance(right, int) else model.Not(model.Before(right, left))
    # >=: right <= left
    return model.Before(right - 1, left) if isinstance(right, int) else model.Not(model.Before(left, right))
