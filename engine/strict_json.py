"""JSON read strictly, for requests and catalog data alike.

The JSON standard leaves some things to the reader that an authorization engine must not leave
to chance: a key given twice is refused (`"storage_region": "overseas", "storage_region":
"domestic"` must not be decided on whichever came last); a lone surrogate (`"\\ud800"`) is not
text; nesting deeper than MAX_DEPTH is refused before Python's recursion limit is reached. The
nesting check is one linear pass over the text, before decoding.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # a request is three levels deep; anything far deeper is not a request


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


def parse_json(text: str) -> Any:
    """One JSON document, strictly; ValueError saying what is wrong."""
    if _nesting_exceeds(text):
        raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep")
    value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    problem = _depth_and_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value
