"""Soak: a million mixed calls, and resident memory stays flat.

    python benchmarks/soak.py [--calls 1000000] [--models 5000] [--sites 2000] [--cap 100]

One process, an in-process mock transport (no sockets). The mix, by call number: 70 %
decorator-only scopes (success, soft and silent failures, exceptions, retries), 30 %
patched SDK calls: outside and inside traced scopes, streams read to the end or abandoned
after one chunk, 429s, content filters and video jobs that are created and never polled.
Models and call sites run through many more distinct values than the label cap (`--cap`),
so every capped label overflows into `other`. Spans go through a `BatchSpanProcessor` to a
null exporter and the semantic-convention metrics through a periodic reader to a null
exporter, as with an OTLP pipeline.

It prints resident memory (VmRSS from /proc/self/status) at start, after warm-up and at
the end, the peak (VmHWM), the Prometheus series count per metric family, and the sizes of
failsight's bounded trackers. Nothing is asserted; it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import openai
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

import failsight
from failsight import _config
from failsight._streams import CallWatcher
from failsight.testing import completion_body, mock_openai_client, stream_body
from failsight.validators import json_output

MESSAGES: Any = [{"role": "user", "content": "hi"}]


class NullSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class NullMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__(preferred_temporality={}, preferred_aggregation={})

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def rss_kib(field: str = "VmRSS") -> int:
    """Resident memory of this process in KiB, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_client() -> openai.OpenAI:
    """An OpenAI client on an in-process mock transport; `x-soak` picks the answer."""
    ok = completion_body(content="The quick brown fox.")
    replies: dict[str, Any] = {
        "stream": stream_body(),
        "429": (429, {"error": {"message": "Rate limit reached", "type": "requests"}}),
        "content_filter": completion_body(finish_reason="content_filter", content=None),
    }
    jobs = iter(range(1 << 62))

    def handler(request: Any) -> Any:
        mode = request.headers.get("x-soak", "ok")
        if mode == "video":
            return {"id": f"video_{next(jobs)}", "object": "video", "status": "queued",
                    "model": "sora-2", "progress": 0, "created_at": 1}  # fmt: skip
        return replies.get(mode, ok)

    client: openai.OpenAI = mock_openai_client(
        handler, api_key="sk-soak", base_url="http://soak.local/v1"
    )
    return client


class Workload:
    """The mixed calls, by call number; models and call sites cycle past the label cap."""

    KINDS = 20

    def __init__(self, client: openai.OpenAI, models: int, sites: int) -> None:
        self.client = client
        self.models = [f"model-{i}" for i in range(models)]
        # Call sites are code locations: decorated once, called many times.
        self.scopes = [self._scope(f"soak.site_{i}") for i in range(sites)]
        self.sdk_scopes = [self._sdk_scope(f"soak.sdk_site_{i}") for i in range(sites)]

    def _scope(self, name: str) -> Callable[[int, str], Any]:
        @failsight.traced_generation(name=name, operation="chat", validate=[json_output()])
        def scope(i: int, model: str) -> str:
            handle = failsight.current_generation()
            if handle is not None:
                handle.set_model(model)
                handle.record_usage(input=11, output=9)
                handle.record_finish_reason("stop" if i % 7 else "length")
                if i % 13 == 0:
                    handle.record_retry("rate_limited", status_code=429)
            if i % 11 == 0:
                raise ValueError("the model said no")
            return '{"ok": true}' if i % 3 else "not json"

        return scope

    def _sdk_scope(self, name: str) -> Callable[[openai.OpenAI, str, str], Any]:
        @failsight.traced_generation(name=name)
        def scope(client: openai.OpenAI, model: str, mode: str) -> Any:
            return client.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers={"x-soak": mode}
            )

        return scope

    def call(self, i: int) -> None:
        kind = i % self.KINDS
        model = self.models[i % len(self.models)]
        site = i % len(self.scopes)
        client = self.client
        if kind < 14:  # decorator-only scopes: the cheap, common case
            with contextlib.suppress(ValueError):
                self.scopes[site](i, model)
        elif kind == 14:
            client.chat.completions.create(model=model, messages=MESSAGES)
        elif kind == 15:
            self.sdk_scopes[site](client, model, "ok" if i % 40 < 20 else "content_filter")
        elif kind == 16:
            stream = client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True, extra_headers={"x-soak": "stream"}
            )
            if i % 40 < 20:
                for _ in stream:
                    pass
            else:
                next(stream)  # abandoned after one chunk
            del stream
        elif kind == 17:
            with contextlib.suppress(openai.RateLimitError):
                client.chat.completions.create(
                    model=model, messages=MESSAGES, extra_headers={"x-soak": "429"}
                )
        elif kind == 18:
            client.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers={"x-soak": "content_filter"}
            )
        else:
            client.videos.create(model="sora-2", prompt="a cat", extra_headers={"x-soak": "video"})


