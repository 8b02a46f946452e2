"""Read a request (the contract's JSON shape, as a dict) into the evaluator's flat values.

A bad request is an error, never a decision: every problem names the attribute, the value
given and what is allowed. This runs on every decision, so it is a tight loop over a table
built once per policy set rather than a model validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tiergate.grammar.diagnostics import did_you_mean

from .model import Vocabulary
from .schema import REQUEST_ATTRIBUTES, REQUEST_SECTIONS, Kind
from .timeutil import parse_instant

# INVARIANT: slots follow REQUEST_ATTRIBUTES; the compiled tree indexes values by slot.
SLOT = {attribute.path: index for index, attribute in enumerate(REQUEST_ATTRIBUTES)}
TIME_SLOT = SLOT["context.time"]
_TOP_LEVEL = frozenset(REQUEST_SECTIONS) | {a.path for a in REQUEST_ATTRIBUTES if "." not in a.path}


@dataclass(frozen=True)
class Problem:
    attribute: str
    value: Any
    allowed: tuple[str, ...]
    message: str

    def to_dict(self) -> dict:
        return {"attribute": self.attribute, "value": self.value, "allowed": list(self.allowed),
                "message": self.message}


class RequestError(ValueError):
    """The request cannot be decided as given; `problems` says what to fix."""

    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    def to_dict(self) -> dict:
        return {"error": "invalid_request", "message": str(self),
                "problems": [p.to_dict() for p in self.problems]}


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


class RequestReader:
    """Validates requests against one policy set's vocabularies."""

    def __init__(self, vocabularies: Mapping[str, Vocabulary]):
        self._vocabularies = vocabularies
        # (slot, section, key, kind, allowed values, required) per attribute, in slot order.
        self._table = []
        for attribute in REQUEST_ATTRIBUTES:
            allowed = None
            if attribute.kind is Kind.ENUM:
                allowed = vocabularies[attribute.vocabulary].values
            self._table.append((SLOT[attribute.path], attribute.section, attribute.key,
                                attribute.kind, allowed, attribute.required, attribute.path))
        self._keys = {s: frozenset(a.key for a in REQUEST_ATTRIBUTES if a.section == s)
                      for s in REQUEST_SECTIONS}
        self._fast = _compile_fast_reader(self._table, self._keys)

    def read(self, request: Mapping[str, Any]) -> list:
        """The request's values by slot; context.time is µs or None (meaning now)."""
        # PERF: a well-formed request (the usual case) is read by straight-line code; anything
        # irregular goes to the careful reader below, which names every problem.
        values = self._fast(request)
        return values if values is not None else self._read_carefully(request)

    def _read_carefully(self, request: Mapping[str, Any]) -> list:
        if not isinstance(request, Mapping):
            raise RequestError([Problem("request", type(request).__name__, (),
                                        "a request is a JSON object")])
        problems: list[Problem] = []
        if not request.keys() <= _TOP_LEVEL:
            for key in sorted(request.keys() - _TOP_LEVEL, key=str):
                problems.append(self._unknown(str(key), sorted(_TOP_LEVEL)))
        sections = {}
        for section in REQUEST_SECTIONS:
            part = request.get(section)
            if part is None:
                part = {}
            elif not isinstance(part, Mapping):
                problems.append(Problem(section, part, (), f"{section} must be a JSON object"))
                part = {}
            elif not part.keys() <= self._keys[section]:
                for key in sorted(part.keys() - self._keys[section], key=str):
                    problems.append(self._unknown(f"{section}.{key}",
                                                  sorted(f"{section}.{k}" for k in self._keys[section])))
            sections[section] = part
        values: list = [None] * len(self._table)
        for slot, section, key, kind, allowed, required, path in self._table:
            value = (sections[section] if section else request).get(key)
            if value is None:
                if required:
                    problems.append(Problem(path, None, tuple(sorted(allowed or ())),
                                            f"{path} is required"))
                elif kind is Kind.BOOL:
                    values[slot] = False
                continue
            if kind is Kind.ENUM:
                if value.__class__ is not str or value not in allowed:
                    problems.append(self._undeclared(path, value, allowed))
                    continue
            elif kind is Kind.BOOL:
                if value is not True and value is not False:
                    problems.append(Problem(path, value, ("true", "false"),
                                            f"{path} must be true or false, not {_show(value)}"))
                    continue
            elif kind is Kind.TEXT:
                if value.__class__ is not str:
                    problems.append(Problem(path, value, (), f"{path} must be a text, not {_show(value)}"))
                    continue
            elif kind is Kind.TIME:
                value = self._instant(path, value, problems)
            values[slot] = value
        if problems:
            raise RequestError(problems)
        return values

    @staticmethod
    def _instant(path: str, value: Any, problems: list[Problem]) -> int | None:
        if value.__class__ is str:
            try:
                return parse_instant(value)
            except ValueError as problem:
                reason = str(problem)
        else:
            reason = "it is not a text"
        problems.append(Problem(path, value, ("RFC 3339 with offset, e.g. 2026-11-22T10:00:00+08:00",),
                                f"{path} {_show(value)} is not an instant: {reason}"))
        return None

    def _undeclared(self, path: str, value: Any, allowed: frozenset) -> Problem:
        ordered = tuple(v for v in self._vocabularies[path].labels if v in allowed)
        hint = did_you_mean(value, ordered) if isinstance(value, str) else None
        message = (f"{path} {_show(value)} is not a declared value; allowed: {', '.join(ordered)}"
                   + (f" ({hint})" if hint else ""))
        return Problem(path, value, ordered, message)

    @staticmethod
    def _unknown(path: str, known: list[str]) -> Problem:
        hint = did_you_mean(path, known)
        return Problem(path, None, tuple(known),
                       f"{path} is not a request attribute" + (f" ({hint})" if hint else "")
                       + f"; known: {', '.join(known)}")


