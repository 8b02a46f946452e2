"""The gateway mapping: how an HTTP request seen by Envoy becomes a Tiergate request.

A platform or compliance engineer writes it in TOML next to the policies (`gateway.toml`):
where each request attribute comes from (a verified JWT claim, a header the gateway's
authentication filter set, a default), which URL paths name which dataset, catalog class and
tier, and which HTTP method means which action. `load_mapping` checks the file whole
(mapping_file.py) and reports every problem with file, line and field, like the policy checker;
`GatewayMapping.translate` then runs per request and raises `MappingError` (bilingual, naming
what was missing) rather than guess.

Precedence for one attribute: what the matched route says (a path capture or a constant) wins,
then a verified JWT claim, then a header, then the mapping's default.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import unquote

from cachetools import LRUCache

from tiergate.engine.schema import REQUEST_ATTRIBUTES, Kind

MAPPING_FILE = "gateway.toml"
ATTRIBUTES = {a.path: a for a in REQUEST_ATTRIBUTES}


def load_mapping(path: str | Path) -> GatewayMapping:
    """Read, validate and compile a mapping file; DiagnosticError lists every problem."""
    from .mapping_file import load_mapping_file  # the file format's checks live there

    return load_mapping_file(path)


def parse_mapping(text: str, name: str = "<mapping>") -> GatewayMapping:
    """As load_mapping, from the file's text."""
    from .mapping_file import parse_mapping_text

    return parse_mapping_text(text, name)


@dataclass(frozen=True)
class AttributeSource:
    path: str
    kind: Kind
    claim: tuple[str, ...] | None
    header: str | None
    default: Any
    # The gateway's words for the policy's values ({"高校": "university"}); others pass as is.
    values: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern
    captures: tuple[tuple[str, str], ...]  # (regex group, attribute path)
    methods: frozenset[str] | None
    action: str | None
    constants: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class MappingProblem:
    """Why a request could not be translated, in English and Chinese."""

    attribute: str | None
    message_en: str
    message_zh: str

    def to_dict(self) -> dict:
        return {"attribute": self.attribute, "message_en": self.message_en,
                "message_zh": self.message_zh}


class MappingError(ValueError):
    """The mapping cannot complete a Tiergate request from this HTTP request."""

    def __init__(self, problems: Iterable[MappingProblem]):
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message_en for p in self.problems))


