"""`configure()` and the active state: settings, metric set, tracer, OTel instruments."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.metrics import Histogram as OTelHistogram
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from failsight import _guard
from failsight._metrics import MetricSet
from failsight._version import __version__
from failsight._video import VideoJobs

__all__ = ["Settings", "State", "configure", "get_state"]

_NAMESPACE_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# Recommended buckets of the GenAI semantic conventions.
_SEMCONV_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
_SEMCONV_TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


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
        self.otel_duration: OTelHistogram | None = None
        self.otel_tokens: OTelHistogram | None = None
        if settings.meter_provider is not None:
            meter = settings.meter_provider.get_meter("failsight", __version__)
            self.otel_duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=list(_SEMCONV_DURATION_BUCKETS),
            )
            self.otel_tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=[float(b) for b in _SEMCONV_TOKEN_BUCKETS],
            )

    def _video_ended(self, labels: tuple[str, ...], status: str, seconds: float) -> None:
        self.metrics.video_jobs.child((*labels, status)).inc()
        self.metrics.video_job_duration.child((*labels, status)).observe(seconds)


_lock = threading.Lock()
_state: State | None = None
# One metric set per (registry, namespace): configuring twice must not re-register metrics.
_metric_sets: dict[tuple[int, str], MetricSet] = {}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"failsight.configure: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"failsight.configure: {name} must be >= {minimum}, got {value}")
    return value


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"failsight.configure: {name} must be a positive number, got {value!r}")
    return float(value)


def configure(
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    namespace: str = "genai",
    capture_content: bool = False,
    max_content_length: int = 2048,
    max_label_values: int = 100,
    video_job_timeout: float = 1800.0,
    max_open_video_jobs: int = 1000,
) -> Settings:
    """Set where failsight records; optional, and calling it again replaces the settings.

    >>> from prometheus_client import CollectorRegistry
    >>> settings = configure(registry=CollectorRegistry(), max_label_values=50)
    >>> settings.namespace
    'genai'

    Raises TypeError/ValueError naming the bad option (unknown options are a TypeError).
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
    if not isinstance(capture_content, bool):
        raise TypeError("failsight.configure: capture_content must be True or False")
    settings = Settings(
        registry=registry,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        namespace=namespace,
        capture_content=capture_content,
        max_content_length=_check_int("max_content_length", max_content_length, 0),
        max_label_values=_check_int("max_label_values", max_label_values, 1),
        video_job_timeout=_check_number("video_job_timeout", video_job_timeout),
        max_open_video_jobs=_check_int("max_open_video_jobs", max_open_video_jobs, 1),
    )
    _activate(settings)
    return settings


def _activate(settings: Settings) -> State:
    global _state
    with _lock:
        key = (id(settings.registry), settings.namespace)
        metrics = _metric_sets.get(key)
        if metrics is None or metrics.registry is not settings.registry:
            metrics = MetricSet(settings.registry, settings.namespace, settings.max_label_values)
            _metric_sets[key] = metrics
        else:
            metrics.set_max_label_values(settings.max_label_values)
        state = State(settings, metrics)
        _state = state
        _guard.set_error_sink(metrics.count_telemetry_error)
    return state


def get_state() -> State:
    """The active state, built with the defaults on first use."""
    state = _state
    if state is None:
        state = _activate(Settings(registry=REGISTRY))
    return state
