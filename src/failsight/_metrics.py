"""The Prometheus metric set (docs/reference.md#metrics), built against a given registry."""

from __future__ import annotations

import contextlib
import logging
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from failsight._capped import (
    CHILD_CACHE_LIMIT,
    DEFAULT_MAX_SERIES,
    MAX_LABEL_LENGTH,
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
from failsight._vocabulary import VOCABULARY

__all__ = [
    "ATTEMPT_BUCKETS",
    "COMMON_LABELS",
    "DEFAULT_MAX_SERIES",
    "DURATION_BUCKETS",
    "MAX_LABEL_LENGTH",
    "BeforeCollect",
    "CappedMetric",
    "LabelChildren",
    "MetricSet",
]

logger = logging.getLogger("failsight")

_TYPES: Final[Mapping[str, Any]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}

# The metric table (`vocabulary.json`, `metrics`): exposed names without the namespace.
METRICS: Final[Mapping[str, Mapping[str, Any]]] = types.MappingProxyType(
    {entry["name"]: entry for entry in VOCABULARY["metrics"]}
)
COMMON_LABELS: Final[tuple[str, ...]] = VOCABULARY["labels"]["common"]
ATTEMPT_BUCKETS: Final[tuple[float, ...]] = METRICS["request_attempts"]["buckets"]
DURATION_BUCKETS: Final[tuple[float, ...]] = METRICS["request_duration_seconds"]["buckets"]

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
    `genai_content_filter_total`, `genai_tool_calls_total`, `genai_attempts_total`,
    `genai_retry_backoff_seconds`, `genai_request_phase_seconds`, `genai_ratelimit_remaining`,
    `genai_ratelimit_limit`, `genai_ratelimit_reset_seconds` and `genai_telemetry_errors_total`
    with the default namespace.

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
        # (gauge, provider, model, resource) -> the headroom gauge's setter (`_attempts`)
        self.headroom: dict[tuple[int, str, str, str], Add] = {}
        # (provider, model) -> (headers, time) of its newest answer not yet read (`_attempts`);
        # read when collected, except in multiprocess mode, where no collection sees them.
        self.headroom_pending: dict[tuple[str, str], tuple[Any, float]] = {}
        self.headroom_deferred = values.ValueClass is values.MutexValue
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

        def register(entry: Mapping[str, Any], common: Sequence[str] = ()) -> Any:
            metric_type, name, kwargs = _TYPES[entry["type"]], entry["name"], {}
            if metric_type is Counter:
                name = name.removesuffix("_total")  # prometheus_client adds it
            if "buckets" in entry:
                kwargs["buckets"] = entry["buckets"]
            if "multiprocess_mode" in entry:
                kwargs["multiprocess_mode"] = entry["multiprocess_mode"]
            labels = (*common, *entry["labels"])
            try:
                metric = metric_type(
                    name, entry["help"], labels, namespace=namespace, registry=registry, **kwargs
                )
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

        def capped(name: str, n_capped: int = n) -> CappedMetric:
            entry = METRICS[name]
            # Without the common labels, the metric leads with those of them it capped.
            metric = register(entry, common if entry["common_labels"] else ())
            extra = entry["labels"]
            reason = n + list(extra).index("reason") if "reason" in extra else None
            shown = f"{namespace}_{name.removesuffix('_total')}"
            return CappedMetric(
                metric, n_capped, cap, reason_index=reason, max_series=max_series,
                on_overflow=self._series_overflow, name=shown,
            )  # fmt: skip

        self.requests = capped("requests_total")
        self.failures = capped("failures_total")
        self.finish_reasons = capped("finish_reasons_total")
        self.retries = capped("retries_total")
        self.tokens = capped("tokens_total")
        self.attempts = capped("request_attempts")
        self.duration = capped("request_duration_seconds")
        self.time_to_first_token = capped("time_to_first_token_seconds")
        self.video_jobs = capped("video_jobs_total")
        self.video_job_duration = capped("video_job_duration_seconds")
        self.in_flight = capped("in_flight_requests")
        self.wasted_tokens = capped("wasted_tokens_total")
        self.cost = capped("cost_usd_total")
        self.wasted_cost = capped("wasted_cost_usd_total")
        self.content_filter = capped("content_filter_total")
        # `tool` follows the common labels and is capped like them (a request's tool names).
        self.tool_calls = capped("tool_calls_total", n + 1)
        self.attempt_count = capped("attempts_total")
        self.backoff = capped("retry_backoff_seconds")
        self.phases = capped("request_phase_seconds")
        # One series per provider and model (both capped) and resource, not per call site.
        self.ratelimit_remaining = capped("ratelimit_remaining", 2)
        self.ratelimit_limit = capped("ratelimit_limit", 2)
        self.ratelimit_reset = capped("ratelimit_reset_seconds", 2)
        self.telemetry_errors: Counter = register(METRICS["telemetry_errors_total"])
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
            self.wasted_cost, self.content_filter, self.tool_calls, self.attempt_count,
            self.backoff, self.phases, self.ratelimit_remaining, self.ratelimit_limit,
            self.ratelimit_reset,
        )  # fmt: skip

    def set_max_label_values(self, cap: int) -> None:
        self.set_limits(cap, self.requests._max_series)

    def set_limits(self, max_label_values: int, max_series: int) -> None:
        """Apply a new label cap and series budget to every metric (`configure()` again)."""
        with self._children_lock:
            for metric in self.capped:
                metric.set_limits(max_label_values, max_series)
            self._children.clear()
            self.headroom.clear()
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
