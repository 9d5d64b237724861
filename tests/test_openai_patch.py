"""The openai SDK patch end to end: the real SDK against the fault-injection server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from typing import Any, ClassVar

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import failsight
from conftest import Telemetry, sdk_httpx
from failsight import current_generation, traced_generation
from failsight.testing import USAGE, FaultServer
from openai_calls import (
    CALLS,
    CASES,
    MESSAGES,
    assert_one_request,
    async_client,
    headers,
    invoke,
    maybe_await,
    run_case,
    sync_client,
)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "scenario", "failure_class", "reason"), CASES)
async def test_endpoint(
    instrumented: Telemetry,
    server: FaultServer,
    mode: str,
    name: str,
    scenario: str,
    failure_class: str,
    reason: str | None,
) -> None:
    await run_case(instrumented, server, mode, name, scenario, failure_class, reason)
    operation, model, _ = CALLS[name]
    client_spans = [s for s in instrumented.spans() if s.kind == SpanKind.CLIENT]
    root = next(s for s in client_spans if s.parent is None)
    assert root.name == f"{operation} {model}"
    assert root.attributes["gen_ai.operation.name"] == operation
    assert root.attributes["gen_ai.request.model"] == model
    assert root.attributes["gen_ai.provider.name"] == "127.0.0.1"
    assert root.attributes["server.address"] == "127.0.0.1"
    assert root.attributes["server.port"] == server.port
    assert root.attributes["failsight.failure_class"] == failure_class
    assert root.attributes["failsight.call_site"] == "unscoped"
    if reason is None:
        assert root.status.status_code == StatusCode.UNSET
    else:
        assert root.status.status_code == StatusCode.ERROR
        assert root.attributes["failsight.failure_reason"] == reason
        assert root.attributes["error.type"]
    if failure_class == "hard" and scenario.startswith("http_"):
        assert root.attributes["http.response.status_code"] == int(scenario[5:8])


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_tokens_and_finish_reasons(
    instrumented: Telemetry, server: FaultServer, mode: str
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    await invoke("chat", client, "ok")
    await invoke("chat_stream", client, "ok")
    await invoke("responses", client, "ok")
    expected = {
        "input": USAGE["prompt_tokens"],
        "output": USAGE["completion_tokens"],
        "reasoning": USAGE["reasoning_tokens"],
        "cached_input": USAGE["cached_tokens"],
    }
    for token_type, count in expected.items():
        assert instrumented.value("genai_tokens_total", token_type=token_type) == 3 * count
    assert instrumented.value("genai_finish_reasons_total", finish_reason="stop") == 3
    span = next(s for s in instrumented.spans() if s.name == "chat gpt-4o-mini")
    assert span.attributes["gen_ai.usage.input_tokens"] == USAGE["prompt_tokens"]
    assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == USAGE["reasoning_tokens"]
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == USAGE["cached_tokens"]
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["gen_ai.response.id"]
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert span.attributes["failsight.request_id"].startswith("req_")
    assert instrumented.value("genai_time_to_first_token_seconds_count") == 1


def test_error_details_are_recorded_and_keys_masked(
    instrumented: Telemetry, server: FaultServer
) -> None:
    client = sync_client(server)
    with pytest.raises(openai.BadRequestError):
        CALLS["chat"][2](client, "http_400")
    span = instrumented.spans()[0]
    assert span.attributes["failsight.error.param"] == "temperature"
    assert span.attributes["failsight.error.code"] == "invalid_value"
    assert span.attributes["failsight.request_id"]
    assert span.attributes["error.type"] == "openai.BadRequestError"
    for event in span.events:
        for value in event.attributes.values():
            assert "sk-test-key-123456" not in str(value)


# ---------------------------------------------------------------------- raw responses


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_with_raw_response(instrumented: Telemetry, server: FaultServer, mode: str) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    raw = await maybe_await(
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("content_filter")
        )
    )
    assert raw.headers.get("x-request-id")
    parsed = await maybe_await(raw.parse())
    assert parsed.choices[0].finish_reason == "content_filter"
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "soft", "content_filter")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_with_streaming_response(
    instrumented: Telemetry, server: FaultServer, mode: str
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    manager = client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
    )
    if mode == "sync":
        with manager as response:
            body = response.read()
            parsed = response.parse()
    else:
        async with manager as response:
            body = await response.read()
            parsed = await response.parse()
    assert b"quick brown fox" in body
    assert parsed.choices[0].message.content.startswith("The quick")
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)
    failing = client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("http_429")
    )
    with pytest.raises(openai.RateLimitError):
        if mode == "sync":
            with failing:
                pass
        else:
            async with failing:
                pass
    assert instrumented.value("genai_failures_total", reason="rate_limited") == 1


# ---------------------------------------------------------------------- SDK-internal retries


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sdk_retries_are_counted(
    instrumented: Telemetry, server: FaultServer, mode: str
) -> None:
    client = (sync_client if mode == "sync" else async_client)(server, max_retries=2)
    result = await invoke("chat", client, "http_429,http_500,ok")
    assert result.choices[0].finish_reason == "stop"
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)
    assert instrumented.value("genai_request_attempts_sum") == 3
    assert instrumented.value("genai_retries_total", reason="rate_limited") == 1
    assert instrumented.value("genai_retries_total", reason="server_error") == 1
    span = instrumented.spans()[0]
    assert span.attributes["failsight.attempts"] == 3
    assert span.attributes["failsight.retry_count"] == 2
    retries = [e for e in span.events if e.name == "retry"]
    assert [e.attributes["status_code"] for e in retries] == [429, 500]
    assert [e.attributes["reason"] for e in retries] == ["rate_limited", "server_error"]
    assert all(e.attributes["wait_seconds"] >= 0 for e in retries)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_timeout_retried_then_failing(
    instrumented: Telemetry, server: FaultServer, mode: str
) -> None:
    client = (sync_client if mode == "sync" else async_client)(server, max_retries=1, timeout=0.2)
    result = await invoke("chat", client, "timeout")
    assert isinstance(result, openai.APITimeoutError)
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "hard", "timeout")
    assert instrumented.value("genai_request_attempts_sum") == 2
    assert instrumented.value("genai_retries_total", reason="timeout") == 1


# ---------------------------------------------------------------------- streams


def stream(client: Any, scenario: str = "ok") -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers(scenario)
    )


def test_stream_exhausted_once(instrumented: Telemetry, server: FaultServer) -> None:
    s = stream(sync_client(server))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in s if chunk.choices)
    assert "quick brown fox" in text
    s.close()  # closing after exhaustion does not count again
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)
    assert len(instrumented.spans()) == 1


def test_stream_break_and_close(instrumented: Telemetry, server: FaultServer) -> None:
    s = stream(sync_client(server))
    for _ in s:
        break
    s.close()
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)


def test_stream_context_manager(instrumented: Telemetry, server: FaultServer) -> None:
    with stream(sync_client(server), "content_filter") as s:
        assert s.response.status_code == 200  # proxied attributes
        chunks = list(s)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "soft", "content_filter")


def test_stream_abandoned_and_collected(instrumented: Telemetry, server: FaultServer) -> None:
    s = stream(sync_client(server))
    next(iter(s))
    del s
    gc.collect()
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)


async def test_async_stream_break_and_close(instrumented: Telemetry, server: FaultServer) -> None:
    s = await stream(async_client(server))
    async for _ in s:
        break
    await s.close()
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)


def test_stream_dropped_mid_way(instrumented: Telemetry, server: FaultServer) -> None:
    s = stream(sync_client(server), "drop_mid_stream")
    received = []
    # openai 3.x raises APIConnectionError; 1.x/2.x let httpx's RemoteProtocolError through.
    with pytest.raises(Exception) as caught:
        for chunk in s:
            received.append(chunk)
    assert failsight.classify_exception(caught.value).reason == "connection"
    assert len(received) >= 2
    assert all(c.choices[0].finish_reason is None for c in received if c.choices)
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "hard", "connection")


def test_stream_cut_off_quietly_is_connection_failure(instrumented: Telemetry) -> None:
    """Older SDKs end the iteration quietly when the server drops the stream."""
    from failsight._operations import OPERATIONS
    from failsight._sdk_patch import _start
    from failsight._streams import CallWatcher, StreamProxy

    endpoint = OPERATIONS["chat"]

    class Resource:
        _client = None

    call = _start(endpoint, Resource(), {"model": "gpt-4o-mini", "stream": True})

    class Chunk:
        choices: ClassVar[list[Any]] = [
            type(
                "Choice", (), {"delta": type("D", (), {"content": "hi"})(), "finish_reason": None}
            )()
        ]
        usage = None

    assert call is not None
    proxy = StreamProxy(iter([Chunk(), Chunk()]), CallWatcher(call))
    assert len(list(proxy)) == 2
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "hard", "connection")


def test_stream_helper(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
    ) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert final.choices[0].finish_reason == "stop"
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)


def test_stream_helper_raising_length(instrumented: Telemetry, server: FaultServer) -> None:
    """The helper raises LengthFinishReasonError itself; the stream it wrapped is judged once."""
    client = sync_client(server)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("length")
    ) as s:
        for _ in s:
            pass
        with pytest.raises(openai.LengthFinishReasonError):
            s.get_final_completion()
    gc.collect()
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "soft", "length")


# ---------------------------------------------------------------------- exactly once


def test_scoped_calls_count_once(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)

    @traced_generation(name="summarize")
    def summarize() -> str:
        first = CALLS["chat"][2](client, "content_filter")
        assert first.choices[0].finish_reason == "content_filter"
        second = CALLS["chat"][2](client, "ok")  # a second call after a failed one: a retry
        return str(second.choices[0].message.content)

    assert summarize().startswith("The quick")
    t = instrumented
    assert t.value("genai_requests_total") == 1
    labels = {"call_site": "summarize", "operation": "chat", "model": "gpt-4o-mini"}
    assert t.value("genai_requests_total", failure_class="none", **labels) == 1
    assert t.value("genai_retries_total", reason="content_filter", **labels) == 1
    assert t.value("genai_request_attempts_sum") == 2
    assert t.value("genai_tokens_total", token_type="input", **labels) == 2 * USAGE["prompt_tokens"]
    assert t.value("genai_finish_reasons_total", finish_reason="content_filter", **labels) == 1
    scope = t.span("summarize")
    children = [s for s in t.spans() if s.kind == SpanKind.CLIENT]
    assert len(children) == 2
    assert all(s.parent is not None and s.parent.span_id == scope.context.span_id for s in children)
    assert children[0].attributes["failsight.failure_reason"] == "content_filter"


def test_scoped_soft_failure_without_retry(instrumented: Telemetry, server: FaultServer) -> None:
    """The common safe_complete: content_filter, then ValueError."""
    client = sync_client(server)

    @traced_generation(name="safe_complete")
    def safe_complete() -> str:
        response = CALLS["chat"][2](client, "content_filter")
        if response.choices[0].finish_reason == "content_filter":
            raise ValueError("Generation blocked by content filter. Rephrase the prompt.")
        return ""

    with pytest.raises(ValueError):
        safe_complete()
    assert instrumented.value("genai_failures_total", reason="content_filter") == 1
    assert instrumented.value("genai_requests_total") == 1


def test_decorator_retry_with_sdk_errors(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    policy = failsight.RetryPolicy(max_attempts=3, sleep=lambda s: None)

    @traced_generation(name="extract", retry=policy)
    def extract() -> str:
        return str(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                extra_headers={**headers("http_503,http_429,ok"), "X-Failsight-Key": key},
            )
            .choices[0]
            .message.content
        )

    key = f"extract-{id(policy)}"
    assert extract().startswith("The quick")
    t = instrumented
    assert t.value("genai_requests_total", failure_class="none", call_site="extract") == 1
    assert t.value("genai_retries_total", reason="unavailable") == 1
    assert t.value("genai_retries_total", reason="rate_limited") == 1
    assert t.value("genai_request_attempts_sum") == 3


# ---------------------------------------------------------------------- concurrency


def test_threads(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    plan = ["ok", "content_filter", "http_429", "length"]

    @traced_generation(name="worker")
    def work(scenario: str) -> None:
        with contextlib.suppress(openai.RateLimitError):
            CALLS["chat"][2](client, scenario)

    def run(n: int) -> None:
        for i in range(12):
            work(plan[(n + i) % 4])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t = instrumented
    assert t.value("genai_requests_total", call_site="worker") == 192
    assert t.value("genai_requests_total", failure_class="none") == 48
    assert t.value("genai_failures_total", reason="content_filter") == 48
    assert t.value("genai_failures_total", reason="rate_limited") == 48
    assert t.value("genai_failures_total", reason="length") == 48
    spans = t.spans()
    scopes = {s.context.span_id for s in spans if s.kind == SpanKind.INTERNAL}
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(scopes) == 192 and len(clients) == 192
    assert {s.parent.span_id for s in clients if s.parent} == scopes


async def test_asyncio_tasks(instrumented: Telemetry, server: FaultServer) -> None:
    client = async_client(server)
    plan = ["ok", "refusal", "http_500", "image_empty"]

    async def one(i: int) -> None:
        scenario = plan[i % 4]
        if scenario == "image_empty":
            await client.images.generate(
                model="dall-e-3", prompt="x", extra_headers=headers(scenario)
            )
            return
        with pytest.raises(openai.InternalServerError) if scenario == "http_500" else _null():
            await CALLS["chat"][2](client, scenario)

    await asyncio.gather(*(one(i) for i in range(500)))
    t = instrumented
    assert t.value("genai_requests_total") == 500
    assert t.value("genai_requests_total", failure_class="none") == 125
    assert t.value("genai_failures_total", reason="refusal") == 125
    assert t.value("genai_failures_total", reason="server_error") == 125
    assert t.value("genai_failures_total", reason="image_filtered") == 125
    assert t.value("genai_in_flight_requests") == 0
    assert all(s.parent is None for s in t.spans())


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: Any) -> None:
        return None


# ---------------------------------------------------------------------- lifecycle


def test_uninstrument_restores_originals_exactly(telemetry: Telemetry, server: FaultServer) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions

    originals = (Completions.__dict__["create"], AsyncCompletions.__dict__["create"])
    http = sdk_httpx()
    send = http.Client.__dict__["send"]
    failsight.instrument_openai()
    failsight.instrument_openai()  # idempotent
    assert Completions.__dict__["create"] is not originals[0]
    assert Completions.__dict__["create"].__wrapped__ is originals[0]
    failsight.uninstrument_openai()
    failsight.uninstrument_openai()
    assert (Completions.__dict__["create"], AsyncCompletions.__dict__["create"]) == originals
    assert Completions.__dict__["create"] is originals[0]
    assert http.Client.__dict__["send"] is send
    CALLS["chat"][2](sync_client(server), "ok")
    assert telemetry.value("genai_requests_total") == 0  # nothing left behind


def test_instrument_one_client(telemetry: Telemetry, server: FaultServer) -> None:
    mine, other = sync_client(server), sync_client(server)
    failsight.instrument_openai(mine)
    failsight.instrument_openai(mine)
    try:
        CALLS["chat"][2](mine, "ok")
        CALLS["chat"][2](other, "ok")
        raw = mine.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("length")
        )
        assert raw.parse().choices[0].finish_reason == "length"
        assert telemetry.value("genai_requests_total") == 2
        assert telemetry.value("genai_failures_total", reason="length") == 1
    finally:
        failsight.uninstrument_openai(mine)
    CALLS["chat"][2](mine, "ok")
    assert telemetry.value("genai_requests_total") == 2
    assert "create" not in vars(mine.chat.completions)


def test_otel_instrumentor_entry_point(telemetry: Telemetry, server: FaultServer) -> None:
    from importlib.metadata import entry_points

    found = [
        ep for ep in entry_points(group="opentelemetry_instrumentor") if "failsight" in ep.value
    ]
    assert len(found) == 1
    instrumentor = found[0].load()()
    instrumentor.instrument()
    try:
        CALLS["chat"][2](sync_client(server), "ok")
        assert telemetry.value("genai_requests_total") == 1
    finally:
        instrumentor.uninstrument()
    CALLS["chat"][2](sync_client(server), "ok")
    assert telemetry.value("genai_requests_total") == 1


@pytest.mark.usefixtures("swallow_internal_errors")
def test_broken_telemetry_never_breaks_the_call(
    instrumented: Telemetry, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failsight import _engine, _sdk_answers

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("telemetry bug")

    client = sync_client(server)
    monkeypatch.setattr(_sdk_answers, "classify_result", broken)
    result = CALLS["chat"][2](client, "ok")
    assert result.choices[0].message.content.startswith("The quick")
    # The request is still counted once, and the gauge released (its class is unknown: none).
    assert instrumented.value("genai_requests_total") == 1
    assert instrumented.value("genai_in_flight_requests") == 0
    monkeypatch.setattr(_engine, "_start", broken)
    with pytest.raises(openai.RateLimitError) as caught:
        CALLS["chat"][2](client, "http_429")
    assert caught.value.status_code == 429
    assert instrumented.value("genai_telemetry_errors_total", stage="call_record") == 1
    assert instrumented.value("genai_telemetry_errors_total", stage="call_start") == 1
    assert instrumented.value("genai_in_flight_requests") == 0


def test_current_generation_inside_sdk_scope(instrumented: Telemetry, server: FaultServer) -> None:
    assert current_generation() is None
    CALLS["chat"][2](sync_client(server), "ok")
    assert current_generation() is None


def test_responses_stream_helper(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    with client.responses.stream(
        model="gpt-4o-mini", input="hello", extra_headers=headers("content_filter")
    ) as s:
        for _ in s:
            pass
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "soft", "content_filter")


async def test_async_chat_stream_helper(instrumented: Telemetry, server: FaultServer) -> None:
    client = async_client(server)
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
    ) as s:
        async for _ in s:
            pass
        final = await s.get_final_completion()
    assert final.choices[0].finish_reason == "stop"
    assert_one_request(instrumented, "chat", "gpt-4o-mini", "none", None)
    assert instrumented.value("genai_time_to_first_token_seconds_count") == 1


def test_azure_client_provider(instrumented: Telemetry, server: FaultServer) -> None:
    client = openai.AzureOpenAI(
        api_key="sk-test", api_version="2024-10-21", azure_endpoint=server.url, max_retries=0
    )
    with pytest.raises(openai.NotFoundError):  # the fault server has no Azure deployment routes
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = instrumented.spans()[0]
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert instrumented.value("genai_requests_total", provider="azure.ai.openai") == 1


@pytest.mark.parametrize(
    ("model", "header"), [("gpt-4o-mini@length", None), ("gpt-4o-mini", "length")]
)
def test_model_label_is_the_model_as_requested(
    instrumented: Telemetry, server: FaultServer, model: str, header: str | None
) -> None:
    """`@` is part of real model ids (Vertex AI's `claude-3-5-sonnet@20240620`): kept; the
    fault server's scenario header leaves the label clean."""
    client = sync_client(server)
    extra = {"X-Failsight-Scenario": header} if header else None
    client.chat.completions.create(model=model, messages=MESSAGES, extra_headers=extra)
    assert instrumented.value("genai_failures_total", model=model, reason="length") == 1
    labels = {series["model"] for series in instrumented.series("genai_requests_total")}
    assert labels == {model}
