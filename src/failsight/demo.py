"""`failsight demo`: a real workload through the real openai SDK against the fault server.

The workload is a fixed plan of steps, each declaring the failure class and reason it
should produce, so the end-to-end tests can compare what Prometheus stored with the plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from failsight import _config, current_generation, traced_generation
from failsight._retry import RetryPolicy
from failsight._sdk_patch import instrument_openai, uninstrument_openai
from failsight.validators import json_output, min_words, one_of

__all__ = ["Step", "Workload", "build_plan", "render_table", "run_demo"]

SCENARIO_HEADER = "X-Failsight-Scenario"
KEY_HEADER = "X-Failsight-Key"
MESSAGES: Any = [{"role": "user", "content": "Summarize: failures are data."}]


@dataclass(frozen=True)
class Step:
    """One logical request of the plan and what failsight should record for it."""

    name: str
    failure_class: str
    reason: str | None
    call_site: str
    operation: str
    retries: tuple[str, ...] = ()
    video_status: str | None = None
    is_async: bool = False


class Workload:
    """Runs a plan of steps against a fault server with the openai SDK and httpx."""

    def __init__(self, base_url: str, timeout: float = 0.5) -> None:
        import httpx
        import openai

        self.base_url = base_url
        self.sync = openai.OpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=2, timeout=timeout
        )
        self.async_client = openai.AsyncOpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=2, timeout=timeout
        )
        self.no_retry = openai.OpenAI(
            base_url=base_url, api_key="sk-demo", max_retries=0, timeout=timeout
        )
        self.http = httpx.Client(timeout=5.0)
        self._counter = 0
        no_sleep = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)

        @traced_generation(name="classify_review", validate=[one_of("positive", "negative")])
        def classify(scenario: str) -> str:
            return str(self._chat(scenario).choices[0].message.content or "")

        @traced_generation(name="extract_json", validate=[json_output()], retry=no_sleep)
        def extract(scenario: str) -> str:
            return str(self._chat(scenario, key=True).choices[0].message.content or "")

        @traced_generation(name="summarize", validate=[min_words(12)])
        def summarize(scenario: str) -> str:
            stream = self.sync.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True,
                extra_headers={SCENARIO_HEADER: scenario},
            )  # fmt: skip
            parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
            return "".join(parts)

        @traced_generation(name="safe_complete")
        def safe_complete(scenario: str) -> str:
            # The seed article's pattern: raise on content_filter after a 200.
            choice = self._chat(scenario).choices[0]
            if choice.finish_reason == "content_filter":
                raise ValueError("Generation blocked by content filter. Rephrase the prompt.")
            return str(choice.message.content or "")

        @traced_generation(name="generate_image_safe", operation="image_generation")
        def generate_image(scenario: str) -> dict[str, Any]:
            handle = current_generation()
            if handle is not None:
                handle.set_model("dall-e-3")
            response = self.http.post(
                f"{self.base_url}/images/generations",
                json={"model": "dall-e-3", "prompt": "a lighthouse", "size": "1024x1024"},
                headers={SCENARIO_HEADER: scenario},
            )
            response.raise_for_status()
            data = response.json().get("data", [])
            if not data:
                if handle is not None:
                    handle.mark_failure("soft", "image_filtered")
                return {"url": None, "blocked": True}
            return {"url": data[0].get("url"), "blocked": False}

        @traced_generation(name="submit_and_poll_video", operation="video_generation")
        def submit_and_poll(scenario: str, max_polls: int = 6) -> str:
            handle = current_generation()
            if handle is not None:
                handle.set_model("veo3-fast")
            response = self.http.post(
                f"{self.base_url}/videos",
                files={"prompt": (None, "a calm sea"), "model": (None, "veo3-fast")},
                headers={SCENARIO_HEADER: scenario},
            )
            response.raise_for_status()
            task_id = str(response.json()["id"])
            status = "unknown"
            for _ in range(max_polls):
                poll = self.http.get(f"{self.base_url}/videos/{task_id}")
                if poll.status_code == 404:
                    continue  # task_not_exist on the first poll: the task is still starting
                poll.raise_for_status()
                status = str(poll.json().get("status", "unknown"))
                if handle is not None:
                    handle.record_video_status(status, job_id=task_id)
                if status in ("succeeded", "succeed", "completed"):
                    return task_id
                if status in ("failed", "cancelled"):
                    raise RuntimeError(f"Video task {task_id} failed")
            raise TimeoutError(f"Video task {task_id} did not finish; last status {status}")

        self.classify = classify
        self.extract = extract
        self.summarize = summarize
        self.safe_complete = safe_complete
        self.generate_image = generate_image
        self.submit_and_poll = submit_and_poll

    def _chat(self, scenario: str, *, key: bool = False, client: Any = None) -> Any:
        headers = {SCENARIO_HEADER: scenario}
        if key:
            self._counter += 1
            headers[KEY_HEADER] = f"demo-{os.getpid()}-{self._counter}"
        return (client or self.sync).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
        )

    # Each runner takes the step's scenario; errors are the plan's, not the demo's.
    def run(self, step: Step, scenario: str) -> None:
        kind = step.name.split(":", 1)[0]
        try:
            if kind == "chat":
                self._chat(scenario)
            elif kind == "chat_once":
                self._chat(scenario, client=self.no_retry)
            elif kind == "stream":
                stream = self.sync.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True,
                    extra_headers={SCENARIO_HEADER: scenario},
                )  # fmt: skip
                for _ in stream:
                    pass
            elif kind == "responses":
                self.sync.responses.create(
                    model="gpt-4o-mini", input="hello", extra_headers={SCENARIO_HEADER: scenario}
                )
            elif kind == "embeddings":
                self.sync.embeddings.create(
                    model="text-embedding-3-small", input="hello",
                    extra_headers={SCENARIO_HEADER: scenario},
                )  # fmt: skip
            elif kind == "image":
                self.sync.images.generate(
                    model="dall-e-3", prompt="a cat", extra_headers={SCENARIO_HEADER: scenario}
                )
            elif kind == "video":
                self.sync.videos.create_and_poll(
                    model="sora-2", prompt="a cat", extra_headers={SCENARIO_HEADER: scenario}
                )
            else:
                getattr(self, kind)(scenario)
        except Exception:
            pass  # the failure is what the demo shows; failsight recorded it

    async def run_async(self, scenario: str) -> None:
        with contextlib.suppress(Exception):  # the failure is what the demo shows
            await self.async_client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={SCENARIO_HEADER: scenario}
            )

    def close(self) -> None:
        self.http.close()
        self.sync.close()
        self.no_retry.close()


def _step(kind: str, scenario: str, failure_class: str, reason: str | None, call_site: str,
          operation: str = "chat", **extra: Any) -> tuple[Step, str]:  # fmt: skip
    return Step(
        f"{kind}:{scenario}", failure_class, reason, call_site, operation, **extra
    ), scenario


def build_plan(rounds: int = 4) -> list[tuple[Step, str]]:
    """The workload: `rounds` repetitions of a mix covering every failure class.

    Each entry is (step, scenario); a round is 43 logical requests.
    """
    u = "unscoped"
    one_round = [
        *([_step("chat", "ok", "none", None, u)] * 8),
        _step("chat", "tool_calls", "none", None, u),
        *([_step("chat", "content_filter", "soft", "content_filter", u)] * 3),
        _step("chat", "length", "soft", "length", u),
        _step("chat", "empty_content", "soft", "empty_content", u),
        _step("chat", "refusal", "soft", "refusal", u),
        _step("chat", "http_429,ok", "none", None, u, retries=("rate_limited",)),
        _step("chat", "http_500,http_503,ok", "none", None, u,
              retries=("server_error", "unavailable")),
        _step("chat_once", "http_400", "hard", "bad_request", u),
        _step("chat_once", "http_401", "hard", "unauthorized", u),
        _step("chat_once", "http_404", "hard", "not_found", u),
        _step("chat", "http_429,http_429,http_429", "hard", "rate_limited", u,
              retries=("rate_limited", "rate_limited")),
        _step("chat_once", "http_502", "hard", "bad_gateway", u),
        _step("chat_once", "http_504", "hard", "gateway_timeout", u),
        _step("chat_once", "invalid_json", "hard", "invalid_response", u),
        _step("stream", "ok", "none", None, u),
        _step("stream", "content_filter", "soft", "content_filter", u),
        _step("stream", "drop_mid_stream", "hard", "connection", u),
        _step("responses", "ok", "none", None, u),
        _step("responses", "length", "soft", "length", u),
        _step("embeddings", "ok", "none", None, u, operation="embeddings"),
        _step("image", "ok", "none", None, u, operation="image_generation"),
        _step("image", "image_empty", "soft", "image_filtered", u, operation="image_generation"),
        _step("video", "video_ok", "none", None, u, operation="video_generation",
              video_status="succeeded"),
        _step("video", "video_failed", "soft", "video_failed", u, operation="video_generation",
              video_status="failed"),
        _step("classify", "ok", "silent", "unexpected_label", "classify_review"),
        _step("extract", "http_503,ok", "silent", "invalid_json", "extract_json",
              retries=("unavailable",)),
        _step("summarize", "ok", "silent", "too_short", "summarize"),
        _step("safe_complete", "content_filter", "soft", "content_filter", "safe_complete"),
        _step("safe_complete", "ok", "none", None, "safe_complete"),
        _step("generate_image", "image_empty", "soft", "image_filtered", "generate_image_safe",
              operation="image_generation"),
        _step("generate_image", "image_b64", "none", None, "generate_image_safe",
              operation="image_generation"),
        _step("submit_and_poll", "video_succeed", "none", None, "submit_and_poll_video",
              operation="video_generation", video_status="succeeded"),
        _step("submit_and_poll", "video_stuck", "soft", "video_timeout", "submit_and_poll_video",
              operation="video_generation", video_status="timed_out"),
    ]  # fmt: skip
    return one_round * rounds


ASYNC_MIX = ("ok", "ok", "ok", "content_filter", "length", "http_500,ok")


def async_plan(count: int) -> list[tuple[Step, str]]:
    """`count` concurrent asyncio requests through AsyncOpenAI."""
    plan = []
    for i in range(count):
        scenario = ASYNC_MIX[i % len(ASYNC_MIX)]
        failure = {"content_filter": ("soft", "content_filter"), "length": ("soft", "length")}
        cls, reason = failure.get(scenario, ("none", None))
        retries = ("server_error",) if scenario == "http_500,ok" else ()
        step = Step(f"async:{scenario}", cls, reason, "unscoped", "chat", retries, is_async=True)
        plan.append((step, scenario))
    return plan


def expected_totals(plan: Iterable[tuple[Step, str]]) -> dict[str, Counter[Any]]:
    """What the plan should record: requests by class, failures and retries by reason."""
    requests: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    retries: Counter[str] = Counter()
    videos: Counter[str] = Counter()
    for step, _ in plan:
        requests[step.failure_class] += 1
        if step.reason:
            failures[(step.failure_class, step.reason)] += 1
        retries.update(step.retries)
        if step.video_status:
            videos[step.video_status] += 1
    return {"requests": requests, "failures": failures, "retries": retries, "videos": videos}


def run_workload(
    base_url: str,
    rounds: int,
    async_count: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[Step, str]]:
    """Run the plan; returns the plan that ran."""
    plan = build_plan(rounds)
    total = len(plan) + async_count
    workload = Workload(base_url)
    try:
        for done, (step, scenario) in enumerate(plan, 1):
            workload.run(step, scenario)
            if progress is not None:
                progress(done, total)
        extra = async_plan(async_count)

        async def run_all() -> None:
            await asyncio.gather(*(workload.run_async(s) for _, s in extra))

        if extra:
            asyncio.run(run_all())
        if progress is not None:
            progress(total, total)
        return plan + extra
    finally:
        workload.close()


# ---------------------------------------------------------------------- presentation


def _progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    width = 30
    shown = [-1]

    def show(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        if filled == shown[0] and done < total:
            return  # redraw only when the bar moves
        shown[0] = filled
        bar = "#" * filled + "." * (width - filled)
        stream.write(f"\r  [{bar}] {done}/{total} requests")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def _samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    ]


def render_table(registry: CollectorRegistry, namespace: str = "genai") -> str:
    """A plain-text summary of what failsight recorded in `registry`."""
    lines: list[str] = []

    def section(title: str, rows: Sequence[tuple[str, float]]) -> None:
        lines.append(title)
        if not rows:
            lines.append("  (none)")
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            lines.append(f"  {label.ljust(width)}  {value:>8.0f}")
        lines.append("")

    def totals(metric: str, key: Callable[[dict[str, str]], str]) -> dict[str, float]:
        sums: dict[str, float] = {}
        for labels, value in _samples(registry, f"{namespace}_{metric}"):
            sums[key(labels)] = sums.get(key(labels), 0.0) + value
        return sums

    requests = totals("requests_total", lambda labels: labels["failure_class"])
    rows = [(cls, requests[cls]) for cls in ("none", "hard", "soft", "silent") if cls in requests]
    section(f"Logical requests: {sum(requests.values()):.0f}", rows)
    failures = totals(
        "failures_total", lambda labels: f"{labels['failure_class']:<6}  {labels['reason']}"
    )
    section("Failures by class and reason", sorted(failures.items(), key=lambda kv: -kv[1]))
    retries = totals("retries_total", lambda labels: labels["reason"])
    section("Retries by reason", sorted(retries.items(), key=lambda kv: -kv[1]))
    section("Tokens by type", sorted(totals("tokens_total", lambda lb: lb["token_type"]).items()))
    videos = totals("video_jobs_total", lambda labels: labels["status"])
    section("Video jobs by outcome", sorted(videos.items()))
    return "\n".join(lines).rstrip() + "\n"


def _span_summary() -> tuple[Any, Callable[[], str]]:
    """A span processor counting spans by kind and status, for the console summary."""
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    counts: Counter[str] = Counter()

    class Counting(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            counts[f"{span.kind.name.lower()} spans, status {span.status.status_code.name}"] += 1

    def summary() -> str:
        return "\n".join(f"  {key}: {value}" for key, value in sorted(counts.items()))

    return Counting(), summary


def run_demo(
    *,
    rounds: int = 4,
    async_count: int = 60,
    port: int = 9464,
    addr: str = "127.0.0.1",
    keep_serving: bool = False,
    progress: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Start the fault server and /metrics, run the workload, print the table."""
    from opentelemetry.sdk.trace import TracerProvider

    from failsight.exposition import start_metrics_server
    from failsight.testing import FaultServer

    provider = TracerProvider()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    summary: Callable[[], str] | None = None
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        processor, summary = _span_summary()
        provider.add_span_processor(processor)
    registry = _config.get_state().settings.registry
    _config.configure(registry=registry, tracer_provider=provider)
    server, _ = start_metrics_server(port=port, addr=addr)
    metrics_port = server.server_address[1]
    instrument_openai()
    fault = FaultServer(retry_after_ms=1, slow_seconds=1.0, video_polls_to_finish=2).start()
    try:
        out.write(f"failsight demo: fault server {fault.base_url}\n")
        out.write(f"failsight demo: /metrics on http://{addr}:{metrics_port}/metrics\n")
        started = time.perf_counter()
        bar = _progress_bar(sys.stderr) if progress else None
        plan = run_workload(fault.base_url, rounds, async_count, bar)
        elapsed = time.perf_counter() - started
        provider.force_flush()
        out.write(f"\nRan {len(plan)} logical requests in {elapsed:.1f} s.\n\n")
        out.write(render_table(registry))
        if summary is not None:
            out.write("\nSpans (set OTEL_EXPORTER_OTLP_ENDPOINT to export them):\n")
            out.write(summary() + "\n")
        else:
            out.write(f"\nSpans exported over OTLP to {endpoint}\n")
        out.flush()
        if keep_serving:
            out.write(
                f"\nServing /metrics on http://{addr}:{metrics_port}/metrics; Ctrl-C stops.\n"
            )
            out.flush()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fault.stop()
        uninstrument_openai()
        provider.shutdown()
        server.shutdown()
    return 0
