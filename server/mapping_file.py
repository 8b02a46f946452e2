"""The gateway mapping file (TOML): its shape, and the checks that turn it into a GatewayMapping.

Loading is all or nothing, like a policy set: every problem is collected and reported as a
Diagnostic with file, line, column and the field's path (`routes[2].path`), with a help line.
tomllib keeps no positions, so lines are found by scanning for the field (a best effort; the
field path is always in the message).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tiergate.engine.schema import REQUEST_ATTRIBUTES, REQUEST_SECTIONS
from tiergate.diagnostics import Diagnostic, DiagnosticError, Span, did_you_mean

from .mapping import ATTRIBUTES, AttributeSource, GatewayMapping, Route, convert_value

JWT_FILTER = "envoy.filters.http.jwt_authn"
# Short names a path placeholder or regex group may use for the resource it addresses.
SHORT_NAMES = {
    "dataset_id": "resource.id",
    "catalog_class": "resource.catalog_class",
    "tier": "resource.tier",
    "personal": "resource.personal",
    "owner_org_id": "resource.owner_org_id",
}
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # an RFC 9110 token, lowercased

# ----------------------------------------------------------------------------------------------
# The file's shape (pydantic: validation at the edge, never on the request path)

class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Spec):
    """Where one attribute's value comes from; the first present of claim, header, default."""

    claim: list[str] | None = None
    header: str | None = None
    default: Any = None
    values: dict[str, Any] | None = None

    @field_validator("claim", mode="before")
    @classmethod
    def _claim_path(cls, value: Any) -> Any:
        # A claim is one top-level name (which may hold dots, as namespaced claims do) or a
        # list of names walking into nested objects.
        return [value] if isinstance(value, str) else value


class JwtSpec(_Spec):
    filter: str = JWT_FILTER
    payload: list[str] = Field(min_length=1)
    # For ext_authz over HTTP, which carries no metadata: the header jwt_authn's
    # forward_payload_header puts the verified payload in (base64url JSON).
    payload_header: str = Field("x-jwt-payload", pattern=r"^[a-z0-9-]+$")

    @field_validator("payload", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RouteSpec(_Spec):
    name: str | None = None
    path: str | None = None
    regex: str | None = None
    methods: list[str] | None = None
    action: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)


class MappingSpec(_Spec):
    version: int = 1
    jwt: JwtSpec | None = None
    actions: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    routes: list[RouteSpec] = Field(min_length=1)


