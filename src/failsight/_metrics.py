"""The Prometheus metric set of SPEC §2, built against a given registry."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from failsight._guard import STAGES

__all__ = [
    "ATTEMPT_BUCKETS",
    "COMMON_LABELS",
    "DURATION_BUCKETS",
    "MAX_LABEL_LENGTH",
    "CappedMetric",
    "LabelChildren",
    "MetricSet",
]

COMMON_LABELS: Final = ("operation", "provider", "model", "call_site")
OTHER: Final = "other"

ATTEMPT_BUCKETS: Final = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
DURATION_BUCKETS: Final = (*(0.01 * 2**k for k in range(14)), 163.84, 327.68)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
VIDEO_DURATION_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0,
)  # fmt: skip

# Past this many distinct raw label tuples a metric stops caching children (still correct).
_CHILD_CACHE_LIMIT: Final = 4096
# Characters kept of a common label's value: a model name is the caller's string, of any size.
MAX_LABEL_LENGTH: Final = 128


def _label_value(value: str) -> str:
    """`value` cut to MAX_LABEL_LENGTH, lone surrogates replaced (one would fail every scrape)."""
    if not isinstance(value, str):
        return value
    value = value[:MAX_LABEL_LENGTH]
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


class CappedMetric:
    """A labelled metric whose common labels keep at most `cap` distinct values each.

    Values past the cap are reported as `other`; children are cached per raw label tuple.
    """

    __slots__ = ("_cache", "_cap", "_lock", "_metric", "_n_capped", "_seen", "metric")

    def __init__(self, metric: Any, n_capped: int, cap: int) -> None:
        self.metric = metric
        self._n_capped = n_capped
        self._cap = cap
        self._seen: list[set[str]] = [set() for _ in range(n_capped)]
        self._cache: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def set_cap(self, cap: int) -> None:
        with self._lock:
            self._cap = cap
            self._cache.clear()

    def child(self, values: tuple[str, ...]) -> Any:
        """The metric child for raw label values (common labels first, then the metric's own)."""
        child = self._cache.get(values)
        if child is not None:
            return child
        with self._lock:
            capped = list(values)
            for i in range(self._n_capped):
                seen = self._seen[i]
                value = values[i]
                if value not in seen:
                    value = capped[i] = _label_value(value)
                if value not in seen:
                    if len(seen) >= self._cap:
                        capped[i] = OTHER
                    else:
                        seen.add(value)
            child = self.metric.labels(*capped)
            if len(self._cache) < _CHILD_CACHE_LIMIT:
                self._cache[values] = child
        return child


# Own-label values a LabelChildren keeps (closed vocabularies, but a validator names its reason).
_OWN_VALUES_LIMIT: Final = 64


class LabelChildren:
    """The children a logical request's labels use on the hot path, each looked up once.

    Children are looked up when first used (a child is a series: none is made in advance),
    through `CappedMetric.child`, so caps hold.
    """

    __slots__ = ("_by", "_labels", "_metrics", "epoch")

    def __init__(self, metrics: MetricSet, labels: tuple[str, ...]) -> None:
        self._metrics = metrics
        self._labels = labels
        self._by: dict[tuple[str, str | None], Any] = {}
        self.epoch = metrics.children_epoch  # of the cap its children were made under

    def of(self, metric: str, value: str | None = None) -> Any:
        """The child of `metric` (a MetricSet attribute) at its own label's `value`, if any.

        >>> metrics = MetricSet(CollectorRegistry())
        >>> metrics.children(("chat", "openai", "gpt-4o", "site")).of("tokens", "input").inc(12)
        """
        key = (metric, value)
        child = self._by.get(key)
        if child is None:
            capped: CappedMetric = getattr(self._metrics, metric)
            child = capped.child(self._labels if value is None else (*self._labels, value))
            if len(self._by) < _OWN_VALUES_LIMIT:
                self._by[key] = child
        return child


class MetricSet:
    """Every failsight metric, registered on one registry under one namespace.

    Exposed as `genai_requests_total`, `genai_failures_total`, `genai_finish_reasons_total`,
    `genai_retries_total`, `genai_request_attempts`, `genai_tokens_total`,
    `genai_request_duration_seconds`, `genai_time_to_first_token_seconds`,
    `genai_video_jobs_total`, `genai_video_job_duration_seconds`, `genai_in_flight_requests`
    and `genai_telemetry_errors_total` with the default namespace.

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = MetricSet(CollectorRegistry(), namespace="genai", max_label_values=100)
    >>> metrics.requests.child(("chat", "openai", "gpt-4o", "unscoped", "none")).inc()
    """

    def __init__(
        self, registry: CollectorRegistry, namespace: str = "genai", max_label_values: int = 100
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        cap = max_label_values
        common = COMMON_LABELS

        def counter(name: str, doc: str, extra: Sequence[str]) -> CappedMetric:
            metric = Counter(name, doc, (*common, *extra), namespace=namespace, registry=registry)
            return CappedMetric(metric, len(common), cap)

        def histogram(
            name: str, doc: str, extra: Sequence[str], buckets: Sequence[float]
        ) -> CappedMetric:
            metric = Histogram(
                name, doc, (*common, *extra), namespace=namespace, registry=registry,
                buckets=buckets,
            )  # fmt: skip
            return CappedMetric(metric, len(common), cap)

        self.requests = counter(
            "requests", "Logical generation requests by failure class.", ("failure_class",)
        )
        self.failures = counter(
            "failures", "Failed logical requests by class and reason.", ("failure_class", "reason")
        )
        self.finish_reasons = counter(
            "finish_reasons", "Choices or outputs returned, by finish reason.", ("finish_reason",)
        )
        self.retries = counter(
            "retries", "Retries (SDK-internal and in traced scopes) by the failed reason.",
            ("reason",),
        )  # fmt: skip
        self.tokens = counter(
            "tokens", "Tokens reported by API responses, every attempt.", ("token_type",)
        )
        self.attempts = histogram(
            "request_attempts", "Attempts per logical request.", (), ATTEMPT_BUCKETS
        )
        self.duration = histogram(
            "request_duration_seconds", "Duration of logical requests in seconds.",
            ("failure_class",), DURATION_BUCKETS,
        )  # fmt: skip
        self.time_to_first_token = histogram(
            "time_to_first_token_seconds", "Time to the first streamed chunk in seconds.",
            (), TTFT_BUCKETS,
        )  # fmt: skip
        self.video_jobs = counter(
            "video_jobs", "Video generation jobs reaching an end, by status.", ("status",)
        )
        self.video_job_duration = histogram(
            "video_job_duration_seconds", "Video job duration from create to its end in seconds.",
            ("status",), VIDEO_DURATION_BUCKETS,
        )  # fmt: skip
        self.in_flight = CappedMetric(
            Gauge(
                "in_flight_requests", "Generation requests now running.", common,
                namespace=namespace, registry=registry, multiprocess_mode="livesum",
            ),
            len(common),
            cap,
        )  # fmt: skip
        self.telemetry_errors = Counter(
            "telemetry_errors",
            "Internal failsight errors swallowed so the caller was not affected, by stage.",
            ("stage",),
            namespace=namespace,
            registry=registry,
        )
        for stage in STAGES:
            self.telemetry_errors.labels(stage)
        self._children: dict[tuple[str, ...], LabelChildren] = {}
        self._children_lock = threading.Lock()
        self.children_epoch = 0

    @property
    def capped(self) -> tuple[CappedMetric, ...]:
        return (
            self.requests, self.failures, self.finish_reasons, self.retries, self.tokens,
            self.attempts, self.duration, self.time_to_first_token, self.video_jobs,
            self.video_job_duration, self.in_flight,
        )  # fmt: skip

    def set_max_label_values(self, cap: int) -> None:
        with self._children_lock:
            for metric in self.capped:
                metric.set_cap(cap)
            self._children.clear()
            self.children_epoch += 1

    def children(self, labels: tuple[str, str, str, str]) -> LabelChildren:
        """The hot-path children of one (operation, provider, model, call_site) tuple."""
        found = self._children.get(labels)
        if found is None:
            found = LabelChildren(self, labels)
            with self._children_lock:
                # Not kept if the cap changed meanwhile: its children may predate the new cap.
                if found.epoch == self.children_epoch and len(self._children) < _CHILD_CACHE_LIMIT:
                    self._children[labels] = found
        return found

    def count_telemetry_error(self, stage: str) -> None:
        self.telemetry_errors.labels(stage[:40]).inc()
