"""Declared tools and structured output judged end to end: the real openai SDK against the
fault-injection server over a socket (chat and Responses, streamed and not, create and parse),
the opt-outs, the caller's objects unchanged, the span and the wasted tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import failsight
from conftest import Telemetry
from failsight.testing import FaultServer
from openai_calls import headers, sync_client

PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "weather?"}]


class City(BaseModel):
    city: str


def chat_tools(strict: bool) -> list[Any]:
    function = {"name": "get_weather", "parameters": PARAMS, "strict": strict}
    return [{"type": "function", "function": function}]


def responses_tools(strict: bool) -> list[Any]:
    return [{"type": "function", "name": "get_weather", "parameters": PARAMS, "strict": strict}]


def chat_format() -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "w", "schema": PARAMS}}


@pytest.fixture
def patched(instrumented: Telemetry) -> Iterator[Telemetry]:
    yield instrumented


def _call(client: openai.OpenAI, api: str, scenario: str, stream: bool, **request: Any) -> Any:
    extra = {"extra_headers": headers(scenario), "stream": stream}
    if api == "chat":
        if stream:
            extra["stream_options"] = {"include_usage": True}
        result = client.chat.completions.create(model="m", messages=MESSAGES, **request, **extra)
    else:
        result = client.responses.create(model="m", input="weather?", **request, **extra)
    if stream:
        for _ in result:
            pass
    return result


# (scenario, tool request (strict?, tool_choice) or output request, reason, [(tool, outcome)])
TOOL_CASES = [
    ("tool_calls", False, None, None, [("get_weather", "ok")]),
    ("tool_args_not_json", False, None, "tool_arguments_not_json", [("get_weather", "not_json")]),
    ("tool_undeclared", False, None, "tool_not_declared", [("undeclared", "not_declared")]),
    ("tool_args_invalid", False, None, "tool_arguments_invalid",
     [("get_weather", "invalid_arguments")]),
    ("tool_args_invalid", True, None, "tool_arguments_strict_violation",
     [("get_weather", "strict_violation")]),
    ("tool_missing", False, "required", "tool_call_missing", []),
]  # fmt: skip


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("scenario", "strict", "choice", "reason", "calls"), TOOL_CASES)
def test_tool_calls(
    patched: Telemetry, server: FaultServer, api: str, stream: bool, scenario: str,
    strict: bool, choice: str | None, reason: str | None, calls: list[tuple[str, str]],
) -> None:  # fmt: skip
    tools = chat_tools(strict) if api == "chat" else responses_tools(strict)
    request: dict[str, Any] = {"tools": tools}
    if choice is not None:
        request["tool_choice"] = choice
    _call(sync_client(server), api, scenario, stream, **request)
    t = patched
    assert t.value("genai_requests_total", failure_class="silent" if reason else "none") == 1
    if reason is not None:
        assert t.value("genai_failures_total", failure_class="silent", reason=reason) == 1
        tokens = t.value("genai_tokens_total")
        assert tokens > 0
        assert t.value("genai_wasted_tokens_total", reason=reason) == tokens  # bought nothing
    found = [(s["tool"], s["outcome"]) for s in t.series("genai_tool_calls_total")]
    assert found == calls
    span = t.spans()[-1]
    assert span.attributes.get("failsight.failure_reason") == reason
    if calls:
        assert span.attributes["failsight.tool_calls.count"] == len(calls)
        assert span.attributes["failsight.tool_calls.failed"] == (reason is not None)


OUTPUT_CASES = [
    ("json_ok", None),
    ("json_not_json", "invalid_json"),
    ("json_schema_mismatch", "output_schema_mismatch"),
]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("scenario", "reason"), OUTPUT_CASES)
def test_structured_output(
    patched: Telemetry, server: FaultServer, api: str, stream: bool, scenario: str,
    reason: str | None,
) -> None:  # fmt: skip
    if api == "chat":
        request: dict[str, Any] = {"response_format": chat_format()}
    else:
        request = {"text": {"format": {"type": "json_schema", "name": "w", "schema": PARAMS}}}
    _call(sync_client(server), api, scenario, stream, **request)
    assert patched.value("genai_requests_total", failure_class="silent" if reason else "none") == 1
    if reason is not None:
        assert patched.value("genai_failures_total", reason=reason) == 1


@pytest.mark.parametrize(("scenario", "reason"), OUTPUT_CASES)
def test_parse_ends_as_create(
    patched: Telemetry, server: FaultServer, scenario: str, reason: str | None
) -> None:
    """`parse()` raises pydantic's ValidationError where `create` returns: the same outcome,
    the same usage counted, and the caller's exception is the SDK's own."""
    client = sync_client(server)
    raised: BaseException | None = None
    try:
        client.chat.completions.parse(
            model="m", messages=MESSAGES, response_format=City, extra_headers=headers(scenario)
        )
    except Exception as exc:
        raised = exc
    assert (raised is None) == (reason is None)
    if raised is not None:
        assert type(raised).__name__ == "ValidationError"
    t = patched
    assert t.value("genai_requests_total", failure_class="silent" if reason else "none") == 1
    if reason is not None:
        assert t.value("genai_failures_total", failure_class="silent", reason=reason) == 1
        assert t.value("genai_tokens_total") > 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("scenario", "reason"), OUTPUT_CASES)
def test_raw_response_parse_ends_as_create(
    patched: Telemetry, server: FaultServer, scenario: str, reason: str | None, is_async: bool
) -> None:
    """`with_raw_response.parse(...)` then the raw answer's `parse()` (langchain's way): its
    pydantic ValidationError is the judged silent failure, not a broken body (hard)."""
    import asyncio

    from openai_calls import async_client

    async def run_async() -> Any:
        raw = await async_client(server).chat.completions.with_raw_response.parse(
            model="m", messages=MESSAGES, response_format=City, extra_headers=headers(scenario)
        )
        return raw.parse()  # with_raw_response's parse() is synchronous on the async client too

    def run() -> Any:
        if is_async:
            return asyncio.run(run_async())
        raw = sync_client(server).chat.completions.with_raw_response.parse(
            model="m", messages=MESSAGES, response_format=City, extra_headers=headers(scenario)
        )
        return raw.parse()

    if reason is None:
        assert isinstance(run().choices[0].message.parsed, City)
    else:
        with pytest.raises(Exception) as raised:
            run()
        assert type(raised.value).__name__ == "ValidationError"
    t = patched
    assert t.value("genai_requests_total", failure_class="silent" if reason else "none") == 1
    if reason is not None:
        assert t.value("genai_failures_total", failure_class="silent", reason=reason) == 1
        assert t.value("genai_failures_total", failure_class="hard") == 0
        assert t.value("genai_tokens_total") > 0


@pytest.mark.parametrize(("scenario", "reason"), OUTPUT_CASES)
def test_responses_parse_ends_as_create(
    patched: Telemetry, server: FaultServer, scenario: str, reason: str | None
) -> None:
    client = sync_client(server)
    try:
        client.responses.parse(
            model="m", input="weather?", text_format=City, extra_headers=headers(scenario)
        )
    except Exception as exc:
        assert type(exc).__name__ == "ValidationError"
    assert patched.value("genai_requests_total", failure_class="silent" if reason else "none") == 1


def test_parse_of_a_strict_tool_whose_arguments_are_not_json(
    patched: Telemetry, server: FaultServer
) -> None:
    """The SDK's json.loads raises JSONDecodeError (otherwise hard invalid_response): it is
    the tool call's silent failure, inside a scope too."""

    @failsight.traced_generation(name="agent")
    def step() -> Any:
        return sync_client(server).chat.completions.parse(
            model="m", messages=MESSAGES, tools=chat_tools(True),
            extra_headers=headers("tool_args_not_json"),
        )  # fmt: skip

    with pytest.raises(ValueError):
        step()
    t = patched
    assert t.value("genai_failures_total", call_site="agent", failure_class="silent",
                   reason="tool_arguments_not_json") == 1  # fmt: skip
    assert t.value("genai_tool_calls_total", tool="get_weather", outcome="not_json") == 1