def load_mapping_file(path: str | Path) -> GatewayMapping:
    """Read, validate and compile a mapping file; DiagnosticError lists every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DiagnosticError([Diagnostic("TG701", f"{name}: mapping file not found", None,
                                          "name the gateway mapping file (gateway.toml)")]) from None
    except (OSError, UnicodeDecodeError) as problem:
        raise DiagnosticError([Diagnostic("TG701", f"{name}: cannot read: {problem}", None)]) from None
    return parse_mapping_text(text, name)


def parse_mapping_text(text: str, name: str = "<mapping>") -> GatewayMapping:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as problem:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(problem))
        span = Span(name, int(where[1]), int(where[2]), int(where[1]), int(where[2])) if where else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(problem))
        raise DiagnosticError([Diagnostic("TG702", f"not valid TOML: {message}", span)]) from None
    try:
        spec = MappingSpec.model_validate(raw)
    except ValidationError as error:
        raise DiagnosticError([_pydantic_diagnostic(e, text, name) for e in error.errors()]) from None
    compiler = _Compiler(text, name)
    mapping = compiler.compile(spec)
    if compiler.diagnostics:
        raise DiagnosticError(compiler.diagnostics)
    return mapping


def _pydantic_diagnostic(error: Mapping[str, Any], text: str, name: str, *,
                         root: type[BaseModel] = None, prefix: tuple = ()) -> Diagnostic:
    """A pydantic error as a diagnostic; `root` is the model validated at `prefix`."""
    inner = tuple(error["loc"])
    loc = prefix + inner
    help_line = None
    if error["type"] == "extra_forbidden":
        model = _model_at(inner[:-1], root or MappingSpec)
        message = f"{_show_loc(loc)}: unknown field"
        help_line = did_you_mean(str(loc[-1]), model.model_fields) if model else None
        if model and not help_line:
            help_line = "known fields: " + ", ".join(model.model_fields)
    else:
        message = f"{_show_loc(loc)}: {error['msg'][0].lower()}{error['msg'][1:]}"
    return Diagnostic("TG703", message, _span(text, name, loc), help_line)


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        for candidate in (SourceSpec, JwtSpec, RouteSpec):
            if candidate in (annotation, *getattr(annotation, "__args__", ())):
                model = candidate
                break
        else:
            return None
    return model


def _show_loc(loc: tuple) -> str:
    """routes[2].path — [[routes]] blocks are counted from 1, as a reader counts them."""
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out


def _span(text: str, name: str, loc: tuple) -> Span | None:
    """Where a field is written, found by scanning for its table and key (tomllib keeps no
    positions). A best effort: on failure the diagnostic still names the field."""
    lines = text.splitlines()
    start, found = 0, None
    previous = None
    for part in loc:
        if isinstance(part, int):
            header = re.compile(r"^\s*\[\[\s*" + re.escape(str(previous)) + r"\s*\]\]")
            hits = [i for i, line in enumerate(lines) if header.match(line)]
            if part < len(hits):
                start, found = hits[part], (hits[part], lines[hits[part]].index("[") + 1)
            continue
        for key in str(part).split("."):
            pattern = re.compile(r'(^|[\s.\["{,])"?' + re.escape(key) + r'"?\s*(=|\]|\.)')
            for i in range(start, len(lines)):
                match = pattern.search(lines[i].split("#", 1)[0])
                if match:
                    start, found = i, (i, match.start() + len(match[1]) + 1)
                    break
        previous = part
    if found is None:
        return None
    line, column = found[0] + 1, found[1]
    return Span(name, line, column, line, column + 1)


class _Compiler:
    """Semantic checks of a shape-valid mapping, collecting every problem."""

    def __init__(self, text: str, name: str):
        self.text, self.name = text, name
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, loc: tuple, message: str, help_line: str | None = None, *,
              needle: str | None = None) -> None:
        """Record a problem at the field `loc`; `needle`, if found on that line, narrows the
        caret to the offending text (a placeholder inside a path template)."""
        span = _span(self.text, self.name, loc)
        if span is not None and needle:
            column = self.text.splitlines()[span.line - 1].find(needle)
            if column >= 0:
                span = Span(span.file, span.line, column + 1, span.line, column + 1 + len(needle))
        self.diagnostics.append(Diagnostic(code, f"{_show_loc(loc)}: {message}", span, help_line))

    def compile(self, spec: MappingSpec) -> GatewayMapping:
        if spec.version != 1:
            self.error("TG704", ("version",), f"version {spec.version} is not supported", "use 1")
        actions = {}
        for method, action in spec.actions.items():
            if not _METHOD.fullmatch(method):
                self.error("TG704", ("actions", method), f"{method!r} is not an HTTP method",
                           "write methods in capitals: GET, POST, …")
            actions[method] = action
        attributes = self.attributes(spec)
        # A misspelt attribute makes every route look incomplete; report the cause, not that.
        self.attributes_broken = bool(self.diagnostics)
        if spec.jwt is None and any(a.claim for a in attributes):
            self.error("TG705", ("attributes",), "claims are mapped but there is no [jwt] table",
                       'add [jwt] with payload = "<payload_in_metadata of your jwt_authn provider>"')
        routes = tuple(self.route(i, r, actions, attributes) for i, r in enumerate(spec.routes))
        jwt = spec.jwt or JwtSpec(payload=["jwt_payload"])
        return GatewayMapping(self.name, jwt.filter, tuple(jwt.payload), actions,
                              tuple(attributes), routes, jwt.payload_header)

    def attributes(self, spec: MappingSpec) -> list[AttributeSource]:
        out = []
        for path, source in _flatten(spec.attributes, sources=True).items():
            loc = ("attributes", path)
            if self.known(loc, path) is None:
                continue
            try:
                parsed = SourceSpec.model_validate(source)
            except ValidationError as error:
                for e in error.errors():
                    self.diagnostics.append(_pydantic_diagnostic(
                        e, self.text, self.name, root=SourceSpec, prefix=loc))
                continue
            if parsed.claim is None and parsed.header is None and parsed.default is None:
                self.error("TG706", loc, "says neither claim, header nor default",
                           'e.g. { claim = "org_type", header = "x-org-type" }')
                continue
            header = parsed.header.lower() if parsed.header is not None else None
            if header is not None and not _HEADER.fullmatch(header):
                self.error("TG706", loc + ("header",), f"{parsed.header!r} is not a header name")
            default = parsed.default
            if default is not None and convert_value(ATTRIBUTES[path].kind, default) != default:
                self.error("TG706", loc + ("default",),
                           f"default {default!r} is not {ATTRIBUTES[path].kind.value}")
            for word, value in (parsed.values or {}).items():
                if convert_value(ATTRIBUTES[path].kind, value) != value:
                    self.error("TG706", loc + ("values", word),
                               f"{word!r} = {value!r}: {value!r} is not {ATTRIBUTES[path].kind.value}")
            out.append(AttributeSource(path, ATTRIBUTES[path].kind,
                                       tuple(parsed.claim) if parsed.claim else None, header,
                                       default, parsed.values))
        return out

    def known(self, loc: tuple, path: str) -> str | None:
        if path in ATTRIBUTES:
            return path
        self.error("TG707", loc, f"{path} is not a request attribute",
                   did_you_mean(path, ATTRIBUTES) or "known: " + ", ".join(ATTRIBUTES))
        return None

    def route(self, index: int, spec: RouteSpec, actions: Mapping[str, str],
              attributes: list[AttributeSource]) -> Route:
        loc = ("routes", index)
        name = spec.name or f"routes[{index + 1}]"
        before = len(self.diagnostics)
        if (spec.path is None) == (spec.regex is None):
            self.error("TG708", loc, "give exactly one of path (a template) or regex")
            pattern, captures = re.compile(r"(?!)"), ()
        elif spec.path is not None:
            pattern, captures = self.template(loc + ("path",), spec.path)
        else:
            pattern, captures = self.regex(loc + ("regex",), spec.regex)
        methods = None
        if spec.methods is not None:
            methods = frozenset(m.upper() for m in spec.methods)
            for m in sorted(methods):
                if not _METHOD.fullmatch(m):
                    self.error("TG708", loc + ("methods",), f"{m!r} is not an HTTP method")
        constants = {}
        for path, value in _flatten(spec.set, sources=False).items():
            if self.known(loc + ("set", path), path) is None:
                continue
            if convert_value(ATTRIBUTES[path].kind, value) != value:
                self.error("TG709", loc + ("set", path),
                           f"{path} = {value!r} is not {ATTRIBUTES[path].kind.value}")
            elif path in dict((a, g) for g, a in captures):
                self.error("TG709", loc + ("set", path), f"{path} is both captured from the path "
                           "and set as a constant", "keep one")
            constants[path] = value
        route = Route(name, pattern, captures, methods, spec.action, tuple(constants.items()))
        if len(self.diagnostics) == before and not self.attributes_broken:
            self.complete(loc, route, actions, attributes)
        return route

    def complete(self, loc: tuple, route: Route, actions: Mapping[str, str],
                 attributes: list[AttributeSource]) -> None:
        """INVARIANT: every required attribute has a source on every route, so a missing value
        at run time is always a missing header or claim — never a hole in the mapping."""
        given = {a for _, a in route.captures} | {a for a, _ in route.constants} | \
                {s.path for s in attributes}
        if route.action is not None:
            given.add("action")
        elif route.methods is not None and route.methods <= actions.keys():
            given.add("action")
        elif route.methods is None and actions:
            given.add("action")  # an unmapped method is refused at run time, naming it
        elif "action" not in given:
            missing = sorted((route.methods or set()) - actions.keys())
            self.error("TG710", loc, f"route {route.name}: no action for "
                       + (", ".join(missing) if missing else "any method"),
                       "set action = \"…\" on the route or map the method under [actions]")
        for attribute in REQUEST_ATTRIBUTES:
            # A route that names the dataset leaves its class and tier to the policy's catalog
            # (a dataset the catalog does not list is then refused by the engine, naming it).
            if attribute.catalogued and "resource.id" in given:
                continue
            if attribute.required and attribute.path not in given:
                self.error("TG710", loc, f"route {route.name}: nothing gives {attribute.path}",
                           "capture it (or the dataset id, for a catalogued dataset) in the "
                           "path, set it under [routes.set], or map it under [attributes]")

    def template(self, loc: tuple, template: str) -> tuple[re.Pattern, tuple]:
        if not template.startswith("/"):
            self.error("TG711", loc, f"path template {template!r} must start with /")
        parts, captures, seen = [], [], set()
        for piece in re.split(r"(\{[^{}]*\})", template):
            if piece.startswith("{") and piece.endswith("}"):
                attribute = self.placeholder(loc, piece[1:-1])
                if attribute in seen:
                    self.error("TG711", loc, f"{attribute} is captured twice")
                seen.add(attribute)
                group = f"g{len(captures)}"
                captures.append((group, attribute or "subject.id"))
                parts.append(f"(?P<{group}>[^/]+)")
            elif "{" in piece or "}" in piece:
                self.error("TG711", loc, f"unbalanced brace in {template!r}",
                           "placeholders look like {catalog_class}")
            else:
                parts.append(re.escape(piece))
        return re.compile("".join(parts)), tuple(captures)

    def regex(self, loc: tuple, text: str) -> tuple[re.Pattern, tuple]:
        try:
            pattern = re.compile(text)
        except re.error as problem:
            self.error("TG711", loc, f"not a valid regular expression: {problem}")
            return re.compile(r"(?!)"), ()
        captures = []
        for group in pattern.groupindex:
            attribute = self.placeholder(loc, group.replace("__", "."), f"(?P<{group}>")
            if attribute is not None:
                captures.append((group, attribute))
        return pattern, tuple(captures)

    def placeholder(self, loc: tuple, name: str, needle: str | None = None) -> str | None:
        attribute = SHORT_NAMES.get(name, name)
        if attribute in ATTRIBUTES:
            return attribute
        choices = list(SHORT_NAMES) + list(ATTRIBUTES)
        self.error("TG712", loc, f"{{{name}}} names no request attribute",
                   did_you_mean(name, choices)
                   or "use an attribute path (resource.id; in a regex group resource__id) or one "
                      "of " + ", ".join(SHORT_NAMES), needle=needle or f"{{{name}}}")
        return None


def _flatten(table: Mapping[str, Any], *, sources: bool) -> dict[str, Any]:
    """{"subject": {"org_type": x}} and {"subject.org_type": x} alike become
    {"subject.org_type": x}: TOML dotted keys and [attributes.subject] tables nest."""
    flat = {}
    for key, value in table.items():
        nested = isinstance(value, Mapping) and key in REQUEST_SECTIONS and \
            (not sources or not value.keys() & {"claim", "header", "default", "values"})
        if nested:
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
        else:
            flat[key] = value
    return flat

