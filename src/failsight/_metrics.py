"""The Prometheus metric set (docs/reference.md#metrics), built against a given registry."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from failsight._capped import (
    CHILD_CACHE_LIMIT,
    DEFAULT_MAX_SERIES,
    MAX_LABEL_LENGTH,
    OTHER,
    REASONS,
    BeforeCollect,
    CappedMetric,
)
from failsight._guard import STAGES
from failsight._metric_ops import (
    Add,
    AddWithExemplar,
    adder,
    exemplar_adder,
    exemplar_observer,
    observer,
)

__all__ = [
    "ATTEMPT_BUCKETS",
    "COMMON_LABELS",
    "DEFAULT_MAX_SERIES",
    "DURATION_BUCKETS",
    "MAX_LABEL_LENGTH",
    "OTHER",
    "REASONS",
    "BeforeCollect",
    "CappedMetric",
    "LabelChildren",
    "MetricSet",
]

logger = logging.getLogger("failsight")

COMMON_LABELS: Final = ("operation", "provider", "model", "call_site")
ATTEMPT_BUCKETS: Final = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
DURATION_BUCKETS: Final = (*(0.01 * 2**k for k in range(14)), 163.84, 327.68)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
VIDEO_DURATION_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0,
)  # fmt: skip

# Own-label values a LabelChildren keeps (closed vocabularies, but a validator names its reason).
_OWN_VALUES_LIMIT: Final = 64


class LabelChildren:
    """The children a logical request's labels use on the hot path, each looked up once.

    Children are looked up when first used (a child is a series: none is made in advance),
    through `CappedMetric.child`, so caps hold.
    """

    __slots__ = ("_by", "_labels", "_marked", "_metrics", "_ops", "epoch")

    def __init__(self, metrics: MetricSet, labels: tuple[str, ...]) -> None:
        self._metrics = metrics
        self._labels = labels
        self._by: dict[tuple[str, str | None], Any] = {}
        self._ops: dict[tuple[str, str | None], Add] = {}
        self._marked: dict[tuple[str, str | None], AddWithExemplar] = {}  # with an exemplar
        self.epoch = metrics.children_epoch  # of the cap its children were made under

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

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

    def _op(self, key: tuple[str, str | None], make: Callable[[Any], Add]) -> Add:
        op = make(self.of(*key))  # `_metric_ops`: the increment without per-call checks
        if len(self._ops) < _OWN_VALUES_LIMIT:
            self._ops[key] = op
        return op

    def adder(self, metric: str, value: str | None = None) -> Add:
        """`of(metric, value).inc` of a counter or gauge, as a function of the amount."""
        return self._ops.get((metric, value)) or self._op((metric, value), adder)

    def add(self, metric: str, value: str | None = None, amount: float = 1) -> None:
        (self._ops.get((metric, value)) or self._op((metric, value), adder))(amount)

    def observe(self, metric: str, amount: float, value: str | None = None) -> None:
        (self._ops.get((metric, value)) or self._op((metric, value), observer))(amount)

    def _marked_op(
        self, key: tuple[str, str | None], make: Callable[[Any], AddWithExemplar]
    ) -> AddWithExemplar:
        op = make(self.of(*key))
        if len(self._marked) < _OWN_VALUES_LIMIT:
            self._marked[key] = op
        return op

    def add_exemplar(self, metric: str, value: str | None, exemplar: dict[str, str]) -> None:
        """`add(metric, value)` of a counter, with an exemplar (`{"trace_id": ...}`)."""
        key = (metric, value)
        (self._marked.get(key) or self._marked_op(key, exemplar_adder))(1, exemplar)

    def observe_exemplar(
        self, metric: str, amount: float, value: str | None, exemplar: dict[str, str]
    ) -> None:
        """`observe(metric, amount, value)` of a histogram, with an exemplar."""
        key = (metric, value)
        (self._marked.get(key) or self._marked_op(key, exemplar_observer))(amount, exemplar)


class MetricSet:
    """Every failsight metric, registered on one registry under one namespace.

    Exposed as `genai_requests_total`, `genai_failures_total`, `genai_finish_reasons_total`,
    `genai_retries_total`, `genai_request_attempts`, `genai_tokens_total`,
    `genai_request_duration_seconds`, `genai_time_to_first_token_seconds`,
    `genai_video_jobs_total`, `genai_video_job_duration_seconds`, `genai_in_flight_requests`,
    `genai_wasted_tokens_total`, `genai_cost_usd_total`, `genai_wasted_cost_usd_total`,
    `genai_content_filter_total` and `genai_telemetry_errors_total` with the default namespace.

    Registration is all or nothing: when one of the names is taken in `registry`, the metrics
    already registered are unregistered again and a ValueError names the clash.
    `before_collect`, when given, runs at the start of every collection of the registry.

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = MetricSet(CollectorRegistry(), namespace="genai", max_label_values=100)
    >>> metrics.requests.child(("chat", "openai", "gpt-4o", "unscoped", "none")).inc()
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str = "genai",
        max_label_values: int = 100,
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        before_collect: Callable[[], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self._warned: set[str] = set()  # metrics whose budget overflow was logged
        self._children: dict[tuple[str, ...], LabelChildren] = {}
        self._children_lock = threading.Lock()
        self.children_epoch = 0
        self._registered: list[Any] = []
        try:
            if before_collect is not None:
                # First in the registry, so it runs before any of our samples are read.
                collector = BeforeCollect(before_collect)
                registry.register(collector)
                self._registered.append(collector)
            self._build(registry, namespace, max_label_values, max_series)
        except BaseException:
            self.unregister(registry)
            raise

    def _build(
        self, registry: CollectorRegistry, namespace: str, cap: int, max_series: int
    ) -> None:
        common = COMMON_LABELS
        n = len(common)

        def register(metric_type: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            try:
                metric = metric_type(name, *args, namespace=namespace, registry=registry, **kwargs)
            except ValueError as exc:
                taken = sorted(getattr(exc, "duplicates", None) or ())
                if not taken and "Duplicated" not in str(exc):
                    raise
                clash = taken[0] if taken else f"{namespace}_{name}"
                raise ValueError(
                    f"failsight: the registry already has a metric named {clash!r}, so "
                    "failsight registered none of its metrics there. Remove that metric "
                    "(registry.unregister(...)), or put failsight's metrics under another "
                    'prefix with failsight.configure(namespace="...").'
                ) from None
            self._registered.append(metric)
            return metric

        def capped(
            metric_type: Any, name: str, doc: str, extra: Sequence[str], **kwargs: Any
        ) -> CappedMetric:
            metric = register(metric_type, name, doc, (*common, *extra), **kwargs)
            reason = n + list(extra).index("reason") if "reason" in extra else None
            return CappedMetric(
                metric, n, cap, reason_index=reason, max_series=max_series,
                on_overflow=self._series_overflow, name=f"{namespace}_{name}",
            )  # fmt: skip

        self.requests = capped(
            Counter, "requests", "Logical generation requests by failure class.",
            ("failure_class",),
        )  # fmt: skip
        self.failures = capped(
            Counter, "failures", "Failed logical requests by class and reason.",
            ("failure_class", "reason"),
        )  # fmt: skip
        self.finish_reasons = capped(
            Counter, "finish_reasons", "Choices or outputs returned, by finish reason.",
            ("finish_reason",),
        )  # fmt: skip
        self.retries = capped(
            Counter, "retries", "Retries (SDK-internal and in traced scopes) by the failed reason.",
            ("reason",),
        )  # fmt: skip
        self.tokens = capped(
            Counter, "tokens", "Tokens reported by API responses, every attempt.", ("token_type",)
        )
        self.attempts = capped(
            Histogram, "request_attempts", "Attempts per logical request.", (),
            buckets=ATTEMPT_BUCKETS,
        )  # fmt: skip
        self.duration = capped(
            Histogram, "request_duration_seconds", "Duration of logical requests in seconds.",
            ("failure_class",), buckets=DURATION_BUCKETS,
        )  # fmt: skip
        self.time_to_first_token = capped(
            Histogram, "time_to_first_token_seconds",
            "Time to the first streamed chunk in seconds.", (), buckets=TTFT_BUCKETS,
        )  # fmt: skip
        self.video_jobs = capped(
            Counter, "video_jobs", "Video generation jobs reaching an end, by status.", ("status",)
        )
        self.video_job_duration = capped(
            Histogram, "video_job_duration_seconds",
            "Video job duration from create to its end in seconds.", ("status",),
            buckets=VIDEO_DURATION_BUCKETS,
        )  # fmt: skip
        self.in_flight = capped(
            Gauge, "in_flight_requests", "Generation requests now running.", (),
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.wasted_tokens = capped(
            Counter, "wasted_tokens",
            "Tokens that bought nothing kept: usage of requests ending failed, and of every "
            "retried attempt.", ("token_type", "failure_class", "reason"),
        )  # fmt: skip
        self.cost = capped(Counter, "cost_usd", "Priced usage in US dollars, every attempt.", ())
        self.wasted_cost = capped(
            Counter, "wasted_cost_usd", "Priced wasted usage in US dollars.",
            ("failure_class", "reason"),
        )  # fmt: skip
        self.content_filter = capped(
            Counter, "content_filter",
            "Content-filter categories a provider reported, by stage and severity.",
            ("category", "stage", "severity"),
        )  # fmt: skip
        self.telemetry_errors: Counter = register(
            Counter,
            "telemetry_errors",
            "Internal failsight errors swallowed so the caller was not affected, by stage.",
            ("stage",),
        )
        for stage in STAGES:
            self.telemetry_errors.labels(stage)

    def unregister(self, registry: CollectorRegistry) -> None:
        """Take every collector this set registered off `registry` again."""
        while self._registered:
            collector = self._registered.pop()
            with contextlib.suppress(KeyError):  # already taken off by someone else
                registry.unregister(collector)

    @property
    def capped(self) -> tuple[CappedMetric, ...]:
        return (
            self.requests, self.failures, self.finish_reasons, self.retries, self.tokens,
            self.attempts, self.duration, self.time_to_first_token, self.video_jobs,
            self.video_job_duration, self.in_flight, self.wasted_tokens, self.cost,
            self.wasted_cost, self.content_filter,
        )  # fmt: skip

    def set_max_label_values(self, cap: int) -> None:
        self.set_limits(cap, self.requests._max_series)

    def set_limits(self, max_label_values: int, max_series: int) -> None:
        """Apply a new label cap and series budget to every metric (`configure()` again)."""
        with self._children_lock:
            for metric in self.capped:
                metric.set_limits(max_label_values, max_series)
            self._children.clear()
            self.children_epoch += 1
            self._warned.clear()

    def children(self, labels: tuple[str, str, str, str]) -> LabelChildren:
        """The hot-path children of one (operation, provider, model, call_site) tuple."""
        found = self._children.get(labels)
        if found is None:
            found = LabelChildren(self, labels)
            with self._children_lock:
                # Not kept if the cap changed meanwhile: its children may predate the new cap.
                if found.epoch == self.children_epoch and len(self._children) < CHILD_CACHE_LIMIT:
                    self._children[labels] = found
        return found

    def count_telemetry_error(self, stage: str) -> None:
        self.telemetry_errors.labels(stage[:40]).inc()

    def _series_overflow(self, metric: CappedMetric) -> None:
        """A label tuple past `metric`'s series budget went to the overflow series."""
        self.telemetry_errors.labels("series_budget").inc()
        if metric.name not in self._warned:
            self._warned.add(metric.name)
            logger.warning(
                "failsight: %s reached its series budget (max_series=%d label combinations); "
                "new ones are reported with operation, provider, model and call_site 'other' "
                'and counted in telemetry_errors_total{stage="series_budget"}',
                metric.name,
                metric._max_series,
            )
