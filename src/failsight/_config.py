"""`configure()` and the active state: settings, metric set, tracer, OTel instruments."""

from __future__ import annotations

import math
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.metrics import Histogram as OTelHistogram
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from failsight import _deferred, _guard
from failsight._attempts import flush_headroom
from failsight._metrics import DEFAULT_MAX_SERIES, MetricSet
from failsight._prices import PriceBook, check_prices, load_table
from failsight._version import __version__
from failsight._video import VideoJobs
from failsight._vocabulary import VOCABULARY

__all__ = ["Settings", "State", "configure", "get_state"]

_NAMESPACE_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# The GenAI semantic conventions' client metrics, with their recommended buckets.
_OTEL: Final[Mapping[str, Mapping[str, Any]]] = VOCABULARY["spans"]["otel_metrics"]


@dataclass(frozen=True)
class Settings:
    """Validated configuration; see `failsight.configure`."""

    registry: CollectorRegistry
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    namespace: str = "genai"
    capture_content: bool = False
    max_content_length: int = 2048
    max_label_values: int = 100
    video_job_timeout: float = 1800.0
    max_open_video_jobs: int = 1000
    max_series: int = DEFAULT_MAX_SERIES
    prices: Any = None
    judge_declared: bool = True


class State:
    """Everything a recording needs, built once per `configure()` call."""

    def __init__(self, settings: Settings, metrics: MetricSet) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracer: Tracer = trace.get_tracer(
            "failsight", __version__, tracer_provider=settings.tracer_provider
        )
        self.video_jobs = VideoJobs(
            self._video_ended,
            max_open=settings.max_open_video_jobs,
            timeout=settings.video_job_timeout,
        )
        self.prices: PriceBook | None = None
        if settings.prices is not False:
            user = check_prices(settings.prices)
            table = load_table()
            if user is not None or table is not None:
                self.prices = PriceBook(user, table, self._price_unknown)
        self.otel_duration: OTelHistogram | None = None
        self.otel_tokens: OTelHistogram | None = None
        if settings.meter_provider is not None:
            meter = settings.meter_provider.get_meter("failsight", __version__)
            duration, tokens = _OTEL["operation_duration"], _OTEL["token_usage"]
            self.otel_duration = meter.create_histogram(
                duration["name"],
                unit=duration["unit"],
                description=duration["help"],
                explicit_bucket_boundaries_advisory=[float(b) for b in duration["buckets"]],
            )
            self.otel_tokens = meter.create_histogram(
                tokens["name"],
                unit=tokens["unit"],
                description=tokens["help"],
                explicit_bucket_boundaries_advisory=[float(b) for b in tokens["buckets"]],
            )

    def _price_unknown(self, provider: str, model: str) -> None:
        self.metrics.count_telemetry_error("price_unknown")

    def _video_ended(self, labels: tuple[str, ...], status: str, seconds: float) -> None:
        self.metrics.video_jobs.child((*labels, status)).inc()
        self.metrics.video_job_duration.child((*labels, status)).observe(seconds)


# Accepted ranges of the numeric options: large enough for any real service, small enough
# that a typo (an extra zero, float("inf")) fails here instead of exhausting memory later.
MAX_LABEL_VALUES_LIMIT: Final = 100_000
MAX_SERIES_LIMIT: Final = 1_000_000
MAX_OPEN_VIDEO_JOBS_LIMIT: Final = 1_000_000
MAX_CONTENT_LENGTH_LIMIT: Final = 1_048_576
VIDEO_JOB_TIMEOUT_LIMIT: Final = 7 * 24 * 3600.0  # seconds: a week

_lock = threading.Lock()
_state: State | None = None
# The metric sets of each registry, by namespace: configuring a registry again must not
# re-register its metrics. Keyed weakly, so registries nobody else holds are forgotten
# (a metric set holds no reference to its registry).
_metric_sets: weakref.WeakKeyDictionary[Any, dict[str, MetricSet]] = weakref.WeakKeyDictionary()
# The same for registries that cannot be weakly referenced; only the newest few are kept.
_strong_metric_sets: dict[int, tuple[Any, dict[str, MetricSet]]] = {}
_STRONG_LIMIT: Final = 16


def _check_int(name: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"failsight.configure: {name} must be an int in {minimum}..{maximum}, "
            f"got {type(value).__name__} {value!r}"
        )
    if not minimum <= value <= maximum:
        raise ValueError(
            f"failsight.configure: {name} must be in {minimum}..{maximum}, got {value}"
        )
    return value


def _check_seconds(name: str, value: Any, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"failsight.configure: {name} must be a number of seconds in (0, {maximum:g}], "
            f"got {type(value).__name__} {value!r}"
        )
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise ValueError(
            f"failsight.configure: {name} must be a number of seconds in (0, {maximum:g}], "
            f"got {value!r}"
        )
    return float(value)