def _compile_fast_reader(table: list, keys: dict[str, frozenset]):
    """Straight-line code that reads a well-formed request, or returns None.

    It accepts exactly what the careful reader accepts without a problem, but only in the
    plain shape (dicts, absent optional attributes) and gives up (None) at anything else:
    the careful reader then decides, and words the errors. Generated from the attribute table
    so that it follows REQUEST_ATTRIBUTES; the code is short enough to read in
    `RequestReader._fast.source`.
    """
    env: dict[str, Any] = {"TOP": _TOP_LEVEL, "EMPTY": {}, "parse_instant": parse_instant}
    lines = ["def read_fast(request):",
             "    if request.__class__ is not dict or not request.keys() <= TOP:",
             "        return None"]
    for section in REQUEST_SECTIONS:
        env[f"KEYS_{section}"] = keys[section]
        lines += [f"    {section} = request.get({section!r})",
                  f"    if {section} is None:",
                  f"        {section} = EMPTY",
                  f"    elif {section}.__class__ is not dict or not {section}.keys() <= KEYS_{section}:",
                  "        return None"]
    names = []
    for slot, section, key, kind, allowed, required, _path in table:
        v = f"v{slot}"
        names.append(v)
        source = section or "request"
        if kind is Kind.BOOL:  # absent is false; an explicit null goes the careful way
            lines += [f"    {v} = {source}.get({key!r}, False)",
                      f"    if {v} is not True and {v} is not False:",
                      "        return None"]
            continue
        lines.append(f"    {v} = {source}.get({key!r})")
        absent_ok = "" if required else f"{v} is not None and "
        if kind is Kind.ENUM:
            env[f"ALLOWED_{slot}"] = allowed
            lines += [f"    if {absent_ok}({v}.__class__ is not str or {v} not in ALLOWED_{slot}):",
                      "        return None"]
        elif kind is Kind.TEXT:
            lines += [f"    if {absent_ok}{v}.__class__ is not str:", "        return None"]
        elif kind is Kind.TIME:
            lines += [f"    if {v} is not None:",
                      f"        if {v}.__class__ is not str:",
                      "            return None",
                      "        try:",
                      f"            {v} = parse_instant({v})",
                      "        except ValueError:",
                      "            return None"]
        else:
            raise AssertionError(f"no fast reading for {kind}")
    lines.append(f"    return [{', '.join(names)}]")
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<tiergate request reader>", "exec"), env)
    read_fast = env["read_fast"]
    read_fast.source = source
    return read_fast
