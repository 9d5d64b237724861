"""Usage a stream reported is counted, whatever ends the stream (error, close, abandonment).

End to end over a socket: the real openai SDK (and raw HTTP clients) against the fault server,
whose `drop_after_usage` sends the answer, its finish reason and its usage, then drops the
connection before `[DONE]`, and whose `drop_mid_stream_usage` sends usage on every chunk (as
some gateways do) and drops the connection mid-way.
"""

from __future__ import annotations

import gc
from typing import Any

import httpx
import openai
import pytest
import requests
from opentelemetry.trace import SpanKind

import failsight
from conftest import Telemetry
from failsight import traced_generation
from failsight.testing import USAGE, FaultServer
from openai_calls import MESSAGES, async_client, maybe_await, sync_client

SCENARIO = "X-Failsight-Scenario"
FULL = {
    "input": USAGE["prompt_tokens"],
    "output": USAGE["completion_tokens"],
    "reasoning": USAGE["reasoning_tokens"],
    "cached_input": USAGE["cached_tokens"],
}
# `drop_mid_stream_usage`: three chunks, each with the usage so far (0, 1, 2 output tokens).
SO_FAR = {"input": USAGE["prompt_tokens"], "output": 2}
OPERATION = {"chat": "chat", "completions": "text_completion", "responses": "chat"}


def create(client: Any, api: str, scenario: str, **extra: Any) -> Any:
    model = f"gpt-4o-mini@{scenario}"
    if api == "chat":
        return client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **extra)
    if api == "completions":
        return client.completions.create(model=model, prompt="hello", stream=True, **extra)
    return client.responses.create(model=model, input="hello", stream=True, **extra)


async def read_until_error(client: Any, api: str, scenario: str, how: str) -> list[Any]:
    """Iterate a stream as a caller does (`for`, or `next()` by hand) until it raises."""
    seen: list[Any] = []
    is_async = isinstance(client, openai.AsyncOpenAI)
    stream = create(client, api, scenario)
    if is_async:
        stream = await stream
    with pytest.raises(Exception) as caught:
        if is_async and how == "for":
            async for item in stream:
                seen.append(item)
        elif is_async:
            while True:
                seen.append(await stream.__anext__())
        elif how == "for":
            for item in stream:
                seen.append(item)
        else:
            while True:
                seen.append(next(stream))
    assert failsight.classify_exception(caught.value).reason == "connection", caught.value
    return seen


def assert_counted(t: Telemetry, operation: str, tokens: dict[str, int], call_site: str) -> None:
    """`tokens` counted once, and wasted once (the request failed: hard, connection)."""
    labels = {"operation": operation, "call_site": call_site}
    for token_type, count in tokens.items():
        assert t.value("genai_tokens_total", token_type=token_type, **labels) == count, token_type
        wasted = t.value(
            "genai_wasted_tokens_total", token_type=token_type, failure_class="hard",
            reason="connection", **labels,
        )  # fmt: skip
        assert wasted == count, token_type
    assert t.value("genai_tokens_total") == sum(tokens.values())
    assert t.value("genai_wasted_tokens_total") == sum(tokens.values())
    assert t.value("genai_requests_total", failure_class="hard", **labels) == 1
    assert t.value("genai_failures_total", reason="connection", **labels) == 1
    assert t.value("genai_in_flight_requests") == 0


def client_span(t: Telemetry) -> Any:
    (span,) = [s for s in t.spans() if s.kind == SpanKind.CLIENT]
    return span


# ---------------------------------------------------------------------- the SDK patch