def configure(
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    namespace: str = "genai",
    capture_content: bool | None = None,
    max_content_length: int = 2048,
    max_label_values: int = 100,
    video_job_timeout: float = 1800.0,
    max_open_video_jobs: int = 1000,
    max_series: int = DEFAULT_MAX_SERIES,
    prices: Any = None,
    judge_declared: bool = True,
) -> Settings:
    """Set where failsight records; optional, and calling it again replaces the settings.

    >>> from prometheus_client import CollectorRegistry
    >>> settings = configure(registry=CollectorRegistry(), max_label_values=50)
    >>> settings.namespace
    'genai'

    `capture_content` records prompts and outputs on spans (masked, cut to
    `max_content_length`); None (the default) reads
    `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (`true` turns it on).

    `max_label_values` bounds the distinct values of each common label (and of free-form
    reasons) per metric; `max_series` bounds the distinct (operation, provider, model,
    call_site) combinations per metric, past which they are reported as `other`.

    `prices` prices usage (`genai_cost_usd_total`, `genai_wasted_cost_usd_total`): None (the
    default) uses the `genai-prices` table when the `prices` extra is installed; a mapping
    of model name, or of (provider, model), to {"input", "output", "cached_input",
    "reasoning"} in US dollars per million tokens, or to the name of a model to price as
    (an Azure deployment's own name, say), comes first; a callable (provider, model) ->
    either, or None, is asked once per pair (per hour); False turns pricing off.

    `judge_declared` (default True) judges each chat or Responses answer against what its
    request declares, with no validator: tool calls to undeclared tools, tool arguments that
    are not JSON or break the tool's `parameters` schema, a `tool_choice` that forced a call
    that did not come, structured output (`response_format`, `text.format`) that is not JSON
    or breaks its schema are silent failures, and `genai_tool_calls_total` counts tool calls
    by tool and outcome. False turns it off; `traced_generation(judge_declared=...)` decides
    for the calls inside one call site.

    Raises TypeError/ValueError naming the bad option and its accepted range (unknown
    options are a TypeError), or ValueError when a failsight metric name is already taken
    in `registry`.
    """
    if registry is None:
        registry = REGISTRY
    elif not callable(getattr(registry, "register", None)):
        raise TypeError(
            "failsight.configure: registry must be a prometheus_client CollectorRegistry"
        )
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise TypeError("failsight.configure: tracer_provider must have get_tracer()")
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise TypeError("failsight.configure: meter_provider must have get_meter()")
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"failsight.configure: namespace must match [a-zA-Z_][a-zA-Z0-9_]*, got {namespace!r}"
        )
    if capture_content is None:
        capture_content = capture_content_from_env()
    if not isinstance(capture_content, bool):
        raise TypeError("failsight.configure: capture_content must be True, False or None")
    if not isinstance(judge_declared, bool):
        raise TypeError(
            f"failsight.configure: judge_declared must be True or False, got {judge_declared!r:.80}"
        )
    settings = Settings(
        registry=registry,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        namespace=namespace,
        capture_content=capture_content,
        max_content_length=_check_int(
            "max_content_length", max_content_length, 0, MAX_CONTENT_LENGTH_LIMIT
        ),
        max_label_values=_check_int(
            "max_label_values", max_label_values, 1, MAX_LABEL_VALUES_LIMIT
        ),
        video_job_timeout=_check_seconds(
            "video_job_timeout", video_job_timeout, VIDEO_JOB_TIMEOUT_LIMIT
        ),
        max_open_video_jobs=_check_int(
            "max_open_video_jobs", max_open_video_jobs, 1, MAX_OPEN_VIDEO_JOBS_LIMIT
        ),
        max_series=_check_int("max_series", max_series, 1, MAX_SERIES_LIMIT),
        prices=prices,
        judge_declared=judge_declared,
    )
    check_prices(prices)  # a bad price fails here, not on the first call
    _activate(settings)
    return settings


def _sets_of(registry: Any) -> dict[str, MetricSet]:
    """The metric sets already built on `registry`, by namespace (a live dict)."""
    try:
        found = _metric_sets.get(registry)
        if found is None:
            found = _metric_sets[registry] = {}
        return found
    except TypeError:  # not weakly referenceable
        pass
    entry = _strong_metric_sets.get(id(registry))
    if entry is None or entry[0] is not registry:
        while len(_strong_metric_sets) >= _STRONG_LIMIT:
            del _strong_metric_sets[next(iter(_strong_metric_sets))]
        entry = _strong_metric_sets[id(registry)] = (registry, {})
    return entry[1]


def _activate(settings: Settings) -> State:
    global _state
    with _lock:
        sets = _sets_of(settings.registry)
        metrics = sets.get(settings.namespace)
        if metrics is None:
            made: list[MetricSet] = []

            def before_collect() -> None:
                _deferred.drain()
                if made:
                    flush_headroom(made[0])

            metrics = MetricSet(
                settings.registry,
                settings.namespace,
                settings.max_label_values,
                max_series=settings.max_series,
                before_collect=before_collect,
            )
            made.append(metrics)
            sets[settings.namespace] = metrics
        else:
            metrics.set_limits(settings.max_label_values, settings.max_series)
        state = State(settings, metrics)
        _state = state
        _guard.set_error_sink(metrics.count_telemetry_error)
    return state


def get_state() -> State:
    """The active state, built with the defaults on first use."""
    state = _state
    if state is None:
        state = _activate(Settings(registry=REGISTRY, capture_content=capture_content_from_env()))
    return state


CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def capture_content_from_env() -> bool:
    """The OpenTelemetry GenAI switch for content capture, read when settings are made."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("true", "1", "yes")