def series_by_family(registry: CollectorRegistry) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in registry.collect():
        counts[metric.name] += len(
            {
                tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                for sample in metric.samples
            }
        )
    return counts


def run(calls: int, models: int, sites: int, cap: int, warmup: int) -> None:
    registry = CollectorRegistry()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(NullSpanExporter(), max_queue_size=4096, schedule_delay_millis=200)
    )
    reader = PeriodicExportingMetricReader(NullMetricExporter(), export_interval_millis=1000)
    meter_provider = MeterProvider(metric_readers=[reader])
    failsight.configure(
        registry=registry,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        max_label_values=cap,
    )
    failsight.instrument_openai()
    client = make_client()
    workload = Workload(client, models, sites)
    gc.collect()
    start_rss = rss_kib()
    print(
        f"openai {openai.__version__}: {calls:,} calls, {models:,} models, {sites:,} call sites "
        f"(x2), label cap {cap}"
    )
    print(f"  RSS at start            {start_rss / 1024:8.1f} MiB")
    began = time.perf_counter()
    warm_rss = start_rss
    checkpoints = {warmup, *range(0, calls, max(calls // 10, 1))}
    for i in range(calls):
        if i in checkpoints and i:
            rss = rss_kib()
            if i == warmup:
                warm_rss = rss
                print(f"  RSS after warm-up       {rss / 1024:8.1f} MiB   ({i:,} calls)")
            else:
                rate = i / (time.perf_counter() - began)
                print(f"  RSS at {i:>9,} calls   {rss / 1024:8.1f} MiB   ({rate:,.0f} calls/s)")
        workload.call(i)
    elapsed = time.perf_counter() - began
    gc.collect()
    end_rss = rss_kib()
    tracer_provider.force_flush()
    state = _config.get_state()
    series = series_by_family(registry)
    print(f"  RSS at end              {end_rss / 1024:8.1f} MiB   ({calls:,} calls)")
    print(f"  RSS peak (VmHWM)        {rss_kib('VmHWM') / 1024:8.1f} MiB")
    print(f"  end - warm-up           {(end_rss - warm_rss) / 1024:+8.1f} MiB")
    print(f"  {calls / elapsed:,.0f} calls/s over {elapsed:.0f} s")
    print(f"  Prometheus series: {sum(series.values()):,} in all")
    for family, count in sorted(series.items()):
        print(f"    {family:40} {count:6,}")
    live_recorders = sum(1 for obj in gc.get_objects() if type(obj) is CallWatcher)
    print(
        f"  open video jobs {len(state.video_jobs)} (max {state.video_jobs.max_open}), "
        f"live stream watchers {live_recorders}, gc objects {len(gc.get_objects()):,}"
    )
    failsight.uninstrument_openai()
    tracer_provider.shutdown()
    meter_provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=5_000)
    parser.add_argument("--sites", type=int, default=2_000)
    parser.add_argument("--cap", type=int, default=100, help="max_label_values")
    parser.add_argument("--warmup", type=int, default=None, help="default: 5%% of --calls")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else max(args.calls // 20, 1)
    run(args.calls, args.models, args.sites, args.cap, warmup)


if __name__ == "__main__":
    main()