def test_the_caller_gets_the_sdk_object_unchanged(patched: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    result = client.chat.completions.create(
        model="m", messages=MESSAGES, tools=chat_tools(False),
        extra_headers=headers("tool_args_not_json"),
    )  # fmt: skip
    assert type(result) is openai.types.chat.ChatCompletion
    assert result.choices[0].message.tool_calls[0].function.arguments == '{"city": Paris}'  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["configure", "scope"])
def test_opt_out(telemetry: Telemetry, server: FaultServer, where: str) -> None:
    if where == "configure":
        failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider,
                            prices=False, judge_declared=False)  # fmt: skip
    failsight.instrument_openai()
    try:

        @failsight.traced_generation(judge_declared=False if where == "scope" else None)
        def call() -> Any:
            return _call(sync_client(server), "chat", "tool_args_not_json", False,
                         tools=chat_tools(False))  # fmt: skip

        call()
    finally:
        failsight.uninstrument_openai()
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert telemetry.series("genai_tool_calls_total") == []


def test_a_scope_turns_judging_back_on(telemetry: Telemetry, server: FaultServer) -> None:
    failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider,
                        prices=False, judge_declared=False)  # fmt: skip
    failsight.instrument_openai()
    try:

        @failsight.traced_generation(judge_declared=True)
        def call() -> Any:
            return _call(sync_client(server), "chat", "tool_args_not_json", True,
                         tools=chat_tools(False))  # fmt: skip

        call()
    finally:
        failsight.uninstrument_openai()
    assert telemetry.value("genai_failures_total", reason="tool_arguments_not_json") == 1


