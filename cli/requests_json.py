"""Read requests from JSON text as strictly as the server reads protobuf.

One JSON request, a JSON array of requests, or JSON lines. The JSON standard leaves some things
to the reader that an authorization engine must not leave to chance:

- a key given twice is refused: `"storage_region": "overseas", "storage_region": "domestic"`
  must not be decided on whichever came last;
- a lone surrogate (`"\\ud800"`) is not text and is refused;
- nesting deeper than MAX_DEPTH is refused before Python's recursion limit is reached;
- bytes that are not UTF-8 are refused, naming the line and byte.

In JSON lines each line stands alone: a bad line is an error in its own place and the others
are still decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32  # a request is three levels deep; anything far deeper is not a request


class InputError(ValueError):
    """The input as a whole cannot be read (empty, or not JSON at all)."""


@dataclass(frozen=True)
class Item:
    """One request of the input, or why it could not be read."""

    request: Any = None
    problem: str | None = None


def _no_duplicate_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _depth_and_text_problem(value: Any) -> str | None:
    """Why a decoded JSON value is not acceptable, or None (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "it holds a lone surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append((key, depth))
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
    return None


def _nesting_exceeds(text: str) -> bool:
    """Whether brackets nest deeper than MAX_DEPTH, checked before decoding (linear)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_document(text: str) -> Any:
    """One JSON document, strictly; ValueError saying what is wrong."""
    if _nesting_exceeds(text):
        raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep")
    value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    problem = _depth_and_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


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
