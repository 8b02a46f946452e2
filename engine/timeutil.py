"""Instants as integers: microseconds since the Unix epoch, UTC.

Integers compare exactly and ignore the offset an instant was written in, so
`2027-06-30T00:00:00+08:00` and `2027-06-29T16:00:00Z` are the same instant everywhere.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def parse_instant(text: str) -> int:
    """µs since the epoch from RFC 3339 text; ValueError if it is not one or has no offset."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("it has no UTC offset (add one such as +08:00 or Z)")
    return (moment - _EPOCH) // _MICROSECOND


def format_instant(micros: int, offset_minutes: int = 0) -> str:
    """RFC 3339 text of an instant, in the given offset (UTC by default)."""
    zone = timezone(timedelta(minutes=offset_minutes))
    text = (_EPOCH + micros * _MICROSECOND).astimezone(zone).isoformat()
    return text.replace("+00:00", "Z") if offset_minutes == 0 else text


def now_micros() -> int:
    return time.time_ns() // 1000