@dataclass(frozen=True)
class GatewayMapping:
    """A loaded mapping. Immutable; safe to share between threads."""

    file: str
    jwt_filter: str
    jwt_payloads: tuple[str, ...]
    actions: Mapping[str, str]
    attributes: tuple[AttributeSource, ...]
    routes: tuple[Route, ...]
    jwt_payload_header: str = "x-jwt-payload"  # where ext_authz over HTTP finds the claims

    def translate(self, *, method: str, path: str, headers: Mapping[str, str],
                  claims: Mapping[str, Any] | None = None) -> dict:
        """The Tiergate request (contract JSON shape) for one HTTP request.

        `headers` has lowercased names, as Envoy sends them. Raises MappingError naming every
        attribute it could not fill; the caller denies the request.
        """
        method = method.upper()
        route, match = self._route(method, path)
        values: dict[str, Any] = {}
        problems: list[MappingProblem] = []
        for group, attribute in route.captures:
            raw = match.group(group)
            try:
                text = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                problems.append(_problem(attribute, f"path segment {raw!r} is not UTF-8",
                                         f"路径片段 {raw!r} 不是 UTF-8 编码"))
                continue
            if "/" in text or "\\" in text:
                # SECURITY: a placeholder is one segment; %2F must not smuggle another in.
                problems.append(_problem(attribute, f"path segment {raw!r} decodes to a slash",
                                         f"路径片段 {raw!r} 解码后含有斜杠"))
                continue
            self._put(values, problems, attribute, text, f"path segment {text!r}",
                      f"路径片段 {text!r}")
        for attribute, value in route.constants:
            values[attribute] = value
        if "action" not in values:
            action = route.action or self.actions.get(method)
            if action is not None:
                values["action"] = action
            elif not any(s.path == "action" for s in self.attributes):
                problems.append(_problem(
                    "action", f"no action for method {method} on route {route.name}",
                    f"路由 {route.name} 没有为 {method} 方法指定操作（action）"))
        for source in self.attributes:
            if source.path not in values:
                self._fill(values, problems, source, headers, claims)
        if problems:
            raise MappingError(problems)
        return _nest(values)

    @functools.cached_property
    def headers_read(self) -> tuple[str, ...]:
        """Every header a translation reads, the forwarded token payload's included: with the
        method and path, the whole input of a translation over HTTP (TranslationCache)."""
        named = {s.header for s in self.attributes if s.header is not None}
        return tuple(sorted(named | {self.jwt_payload_header}))

    def _route(self, method: str, path: str) -> tuple[Route, re.Match]:
        # Envoy sends the path with its query string; routes name the path alone.
        bare = path.split("?", 1)[0].split("#", 1)[0]
        other_methods: set[str] = set()
        for route in self.routes:
            match = route.pattern.fullmatch(bare)
            if match is None:
                continue
            if route.methods is not None and method not in route.methods:
                other_methods |= route.methods
                continue
            return route, match
        if other_methods:
            allowed = ", ".join(sorted(other_methods))
            raise MappingError([_problem(
                None, f"no route allows {method} {bare} (routes for this path allow {allowed})",
                f"没有路由允许 {method} {bare}（该路径允许的方法：{allowed}）")])
        raise MappingError([_problem(None, f"no route matches {method} {bare}",
                                     f"没有路由匹配 {method} {bare}")])

    def _fill(self, values: dict, problems: list, source: AttributeSource,
              headers: Mapping[str, str], claims: Mapping[str, Any] | None) -> None:
        # SECURITY: a verified claim beats a header. jwt_authn checked the claim's signature;
        # a header is only as trustworthy as the edge's stripping of client-sent copies.
        if source.claim is not None and claims is not None:
            value = _walk(claims, source.claim)
            if value is not None:
                name = ".".join(source.claim)
                if source.values is not None and isinstance(value, str):
                    value = source.values.get(value, value)
                self._put(values, problems, source.path, value, f"claim {name}", f"声明 {name}")
                return
        if source.header is not None:
            text = headers.get(source.header)
            if text is not None and text.strip():
                value = text.strip()
                if source.values is not None:
                    value = source.values.get(value, value)
                self._put(values, problems, source.path, value,
                          f"header {source.header} {text.strip()!r}",
                          f"请求头 {source.header} {text.strip()!r}")
                return
        if source.default is not None:
            values[source.path] = source.default
            return
        attribute = ATTRIBUTES[source.path]
        if attribute.catalogued and values.get("resource.id"):
            return  # the dataset is named: its catalog entry says the rest (or it is refused)
        if attribute.required:
            problems.append(_missing(source))

    @staticmethod
    def _put(values: dict, problems: list, attribute: str, value: Any, where_en: str,
             where_zh: str) -> None:
        converted = convert_value(ATTRIBUTES[attribute].kind, value)
        if converted is None:
            kind = ATTRIBUTES[attribute].kind
            problems.append(_problem(attribute, f"{where_en} is not {kind.value} (for {attribute})",
                                     f"{where_zh} 不是有效的{_KIND_ZH[kind]}（用于 {attribute}）"))
        else:
            values[attribute] = converted

    def undeclared_values(self, vocabularies: Mapping[str, Any]) -> list[str]:
        """Values this mapping writes that a policy set does not declare (for a warning at
        wiring time; at decision time the engine refuses them anyway)."""
        found = []
        written = [("actions", "action", v) for v in self.actions.values()]
        for route in self.routes:
            if route.action is not None:
                written.append((f"route {route.name}", "action", route.action))
            written += [(f"route {route.name}", a, v) for a, v in route.constants]
        written += [("attributes", s.path, s.default) for s in self.attributes
                    if s.default is not None]
        written += [(f"attributes {s.path} values", s.path, v) for s in self.attributes
                    for v in (s.values or {}).values()]
        for where, attribute, value in written:
            vocabulary = vocabularies.get(attribute)
            if vocabulary is not None and value not in vocabulary.values:
                found.append(f"{self.file}: {where}: {attribute} {value!r} is not declared by the "
                             f"policy set; allowed: {', '.join(vocabulary.labels)}")
        return found


