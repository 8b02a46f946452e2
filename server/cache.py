"""A decision cache that is never wrong.

Only requests without context.time are cached (a request with a time is a question about that
instant, asked once). A cached decision is served only while `now < Decision.valid_until`: the
engine computes that instant as the first one at which the same request could be decided
differently (a grant's expiry, a time literal in a rule). One cache belongs to one loaded policy
set (see holder.Snapshot), so a reload starts from an empty cache and no call can put an old
policy's decision into the new policy's cache.
"""

from __future__ import annotations

import itertools
import os
import threading

from cachetools import LRUCache


class DecisionCache:
    """Bounded LRU of time-less request key -> (decided at, valid_until, value). Thread-safe.

    The value (service.decide_one) is the serialized Decision without its decision_id (see
    wire.py) and the decision's audit record part: every answer gets its own id and its own
    audit record, even when it comes from the cache.
    """

    def __init__(self, maxsize: int):
        self._entries: LRUCache = LRUCache(maxsize=maxsize)
        # cachetools caches are not thread-safe; the lock is held for a dict operation only.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: int):
        """The cached value for `key` if it holds at `now` (µs since the epoch)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not (entry[0] <= now and (entry[1] is None or now < entry[1])):
                # INVARIANT: served only within [the instant it was decided, valid_until):
                # never at or past the instant it could change, nor before it was decided
                # (a clock stepped back could cross a time condition).
                del self._entries[key]
                entry = None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[2]

    def put(self, key: bytes, value, valid_until: int | None, now: int) -> None:
        if valid_until is not None and now >= valid_until:
            return
        with self._lock:
            self._entries[key] = (now, valid_until, value)


def next_decision_id() -> str:
    """A fresh id for an answer served from the cache."""
    return _ids.next()


class _CachedDecisionIds:
    """Ids for answers served from the cache: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self.reset()
        # SECURITY: forked workers must not repeat each other's ids.
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = "c" + os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"


_ids = _CachedDecisionIds()
