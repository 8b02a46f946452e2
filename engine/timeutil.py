"""Instants as integers: microseconds since the Unix epoch, UTC.

Integers compare exactly and ignore the offset an instant was written in, so
`2027-06-30T00:00:00+08:00` and `2027-06-29T16:00:00Z` are the same instant everywhere.

Text is RFC 3339 (`date-time`, section 5.6) and nothing else: ISO 8601's other forms (week
dates, basic format, hour-only, `+0800`, `+08`) are refused, because a reviewer reading
`2026-W47-7T10+08` cannot tell at a glance what a grant's expiry is, and because every reader
of an instant (policy, request, CLI) must agree on what is one.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)
_DAY_MICROS = 86_400_000_000
# Every quantifier is bounded and none is nested: matching is linear in the text.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII)
# The instants RFC 3339 can write in UTC: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.
_FIRST = (date(1, 1, 1).toordinal() - _EPOCH_DAY) * _DAY_MICROS
_LAST = (date(9999, 12, 31).toordinal() + 1 - _EPOCH_DAY) * _DAY_MICROS - 1


def parse_instant(text: str) -> int:
    """µs since the epoch from RFC 3339 text; ValueError saying what is wrong otherwise."""
    if len(text) > 40:
        raise ValueError("it is too long for an RFC 3339 instant")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("it is not RFC 3339 (write e.g. 2026-11-22T10:00:00+08:00 or "
                         "2026-11-22T02:00:00Z)")
    if match.group(8) == "z" or "t" in text:
        text = text.upper()  # RFC 3339 allows t and z; only digits and signs are left
    # PERF: the pattern fixed the form; datetime (in C) checks the ranges and does the sums.
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as problem:
        raise ValueError(f"it is not a valid RFC 3339 date and time ({problem})") from None
    instant = (moment - _EPOCH) // _MICROSECOND
    if not _FIRST <= instant <= _LAST:
        raise ValueError("in UTC it falls outside the years 0001-9999")
    return instant


def format_instant(micros: int, offset_minutes: int = 0) -> str:
    """RFC 3339 text of an instant, in the given offset (UTC by default).

    An instant whose date in that offset falls outside years 1-9999 (which RFC 3339 cannot
    write) is shown in UTC, and one outside them in UTC too as the nearest instant that can be.
    """
    micros = min(max(micros, _FIRST), _LAST)
    moment = _EPOCH + micros * _MICROSECOND
    try:
        text = moment.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()
    except OverflowError:
        text, offset_minutes = moment.isoformat(), 0
    return text.replace("+00:00", "Z") if offset_minutes == 0 else text


def offset_minutes_of(text: str) -> int:
    """The UTC offset an RFC 3339 instant was written in, in minutes (Z is 0)."""
    match = _RFC3339.fullmatch(text)
    if match is None or match.group(9) is None:
        return 0
    minutes = int(match.group(10)) * 60 + int(match.group(11))
    return -minutes if match.group(9) == "-" else minutes


def now_micros() -> int:
    return time.time_ns() // 1000
