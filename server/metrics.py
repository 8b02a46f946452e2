"""Prometheus metrics on a separate HTTP port (`metrics_listen`), for the SRE who runs Tiergate.

    tiergate_decisions_total{method, effect, rule}     answers, by the first rule that decided
    tiergate_request_errors_total{method, attribute}   requests refused as bad input, per problem
    tiergate_call_seconds{method}                      histogram of handler time per call
    tiergate_cache_hits_total, tiergate_cache_misses_total
    tiergate_reloads_total{outcome}                    policy reloads: success, failure
    tiergate_policy_info{revision}                     1, labelled with the revision served
    tiergate_grants_expiring_30d                       grants that expire within 30 days
    tiergate_audit_pending                             records waiting for their commit
    tiergate_audit_commit_seconds                      histogram of group commit time
    tiergate_audit_records_total                       records committed by this process
    tiergate_audit_healthy                             1 while the log can be written
    tiergate_tls_certificate_expiry_timestamp_seconds  when the served certificate expires
    tiergate_tls_rotations_total                       certificate files reloaded without restart
    tiergate_calls_refused_total{method, reason}       permission_denied, rate_limited (access.py)
    tiergate_shadow_compared_total{method}             decisions the shadow candidate re-made
    tiergate_shadow_differences_total{method, served, candidate}   ... with another answer
    tiergate_shadow_policy_info{revision}              the candidate's revision (serve --shadow)

Each server has its own registry (several servers in one process, as in the tests, do not mix
their numbers). What can be read when scraped (cache counters, grants, the revision, the
audit queue) is read then, so the hot path pays only for the counters it must bump.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

_DAY_US = 86_400_000_000
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0, 5.0)


def outcome_of(decision) -> tuple[str, str]:
    """(effect, the first rule that decided): what `Metrics.decided` counts a decision by."""
    return decision.effect, decision.reasons[0].rule_id if decision.reasons else "-"


class Metrics:
    def __init__(self, holder, audit=None):
        self.registry = CollectorRegistry(auto_describe=True)
        self._decisions = Counter("tiergate_decisions", "Answers given, by the first rule that "
                                  "decided", ("method", "effect", "rule"), registry=self.registry)
        self._errors = Counter("tiergate_request_errors", "Requests refused as bad input, one per "
                               "problem attribute", ("method", "attribute"),
                               registry=self.registry)
        self._latency = Histogram("tiergate_call_seconds", "Handler time per call", ("method",),
                                  buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._reloads = Counter("tiergate_reloads", "Policy reloads", ("outcome",),
                                registry=self.registry)
        self._commit = Histogram("tiergate_audit_commit_seconds", "Audit log group commit time",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._shadow_compared = Counter("tiergate_shadow_compared", "Decisions the shadow "
                                        "candidate made again", ("method",),
                                        registry=self.registry)
        self._shadow_differences = Counter(
            "tiergate_shadow_differences", "Decisions the shadow candidate would answer with "
            "another effect or other obligations", ("method", "served", "candidate"),
            registry=self.registry)
        self._calls_refused = Counter("tiergate_calls_refused", "Calls refused before they "
                                      "reached a handler: by [access] or the rate limit",
                                      ("method", "reason"), registry=self.registry)
        self.tls = None  # tls.CertificateFiles, set by app.py when serving TLS
        self.shadow = None  # set by app.py with --shadow, for the revision at scrape time
        # PERF: .labels() costs more than .inc(); children are looked up once per label set.
        self._children: dict = {}
        self._holder, self._audit = holder, audit
        self._retired_hits = self._retired_misses = 0
        self._cache = holder.current.cache
        self._lock = threading.Lock()
        holder.on_swap(self._swapped)
        holder.on_failure(lambda failure: self._reloads.labels("failure").inc())
        if audit is not None:
            audit.on_commit_timed(self._commit.observe)
        self.registry.register(_ScrapeTime(self))
        self._http = None
        self.port = 0

    # -- the handlers' side
    def decided(self, method: str, effect: str, rule: str) -> None:
        key = (method, effect, rule)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._decisions.labels(method, effect, rule)
        child.inc()

    def refused(self, method: str, attributes) -> None:
        for attribute in attributes:
            self._errors.labels(method, attribute or "-").inc()

    def call_refused(self, method: str, reason: str) -> None:
        self._calls_refused.labels(method, reason).inc()

    def shadow_compared(self, method: str, served: str, candidate: str, differs: bool) -> None:
        self._shadow_compared.labels(method).inc()
        if differs:
            self._shadow_differences.labels(method, served, candidate).inc()

    def timer(self, method: str):
        key = ("latency", method)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._latency.labels(method)
        return child.time()

    # -- reloads
    def _swapped(self, snapshot) -> None:
        with self._lock:
            if self._cache is not None:
                self._retired_hits += self._cache.hits
                self._retired_misses += self._cache.misses
            self._cache = snapshot.cache
        self._reloads.labels("success").inc()

    def cache_counts(self) -> tuple[int, int]:
        with self._lock:
            cache = self._cache
            hits, misses = self._retired_hits, self._retired_misses
        if cache is not None:
            hits, misses = hits + cache.hits, misses + cache.misses
        return hits, misses

    # -- serving
    def serve(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        self._http, _thread = start_http_server(int(port), addr=host.strip("[]"),
                                                registry=self.registry)
        self.port = self._http.server_port
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _ScrapeTime:
    """The figures read when Prometheus scrapes."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        metrics = self._metrics
        hits, misses = metrics.cache_counts()
        yield CounterMetricFamily("tiergate_cache_hits", "Decision cache hits", value=hits)
        yield CounterMetricFamily("tiergate_cache_misses", "Decision cache misses", value=misses)
        policy = metrics._holder.current.policy
        info = InfoMetricFamily("tiergate_policy", "The policy revision being served")
        info.add_metric([], {"revision": policy.revision})
        yield info
        now = metrics._holder.clock()
        soon = sum(1 for g in policy.grants if now <= g.expires < now + 30 * _DAY_US)
        yield GaugeMetricFamily("tiergate_grants_expiring_30d",
                                "Grants that expire within 30 days", value=soon)
        if metrics.tls is not None:
            yield GaugeMetricFamily("tiergate_tls_certificate_expiry_timestamp_seconds",
                                    "When the certificate being served expires",
                                    value=metrics.tls.material.not_after.timestamp())
            yield CounterMetricFamily("tiergate_tls_rotations", "TLS files reloaded",
                                      value=metrics.tls.rotations)
        if metrics.shadow is not None:
            shadow = InfoMetricFamily("tiergate_shadow_policy", "The shadow candidate's revision")
            shadow.add_metric([], {"revision": metrics.shadow.revision})
            yield shadow
        audit = metrics._audit
        if audit is not None:
            yield GaugeMetricFamily("tiergate_audit_pending", "Audit records waiting to commit",
                                    value=audit.pending)
            yield CounterMetricFamily("tiergate_audit_records", "Audit records committed",
                                      value=audit.committed)
            yield GaugeMetricFamily("tiergate_audit_healthy", "1 while the audit log can be "
                                    "written", value=1 if audit.healthy else 0)
