"""The policy set being served, swapped whole.

INVARIANT: `PolicyHolder.current` is one immutable Snapshot (policy set, load time, its own
decision cache), replaced by a single reference assignment. A call reads `holder.current` once
and uses only that snapshot, so it sees the old policy or the new one, never a mix, and never
caches an old decision into the new policy's cache.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from tiergate.engine import PolicySet
from tiergate.engine.timeutil import now_micros

from .cache import DecisionCache

log = logging.getLogger("tiergate.server")

Clock = Callable[[], int]  # µs since the epoch


@dataclass(frozen=True)
class Snapshot:
    policy: PolicySet
    loaded_at: int  # µs since the epoch
    cache: DecisionCache | None  # None when caching is off


@dataclass(frozen=True)
class ReloadFailure:
    """Why the files on disk are not being served."""

    revision: str  # of the sources that failed, so the same broken text is compiled once
    failed_at: int
    message: str
    diagnostics: tuple[str, ...]


class PolicyHolder:
    """The current Snapshot, the last reload failure, and who wants to hear about swaps."""

    def __init__(self, policy: PolicySet, *, policy_dir: str = "", cache_size: int = 0,
                 clock: Clock = now_micros):
        self.policy_dir = policy_dir
        self.cache_size = cache_size
        self.clock = clock
        self.last_failure: ReloadFailure | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._poll_listeners: list[Callable[[], None]] = []
        self._failure_listeners: list[Callable[[ReloadFailure], None]] = []
        self._swap_lock = threading.Lock()  # writers only; readers never lock
        self.current = self._snapshot(policy)

    def _snapshot(self, policy: PolicySet) -> Snapshot:
        cache = DecisionCache(self.cache_size) if self.cache_size > 0 else None
        return Snapshot(policy, self.clock(), cache)

    def swap(self, policy: PolicySet) -> Snapshot:
        """Serve `policy` from now on, with an empty cache."""
        with self._swap_lock:
            snapshot = self._snapshot(policy)
            self.current = snapshot  # the one assignment every reader sees whole
            self.last_failure = None
            listeners = list(self._listeners)
        log.info("serving policy %s (%d rules, %d grants)", policy.revision,
                 len(policy.rules), len(policy.grants))
        for listener in listeners:
            try:
                listener(snapshot)
            except Exception:  # a listener's bug must not stop the swap being served
                log.exception("policy swap listener failed")
        return snapshot

    def record_failure(self, failure: ReloadFailure) -> None:
        self.last_failure = failure
        for listener in list(self._failure_listeners):
            listener(failure)
        log.error("policy reload failed; still serving %s\n%s", self.current.policy.revision,
                  "\n".join(failure.diagnostics) or failure.message)

    def on_swap(self, listener: Callable[[Snapshot], None]) -> None:
        """Call `listener(snapshot)` after every swap (e.g. to rebuild derived tables)."""
        with self._swap_lock:
            self._listeners.append(listener)

    def on_failure(self, listener: Callable[[ReloadFailure], None]) -> None:
        """Call `listener(failure)` after every reload that failed (metrics count them)."""
        with self._swap_lock:
            self._failure_listeners.append(listener)

    def on_poll(self, listener: Callable[[], None]) -> None:
        """Call `listener()` on every poll of the policy directory (files beside the policies)."""
        with self._swap_lock:
            self._poll_listeners.append(listener)

    def polled(self) -> None:
        for listener in list(self._poll_listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the policy being watched
                log.exception("policy poll listener failed")
