"""Every logical request carries a `trace_id` exemplar when its span is sampled: scoped or
not (`call_site="unscoped"`, the default, and all of `failsight run`), SDK or raw HTTP,
streamed or not. Read back from `/metrics` in the OpenMetrics format, over a socket."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

import failsight
from conftest import Telemetry
from failsight.testing import FaultServer
from openai_calls import MESSAGES, async_client, sync_client

_EXEMPLAR = re.compile(r'^(\w+)\{([^}]*)\} \S+ # \{trace_id="([0-9a-f]{32})"\}')


def exemplars() -> dict[str, set[str]]:
    """metric sample name → trace ids of its exemplars, from `/metrics` as Prometheus reads it."""
    server, _ = failsight.start_metrics_server(port=0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _EXEMPLAR.match(line)
        if match is not None:
            found.setdefault(match.group(1), set()).add(match.group(3))
    return found


def trace_ids(t: Telemetry, kind: SpanKind) -> set[str]:
    return {format(s.context.trace_id, "032x") for s in t.spans() if s.kind == kind}


def assert_exemplars_of(t: Telemetry, kind: SpanKind, failed: bool = False) -> None:
    expected = trace_ids(t, kind)
    assert len(expected) == 1
    found = exemplars()
    assert found.get("genai_request_duration_seconds_bucket") == expected, found
    assert found.get("genai_requests_total") == expected, found
    if failed:
        assert found.get("genai_failures_total") == expected, found


@pytest.fixture
def http_patched(telemetry: Telemetry) -> Iterator[Telemetry]:
    failsight.instrument_http()
    yield telemetry
    failsight.uninstrument_http()


# ---------------------------------------------------------------------- unscoped


@pytest.mark.parametrize("scenario", ["ok", "http_429", "content_filter"])
def test_an_unscoped_sdk_call_has_its_exemplar(
    instrumented: Telemetry, server: FaultServer, scenario: str
) -> None:
    try:
        sync_client(server).chat.completions.create(
            model=f"gpt-4o-mini@{scenario}", messages=MESSAGES
        )
    except openai.RateLimitError:
        assert scenario == "http_429"
    assert_exemplars_of(instrumented, SpanKind.CLIENT, failed=scenario != "ok")


async def test_an_unscoped_async_call_has_its_exemplar(
    instrumented: Telemetry, server: FaultServer
) -> None:
    await async_client(server).embeddings.create(model="text-embedding-3-small", input="hi")
    assert_exemplars_of(instrumented, SpanKind.CLIENT)


@pytest.mark.parametrize("scenario", ["ok", "drop_after_usage"])
def test_an_unscoped_stream_has_its_exemplar(
    instrumented: Telemetry, server: FaultServer, scenario: str
) -> None:
    stream = sync_client(server).chat.completions.create(
        model=f"gpt-4o-mini@{scenario}", messages=MESSAGES, stream=True
    )
    try:
        for _chunk in stream:
            pass
    except openai.APIConnectionError:
        assert scenario == "drop_after_usage"
    assert_exemplars_of(instrumented, SpanKind.CLIENT, failed=scenario != "ok")


@pytest.mark.parametrize("stream", [False, True])
def test_an_unscoped_raw_http_call_has_its_exemplar(
    http_patched: Telemetry, server: FaultServer, stream: bool
) -> None:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
    url = f"{server.base_url}/chat/completions"
    with httpx.Client(timeout=5) as client, client.stream("POST", url, json=body) as r:
        r.read()
    assert_exemplars_of(http_patched, SpanKind.CLIENT)


# ---------------------------------------------------------------------- scoped, sampled out


def test_a_scoped_call_has_the_scopes_exemplar(
    instrumented: Telemetry, server: FaultServer
) -> None:
    @failsight.traced_generation(name="site")
    def site() -> None:
        sync_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    site()
    assert_exemplars_of(instrumented, SpanKind.INTERNAL)  # the scope's trace: one for both


def test_a_sampled_out_call_counts_without_an_exemplar(server: FaultServer) -> None:
    from prometheus_client import CollectorRegistry

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    failsight.configure(registry=registry, tracer_provider=provider, prices=False)
    failsight.instrument_openai()
    try:
        sync_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert exemplars() == {}
        assert registry.get_sample_value(
            "genai_requests_total",
            {"operation": "chat", "provider": "127.0.0.1", "model": "gpt-4o-mini",
             "call_site": "unscoped", "failure_class": "none"},
        ) == 1  # fmt: skip
    finally:
        failsight.uninstrument_openai()
        provider.shutdown()
        failsight._config._state = None
