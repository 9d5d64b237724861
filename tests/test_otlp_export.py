"""OTLP/HTTP export: spans and the GenAI semantic-convention metrics reach a real endpoint.

A small `http.server` on loopback decodes what `opentelemetry-exporter-otlp-proto-http`
sends (`ExportTraceServiceRequest`, `ExportMetricsServiceRequest`). A broken endpoint
(down, slow, answering 500 or 503) never changes what the instrumented calls return: the
exporter works from the `BatchSpanProcessor`'s bounded queue, off the caller's thread.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

import failsight
from failsight import _config
from failsight.testing import FaultServer, completion_body, mock_openai_client, stream_body
from openai_calls import MESSAGES, headers, sync_client

pytestmark = pytest.mark.e2e

SEMCONV_DURATION_BUCKETS = [
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
]
SEMCONV_TOKEN_BUCKETS = [
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
]


# --------------------------------------------------------------------------- the endpoint


@dataclass
class Receiver:
    """What the OTLP endpoint received, and how it answers (`ok`, `slow`, `500`, `503`)."""

    url: str = ""
    mode: str = "ok"
    slow_seconds: float = 3.0
    spans: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all_spans(self) -> list[tuple[dict[str, Any], str, Span]]:
        """(resource attributes, instrumentation scope name, span) of every span received."""
        with self.lock:
            requests = list(self.spans)
        return [
            (attributes_of(rs.resource.attributes), ss.scope.name, span)
            for request in requests
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def all_metrics(self) -> dict[str, Metric]:
        """The last received data of each metric, by name."""
        found: dict[str, Metric] = {}
        with self.lock:
            requests = list(self.metrics)
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        found[metric.name] = metric
        return found


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with receiver.lock:
                receiver.posts += 1
                mode = receiver.mode
            if mode == "slow":
                time.sleep(receiver.slow_seconds)
            if mode in ("500", "503"):
                self._reply(int(mode), b"")
                return
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.spans.append(request)
                reply = ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.metrics.append(metrics)
                reply = ExportMetricsServiceResponse().SerializeToString()
            else:
                self._reply(404, b"")
                return
            self._reply(200, reply)

        def _reply(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the exporter gave up waiting (slow mode)
                pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


def attributes_of(attributes: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in attributes if isinstance(kv, KeyValue)}


@dataclass
class Pipeline:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def pipeline(
    endpoint: str,
    *,
    timeout: float,
    queue: int = 2048,
    export_interval_ms: int = 60_000,
) -> Pipeline:
    """failsight configured to export spans and metrics over OTLP/HTTP to `endpoint`."""
    resource = Resource.create({"service.name": "failsight-otlp-test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=timeout),
            max_queue_size=queue,
            max_export_batch_size=queue,  # one export per flush: shutdown waits one timeout
            schedule_delay_millis=50,
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout),
        export_interval_millis=export_interval_ms,
        export_timeout_millis=int(timeout * 1000) + 500,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    registry = CollectorRegistry()
    failsight.configure(
        registry=registry, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return Pipeline(tracer_provider, meter_provider, registry)


@pytest.fixture
def patched() -> Iterator[None]:
    failsight.instrument_openai()
    try:
        yield
    finally:
        failsight.uninstrument_openai()
        _config._state = None


# --------------------------------------------------------------------------- what is exported


def test_spans_and_semconv_metrics_reach_an_otlp_endpoint(
    receiver: Receiver, server: FaultServer, patched: None
) -> None:
    otlp = pipeline(receiver.url, timeout=5)
    client = sync_client(server)

    def chat(scenario: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers(scenario)
        )

    @failsight.traced_generation(name="summarize")
    def summarize() -> str | None:
        return str(chat("ok").choices[0].message.content)

    @failsight.traced_generation(name="moderate")
    def moderate() -> Any:
        return chat("content_filter")

    summarize()
    moderate()
    with pytest.raises(openai.RateLimitError):
        chat("http_429")
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert otlp.tracer_provider.force_flush(10_000)
    assert otlp.meter_provider.force_flush(10_000)

    spans = receiver.all_spans()
    assert {scope for _, scope, _ in spans} == {"failsight"}
    assert all(res["service.name"] == "failsight-otlp-test" for res, _, _ in spans)
    by_name: dict[str, list[Span]] = {}
    for _, _, span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted((name, len(found)) for name, found in by_name.items()) == [
        ("chat gpt-4o-mini", 3),
        ("embeddings text-embedding-3-small", 1),
        ("moderate", 1),
        ("summarize", 1),
    ]

    # A traced scope is the INTERNAL parent of the SDK's CLIENT span, in one trace.
    (scope,) = by_name["summarize"]
    scope_attrs = attributes_of(scope.attributes)
    children = [s for s in by_name["chat gpt-4o-mini"] if s.parent_span_id == scope.span_id]
    assert len(children) == 1
    (child,) = children
    assert child.trace_id == scope.trace_id
    assert scope.kind == Span.SPAN_KIND_INTERNAL and child.kind == Span.SPAN_KIND_CLIENT
    assert scope.parent_span_id == b""
    assert scope_attrs["failsight.call_site"] == "summarize"
    assert scope_attrs["failsight.failure_class"] == "none"
    assert scope_attrs["failsight.attempts"] == 1
    assert scope_attrs["gen_ai.operation.name"] == "chat"
    assert scope_attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert scope_attrs["gen_ai.usage.input_tokens"] == 11
    child_attrs = attributes_of(child.attributes)
    host, port = server.url.removeprefix("http://").split(":")
    assert child_attrs == {
        **child_attrs,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": host,
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 9,
        "gen_ai.request.stream": False,
        "openai.api.type": "chat_completions",
        "server.address": host,
        "server.port": int(port),
        "failsight.call_site": "summarize",
        "failsight.failure_class": "none",
    }
    assert str(child_attrs["gen_ai.response.id"]).startswith("chatcmpl")
    assert str(child_attrs["failsight.request_id"]).startswith("req_")
    assert scope.status.code != Status.STATUS_CODE_ERROR

    # A soft failure: the scope's status is ERROR with the reason.
    (soft,) = by_name["moderate"]
    soft_attrs = attributes_of(soft.attributes)
    assert soft.status.code == Status.STATUS_CODE_ERROR
    assert soft.status.message == "content_filter"
    assert soft_attrs["failsight.failure_class"] == "soft"
    assert soft_attrs["failsight.failure_reason"] == "content_filter"
    assert soft_attrs["error.type"] == "content_filter"

    # A hard failure outside any scope: a root CLIENT span with the HTTP details.
    (hard,) = [s for s in by_name["chat gpt-4o-mini"] if s.parent_span_id == b""]
    hard_attrs = attributes_of(hard.attributes)
    assert hard.status.code == Status.STATUS_CODE_ERROR
    assert hard_attrs["http.response.status_code"] == 429
    assert hard_attrs["error.type"] == "openai.RateLimitError"
    assert hard_attrs["failsight.failure_reason"] == "rate_limited"
    assert hard_attrs["failsight.call_site"] == "unscoped"
    assert hard_attrs["failsight.error.code"] == "rate_limit_exceeded"
    events = {event.name: attributes_of(event.attributes) for event in hard.events}
    assert events["exception"]["exception.type"] == "openai.RateLimitError"

    metrics = receiver.all_metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = {
        tuple(sorted(attributes_of(p.attributes).items())): p
        for p in duration.histogram.data_points
    }
    chat_labels = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": host,
        "gen_ai.request.model": "gpt-4o-mini",
    }
    expected = {
        tuple(sorted(chat_labels.items())): 1,
        tuple(sorted({**chat_labels, "error.type": "content_filter"}.items())): 1,
        tuple(sorted({**chat_labels, "error.type": "rate_limited"}.items())): 1,
        tuple(
            sorted(
                {
                    "gen_ai.operation.name": "embeddings",
                    "gen_ai.provider.name": host,
                    "gen_ai.request.model": "text-embedding-3-small",
                }.items()
            )
        ): 1,
    }
    assert {key: p.count for key, p in points.items()} == expected
    for point in points.values():
        assert list(point.explicit_bounds) == SEMCONV_DURATION_BUCKETS
        assert 0 < point.sum < 30

    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    sums: dict[tuple[str, str], float] = {}
    for point in tokens.histogram.data_points:
        labels = attributes_of(point.attributes)
        assert list(point.explicit_bounds) == SEMCONV_TOKEN_BUCKETS
        key = (labels["gen_ai.operation.name"], labels["gen_ai.token.type"])
        sums[key] = sums.get(key, 0) + point.sum
    # Two chat responses with usage (ok, content_filter); embeddings report input only.
    assert sums == {("chat", "input"): 22, ("chat", "output"): 18, ("embeddings", "input"): 11}
    otlp.shutdown()


# --------------------------------------------------------------------------- broken endpoints

COMPLETION = completion_body(
    content="hi", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
)


def _mock_client() -> openai.OpenAI:
    stream = stream_body(chunks=3)

    def handler(request: Any) -> Any:
        if b'"stream":true' in request.content:
            return stream
        if request.headers.get("x-fail") == "429":
            return 429, {
                "error": {"message": "slow down", "type": "requests", "code": "rate_limited"}
            }
        return COMPLETION

    client: openai.OpenAI = mock_openai_client(handler, api_key="sk-otlp-test")
    return client


def _workload_call(client: openai.OpenAI, i: int) -> Any:
    """One call of a mixed workload; returns a comparable summary of what the caller got."""
    kind = i % 4
    if kind == 0:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
    if kind == 1:

        @failsight.traced_generation(name="scoped")
        def scoped() -> Any:
            return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        return scoped().model_dump()
    if kind == 2:
        try:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fail": "429"}
            )
        except openai.RateLimitError as exc:
            return ("RateLimitError", exc.status_code, exc.body)
        raise AssertionError("expected a 429")
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    return [chunk.model_dump() for chunk in stream]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


CALLS = 300
MODES = ("healthy", "down", "slow", "500", "503")
TIMINGS: dict[str, dict[str, float]] = {}


def test_broken_endpoints_never_change_or_block_the_calls(
    receiver: Receiver, patched: None
) -> None:
    client = _mock_client()
    results: dict[str, list[Any]] = {}
    requests_total: dict[str, dict[str, float]] = {}
    for mode in MODES:
        receiver.mode = {"healthy": "ok"}.get(mode, mode)
        endpoint = _closed_port_url() if mode == "down" else receiver.url
        # A small queue: past it spans are dropped, never waited for.
        otlp = pipeline(endpoint, timeout=0.5, queue=128, export_interval_ms=100)
        for i in range(8):  # warm-up: imports, first connections
            _workload_call(client, i)
        times: list[float] = []
        got: list[Any] = []
        for i in range(CALLS):
            start = time.perf_counter()
            got.append(_workload_call(client, i))
            times.append(time.perf_counter() - start)
        results[mode] = got
        totals = requests_total[mode] = {}
        for metric in otlp.registry.collect():
            for sample in metric.samples:
                if sample.name == "genai_requests_total":
                    key = sample.labels["failure_class"]
                    totals[key] = totals.get(key, 0) + sample.value
        start = time.perf_counter()
        otlp.shutdown()
        ordered = sorted(times)
        TIMINGS[mode] = {
            "median_us": statistics.median(times) * 1e6,
            "p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
            "max_ms": ordered[-1] * 1e3,
            "total_ms": sum(times) * 1e3,
            "shutdown_ms": (time.perf_counter() - start) * 1e3,
        }
    print("\nper-call wall time by OTLP endpoint state:")
    for mode, figures in TIMINGS.items():
        print(f"  {mode:8} " + "  ".join(f"{k}={v:.1f}" for k, v in figures.items()))
    for mode in MODES:
        assert len(results[mode]) == CALLS
        assert results[mode] == results["healthy"], mode
        # The exposition is unaffected too: three-quarters succeed, a quarter are 429s.
        assert requests_total[mode] == {"none": CALLS * 3 / 4 + 6, "hard": CALLS / 4 + 2}, mode
    assert receiver.posts > 0
    assert receiver.all_spans(), "the healthy endpoint received spans"


def test_demo_exports_spans_when_the_otlp_endpoint_is_set(receiver: Receiver) -> None:
    """`failsight demo` with OTEL_EXPORTER_OTLP_ENDPOINT sends its spans to that endpoint."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "failsight",
            "demo",
            "--port",
            "0",
            "--rounds",
            "1",
            "--async-requests",
            "3",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert f"Spans exported over OTLP to {receiver.url}" in result.stdout
    spans = receiver.all_spans()
    call_sites = {attributes_of(span.attributes).get("failsight.call_site") for _, _, span in spans}
    assert {"unscoped", "classify_review", "extract_json", "submit_and_poll_video"} <= call_sites
    names = {span.name for _, _, span in spans}
    assert "chat gpt-4o-mini" in names and "classify_review" in names