@pytest.mark.parametrize("how", ["for", "next"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
async def test_usage_then_drop_is_counted_and_wasted(
    instrumented: Telemetry, server: FaultServer, api: str, mode: str, how: str
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    seen = await read_until_error(client, api, "drop_after_usage", how)
    assert seen  # the caller got the answer and its usage, then the error
    assert_counted(instrumented, OPERATION[api], FULL, "unscoped")
    span = client_span(instrumented)
    assert span.attributes["gen_ai.usage.input_tokens"] == FULL["input"]
    assert span.attributes["gen_ai.usage.output_tokens"] == FULL["output"]
    assert span.attributes["failsight.failure_reason"] == "connection"
    # What the stream reported before it broke: its finish reason and model too.
    assert instrumented.value("genai_finish_reasons_total", finish_reason="stop") == 1
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_usage_on_every_chunk_then_drop_counts_the_last(
    instrumented: Telemetry, server: FaultServer, api: str, mode: str
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    seen = await read_until_error(client, api, "drop_mid_stream_usage", "for")
    assert len(seen) == 3
    # Each chunk's usage is the total so far: the last one counts, never their sum.
    assert_counted(instrumented, OPERATION[api], SO_FAR, "unscoped")
    assert instrumented.value("genai_finish_reasons_total") == 0


async def test_usage_then_drop_inside_a_scope(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)

    @traced_generation(name="summarize")
    def summarize() -> str:
        return "".join(
            chunk.choices[0].delta.content or ""
            for chunk in create(client, "chat", "drop_after_usage")
            if chunk.choices
        )

    with pytest.raises(openai.APIConnectionError):
        summarize()
    assert_counted(instrumented, "chat", FULL, "summarize")
    scope = instrumented.span("summarize")
    assert scope.attributes["gen_ai.usage.input_tokens"] == FULL["input"]


async def test_usage_then_drop_in_a_retried_scope_is_wasted_once(
    instrumented: Telemetry, server: FaultServer
) -> None:
    """The broken attempt's usage is wasted by the retry; the successful one's is kept."""
    client = sync_client(server)
    scenarios = iter(["drop_after_usage", "ok"])

    @traced_generation(name="retrying", retry=failsight.RetryPolicy(3, sleep=lambda seconds: None))
    def retrying() -> int:
        stream = create(client, "chat", next(scenarios), stream_options={"include_usage": True})
        return len(list(stream))

    assert retrying() > 0
    for token_type, count in FULL.items():
        assert instrumented.value("genai_tokens_total", token_type=token_type) == 2 * count
        wasted = instrumented.value(
            "genai_wasted_tokens_total", token_type=token_type, reason="connection"
        )
        assert wasted == count, token_type
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert instrumented.value("genai_retries_total", reason="connection") == 1


# ---------------------------------------------------------------------- other ends


@pytest.mark.parametrize("end", ["close", "abandon"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_usage_of_a_stream_ended_early_is_counted_not_wasted(
    instrumented: Telemetry, server: FaultServer, mode: str, end: str
) -> None:
    """Read up to the usage chunk, then close it or drop it unclosed: counted, not wasted."""
    client = sync_client(server) if mode == "sync" else async_client(server)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    if mode == "async":
        stream = await stream
    while True:
        chunk = next(stream) if mode == "sync" else await stream.__anext__()
        if chunk.usage is not None:
            break
    if end == "close":
        await maybe_await(stream.close())
    else:
        del stream, chunk
        gc.collect()
    for token_type, count in FULL.items():
        assert instrumented.value("genai_tokens_total", token_type=token_type) == count
    assert instrumented.value("genai_wasted_tokens_total") == 0
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert instrumented.value("genai_in_flight_requests") == 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_response_failed_usage_is_counted_and_wasted(
    instrumented: Telemetry, server: FaultServer, mode: str, stream: bool
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    result = client.responses.create(
        model="gpt-4o-mini@response_failed", input="hello", stream=stream
    )
    if mode == "async":
        result = await result
    if stream:
        events = [e async for e in result] if mode == "async" else list(result)
        assert events[-1].type == "response.failed"
    labels = {"failure_class": "hard", "reason": "server_error"}
    for token_type, count in FULL.items():
        assert instrumented.value("genai_tokens_total", token_type=token_type) == count
        wasted = instrumented.value("genai_wasted_tokens_total", token_type=token_type, **labels)
        assert wasted == count, token_type
    assert instrumented.value("genai_failures_total", **labels) == 1


# ---------------------------------------------------------------------- instrument_http


@pytest.fixture
def patched(telemetry: Telemetry) -> Any:
    failsight.instrument_http()
    yield telemetry
    failsight.uninstrument_http()


def raw_body(api: str) -> tuple[str, dict[str, Any]]:
    if api == "chat":
        return "/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    return "/responses", {"model": "gpt-4o-mini", "input": "hello", "stream": True}


@pytest.mark.parametrize("lib", ["requests", "httpx", "httpx-async"])
@pytest.mark.parametrize(
    ("api", "scenario"),
    # The Responses API reports usage only in its final event: no usage mid-way there.
    [("chat", "drop_after_usage"), ("chat", "drop_mid_stream_usage"),
     ("responses", "drop_after_usage")],
)  # fmt: skip
async def test_raw_http_usage_then_drop_is_counted(
    patched: Telemetry, server: FaultServer, lib: str, api: str, scenario: str
) -> None:
    path, body = raw_body(api)
    url = server.base_url + path
    headers = {SCENARIO: scenario, "Authorization": "Bearer sk-test-key-123456"}
    lines: list[str] = []
    with pytest.raises(Exception) as caught:
        if lib == "requests":
            with requests.post(url, json=body, headers=headers, stream=True, timeout=5) as r:
                lines.extend(line.decode() for line in r.iter_lines())
        elif lib == "httpx":
            with (
                httpx.Client(timeout=5) as c,
                c.stream("POST", url, json=body, headers=headers) as r,
            ):
                lines.extend(r.iter_lines())
        else:
            async with (
                httpx.AsyncClient(timeout=5) as ac,
                ac.stream("POST", url, json=body, headers=headers) as r,
            ):
                lines.extend([line async for line in r.aiter_lines()])
    assert failsight.classify_exception(caught.value).reason == "connection", caught.value
    assert "data: [DONE]" not in lines
    tokens = FULL if scenario == "drop_after_usage" else SO_FAR
    assert_counted(patched, "chat", tokens, "unscoped")
