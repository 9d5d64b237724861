"""configure(): validated options, clear errors, replacement semantics."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

import failsight
from conftest import Telemetry
from failsight import _config, _deferred


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"namespace": "bad-name"}, ValueError, "namespace"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": 3}, ValueError, "namespace"),
        ({"max_label_values": -1}, ValueError, "max_label_values"),
        ({"max_label_values": 0}, ValueError, "max_label_values"),
        ({"max_label_values": 2.5}, TypeError, "max_label_values"),
        ({"max_label_values": True}, TypeError, "max_label_values"),
        ({"registry": object()}, TypeError, "registry"),
        ({"tracer_provider": "x"}, TypeError, "tracer_provider"),
        ({"meter_provider": 1}, TypeError, "meter_provider"),
        ({"capture_content": "yes"}, TypeError, "capture_content"),
        ({"video_job_timeout": 0}, ValueError, "video_job_timeout"),
        ({"max_open_video_jobs": 0}, ValueError, "max_open_video_jobs"),
        ({"max_content_length": -5}, ValueError, "max_content_length"),
        ({"unknown_option": 1}, TypeError, "unknown_option"),
        # bounded and finite, and the message gives the accepted range
        ({"video_job_timeout": float("inf")}, ValueError, r"video_job_timeout .*\(0, 604800\]"),
        ({"video_job_timeout": float("nan")}, ValueError, r"video_job_timeout .*\(0, 604800\]"),
        ({"video_job_timeout": 8 * 86400}, ValueError, r"video_job_timeout .*\(0, 604800\]"),
        ({"video_job_timeout": "60"}, TypeError, "video_job_timeout"),
        ({"max_label_values": 10**12}, ValueError, r"max_label_values must be in 1\.\.100000,"),
        (
            {"max_open_video_jobs": 10**9},
            ValueError,
            r"max_open_video_jobs must be in 1\.\.1000000,",
        ),
        ({"max_content_length": 10**9}, ValueError, r"max_content_length must be in 0\.\.1048576"),
        ({"max_series": 0}, ValueError, r"max_series must be in 1\.\.1000000,"),
        ({"max_series": 10**9}, ValueError, r"max_series must be in 1\.\.1000000,"),
        ({"max_series": 1.5}, TypeError, r"max_series must be an int in 1\.\.1000000"),
    ],
)
def test_bad_options_fail_fast(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        failsight.configure(**options)


def test_namespace_and_replacement(telemetry: Telemetry) -> None:
    registry = CollectorRegistry()
    failsight.configure(registry=registry, namespace="llm")
    failsight.traced_generation(name="a")(lambda: 1)()
    assert (
        registry.get_sample_value(
            "llm_requests_total",
            {
                "operation": "unknown",
                "provider": "unknown",
                "model": "unknown",
                "call_site": "a",
                "failure_class": "none",
            },
        )
        == 1
    )
    # configuring the same registry again reuses the metrics instead of re-registering them
    failsight.configure(registry=registry, namespace="llm", max_label_values=5)
    failsight.traced_generation(name="a")(lambda: 1)()
    assert (
        registry.get_sample_value(
            "llm_requests_total",
            {
                "operation": "unknown",
                "provider": "unknown",
                "model": "unknown",
                "call_site": "a",
                "failure_class": "none",
            },
        )
        == 2
    )
    assert telemetry.value("genai_requests_total") == 0


def test_semconv_metrics_with_meter_provider(telemetry: Telemetry) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    failsight.configure(
        registry=telemetry.registry,
        tracer_provider=telemetry.provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )

    @failsight.traced_generation(name="a", operation="chat", model="gpt-4o")
    def call() -> str:
        failsight.current_generation().record_usage(input=7, output=2)  # type: ignore[union-attr]
        return "x"

    call()
    data = reader.get_metrics_data()
    metrics = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    point = duration.data.data_points[0]
    assert point.count == 1
    assert point.attributes["gen_ai.request.model"] == "gpt-4o"
    assert list(point.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    tokens = metrics["gen_ai.client.token.usage"]
    sums = {p.attributes["gen_ai.token.type"]: p.sum for p in tokens.data.data_points}
    assert sums == {"input": 7, "output": 2}


def test_upper_bounds_are_accepted(telemetry: Telemetry) -> None:
    settings = failsight.configure(
        registry=telemetry.registry,
        max_label_values=100_000,
        max_open_video_jobs=1_000_000,
        video_job_timeout=7 * 86400,
        max_series=1_000_000,
    )
    assert settings.max_series == 1_000_000 and settings.video_job_timeout == 604800.0


def test_a_clashing_metric_leaves_the_registry_as_it_was(telemetry: Telemetry) -> None:
    registry = CollectorRegistry()
    theirs = Gauge("genai_in_flight_requests", "an application's own gauge", registry=registry)
    with pytest.raises(ValueError, match=r"'genai_in_flight_requests'.*namespace="):
        failsight.configure(registry=registry)
    assert {m.name for m in registry.collect()} == {"genai_in_flight_requests"}
    assert _config.get_state().settings.registry is telemetry.registry  # still the old one
    registry.unregister(theirs)
    failsight.configure(registry=registry)  # works once the clash is gone
    failsight.traced_generation(name="a")(lambda: 1)()
    assert registry.get_sample_value(
        "genai_requests_total",
        {"operation": "unknown", "provider": "unknown", "model": "unknown", "call_site": "a",
         "failure_class": "none"},
    ) == 1  # fmt: skip


@pytest.mark.slow
def test_metric_sets_of_dropped_registries_are_forgotten(telemetry: Telemetry) -> None:
    # Registries earlier tests left alive (prometheus_client's default REGISTRY, say) stay.
    gc.collect()
    before = len(_config._metric_sets) + len(_config._strong_metric_sets)
    first = CollectorRegistry()
    failsight.configure(registry=first)
    first_ref = weakref.ref(first)
    del first
    for _ in range(3_000):
        failsight.configure(registry=CollectorRegistry())
    failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider)
    gc.collect()
    assert first_ref() is None
    assert len(_config._metric_sets) + len(_config._strong_metric_sets) <= before + 1
    # A registry still in use keeps its metric set: configuring it again re-registers nothing.
    failsight.configure(registry=telemetry.registry, max_label_values=5)
    failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider)


def test_deferred_work_runs_before_a_scrape(telemetry: Telemetry) -> None:
    """Recordings a finaliser queued are in the very scrape that follows."""

    def record() -> None:
        _config.get_state().metrics.requests.child(("chat", "openai", "m", "late", "none")).inc()

    _deferred.defer(record)
    assert telemetry.value("genai_requests_total", call_site="late") == 1


def test_max_series_bounds_label_combinations(telemetry: Telemetry) -> None:
    failsight.configure(
        registry=telemetry.registry, tracer_provider=telemetry.provider, max_series=3
    )
    for i in range(10):
        failsight.traced_generation(name=f"site-{i}", model=f"model-{i}")(lambda: 1)()
    sites = {s["call_site"] for s in telemetry.series("genai_requests_total")}
    assert sites == {"site-0", "site-1", "site-2", "other"}
    assert telemetry.value("genai_requests_total", call_site="other", model="other") == 7
    assert telemetry.value("genai_telemetry_errors_total", stage="series_budget") > 0


def test_custom_reasons_are_capped(telemetry: Telemetry) -> None:
    failsight.configure(
        registry=telemetry.registry, tracer_provider=telemetry.provider, max_label_values=2
    )

    def failing(reason: str) -> None:
        handle = failsight.current_generation()
        assert handle is not None
        handle.mark_failure("silent", reason)

    for reason in ("mine_a", "mine_b", "mine_c", "mine_d", "too_short", "invalid_json"):
        failsight.traced_generation(name="site")(failing)(reason)
    reasons = {s["reason"] for s in telemetry.series("genai_failures_total")}
    assert reasons == {"mine_a", "mine_b", "other", "too_short", "invalid_json"}
    assert telemetry.value("genai_failures_total", reason="other") == 2