_KIND_ZH = {Kind.ENUM: "取值", Kind.BOOL: "布尔值（true 或 false）", Kind.TEXT: "文本",
            Kind.TIME: "时间（RFC 3339）"}


def _problem(attribute: str | None, en: str, zh: str) -> MappingProblem:
    return MappingProblem(attribute, "mapping: " + en, "映射：" + zh)


def _missing(source: AttributeSource) -> MappingProblem:
    claim = ".".join(source.claim) if source.claim else None
    if claim and source.header:
        en = f"claim {claim} and header {source.header} are both missing"
        zh = f"缺少 JWT 声明 {claim}，也缺少请求头 {source.header}"
    elif claim:
        en, zh = f"claim {claim} is missing", f"缺少 JWT 声明 {claim}"
    else:
        en, zh = f"header {source.header} is missing", f"缺少请求头 {source.header}"
    return _problem(source.path, f"{en} (needed for {source.path})",
                    f"{zh}（用于 {source.path}）")


class TranslationCache:
    """Recent translations. A translation is a function of the mapping, the method, the path,
    headers_read and the claims alone, so a gateway's repeated requests skip it. The claims
    are named by `claims_key`: the bytes they were read from (the gRPC CheckRequest's token
    metadata), or None when they come from a header in headers_read (ext_authz over HTTP).
    Only completed translations are kept; their dicts are shared and must not be changed (the
    engine only reads them). Thread-safe."""

    def __init__(self, size: int = 4096):
        self._size = size
        self._lock = threading.Lock()
        self._mapping: GatewayMapping | None = None
        self._kept: LRUCache = LRUCache(size)

    def translate(self, mapping: GatewayMapping, method: str, path: str,
                  headers: Mapping[str, str],
                  claims: Callable[[GatewayMapping], Mapping[str, Any] | None],
                  claims_key: bytes | None = None) -> dict:
        key = (method, path, claims_key, *[headers.get(name) for name in mapping.headers_read])
        with self._lock:
            if self._mapping is mapping:
                kept = self._kept.get(key)
                if kept is not None:
                    return kept
        translated = mapping.translate(method=method, path=path, headers=headers,
                                       claims=claims(mapping))
        with self._lock:
            if self._mapping is not mapping:  # a reloaded mapping: the old answers are void
                self._mapping, self._kept = mapping, LRUCache(self._size)
            self._kept[key] = translated
        return translated


def _walk(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = claims
    for name in path:
        # dict, not typing.Mapping: claims are parsed JSON, and the ABC check costs per call.
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def convert_value(kind: Kind, value: Any) -> Any:
    """The attribute's value from a header, path segment or claim; None if it cannot be one."""
    if kind is Kind.BOOL:
        if value is True or value is False:
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return None
    if isinstance(value, str):
        return value
    # JSON numbers arrive as floats from a protobuf Struct; an id claim may be numeric.
    if kind is Kind.TEXT and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and float(value).is_integer():
        return str(int(value))
    return None


def _nest(values: Mapping[str, Any]) -> dict:
    request: dict = {}
    for path, value in values.items():
        section, _, key = path.partition(".")
        if key:
            request.setdefault(section, {})[key] = value
        else:
            request[path] = value
    return request


