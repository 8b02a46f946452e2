"""Read a request (the contract's JSON shape, as a dict) into the evaluator's flat values.

A bad request is an error, never a decision: every problem names the attribute, the value
given and what is allowed. This runs on every decision, so it is a tight loop over a table
built once per policy set rather than a model validation.

Two rules hold on every entry point: an empty text is an absent attribute (proto3 cannot tell
them apart, so neither may anyone else), and for a dataset the policy set's catalog lists, the
catalog's attributes are the ones decided on; a request stating other values is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tiergate.diagnostics import did_you_mean

from .model import NO_CATALOG, Catalog, Vocabulary
from .schema import REQUEST_ATTRIBUTES, REQUEST_SECTIONS, Kind
from .timeutil import format_instant, parse_instant

# INVARIANT: slots follow REQUEST_ATTRIBUTES; the compiled tree indexes values by slot.
SLOT = {attribute.path: index for index, attribute in enumerate(REQUEST_ATTRIBUTES)}
TIME_SLOT = SLOT["context.time"]
DATASET_SLOT = SLOT["resource.id"]
_TOP_LEVEL = frozenset(REQUEST_SECTIONS) | {a.path for a in REQUEST_ATTRIBUTES if "." not in a.path}
# How much of a bad value an error message quotes: enough to recognise it, never so much that
# the error outgrows what a gRPC client accepts as status details.
SHOWN_CHARACTERS = 100


_SECTIONED = tuple((SLOT[a.path], a.section, a.key, a.kind is Kind.TIME)
                  for a in REQUEST_ATTRIBUTES)


def decided_request(values: list) -> dict:
    """The request as it was decided, in the contract's JSON shape: catalog attributes settled,
    context.time the instant decided at, absent attributes left out. For audit records."""
    out: dict = {}
    for slot, section, key, is_time in _SECTIONED:
        value = values[slot]
        if value is None:
            continue
        if is_time:
            value = format_instant(value)
        if section is None:
            out[key] = value
        else:
            out.setdefault(section, {})[key] = value
    return out


@dataclass(frozen=True)
class Problem:
    attribute: str
    value: Any
    allowed: tuple[str, ...]
    message: str
    message_zh: str = ""  # the same in Chinese, where the problem is more than a bad value

    def to_dict(self) -> dict:
        out = {"attribute": self.attribute, "value": self.value, "allowed": list(self.allowed),
               "message": self.message}
        if self.message_zh:
            out["message_zh"] = self.message_zh
        return out


class RequestError(ValueError):
    """The request cannot be decided as given; `problems` says what to fix."""

    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    def to_dict(self) -> dict:
        return {"error": "invalid_request", "message": str(self),
                "problems": [p.to_dict() for p in self.problems]}


def requested_time_refused(value: Any) -> RequestError:
    """The error for a request that names its own time where the clock decides."""
    return RequestError([Problem(
        "context.time", _shown_value(value), (),
        "context.time is not accepted here: a served decision is made at the server's clock "
        "(a requested time could re-open an expired grant); leave context.time out, or run a "
        "what-if server with accept_request_time = true",
        "此处不接受 context.time：服务端以自身时钟决策（请求指定的时间可能使已到期的授权重新生效）；"
        "请去掉 context.time")])


def shorten(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _shown_value(value: Any) -> Any:
    """A bad value as a problem carries it: texts and other non-trivial values cut short."""
    if isinstance(value, str):
        return shorten(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return shorten(repr(value))


def _show(value: Any) -> str:
    return f"'{shorten(value)}'" if isinstance(value, str) else shorten(repr(value))


class RequestReader:
    """Validates requests against one policy set's vocabularies and catalog."""

    def __init__(self, vocabularies: Mapping[str, Vocabulary], catalog: Catalog = NO_CATALOG):
        self._vocabularies = vocabularies
        self._catalog = catalog if catalog.exists else None
        self._datasets = {d.id: d.decided for d in catalog.datasets.values()}
        # With a catalog, the catalogued attributes are read as stated (None when absent) and
        # settled by _settle_dataset: from the catalog, or checked and defaulted as usual.
        deferred = self._catalog is not None
        # (slot, section, key, kind, allowed values, required, path, default) per attribute.
        self._table = []
        # INVARIANT: in schema.CATALOGUED order, as model.Dataset.decided gives the values.
        self._deferred = []
        for attribute in REQUEST_ATTRIBUTES:
            allowed = None
            if attribute.kind is Kind.ENUM:
                allowed = vocabularies[attribute.vocabulary].values
            required, default = attribute.required, False if attribute.kind is Kind.BOOL else None
            if deferred and attribute.catalogued:
                self._deferred.append((SLOT[attribute.path], attribute.path, required, default,
                                       tuple(sorted(allowed or ()))))
                required, default = False, None
            self._table.append((SLOT[attribute.path], attribute.section, attribute.key,
                                attribute.kind, allowed, required, attribute.path, default))
        self._keys = {s: frozenset(a.key for a in REQUEST_ATTRIBUTES if a.section == s)
                      for s in REQUEST_SECTIONS}
        self._fast = _compile_fast_reader(self._table, self._keys)

    def read(self, request: Mapping[str, Any]) -> list:
        """The request's values by slot; context.time is µs or None (meaning now)."""
        # PERF: a well-formed request (the usual case) is read by straight-line code; anything
        # irregular goes to the careful reader below, which names every problem.
        values = self._fast(request)
        if values is None:
            values = self._read_carefully(request)
        if self._catalog is not None:
            self._settle_dataset(values)
        return values

    def _settle_dataset(self, values: list) -> None:
        """Put the catalog's attributes in place of the stated ones, or refuse the request."""
        dataset_id = values[DATASET_SLOT]
        decided = self._datasets.get(dataset_id) if dataset_id is not None else None
        problems = []
        if decided is not None:
            for (slot, path, *_), value in zip(self._deferred, decided):
                stated = values[slot]
                if stated is not None and stated != value:
                    problems.append(Problem(
                        path, _shown_value(stated), () if value is None else (_plain(value),),
                        f"{path} is stated as {_show(stated)}, but the catalog lists dataset "
                        f"{_show(dataset_id)} with {_catalog_text(value)}; leave {path} out or "
                        "state the catalog's value",
                        f"请求声明 {path} 为 {_show(stated)}，但数据资源目录中数据集 "
                        f"{_show(dataset_id)} 为 {_catalog_text(value)}；请省略该属性或与目录一致"))
                values[slot] = value
        elif self._catalog.uncatalogued == "refuse":
            if dataset_id is None:
                problems.append(Problem("resource.id", None, (),
                                        "resource.id is required: this policy set decides only "
                                        "on datasets its catalog lists",
                                        "缺少 resource.id：本策略只对数据资源目录中的数据集决策"))
            else:
                problems.append(Problem("resource.id", _shown_value(dataset_id), (),
                                        f"resource.id {_show(dataset_id)} is not in the catalog; "
                                        "this policy set decides only on catalogued datasets",
                                        f"数据集 {_show(dataset_id)} 不在数据资源目录中；"
                                        "本策略只对目录中的数据集决策"))
        else:
            for slot, path, required, default, allowed in self._deferred:
                if values[slot] is None:
                    if required:
                        problems.append(Problem(path, None, allowed, f"{path} is required for a "
                                                "dataset the catalog does not list"))
                    values[slot] = default
        if problems:
            raise RequestError(problems)

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
        for slot, section, key, kind, allowed, required, path, default in self._table:
            value = (sections[section] if section else request).get(key)
            if value is None or value == "":  # an empty text is an absent attribute
                if required:
                    problems.append(Problem(path, None, tuple(sorted(allowed or ())),
                                            f"{path} is required"))
                else:
                    values[slot] = default
                continue
            if kind is Kind.ENUM:
                if value.__class__ is not str or value not in allowed:
                    problems.append(self._undeclared(path, value, allowed))
                    continue
            elif kind is Kind.BOOL:
                if value is not True and value is not False:
                    problems.append(Problem(path, _shown_value(value), ("true", "false"),
                                            f"{path} must be true or false, not {_show(value)}"))
                    continue
            elif kind is Kind.TEXT:
                if value.__class__ is not str:
                    problems.append(Problem(path, _shown_value(value), (),
                                            f"{path} must be a text, not {_show(value)}"))
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
        problems.append(Problem(path, _shown_value(value),
                                ("RFC 3339 with offset, e.g. 2026-11-22T10:00:00+08:00",),
                                f"{path} {_show(value)} is not an instant: {reason}"))
        return None

    def _undeclared(self, path: str, value: Any, allowed: frozenset) -> Problem:
        ordered = tuple(v for v in self._vocabularies[path].labels if v in allowed)
        hint = did_you_mean(value, ordered) if isinstance(value, str) and len(value) < 64 else None
        message = (f"{path} {_show(value)} is not a declared value; allowed: {', '.join(ordered)}"
                   + (f" ({hint})" if hint else ""))
        return Problem(path, _shown_value(value), ordered, message)

    @staticmethod
    def _unknown(path: str, known: list[str]) -> Problem:
        path = shorten(path)
        hint = did_you_mean(path, known)
        return Problem(path, None, tuple(known),
                       f"{path} is not a request attribute" + (f" ({hint})" if hint else "")
                       + f"; known: {', '.join(known)}")


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _catalog_text(value: Any) -> str:
    if value is None:
        return "no value"
    return str(value).lower() if isinstance(value, bool) else f"'{value}'"


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
    for slot, section, key, kind, allowed, required, _path, default in table:
        v = f"v{slot}"
        names.append(v)
        source = section or "request"
        if kind is Kind.BOOL:  # absent is the default; an explicit null goes the careful way
            lines += [f"    {v} = {source}.get({key!r}, {default!r})",
                      f"    if {v} is not True and {v} is not False"
                      + (":" if default is not None else f" and {v} is not {default!r}:"),
                      "        return None"]
            continue
        lines.append(f"    {v} = {source}.get({key!r})")
        # An empty text is an absent attribute; the careful reader says so for required ones.
        absent_ok = "" if required else f"{v} is not None and "
        if kind is Kind.ENUM:
            env[f"ALLOWED_{slot}"] = allowed
            lines += [f"    if {absent_ok}({v}.__class__ is not str or {v} not in ALLOWED_{slot}):",
                      "        return None"]
        elif kind is Kind.TEXT:
            lines += [f"    if {absent_ok}{v}.__class__ is not str:", "        return None",
                      f"    if {v} == '':",
                      "        return None" if required else f"        {v} = None"]
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
