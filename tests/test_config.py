"""configure(): validated options, clear errors, replacement semantics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import failsight
from conftest import Telemetry


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
