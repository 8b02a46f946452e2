"""Read requests from JSON text as strictly as the server reads protobuf.

One JSON request, a JSON array of requests, or JSON lines, each read by
`tiergate.engine.strict_json` (no key twice, no lone surrogate, bounded nesting); bytes that are
not UTF-8 are refused, naming the line and byte.

In JSON lines each line stands alone: a bad line is an error in its own place and the others
are still decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tiergate.engine.strict_json import parse_json as parse_document


class InputError(ValueError):
    """The input as a whole cannot be read (empty, or not JSON at all)."""


@dataclass(frozen=True)
class Item:
    """One request of the input, or why it could not be read."""

    request: Any = None
    problem: str | None = None


def _decoded(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise ValueError(f"{where} is not UTF-8 (byte {problem.start + 1}: "
                         f"{data[problem.start:problem.start + 1]!r})") from None


def _is_object_line(line: bytes) -> bool:
    """Whether a line on its own is a JSON object (leniently: only to tell the format)."""
    try:
        return isinstance(json.loads(line.decode("utf-8", errors="replace")), dict)
    except (ValueError, RecursionError):
        return False


def read_items(data: bytes) -> tuple[list[Item], bool]:
    """(the requests in the input, whether it was a single request); InputError if the input
    as a whole cannot be read.

    JSON lines when the input has several lines of which some is a JSON object on its own;
    otherwise one document (a request, or an array of requests).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark is not part of the JSON
    if not data.strip():
        raise InputError("the input holds no request")
    lines = [(number, line) for number, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    if len(lines) > 1 and any(_is_object_line(line) for _, line in lines):
        items = []
        for number, line in lines:
            try:
                items.append(Item(parse_document(_decoded(line, f"line {number}"))))
            except ValueError as problem:
                text = str(problem)
                items.append(Item(problem=text if text.startswith("line ")
                                  else f"line {number} is not a request: {text}"))
        return items, False
    try:
        document = parse_document(_decoded(data, "the input").strip())
    except ValueError as problem:
        raise InputError(f"the input is not a JSON request: {problem}") from None
    if isinstance(document, list):
        return [Item(r) for r in document], False
    return [Item(document)], True
