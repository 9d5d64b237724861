"""The fault-injection server, driven by the real openai SDK and by raw HTTP clients."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import requests

from failsight.testing import (
    HTTP_ERROR_SCENARIOS,
    OK_TEXT,
    RATELIMIT_HEADER_SCENARIOS,
    REFUSAL_TEXT,
    SCENARIOS,
    TRUNCATED_TEXT,
    USAGE,
    FaultServer,
    RateLimit,
    RecordedRequest,
    parse_mix,
)

pytestmark = pytest.mark.e2e

MESSAGES: Any = [{"role": "user", "content": "Summarize this article: failsight"}]
TESTED: set[str] = set()  # scenario names exercised below; checked against SCENARIOS at the end


def covers(*names: str) -> list[str]:
    TESTED.update(names)
    return list(names)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FaultServer]:
    with FaultServer(slow_seconds=1.0, retry_after_ms=1, video_polls_to_finish=2) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for all raw calls: a fresh httpx client per call costs ~30 ms of TLS setup.
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def server(shared_server: FaultServer) -> FaultServer:
    shared_server.reset()
    return shared_server


@pytest.fixture(scope="module")
def shared_client(shared_server: FaultServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=shared_server.base_url, api_key="sk-test", max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def client(server: FaultServer, shared_client: openai.OpenAI) -> openai.OpenAI:
    return shared_client


def scenario_headers(scenario: str) -> dict[str, str]:
    return {"X-Failsight-Scenario": scenario}


# --- chat completions -------------------------------------------------------------------------

# scenario -> (finish_reason, content, refusal, has tool call)
TEXT_CASES: dict[str, tuple[str, str | None, str | None, bool]] = {
    "ok": ("stop", OK_TEXT, None, False),
    "echo": ("stop", "Summarize this article: failsight", None, False),
    "tool_calls": ("tool_calls", None, None, True),
    "content_filter": ("content_filter", None, None, False),
    "length": ("length", TRUNCATED_TEXT, None, False),
    "empty_content": ("stop", None, None, False),
    "refusal": ("stop", None, REFUSAL_TEXT, False),
    "azure_content_filter": ("content_filter", TRUNCATED_TEXT, None, False),
    "gemini_safety": ("SAFETY", None, None, False),
    "gemini_recitation": ("RECITATION", TRUNCATED_TEXT, None, False),
}
covers(*TEXT_CASES)


@pytest.mark.parametrize("scenario", list(TEXT_CASES))
def test_chat_scenarios_parse_in_the_sdk(
    client: openai.OpenAI, server: FaultServer, scenario: str
) -> None:
    finish, content, refusal, tool_call = TEXT_CASES[scenario]
    raw = client.chat.completions.with_raw_response.create(
        model=f"gpt-4o-mini@{scenario}", messages=MESSAGES
    )
    resp = raw.parse()

    assert raw.headers["x-request-id"].startswith("req_")
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.model == "gpt-4o-mini"
    choice = resp.choices[0]
    assert choice.finish_reason == finish
    assert choice.message.role == "assistant"
    assert choice.message.content == content
    assert choice.message.refusal == refusal
    if tool_call:
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.type == "function" and json.loads(call.function.arguments) == {"city": "Paris"}
    else:
        assert choice.message.tool_calls is None
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == USAGE["prompt_tokens"]
    assert resp.usage.completion_tokens == USAGE["completion_tokens"]
    assert resp.usage.total_tokens == USAGE["total_tokens"]
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == USAGE["cached_tokens"]
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == USAGE["reasoning_tokens"]
    assert server.requests == [
        RecordedRequest("POST", "/v1/chat/completions", scenario, 0, "gpt-4o-mini", False)
    ]


@pytest.mark.parametrize("scenario", list(TEXT_CASES))
def test_chat_stream_scenarios_end_with_their_finish_reason(
    client: openai.OpenAI, server: FaultServer, scenario: str
) -> None:
    finish, content, refusal, tool_call = TEXT_CASES[scenario]
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=scenario_headers(scenario),
    )
    chunks = list(stream)

    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == finish and all(f is None for f in finishes[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (content or "")
    refused = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refused == (refusal or "")
    calls = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert bool(calls) == tool_call
    if tool_call:
        arguments = "".join(d.function.arguments or "" for d in calls if d.function)
        assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == USAGE["total_tokens"]
    assert server.requests[0].stream is True


def test_chat_stream_wire_format(server: FaultServer, http: httpx.Client) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as resp:
        raw = resp.read().decode()
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "usage" not in chunks[0]  # only sent when stream_options.include_usage is set
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_stream_chunk_delay_spaces_the_chunks() -> None:
    with FaultServer(stream_chunk_delay=0.01) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        started = time.monotonic()
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        assert time.monotonic() - started >= 0.01 * len(chunks)


def test_chat_n_choices(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="m@length", messages=MESSAGES, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert {c.finish_reason for c in resp.choices} == {"length"}


async def test_async_client_stream(server: FaultServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini@content_filter", messages=MESSAGES, stream=True
    )
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    await client.close()
    assert finishes[-1] == "content_filter"


# --- legacy completions -----------------------------------------------------------------------

COMPLETION_CASES = {
    "ok": ("stop", OK_TEXT),
    "echo": ("stop", "Once upon a time"),
    "content_filter": ("content_filter", ""),
    "length": ("length", TRUNCATED_TEXT),
    "empty_content": ("stop", ""),
}


@pytest.mark.parametrize("scenario", list(COMPLETION_CASES))
def test_completions_plain_and_streaming(client: openai.OpenAI, scenario: str) -> None:
    finish, text = COMPLETION_CASES[scenario]
    resp = client.completions.create(model=f"davinci@{scenario}", prompt="Once upon a time")
    assert resp.object == "text_completion" and resp.model == "davinci"
    assert (resp.choices[0].finish_reason, resp.choices[0].text) == (finish, text)
    assert resp.usage is not None and resp.usage.total_tokens == USAGE["total_tokens"]

    chunks = list(
        client.completions.create(
            model=f"davinci@{scenario}",
            prompt="Once upon a time",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == USAGE["prompt_tokens"]


@pytest.mark.parametrize("scenario", ["tool_calls", "refusal", "image_empty", "video_failed"])
def test_scenario_that_does_not_fit_the_route_is_a_usage_error(
    client: openai.OpenAI, server: FaultServer, scenario: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=f"davinci@{scenario}", prompt="hi")
    assert info.value.code == "scenario_not_applicable"
    assert info.value.param == "model"
    assert server.requests[0].scenario is None


# --- Responses API ----------------------------------------------------------------------------

# scenario -> (status, incomplete reason, output_text, output item types)
RESPONSES_CASES: dict[str, tuple[str, str | None, str, list[str]]] = {
    "ok": ("completed", None, OK_TEXT, ["message"]),
    "echo": ("completed", None, "What is failsight?", ["message"]),
    "tool_calls": ("completed", None, "", ["function_call"]),
    "content_filter": ("incomplete", "content_filter", "", []),
    "length": ("incomplete", "max_output_tokens", TRUNCATED_TEXT, ["message"]),
    "empty_content": ("completed", None, "", []),
    "refusal": ("completed", None, "", ["message"]),
}


@pytest.mark.parametrize("scenario", list(RESPONSES_CASES))
def test_responses_plain(client: openai.OpenAI, scenario: str) -> None:
    status, reason, text, types = RESPONSES_CASES[scenario]
    resp = client.responses.create(
        model="gpt-4.1",
        input=[{"role": "user", "content": "What is failsight?"}],
        extra_headers=scenario_headers(scenario),
    )
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.model == "gpt-4.1"
    assert resp.status == status
    assert (resp.incomplete_details.reason if resp.incomplete_details else None) == reason
    assert resp.output_text == text
    assert [item.type for item in resp.output] == types
    if scenario == "refusal":
        item = resp.output[0]
        assert item.type == "message" and item.content[0].type == "refusal"
    assert resp.usage is not None
    assert resp.usage.input_tokens == USAGE["prompt_tokens"]
    assert resp.usage.output_tokens == USAGE["completion_tokens"]
    assert resp.usage.input_tokens_details.cached_tokens == USAGE["cached_tokens"]
    assert resp.usage.output_tokens_details.reasoning_tokens == USAGE["reasoning_tokens"]


@pytest.mark.parametrize("scenario", list(RESPONSES_CASES))
def test_responses_stream(client: openai.OpenAI, scenario: str) -> None:
    status, reason, text, _ = RESPONSES_CASES[scenario]
    question = "What is failsight?"
    events = list(client.responses.create(model=f"m@{scenario}", input=question, stream=True))

    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    last = events[-1]
    assert last.type == ("response.completed" if status == "completed" else "response.incomplete")
    assert last.response.status == status
    assert (
        last.response.incomplete_details.reason if last.response.incomplete_details else None
    ) == (reason)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == text == last.response.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_stream_wire_format_has_event_lines(
    server: FaultServer, http: httpx.Client
) -> None:
    body = {"model": "gpt-4.1", "input": "hi", "stream": True}
    with http.stream("POST", f"{server.base_url}/responses", json=body) as resp:
        raw = resp.read().decode()
    blocks = [b for b in raw.split("\n\n") if b]
    first_line, data_line = blocks[0].split("\n")
    assert first_line == "event: response.created"
    assert json.loads(data_line.removeprefix("data: "))["type"] == "response.created"
    assert blocks[-1].startswith("event: response.completed\n")
    assert "[DONE]" not in raw  # the Responses API does not send a [DONE] sentinel


# --- hard failures ----------------------------------------------------------------------------

ERROR_CASES = covers(*HTTP_ERROR_SCENARIOS)


@pytest.mark.parametrize("scenario", ERROR_CASES)
def test_http_error_scenarios(client: openai.OpenAI, scenario: str) -> None:
    expected = HTTP_ERROR_SCENARIOS[scenario]
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=f"gpt-4o@{scenario}", messages=MESSAGES)
    error = info.value
    assert error.status_code == expected.status
    body = {
        "message": expected.message,
        "type": expected.type,
        "param": expected.param,
        "code": expected.code,
    }
    if expected.inner is not None:
        body["innererror"] = json.loads(json.dumps(dict(expected.inner)))
    assert error.body == body
    assert set(error.response.json()) == {"error"}
    assert error.request_id is not None and error.request_id.startswith("req_")
    headers = error.response.headers
    retryable = expected.status == 429 or expected.status >= 500
    assert headers.get("retry-after-ms") == ("1" if retryable else None)
    assert headers.get("retry-after") == ("1" if scenario == "http_429_retry_after" else None)


def test_http_400_names_the_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o@http_400", messages=MESSAGES)
    assert (info.value.param, info.value.code) == ("temperature", "invalid_value")


def test_retry_after_headers_are_absent_unless_configured(http: httpx.Client) -> None:
    with FaultServer(retry_after_seconds=7) as server:
        url = f"{server.base_url}/embeddings"
        plain = http.post(url, json={"model": "e@http_429", "input": "x"})
        told = http.post(url, json={"model": "e@http_429_retry_after", "input": "x"})
    assert plain.status_code == told.status_code == 429
    assert "retry-after" not in plain.headers and "retry-after-ms" not in plain.headers
    assert told.headers["retry-after"] == "7" and "retry-after-ms" not in told.headers


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embeddings", {"model": "e", "input": "x"}),
        ("/images/generations", {"prompt": "cat"}),
        ("/videos", {"prompt": "cat"}),
        ("/completions", {"model": "m", "prompt": "x"}),
        ("/responses", {"model": "m", "input": "x"}),
        ("/models", None),
    ],
)
def test_http_errors_apply_to_every_route(
    server: FaultServer, path: str, body: Any, http: httpx.Client
) -> None:
    url = server.base_url + path
    headers = scenario_headers("http_503")
    resp = http.post(url, json=body, headers=headers) if body else http.get(url, headers=headers)
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    "scenario", covers("drop", "drop_mid_stream", "drop_after_usage", "drop_mid_stream_usage")
)
def test_drop_closes_before_any_response(
    client: openai.OpenAI, server: FaultServer, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=f"gpt-4o@{scenario}", messages=MESSAGES)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{server.base_url}/embeddings",
            json={"model": f"e@{scenario}", "input": "x"},
            timeout=5,
        )
    # Dropping is deliberate: the server must not log it as its own error.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_drop_mid_stream_chat(client: openai.OpenAI, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    stream = client.chat.completions.create(
        model="gpt-4o@drop_mid_stream", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        seen.extend(stream)
    assert [c.choices[0].delta.content for c in seen] == ["", "The", " quick"]
    assert all(c.choices[0].finish_reason is None for c in seen)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_drop_mid_stream_completions(client: openai.OpenAI) -> None:
    seen: list[Any] = []
    stream = client.completions.create(model="m@drop_mid_stream", prompt="x", stream=True)
    with pytest.raises(openai.APIConnectionError):
        seen.extend(stream)
    assert [c.choices[0].text for c in seen] == ["The", " quick"]
    assert all(c.choices[0].finish_reason is None for c in seen)


def test_drop_mid_stream_responses(client: openai.OpenAI) -> None:
    seen: list[Any] = []
    stream = client.responses.create(model="m@drop_mid_stream", input="x", stream=True)
    with pytest.raises(openai.APIConnectionError):
        seen.extend(stream)
    assert [e.delta for e in seen if e.type == "response.output_text.delta"] == ["The", " quick"]
    assert not [e for e in seen if e.type in ("response.completed", "response.incomplete")]


@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_drop_after_usage_reports_usage_then_drops(client: openai.OpenAI, api: str) -> None:
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for item in _stream(client, api, covers("drop_after_usage")[0]):
            seen.append(item)
    if api == "responses":
        assert seen[-1].type == "response.completed"
        usage = seen[-1].response.usage
        assert (usage.input_tokens, usage.output_tokens) == (11, 9)
    else:
        # The finish reason, then the usage chunk (not asked for), then no `[DONE]`.
        assert [c.choices[0].finish_reason for c in seen if c.choices][-1] == "stop"
        assert seen[-1].choices == []
        assert seen[-1].usage.prompt_tokens == USAGE["prompt_tokens"]
        assert seen[-1].usage.completion_tokens == USAGE["completion_tokens"]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_drop_mid_stream_usage_on_every_chunk(client: openai.OpenAI, api: str) -> None:
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for item in _stream(client, api, covers("drop_mid_stream_usage")[0]):
            seen.append(item)
    assert [c.usage.completion_tokens for c in seen] == [0, 1, 2]  # the usage so far, each
    assert {c.usage.prompt_tokens for c in seen} == {USAGE["prompt_tokens"]}
    assert all(c.choices[0].finish_reason is None for c in seen)


def test_drop_mid_stream_usage_on_responses_is_drop_mid_stream(client: openai.OpenAI) -> None:
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        seen.extend(_stream(client, "responses", "drop_mid_stream_usage"))
    assert not [e for e in seen if getattr(getattr(e, "response", None), "usage", None)]


def test_response_failed_reports_usage(client: openai.OpenAI) -> None:
    (scenario,) = covers("response_failed")
    answer = client.responses.create(model=f"m@{scenario}", input="x")
    assert answer.status == "failed" and answer.error is not None
    assert answer.error.code == "server_error"
    assert answer.usage is not None and answer.usage.input_tokens == USAGE["prompt_tokens"]
    events = list(_stream(client, "responses", scenario))
    assert events[-1].type == "response.failed"
    assert events[-1].response.usage.output_tokens == USAGE["completion_tokens"]
    with pytest.raises(openai.BadRequestError):  # the Responses API's own status, nowhere else
        client.chat.completions.create(model=f"m@{scenario}", messages=MESSAGES)


@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_key_echo_puts_the_callers_key_in_model_and_id(server: FaultServer, api: str) -> None:
    (scenario,) = covers("key_echo")
    key = "sk-echoed-0123456789abcdef"
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        model = f"m@{scenario}"
        if api == "chat":
            answer: Any = client.chat.completions.create(model=model, messages=MESSAGES)
        elif api == "completions":
            answer = client.completions.create(model=model, prompt="x")
        else:
            answer = client.responses.create(model=model, input="x")
        streamed = list(_stream(client, api, scenario))
    assert answer.model == key and answer.id.endswith(key)
    if api == "responses":
        final = streamed[-1].response
        assert final.model == key and final.id.endswith(key)
    else:
        assert {(c.model, c.id) for c in streamed} == {(key, answer.id)}
    # An `api-key` header (Azure's) is echoed too.
    body = {"model": model, "messages": MESSAGES}
    raw = httpx.post(f"{server.base_url}/chat/completions", json=body, headers={"api-key": key})
    assert raw.json()["model"] == key


def _stream(client: openai.OpenAI, api: str, scenario: str) -> Any:
    model = f"m@{scenario}"
    if api == "chat":
        return client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    if api == "completions":
        return client.completions.create(model=model, prompt="x", stream=True)
    return client.responses.create(model=model, input="x", stream=True)


def test_drop_mid_stream_raw_body_has_no_done(server: FaultServer, http: httpx.Client) -> None:
    body = {"model": "m@drop_mid_stream", "messages": MESSAGES, "stream": True}
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", f"{server.base_url}/chat/completions", json=body) as resp,
    ):
        for part in resp.iter_bytes():
            received += part
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received
    assert b'"finish_reason": "stop"' not in received


covers("invalid_json", "timeout", "video_task_not_exist")


def test_invalid_json(client: openai.OpenAI, server: FaultServer) -> None:
    raw = requests.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m@invalid_json", "messages": MESSAGES},
        timeout=5,
    )
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.text == '{"choices": ['
    with pytest.raises(ValueError):  # json.JSONDecodeError: the SDK does not wrap it
        client.chat.completions.create(model="m@invalid_json", messages=MESSAGES)
    with pytest.raises(ValueError):
        list(client.chat.completions.create(model="m@invalid_json", messages=MESSAGES, stream=True))


def test_timeout_outlasts_a_short_client_timeout(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).chat.completions.create(
            model="m@timeout", messages=MESSAGES
        )
    assert time.monotonic() - started < 0.9


def test_timeout_answers_ok_after_sleeping() -> None:
    with FaultServer(slow_seconds=0.2) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        started = time.monotonic()
        resp = client.chat.completions.create(model="m@timeout", messages=MESSAGES)
        assert time.monotonic() - started >= 0.2
        assert resp.choices[0].message.content == OK_TEXT
        assert server.requests[0].scenario == "timeout"


# --- choosing the scenario --------------------------------------------------------------------


def test_sdk_retries_walk_the_sequence(server: FaultServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=2)
    resp = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        extra_headers=scenario_headers("http_429,http_500,ok"),
    )
    assert resp.choices[0].finish_reason == "stop"
    assert [r.retry_count for r in server.requests] == [0, 1, 2]
    assert [r.scenario for r in server.requests] == ["http_429", "http_500", "ok"]


def test_sdk_gives_up_when_the_sequence_outlasts_its_retries(server: FaultServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o@http_429,http_500,ok", messages=MESSAGES)
    assert [r.scenario for r in server.requests] == ["http_429", "http_500"]


def test_key_counters_pick_successive_elements(server: FaultServer, http: httpx.Client) -> None:
    url = f"{server.base_url}/chat/completions"
    body = {"model": "m", "messages": MESSAGES}

    def post(key: str) -> int:
        headers = {"X-Failsight-Scenario": "http_500,http_429,ok", "X-Failsight-Key": key}
        return http.post(url, json=body, headers=headers).status_code

    assert [post("a"), post("a"), post("b"), post("a"), post("a")] == [500, 429, 500, 200, 200]
    server.reset()
    assert post("a") == 500
    assert server.requests[0].retry_count is None  # httpx sends no stainless header


def test_without_key_or_retry_header_the_first_element_is_used(
    server: FaultServer, http: httpx.Client
) -> None:
    url = f"{server.base_url}/chat/completions"
    statuses = [
        http.post(url, json={"model": "m@http_502,ok", "messages": MESSAGES}).status_code
        for _ in range(2)
    ]
    assert statuses == [502, 502]
    headers = {"x-stainless-retry-count": "5"}
    late = http.post(url, json={"model": "m@http_502,ok", "messages": MESSAGES}, headers=headers)
    assert late.status_code == 200  # past the end: the last element


@pytest.mark.parametrize(
    ("model", "echoed", "finish"),
    [
        ("gpt-4o@length", "gpt-4o", "length"),
        ("org@gpt-4o@content_filter", "org@gpt-4o", "content_filter"),
        ("gpt-4o", "gpt-4o", "stop"),
    ],
)
def test_model_suffix_selects_and_is_stripped(
    client: openai.OpenAI, server: FaultServer, model: str, echoed: str, finish: str
) -> None:
    resp = client.chat.completions.create(model=model, messages=MESSAGES)
    assert (resp.model, resp.choices[0].finish_reason) == (echoed, finish)
    assert server.requests[0].model == echoed


def test_header_wins_over_model_suffix(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o@length", messages=MESSAGES, extra_headers=scenario_headers("refusal")
    )
    assert resp.model == "gpt-4o"
    assert resp.choices[0].message.refusal == REFUSAL_TEXT


@pytest.mark.parametrize(
    ("headers", "model", "param"),
    [
        ({"X-Failsight-Scenario": "nope"}, "m", "X-Failsight-Scenario"),
        ({"X-Failsight-Scenario": "ok,http_4xx"}, "m", "X-Failsight-Scenario"),
        ({}, "m@bogus", "model"),
    ],
)
def test_unknown_scenario_is_a_400_that_lists_valid_names(
    server: FaultServer, headers: dict[str, str], model: str, param: str, http: httpx.Client
) -> None:
    resp = http.post(
        f"{server.base_url}/chat/completions",
        json={"model": model, "messages": MESSAGES},
        headers=headers,
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "unknown_scenario",
        param,
        "invalid_request_error",
    )
    assert "content_filter" in error["message"] and "http_429_retry_after" in error["message"]
    assert server.requests[0].scenario is None


def test_malformed_json_body_is_a_400(server: FaultServer, http: httpx.Client) -> None:
    resp = http.post(
        f"{server.base_url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"


def test_mix_is_reproducible_with_a_seed(http: httpx.Client) -> None:
    mix = {"ok": 0.5, "content_filter": 0.2, "http_500": 0.2, "image_empty": 0.1}

    def run(seed: int) -> list[str | None]:
        with FaultServer(mix=mix, seed=seed) as server:
            for _ in range(25):
                http.post(
                    f"{server.base_url}/chat/completions", json={"model": "m", "messages": []}
                )
            first = [r.scenario for r in server.requests]
            server.reset()
            for _ in range(25):
                http.post(
                    f"{server.base_url}/chat/completions", json={"model": "m", "messages": []}
                )
            assert [r.scenario for r in server.requests] == first  # reset() reseeds
            return first

    first = run(7)
    assert first == run(7)
    assert set(first) == {"ok", "content_filter", "http_500"}  # image_empty never hits chat
    assert first != run(8)


def test_mix_draws_only_scenarios_that_fit_the_route(http: httpx.Client) -> None:
    with FaultServer(mix={"content_filter": 1, "image_empty": 1}, seed=1) as server:
        for _ in range(10):
            http.post(f"{server.base_url}/images/generations", json={"prompt": "p"})
        http.post(f"{server.base_url}/embeddings", json={"model": "e", "input": "x"})
    assert {r.scenario for r in server.requests[:10]} == {"image_empty"}
    assert server.requests[10].scenario == "ok"  # nothing in the mix fits: ok


def test_default_scenario_applies_without_header_or_suffix() -> None:
    with FaultServer(default_scenario="length") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        resp = client.chat.completions.create(model="m", messages=MESSAGES)
        assert resp.choices[0].finish_reason == "length"
        image = client.images.generate(prompt="p")  # `length` does not fit images: ok
        assert image.data and image.data[0].url


def test_bad_configuration_is_rejected_early() -> None:
    with pytest.raises(ValueError, match="unknown default_scenario"):
        FaultServer(default_scenario="nope")
    with pytest.raises(ValueError, match="unknown scenarios in mix"):
        FaultServer(mix={"nope": 1.0})
    with pytest.raises(ValueError, match="not all zero"):
        FaultServer(mix={"ok": 0.0})
    assert parse_mix("ok=0.7, http_429=0.3") == {"ok": 0.7, "http_429": 0.3}
    with pytest.raises(ValueError):
        parse_mix("ok")


# --- embeddings, images, models ---------------------------------------------------------------


def test_embeddings(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert resp.object == "list" and resp.model == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in resp.data)
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (
        USAGE["prompt_tokens"],
        USAGE["prompt_tokens"],
    )


def test_embeddings_float_and_base64_agree(server: FaultServer, http: httpx.Client) -> None:
    url = f"{server.base_url}/embeddings"
    floats = http.post(url, json={"model": "e", "input": "a"}).json()["data"][0]["embedding"]
    b64 = http.post(url, json={"model": "e", "input": "a", "encoding_format": "base64"}).json()
    decoded = memoryview(base64.b64decode(b64["data"][0]["embedding"])).cast("f").tolist()
    assert decoded == pytest.approx(floats, abs=1e-6)


IMAGE_CASES = covers("ok", "image_b64", "image_revised_prompt", "image_empty")


@pytest.mark.parametrize("scenario", IMAGE_CASES)
def test_image_generation_scenarios(
    client: openai.OpenAI, scenario: str, http: httpx.Client
) -> None:
    resp = client.images.generate(prompt="a red fox", model=f"dall-e-3@{scenario}")
    assert resp.created > 0
    if scenario == "image_empty":
        assert resp.data == []
        return
    assert resp.data is not None and len(resp.data) == 1
    item = resp.data[0]
    if scenario == "image_b64":
        assert item.b64_json and base64.b64decode(item.b64_json).startswith(b"\x89PNG")
        assert item.url is None
    else:
        assert item.url and http.get(item.url).content.startswith(b"\x89PNG")
    assert item.revised_prompt == (
        "A detailed, safe rendering of: a red fox" if scenario == "image_revised_prompt" else None
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dall-e-2 variations
def test_image_edit_and_variation_take_multipart(
    client: openai.OpenAI, server: FaultServer
) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
    )
    edit = client.images.edit(
        image=("in.png", png, "image/png"), prompt="add a hat", model="dall-e-2@image_b64"
    )
    assert edit.data and edit.data[0].b64_json
    variation = client.images.create_variation(image=("in.png", png, "image/png"), n=2)
    assert variation.data and len(variation.data) == 2
    assert [(r.path, r.scenario, r.model) for r in server.requests] == [
        ("/v1/images/edits", "image_b64", "dall-e-2"),
        ("/v1/images/variations", "ok", None),
    ]


def test_image_request_as_raw_http_code_sends_it(server: FaultServer) -> None:
    resp = requests.post(
        f"{server.base_url}/images/generations",
        json={"model": "dall-e-3@image_empty", "prompt": "p", "size": "1024x1024"},
        headers={"Authorization": "Bearer sk-test"},
        timeout=5,
    )
    resp.raise_for_status()
    assert resp.json()["data"] == []


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]


def test_unknown_route_is_a_json_404(server: FaultServer, http: httpx.Client) -> None:
    resp = http.post(f"{server.base_url}/audio/speech", json={})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_url"


# --- videos -----------------------------------------------------------------------------------

pytestmark_video = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Sora is deprecated


@pytestmark_video
def test_video_progression_through_the_sdk(client: openai.OpenAI, server: FaultServer) -> None:
    raw = client.videos.with_raw_response.create(prompt="a fox", model="sora-2", seconds="8")
    video = raw.parse()
    assert raw.headers["openai-poll-after-ms"] == "1"
    assert (video.object, video.status, video.progress, video.seconds) == (
        "video",
        "queued",
        0,
        "8",
    )
    assert video.id.startswith("video_") and video.completed_at is None

    step = client.videos.retrieve(video.id)
    assert (step.status, step.progress) == ("in_progress", 50)
    done = client.videos.poll(video.id)
    assert (done.status, done.progress) == ("completed", 100)
    assert done.completed_at is not None and done.error is None
    assert server.requests[0].path == "/v1/videos" and server.requests[0].scenario == "ok"
    assert [r.method for r in server.requests] == ["POST", "GET", "GET"]

    content = client.videos.download_content(video.id)
    assert content.content.startswith(b"\x00\x00\x00\x18ftyp")


@pytestmark_video
def test_video_create_and_poll_helper(client: openai.OpenAI) -> None:
    video = client.videos.create_and_poll(prompt="a fox", model="sora-2@video_failed")
    assert video.status == "failed" and video.error is None


# scenario -> statuses seen by the create call and then two polls
VIDEO_CASES: dict[str, list[str]] = {
    "ok": ["queued", "in_progress", "completed"],
    "video_ok": ["queued", "in_progress", "completed"],
    "video_succeed": ["queued", "in_progress", "succeed"],
    "video_succeeded": ["queued", "in_progress", "succeeded"],
    "video_failed": ["queued", "in_progress", "failed"],
    "video_cancelled": ["queued", "in_progress", "cancelled"],
    "video_stuck": ["queued", "queued", "queued"],
}
covers(*VIDEO_CASES)


@pytest.mark.parametrize("scenario", list(VIDEO_CASES))
def test_video_scenarios_with_raw_multipart(server: FaultServer, scenario: str) -> None:
    created = requests.post(
        f"{server.base_url}/videos",
        headers={"Authorization": "Bearer sk-test"},
        files={
            "prompt": (None, "a fox"),
            "model": (None, f"veo3-fast@{scenario}"),
            "size": (None, "16x9"),
        },
        timeout=5,
    )
    created.raise_for_status()
    job = created.json()
    assert (job["model"], job["size"]) == ("veo3-fast", "16x9")
    polls = [requests.get(f"{server.base_url}/videos/{job['id']}", timeout=5) for _ in range(2)]
    assert all(p.headers["openai-poll-after-ms"] == "1" for p in polls)
    statuses = [job["status"]] + [p.json()["status"] for p in polls]
    assert statuses == VIDEO_CASES[scenario]

    final = polls[-1].json()
    assert final["error"] is None
    if final["status"] in ("completed", "succeed", "succeeded"):
        # Raw-HTTP code reads result["output"][0].
        assert requests.get(final["output"][0], timeout=5).ok
    else:
        assert "output" not in final
    assert final["completed_at"] is None if scenario == "video_stuck" else final["completed_at"]
    assert [r.scenario for r in server.requests[:3]] == [scenario] * 3


def test_video_stuck_never_leaves_the_queue(server: FaultServer, http: httpx.Client) -> None:
    job = http.post(f"{server.base_url}/videos", json={"prompt": "p", "model": "m@video_stuck"})
    for _ in range(5):
        polled = http.get(f"{server.base_url}/videos/{job.json()['id']}").json()
    assert (polled["status"], polled["progress"]) == ("queued", 0)


@pytestmark_video
def test_video_task_not_exist_then_progresses(client: openai.OpenAI) -> None:
    video = client.videos.create(prompt="p", model="runway@video_task_not_exist")
    with pytest.raises(openai.NotFoundError) as info:
        client.videos.retrieve(video.id)
    assert info.value.body == {
        "message": "task_not_exist",
        "type": "invalid_request_error",
        "param": None,
        "code": "task_not_exist",
    }
    assert info.value.response.headers["openai-poll-after-ms"] == "1"
    assert client.videos.retrieve(video.id).status == "in_progress"
    assert client.videos.poll(video.id).status == "completed"


def test_video_json_create_remix_and_missing_ids(server: FaultServer, http: httpx.Client) -> None:
    base = server.base_url
    job = http.post(f"{base}/videos", json={"prompt": "p", "model": "sora-2", "seconds": 4}).json()
    assert job["seconds"] == "4"
    remix = http.post(
        f"{base}/videos/{job['id']}/remix",
        json={"prompt": "again"},
        headers=scenario_headers("video_cancelled"),
    ).json()
    assert remix["remixed_from_video_id"] == job["id"] and remix["model"] == "sora-2"
    for _ in range(2):
        polled = http.get(f"{base}/videos/{remix['id']}")
    assert polled.json()["status"] == "cancelled"
    missing = http.get(f"{base}/videos/video_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "video_not_found"
    assert http.post(f"{base}/videos/video_nope/remix", json={"prompt": "p"}).status_code == 404


@pytestmark_video
def test_video_create_errors_and_poll_faults(client: openai.OpenAI, server: FaultServer) -> None:
    with pytest.raises(openai.RateLimitError):
        client.videos.create(prompt="p", model="sora-2@http_429")
    video = client.videos.create(prompt="p", model="sora-2@video_succeed")
    # A hard fault on a poll does not advance the job; a video scenario header is ignored there.
    with pytest.raises(openai.InternalServerError):
        client.videos.retrieve(video.id, extra_headers=scenario_headers("http_500"))
    polled = client.videos.retrieve(video.id, extra_headers=scenario_headers("video_failed"))
    assert polled.status == "in_progress"
    # Kling's spelling is outside the SDK's Literal; the SDK passes it through unvalidated.
    assert str(client.videos.retrieve(video.id).status) == "succeed"


# --- lifecycle --------------------------------------------------------------------------------


def test_port_zero_binds_a_free_port_and_urls_follow(http: httpx.Client) -> None:
    server = FaultServer()
    assert server.port == 0
    with server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.base_url == server.url + "/v1"
        assert http.get(server.base_url + "/models").status_code == 200
    server.stop()  # idempotent


def test_busy_port_raises_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(OSError):
            FaultServer(port=taken.getsockname()[1]).start()
        assert time.monotonic() - started < 2


def test_stop_is_prompt_while_a_timeout_handler_sleeps(http: httpx.Client) -> None:
    server = FaultServer(slow_seconds=30).start()
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            resp = http.post(
                f"{server.base_url}/chat/completions",
                json={"model": "m@timeout", "messages": []},
                timeout=10,
            )
            outcome.append(resp.status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests and server.requests[0].scenario == "timeout"

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    caller.join(timeout=5)
    assert outcome and isinstance(outcome[0], httpx.HTTPError)  # cut off, never answered
    server.stop()


def test_concurrent_requests_are_all_recorded(server: FaultServer, http: httpx.Client) -> None:
    def hit() -> None:
        http.post(f"{server.base_url}/embeddings", json={"model": "e", "input": "x"})

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(server.requests) == 20


def test_command_line_serves_until_interrupted(http: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "failsight.testing",
            "--port",
            str(port),
            "--mix",
            "ok=1",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in line
        resp = http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m", "messages": []}
        )
        assert resp.json()["choices"][0]["message"]["content"] == OK_TEXT
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", covers("ratelimit_openai", "ratelimit_low",
                                         "ratelimit_anthropic", "ratelimit_malformed"))  # fmt: skip
def test_fixed_rate_limit_headers_on_an_ok_answer(
    name: str, server: FaultServer, http: httpx.Client
) -> None:
    for stream in (False, True):
        body = {"model": f"m@{name}", "messages": MESSAGES, "stream": stream}
        resp = http.post(f"{server.base_url}/chat/completions", json=body)
        assert resp.status_code == 200
        sent = {k: v for k, v in resp.headers.items() if "ratelimit" in k}
        assert sent == dict(RATELIMIT_HEADER_SCENARIOS[name])


def test_the_ratelimited_budget_counts_down_then_refuses_then_refills(http: httpx.Client) -> None:
    covers("ratelimited")
    limit = RateLimit(requests=2, tokens=30, refusals=2, retry_after_ms=1500, reset="1s")
    with FaultServer(rate_limit=limit) as srv:
        answers = [
            http.post(f"{srv.base_url}/embeddings", json={"model": "e@ratelimited", "input": "x"})
            for _ in range(5)
        ]
        assert srv.requests[0].scenario == "ratelimited"
    assert [a.status_code for a in answers] == [200, 429, 429, 200, 429]
    left = [(a.headers["x-ratelimit-remaining-requests"], a.headers["x-ratelimit-remaining-tokens"])
            for a in answers]  # fmt: skip
    # 20 tokens an answer: the second request finds 10 tokens left, too few
    assert left == [("1", "10"), ("1", "10"), ("1", "10"), ("1", "10"), ("1", "10")]
    refused = answers[1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert (refused.headers["retry-after-ms"], refused.headers["retry-after"]) == ("1500", "2")
    assert refused.headers["x-ratelimit-reset-tokens"] == "1s"
    assert "retry-after" not in answers[0].headers


def test_a_budget_that_starts_empty_refuses_first() -> None:
    with pytest.raises(ValueError, match="requests"):
        RateLimit(requests=0)
    budget_server = FaultServer(rate_limit=RateLimit(start_empty=True, refusals=1))
    with budget_server as srv, httpx.Client(timeout=5) as http:
        body = {"model": "m@ratelimited", "messages": MESSAGES}
        first, second = (http.post(f"{srv.base_url}/chat/completions", json=body) for _ in "12")
    assert (first.status_code, first.headers["x-ratelimit-remaining-tokens"]) == (429, "0")
    assert (second.status_code, second.headers["x-ratelimit-remaining-tokens"]) == (200, "1980")


def test_every_scenario_is_covered_above() -> None:
    assert set(SCENARIOS) == TESTED


def test_azure_filter_results_on_answers_and_chunks(client: openai.OpenAI) -> None:
    """Azure's shapes: prompt results on the answer (and alone in a stream's first chunk),
    completion results on each choice, the fired category on the finishing one."""
    model = "gpt-4o-mini@azure_content_filter"
    answer = client.chat.completions.create(model=model, messages=MESSAGES).model_dump()
    prompt = answer["prompt_filter_results"][0]["content_filter_results"]
    assert not any(entry["filtered"] for entry in prompt.values())
    fired = answer["choices"][0]["content_filter_results"]
    assert fired["violence"] == {"filtered": True, "severity": "high"}
    assert [k for k, v in fired.items() if v["filtered"]] == ["violence"]
    chunks = [c.model_dump() for c in client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True)]  # fmt: skip
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"]
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishing[-1]["choices"][0]["content_filter_results"]["violence"]["filtered"] is True
    middle = [c for c in chunks if c["choices"] and not c["choices"][0]["finish_reason"]]
    assert middle and not any(
        e["filtered"] for c in middle for e in c["choices"][0]["content_filter_results"].values()
    )


# --- parameterised scenarios: any status, finish reason or filter category ---------------------


@pytest.mark.parametrize("reason", ["end_turn", "MAX_TOKENS", "stop", "content_filter", "x.y-z"])
def test_finish_scenario_sends_its_finish_reason_verbatim(
    client: openai.OpenAI, server: FaultServer, reason: str
) -> None:
    model = f"gpt-4o-mini@finish={reason}"
    answer = client.chat.completions.create(model=model, messages=MESSAGES)
    assert answer.choices[0].finish_reason == reason
    assert answer.choices[0].message.content == OK_TEXT
    assert answer.usage is not None and answer.usage.total_tokens == USAGE["total_tokens"]
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == reason and all(f is None for f in finishes[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == OK_TEXT
    assert chunks[-1].usage is not None
    legacy = client.completions.create(model=model, prompt="hi")
    assert legacy.choices[0].finish_reason == reason
    assert [r.scenario for r in server.requests] == [f"finish={reason}"] * 3


def test_finish_scenario_on_the_responses_api_is_an_incomplete_reason(
    client: openai.OpenAI,
) -> None:
    model = "gpt-4o-mini@finish=max_output_tokens"
    answer = client.responses.create(model=model, input="hi")
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.output_text == OK_TEXT and answer.usage is not None
    events = list(client.responses.create(model=model, input="hi", stream=True))
    assert events[-1].type == "response.incomplete"
    details = events[-1].response.incomplete_details
    assert details is not None and details.reason == "max_output_tokens"


@pytest.mark.parametrize(
    ("scenario", "category", "severity"),
    [
        ("filter=selfharm:medium", "selfharm", {"severity": "medium"}),
        (
            "filter=HARM_CATEGORY_HATE_SPEECH:high",
            "HARM_CATEGORY_HATE_SPEECH",
            {"severity": "high"},
        ),
        ("filter=violence:low", "violence", {"severity": "low"}),
        ("filter=jailbreak", "jailbreak", {}),  # no severity given: no severity field
    ],
)
def test_filter_scenario_marks_its_category_filtered(
    client: openai.OpenAI, scenario: str, category: str, severity: dict[str, str]
) -> None:
    model = f"gpt-4o-mini@{scenario}"
    answer = client.chat.completions.create(model=model, messages=MESSAGES).model_dump()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == TRUNCATED_TEXT
    results = choice["content_filter_results"]
    assert results[category] == {"filtered": True, **severity}
    assert [name for name, entry in results.items() if entry["filtered"]] == [category]
    prompt = answer["prompt_filter_results"][0]["content_filter_results"]
    assert not any(entry["filtered"] for entry in prompt.values())
    chunks = [c.model_dump() for c in client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True)]  # fmt: skip
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishing[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert finishing[-1]["choices"][0]["content_filter_results"][category]["filtered"] is True
    middle = [c for c in chunks if c["choices"] and not c["choices"][0]["finish_reason"]]
    assert middle and not any(
        e["filtered"] for c in middle for e in c["choices"][0]["content_filter_results"].values()
    )


@pytest.mark.parametrize(("status", "error"), [(418, openai.APIStatusError),
    (402, openai.APIStatusError), (501, openai.InternalServerError),
    (599, openai.InternalServerError)])  # fmt: skip
def test_any_http_status_is_a_scenario(
    client: openai.OpenAI, http: httpx.Client, server: FaultServer, status: int, error: type
) -> None:
    with pytest.raises(error) as info:
        client.chat.completions.create(model=f"gpt-4o@http_{status}", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.body == {
        "message": f"failsight fault server: HTTP {status}, as the scenario asked.",
        "type": "server_error" if status >= 500 else "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert info.value.response.headers.get("retry-after-ms") == ("1" if status >= 500 else None)
    # A hard scenario: every route, polls of a video included.
    for path, body in [("/embeddings", {"model": "e", "input": "x"}), ("/videos", {"prompt": "p"})]:
        resp = http.post(
            server.base_url + path, json=body, headers=scenario_headers(f"http_{status}")
        )
        assert resp.status_code == status
    poll = http.get(f"{server.base_url}/videos/video_x", headers=scenario_headers(f"http_{status}"))
    assert poll.status_code == status


def test_a_3xx_status_without_location_reaches_the_sdk_as_an_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o@http_300", messages=MESSAGES)
    assert info.value.status_code == 300


@pytest.mark.parametrize(
    "scenario",
    ["http_200", "http_600", "http_4xx", "http_42", "finish=", "finish=a b", "finish=x:y",
     "filter=", "filter=hate:high:x", "filter=hate:", "filter=hate:s1", "finish=" + "a" * 65],
)  # fmt: skip
def test_malformed_parameterised_scenarios_are_unknown(
    server: FaultServer, http: httpx.Client, scenario: str
) -> None:
    resp = http.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers=scenario_headers(scenario),
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "unknown_scenario"
    assert "finish=<finish_reason>" in error["message"] and "http_<status>" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "scenario"),
    [
        ("/embeddings", {"model": "e", "input": "x"}, "finish=stop"),
        ("/images/generations", {"prompt": "p"}, "finish=stop"),
        ("/videos", {"prompt": "p"}, "finish=stop"),
        ("/completions", {"model": "m", "prompt": "x"}, "filter=hate:high"),
        ("/responses", {"model": "m", "input": "x"}, "filter=hate:high"),
    ],
)
def test_parameterised_scenarios_apply_only_where_they_make_sense(
    server: FaultServer, http: httpx.Client, path: str, body: Any, scenario: str
) -> None:
    resp = http.post(server.base_url + path, json=body, headers=scenario_headers(scenario))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "scenario_not_applicable"


def test_parameterised_scenarios_in_sequences_mixes_and_defaults(http: httpx.Client) -> None:
    assert parse_mix("finish=end_turn=0.5,ok=0.5") == {"finish=end_turn": 0.5, "ok": 0.5}
    url = "/chat/completions"
    with FaultServer(default_scenario="finish=pause_turn") as server:
        plain = http.post(server.base_url + url, json={"model": "m", "messages": []}).json()
        assert plain["choices"][0]["finish_reason"] == "pause_turn"
        image = http.post(server.base_url + "/images/generations", json={"prompt": "p"})
        assert image.status_code == 200 and image.json()["data"]  # does not fit images: ok
    with FaultServer(mix={"filter=spii": 1, "http_418": 1}, seed=3) as server:
        codes = {
            http.post(server.base_url + url, json={"model": "m", "messages": []}).status_code
            for _ in range(20)
        }
        assert codes == {200, 418}
    with FaultServer() as server:
        key = {"X-Failsight-Key": "sequence"}
        body = {"model": "m@http_418,finish=STOP", "messages": []}
        first = http.post(server.base_url + url, json=body, headers=key)
        second = http.post(server.base_url + url, json=body, headers=key)
        assert first.status_code == 418
        assert second.json()["choices"][0]["finish_reason"] == "STOP"
        assert second.json()["model"] == "m"


def test_parameterised_scenario_parsing() -> None:
    from failsight.testing import _scenarios as scenarios

    assert scenarios.finish_of("finish=end_turn") == "end_turn"
    assert scenarios.finish_of("end_turn") is None
    assert scenarios.filter_of("filter=self-harm:high") == ("self-harm", "high")
    assert scenarios.filter_of("filter=blocklists") == ("blocklists", None)
    error = scenarios.http_error("http_418")
    assert error is not None and (error.status, error.type) == (418, "invalid_request_error")
    assert scenarios.http_error("http_400") is HTTP_ERROR_SCENARIOS["http_400"]
    assert scenarios.http_error("http_4000") is None and scenarios.http_error("ok") is None
    assert scenarios.is_hard("http_599") and not scenarios.is_hard("finish=stop")
    assert all(scenarios.is_scenario(name) for name in SCENARIOS)
    assert not scenarios.is_scenario("finish") and not scenarios.is_scenario("http_299")
    assert scenarios.applies("http_418", "models") and scenarios.applies("finish=x", "responses")
    assert not scenarios.applies("filter=x", "completions")


# --- declared outputs: tool calls and structured output ---------------------------------------

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
# scenario -> (chat finish reason, content, (tool name, arguments) or None)
DECLARED_CASES: dict[str, tuple[str, str | None, tuple[str, str] | None]] = {
    "tool_calls": ("tool_calls", None, ("get_weather", '{"city": "Paris"}')),
    "tool_args_not_json": ("tool_calls", None, ("get_weather", '{"city": Paris}')),
    "tool_undeclared": ("tool_calls", None, ("get_stock_price", '{"symbol": "ACME"}')),
    "tool_args_invalid": ("tool_calls", None, ("get_weather", '{"city": 42}')),
    "tool_missing": ("stop", "It is sunny in Paris today.", None),
    "json_ok": ("stop", '{"city": "Paris"}', None),
    "json_not_json": ("stop", "The weather in Paris is sunny.", None),
    "json_schema_mismatch": ("stop", '{"town": "Paris"}', None),
}
covers(*DECLARED_CASES)


def _judged_as_declared(scenario: str, content: str | None, call: tuple[str, str] | None) -> None:
    """The answer is what the scenario promises a judge (and is nothing else)."""
    _, want_content, want_call = DECLARED_CASES[scenario]
    assert (content or None, call) == (want_content, want_call)
    if scenario.startswith("tool_args_not") or scenario == "json_not_json":
        with pytest.raises(ValueError):
            json.loads(call[1] if call else content or "")
    elif call is not None:
        assert isinstance(json.loads(call[1]), dict)
    elif scenario.startswith("json_"):
        assert isinstance(json.loads(content or ""), dict)


@pytest.mark.parametrize("scenario", list(DECLARED_CASES))
def test_declared_scenarios_on_chat(client: openai.OpenAI, scenario: str) -> None:
    finish = DECLARED_CASES[scenario][0]
    resp = client.chat.completions.create(
        model=f"gpt-4o-mini@{scenario}", messages=MESSAGES, tools=[WEATHER_TOOL],
        tool_choice="required",
    )  # fmt: skip
    choice = resp.choices[0]
    assert choice.finish_reason == finish
    calls = choice.message.tool_calls or []
    assert len(calls) <= 1
    call = (calls[0].function.name, calls[0].function.arguments) if calls else None
    _judged_as_declared(scenario, choice.message.content, call)


@pytest.mark.parametrize("scenario", list(DECLARED_CASES))
def test_declared_scenarios_on_a_chat_stream_split_the_arguments(
    client: openai.OpenAI, scenario: str
) -> None:
    finish = DECLARED_CASES[scenario][0]
    chunks = list(
        client.chat.completions.create(
            model=f"gpt-4o-mini@{scenario}", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    pieces = [d.function.arguments for d in deltas if d.function and d.function.arguments]
    call = None
    if deltas:
        assert deltas[0].function is not None and {d.index for d in deltas} == {0}
        call = (str(deltas[0].function.name), "".join(pieces))
        assert len(pieces) >= 3, pieces  # assembly is exercised: no delta holds it all
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _judged_as_declared(scenario, text, call)


@pytest.mark.parametrize("scenario", list(DECLARED_CASES))
def test_declared_scenarios_on_the_responses_api(client: openai.OpenAI, scenario: str) -> None:
    resp = client.responses.create(model=f"gpt-4.1@{scenario}", input="weather?")
    assert resp.status == "completed"
    calls = [(item.name, item.arguments) for item in resp.output if item.type == "function_call"]
    assert len(calls) <= 1
    _judged_as_declared(scenario, resp.output_text, calls[0] if calls else None)


@pytest.mark.parametrize("scenario", list(DECLARED_CASES))
def test_declared_scenarios_on_a_responses_stream_split_the_arguments(
    client: openai.OpenAI, scenario: str
) -> None:
    events = list(client.responses.create(model=f"gpt-4.1@{scenario}", input="w?", stream=True))
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    call = None
    if done:
        assert len(pieces) >= 3 and "".join(pieces) == done[0].arguments
        call = (done[0].name, done[0].arguments)
        final = events[-1].response.output[0]
        assert final.type == "function_call" and (final.name, final.arguments) == call
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    _judged_as_declared(scenario, text, call)


@pytest.mark.parametrize("scenario", ["tool_undeclared", "json_not_json"])
def test_declared_scenarios_do_not_fit_legacy_completions(
    server: FaultServer, http: httpx.Client, scenario: str
) -> None:
    body = {"model": f"m@{scenario}", "prompt": "x"}
    resp = http.post(server.base_url + "/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "scenario_not_applicable"


def test_argument_pieces_concatenate_back() -> None:
    from failsight.testing._payloads import argument_pieces

    assert argument_pieces('{"city": "Paris"}') == ['{"ci', 'ty":', ' "Pa', 'ris"', "}"]
    assert argument_pieces("") == [""]
    text = '{"q": "' + "é" * 37 + '"}'
    assert "".join(argument_pieces(text, 5)) == text