def test_a_validator_runs_after_the_judgement(patched: Telemetry, server: FaultServer) -> None:
    @failsight.traced_generation(name="v", validate=[lambda result: False])
    def call() -> Any:
        return _call(sync_client(server), "chat", "json_not_json", False,
                     response_format=chat_format())  # fmt: skip

    call()
    assert patched.value("genai_failures_total", reason="invalid_json") == 1
    assert patched.value("genai_failures_total") == 1


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_wrong_types_fail_at_configuration(value: Any) -> None:
    with pytest.raises(TypeError, match="judge_declared"):
        failsight.configure(judge_declared=value)
    if value is not None:
        with pytest.raises(TypeError, match="judge_declared"):
            failsight.traced_generation(judge_declared=value)


# --------------------------------------------------------------------------- raw HTTP


@pytest.fixture
def http_patched(telemetry: Telemetry) -> Iterator[Telemetry]:
    failsight.instrument_http()
    yield telemetry
    failsight.uninstrument_http()


RAW_CASES = [
    ("tool_calls", None),
    ("tool_args_not_json", "tool_arguments_not_json"),
    ("tool_undeclared", "tool_not_declared"),
    ("tool_args_invalid", "tool_arguments_strict_violation"),
    ("tool_missing", "tool_call_missing"),
]


@pytest.mark.parametrize("library", ["requests", "httpx"])
@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("scenario", "reason"), RAW_CASES)
def test_raw_http(
    http_patched: Telemetry, server: FaultServer, library: str, api: str, stream: bool,
    scenario: str, reason: str | None,
) -> None:  # fmt: skip
    """Code that posts the JSON itself (requests, httpx) is judged from its request body."""
    if api == "chat":
        url, body = f"{server.base_url}/chat/completions", {"messages": MESSAGES}
        body["tools"] = chat_tools(True)
    else:
        url, body = f"{server.base_url}/responses", {"input": "weather?"}
        body["tools"] = responses_tools(True)
    body.update(model="m", stream=stream, tool_choice="required")
    sent = {"Authorization": "Bearer sk-test-key-123456", **headers(scenario)}
    if library == "requests":
        import requests

        with requests.post(url, json=body, headers=sent, stream=stream, timeout=10) as answer:
            answer.raise_for_status()
            for _ in answer.iter_content(chunk_size=None):
                pass
    else:
        import httpx

        with httpx.Client(timeout=10) as client:
            if stream:
                with client.stream("POST", url, json=body, headers=sent) as answer:
                    for _ in answer.iter_bytes():
                        pass
            else:
                client.post(url, json=body, headers=sent).raise_for_status()
    t = http_patched
    assert t.value("genai_requests_total", failure_class="silent" if reason else "none") == 1
    if reason is not None:
        assert t.value("genai_failures_total", reason=reason) == 1


async def test_async_create_stream_and_parse(patched: Telemetry, server: FaultServer) -> None:
    from openai_calls import async_client

    client = async_client(server)
    stream = await client.chat.completions.create(
        model="m", messages=MESSAGES, tools=chat_tools(False), stream=True,
        extra_headers=headers("tool_args_not_json"),
    )  # fmt: skip
    async for _ in stream:
        pass
    with pytest.raises(Exception) as raised:
        await client.chat.completions.parse(
            model="m", messages=MESSAGES, response_format=City,
            extra_headers=headers("json_schema_mismatch"),
        )  # fmt: skip
    assert type(raised.value).__name__ == "ValidationError"
    assert patched.value("genai_failures_total", reason="tool_arguments_not_json") == 1
    assert patched.value("genai_failures_total", reason="output_schema_mismatch") == 1
