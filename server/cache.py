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
from dataclasses import replace

from cachetools import LRUCache

from tiergate.engine import Decision


class DecisionCache:
    """Bounded LRU of time-less request key -> Decision. Thread-safe."""

    def __init__(self, maxsize: int):
        self._entries: LRUCache = LRUCache(maxsize=maxsize)
        # cachetools caches are not thread-safe; the lock is held for a dict operation only.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: int) -> Decision | None:
        """The cached decision for `key` if it still holds at `now` (µs), with a fresh id."""
        with self._lock:
            decision = self._entries.get(key)
            if decision is not None and decision.valid_until is not None \
                    and now >= decision.valid_until:
                # INVARIANT: never serve a decision at or past the instant it could change.
                del self._entries[key]
                decision = None
        if decision is None:
            self.misses += 1
            return None
        self.hits += 1
        # Every call gets its own decision id, so audit logs can tell answers apart.
        return replace(decision, decision_id=_ids.next())

    def put(self, key: bytes, decision: Decision, now: int) -> None:
        if decision.valid_until is not None and now >= decision.valid_until:
            return
        with self._lock:
            self._entries[key] = decision


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
