"""Watch the policy directory and swap in each new policy set that compiles.

Polling, not inotify: no new dependency, works on every filesystem and in containers with
mounted config maps. Each poll reads the *.policy texts and hashes them (the policy revision);
the texts are small, and hashing content rather than trusting mtimes catches two edits within
one timestamp tick.

A change is compiled only once the same content has been seen on two consecutive polls, so an
editor that writes a file in several steps is not caught half-way. A set that does not compile
is recorded (GetPolicyInfo, the log) and the last good policy keeps serving.
"""

from __future__ import annotations

import logging
import threading

from tiergate.engine import DiagnosticError, compile_sources
from tiergate.diagnostics import render_plain

from .holder import PolicyHolder, ReloadFailure
from .sources import DirectorySource

log = logging.getLogger("tiergate.server")


class PolicyWatcher:
    """A daemon thread that polls `holder.policy_dir` every `interval` seconds."""

    def __init__(self, holder: PolicyHolder, *, interval: float, source=None):
        self.holder = holder
        self.interval = interval
        # A directory (the holder's policy_dir) unless given a source (sources.py).
        self.source = source if source is not None else DirectorySource(holder.policy_dir)
        self._stop = threading.Event()
        self._seen: str | None = None  # revision read on the previous poll
        self._thread = threading.Thread(target=self._run, name="tiergate-policy-watcher",
                                        daemon=True)

    def start(self) -> "PolicyWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(1.0, 2 * self.interval))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as problem:  # keep watching; the old policy keeps serving
                log.exception("policy watcher: unexpected error")
                # ... and say so where operators look, not only in the log.
                failure = self.holder.last_failure
                text = f"{type(problem).__name__}: {problem}"
                if failure is None or failure.diagnostics != (text,):
                    self.holder.record_failure(ReloadFailure(
                        revision=f"error:{text}", failed_at=self.holder.clock(),
                        message=f"{self.holder.policy_dir}: the reload failed unexpectedly; "
                                f"still serving {self.holder.current.policy.revision}",
                        diagnostics=(text,)))

    def poll(self) -> bool:
        """Check the directory once; True if a new policy set was swapped in."""
        self.holder.polled()
        try:
            sources, revision = self.source.read()
        except DiagnosticError as error:
            self._fail(f"unreadable:{error}", error)
            return False
        stable = revision == self._seen
        self._seen = revision
        current = self.holder.current.policy.revision
        failure = self.holder.last_failure
        if revision == current:
            if failure is not None:  # the broken edit was reverted
                self.holder.last_failure = None
            return False
        if not stable or (failure is not None and failure.revision == revision):
            return False
        try:
            # Other threads are serving: the collector stays on (see compile_sources).
            policy = compile_sources(sources, revision=revision, pause_collector=False)
        except DiagnosticError as error:
            self._fail(revision, error)
            return False
        self.holder.swap(policy)
        return True

    def _fail(self, revision: str, error: DiagnosticError) -> None:
        failure = self.holder.last_failure
        if failure is not None and failure.revision == revision:
            return  # already reported
        lines = tuple(render_plain([d]) for d in error.diagnostics)
        count = sum(d.severity == "error" for d in error.diagnostics)
        self.holder.record_failure(ReloadFailure(
            revision=revision, failed_at=self.holder.clock(),
            message=f"{self.holder.policy_dir}: {count} error{'s' if count != 1 else ''}; "
                    f"still serving {self.holder.current.policy.revision}",
            diagnostics=lines))
