"""Real client libraries over the patched openai SDK: transparent, and counted exactly.

Each case drives one library (instructor, langchain-openai, pydantic-ai, openai-agents,
llama-index-llms-openai) against the fault-injection server on loopback: a plain completion,
a stream, structured output, a tool call, one SDK-internal retry (429 or 500, then success)
and one soft failure; and, where the library uses tools or structured output, answers that
break what its request declared (arguments not JSON or against the tool's schema, a tool it
did not declare, output against its schema), judged silent without a validator. It runs twice,
first without failsight and then under
`failsight.instrument_openai()`, and checks:

1. the library returns the same thing (or raises the same exception type and message);
2. the server saw the same requests both times;
3. the Prometheus metrics are exactly what the server answered (see
   `client_libs_helpers.expected_metrics`), and no request is left in flight.

Libraries come from the `clientlibs` / `clientlibs-openai2` extras; `make test` runs this file
in `.venv` (newest openai) and in `.venv-openai2`. A library missing from its venv skips its
cases, or fails them when ``CI`` is set.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, create_model

import failsight
from client_libs_helpers import (
    DUMMY_KEY,
    LIBRARIES,
    LOOPBACK,
    MODEL,
    Library,
    Wire,
    expected_metrics,
    observed_metrics,
    require_library,
    run_once,
    scrub,
)
from conftest import Telemetry
from failsight.testing import FaultServer

pytestmark = pytest.mark.clientlibs

JSON_PROMPT = '{"city": "Paris"}'  # the `echo` scenario answers it back: valid structured output


class Weather(BaseModel):
    city: str


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@dataclass(frozen=True)
class Case:
    lib: Library
    name: str
    scenario: str  # the server's answers, request by request, for one run
    run: Callable[[Wire], Any]

    def __str__(self) -> str:
        return f"{self.lib.name}-{self.name}"


CASES: list[Case] = []


def case(lib: str, name: str, scenario: str) -> Callable[[Callable[[Wire], Any]], Any]:
    def register(run: Callable[[Wire], Any]) -> Callable[[Wire], Any]:
        CASES.append(Case(LIBRARIES[lib], name, scenario, run))
        return run

    return register


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    with FaultServer(retry_after_ms=1) as server:
        yield server


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, fault_server: FaultServer) -> None:
    """Dummy keys, the fault server as the default base URL, no tracing export, no internet."""
    monkeypatch.setenv("OPENAI_API_KEY", DUMMY_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fault_server.base_url)
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")
    for name in ("connect", "connect_ex"):
        original = getattr(socket.socket, name)

        def guarded(sock: socket.socket, address: Any, _original: Any = original) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
                raise ConnectionRefusedError(f"test_client_libraries: no network ({address!r})")
            return _original(sock, address)

        monkeypatch.setattr(socket.socket, name, guarded)


# --------------------------------------------------------------------------- the check


@pytest.mark.parametrize("case", CASES, ids=str)
def test_transparent_and_exact(case: Case, telemetry: Telemetry, fault_server: FaultServer) -> None:
    require_library(case.lib)
    server = fault_server

    server.reset()
    plain = run_once(case.run, Wire(server, case.scenario))
    plain_requests = list(server.requests)
    assert plain_requests, "the case sent no request"
    gc.collect()
    assert observed_metrics(telemetry.registry)["requests_total"] == {}, "failsight was on"

    server.reset()
    wire = Wire(server, case.scenario)
    failsight.instrument_openai()
    try:
        instrumented = run_once(case.run, wire)
    finally:
        failsight.uninstrument_openai()
    gc.collect()  # an abandoned stream is recorded when collected; none may stay in flight

    assert instrumented == plain
    assert server.requests == plain_requests
    observed = observed_metrics(telemetry.registry)
    expected = expected_metrics(server.requests, wire.bodies)
    assert observed == expected, "\n".join(
        f"{key}: recorded {observed[key]!r}, the server answered {expected[key]!r}"
        for key in expected
        if observed[key] != expected[key]
    )


# --------------------------------------------------------------------------- instructor


def _instructor(wire: Wire, mode: str) -> Any:
    import instructor

    return instructor.from_openai(wire.client(), mode=getattr(instructor.Mode, mode))


@case("instructor", "plain", "ok")
def instructor_plain(wire: Wire) -> Any:
    completion = _instructor(wire, "JSON").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], response_model=None
    )
    choice = completion.choices[0]
    return choice.message.content, choice.finish_reason


@case("instructor", "stream", "echo")
def instructor_stream(wire: Wire) -> Any:
    partials = _instructor(wire, "JSON").chat.completions.create_partial(
        model=MODEL, messages=[{"role": "user", "content": JSON_PROMPT}], response_model=Weather
    )
    return [partial.model_dump() for partial in partials]


@case("instructor", "structured", "echo")
def instructor_structured(wire: Wire) -> Any:
    weather = _instructor(wire, "JSON").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": JSON_PROMPT}], response_model=Weather
    )
    return weather.model_dump()


@case("instructor", "tool_call", "tool_calls")
def instructor_tool_call(wire: Wire) -> Any:
    # TOOLS mode: the response model is offered as the one tool, named as the server answers.
    tool = create_model("get_weather", city=(str, ...))
    result = _instructor(wire, "TOOLS").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather?"}], response_model=tool
    )
    return type(result).__name__, result.model_dump()


@case("instructor", "retry_429", "http_429,echo")
def instructor_retry(wire: Wire) -> Any:
    return instructor_structured(wire)


@case("instructor", "soft_length", "length")
def instructor_soft_length(wire: Wire) -> Any:
    return instructor_structured(wire)  # raises IncompleteOutputException


@case("instructor", "tool_args_invalid_then_fixed", "tool_args_invalid,tool_calls")
def instructor_tool_args_invalid(wire: Wire) -> Any:
    return instructor_tool_call(wire)  # instructor re-asks after its validation error


# --------------------------------------------------------------------------- langchain-openai


def _langchain(wire: Wire) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=MODEL, api_key=DUMMY_KEY, base_url=wire.base_url, default_headers=wire.headers,
        http_client=wire.http_client(), http_async_client=wire.async_http_client(),
        max_retries=2, stream_usage=True,
    )  # fmt: skip


def _langchain_message(message: Any) -> Any:
    return (
        message.content,
        message.response_metadata.get("finish_reason"),
        [(call["name"], call["args"]) for call in message.tool_calls],
    )


@case("langchain", "plain", "ok")
def langchain_plain(wire: Wire) -> Any:
    return _langchain_message(_langchain(wire).invoke("hello"))


@case("langchain", "stream", "ok")
def langchain_stream(wire: Wire) -> Any:
    return [chunk.content for chunk in _langchain(wire).stream("hello")]


@case("langchain", "structured", "echo")
def langchain_structured(wire: Wire) -> Any:
    # Default method json_schema: `chat.completions.with_raw_response.parse`.
    return _langchain(wire).with_structured_output(Weather).invoke(JSON_PROMPT).model_dump()


@case("langchain", "tool_call", "tool_calls")
def langchain_tool_call(wire: Wire) -> Any:
    from langchain_core.tools import tool

    return _langchain_message(_langchain(wire).bind_tools([tool(get_weather)]).invoke("weather?"))


@case("langchain", "retry_429", "http_429,ok")
def langchain_retry(wire: Wire) -> Any:
    return langchain_plain(wire)


@case("langchain", "soft_length_structured", "length")
def langchain_soft_length(wire: Wire) -> Any:
    return langchain_structured(wire)  # parse raises openai.LengthFinishReasonError


@case("langchain", "tool_args_not_json", "tool_args_not_json")
def langchain_tool_args_not_json(wire: Wire) -> Any:
    from langchain_core.tools import tool

    message = _langchain(wire).bind_tools([tool(get_weather)]).invoke("weather?")
    broken = [(call["name"], call["args"]) for call in message.invalid_tool_calls]
    return _langchain_message(message), broken  # langchain keeps it as an invalid tool call


@case("langchain", "tool_undeclared", "tool_undeclared")
def langchain_tool_undeclared(wire: Wire) -> Any:
    return langchain_tool_call(wire)  # the application gets a call it cannot dispatch


@case("langchain", "structured_schema_mismatch", "json_schema_mismatch")
def langchain_structured_schema_mismatch(wire: Wire) -> Any:
    return langchain_structured(wire)  # parse() raises a pydantic ValidationError


# --------------------------------------------------------------------------- pydantic-ai


def _pydantic_agent(wire: Wire, **kwargs: Any) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=wire.async_client()))
    return Agent(model, **kwargs)


@case("pydantic_ai", "plain", "ok")
async def pydantic_ai_plain(wire: Wire) -> Any:
    return (await _pydantic_agent(wire).run("hello")).output


@case("pydantic_ai", "stream", "ok")
async def pydantic_ai_stream(wire: Wire) -> Any:
    async with _pydantic_agent(wire).run_stream("hello") as result:
        return [delta async for delta in result.stream_text(delta=True)]


@case("pydantic_ai", "structured", "echo")
async def pydantic_ai_structured(wire: Wire) -> Any:
    from pydantic_ai import NativeOutput

    agent = _pydantic_agent(wire, output_type=NativeOutput(Weather))
    return (await agent.run(JSON_PROMPT)).output.model_dump()


@case("pydantic_ai", "tool_call", "tool_calls,ok")
async def pydantic_ai_tool_call(wire: Wire) -> Any:
    agent = _pydantic_agent(wire, tools=[get_weather])
    result = await agent.run("weather?")
    calls = [
        (part.tool_name, part.args_as_dict())
        for message in result.all_messages()
        for part in message.parts
        if part.part_kind == "tool-call"
    ]
    return result.output, calls


@case("pydantic_ai", "retry_500", "http_500,ok")
async def pydantic_ai_retry(wire: Wire) -> Any:
    return await pydantic_ai_plain(wire)


@case("pydantic_ai", "soft_content_filter", "content_filter")
async def pydantic_ai_soft_content_filter(wire: Wire) -> Any:
    return await pydantic_ai_plain(wire)  # raises ContentFilterError


@case("pydantic_ai", "tool_args_invalid_then_fixed", "tool_args_invalid,tool_calls,ok")
async def pydantic_ai_tool_args_invalid(wire: Wire) -> Any:
    return await pydantic_ai_tool_call(wire)  # pydantic-ai asks again: the retry is judged ok


@case("pydantic_ai", "structured_mismatch_then_fixed", "json_schema_mismatch,json_ok")
async def pydantic_ai_structured_mismatch(wire: Wire) -> Any:
    from pydantic_ai import NativeOutput

    agent = _pydantic_agent(wire, output_type=NativeOutput(Weather))  # one retry by default
    return (await agent.run("weather?")).output.model_dump()


# --------------------------------------------------------------------------- openai-agents


def _agents_agent(wire: Wire, **kwargs: Any) -> Any:
    from agents import Agent, OpenAIResponsesModel, set_tracing_disabled

    set_tracing_disabled(True)
    model = OpenAIResponsesModel(MODEL, openai_client=wire.async_client())
    return Agent(name="assistant", model=model, **kwargs)


@case("openai_agents", "plain", "ok")
async def agents_plain(wire: Wire) -> Any:
    from agents import Runner

    return (await Runner.run(_agents_agent(wire), "hello")).final_output


@case("openai_agents", "stream", "ok")
async def agents_stream(wire: Wire) -> Any:
    # Streamed Responses: `responses.with_streaming_response.create(stream=True)`.
    from agents import Runner

    result = Runner.run_streamed(_agents_agent(wire), "hello")
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    return deltas, result.final_output


@case("openai_agents", "structured", "echo")
async def agents_structured(wire: Wire) -> Any:
    from agents import Runner

    result = await Runner.run(_agents_agent(wire, output_type=Weather), JSON_PROMPT)
    return result.final_output.model_dump()


@case("openai_agents", "tool_call", "tool_calls,ok")
async def agents_tool_call(wire: Wire) -> Any:
    from agents import Runner, function_tool

    result = await Runner.run(_agents_agent(wire, tools=[function_tool(get_weather)]), "weather?")
    calls = [
        (item.raw_item.name, item.raw_item.arguments)
        for item in result.new_items
        if item.type == "tool_call_item"
    ]
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    return result.final_output, calls, outputs


@case("openai_agents", "retry_429", "http_429,ok")
async def agents_retry(wire: Wire) -> Any:
    return await agents_plain(wire)


@case("openai_agents", "soft_length", "length")
async def agents_soft_length(wire: Wire) -> Any:
    return await agents_plain(wire)  # an incomplete Response raises ModelBehaviorError


@case("openai_agents", "tool_undeclared", "tool_undeclared")
async def agents_tool_undeclared(wire: Wire) -> Any:
    return await agents_tool_call(wire)  # raises ModelBehaviorError: tool not found


@case("openai_agents", "tool_args_not_json", "tool_args_not_json,ok")
async def agents_tool_args_not_json(wire: Wire) -> Any:
    return await agents_tool_call(wire)


@case("openai_agents", "structured_schema_mismatch", "json_schema_mismatch")
async def agents_structured_schema_mismatch(wire: Wire) -> Any:
    from agents import Runner

    result = await Runner.run(_agents_agent(wire, output_type=Weather), "weather?")
    return result.final_output.model_dump()  # raises ModelBehaviorError: invalid JSON output


@pytest.mark.parametrize(
    ("scenario", "max_turns", "raised", "failure_class", "reason", "requests"),
    [
        # The loop never ends: openai-agents' MaxTurnsExceeded is the run's end, hard.
        ("tool_calls", 2, "MaxTurnsExceeded", "hard", "agent_max_turns", 2),
        # A tool the agent does not have: ModelBehaviorError, explained by the judged answer.
        ("tool_undeclared", 5, "ModelBehaviorError", "silent", "tool_not_declared", 1),
        # Output against the agent's output type: ModelBehaviorError, explained likewise.
        ("json_schema_mismatch", 5, "ModelBehaviorError", "silent", "output_schema_mismatch", 1),
    ],
)
def test_openai_agents_run_ending_in_a_traced_scope(
    telemetry: Telemetry, fault_server: FaultServer, scenario: str, max_turns: int, raised: str,
    failure_class: str, reason: str, requests: int,
) -> None:  # fmt: skip
    """A failed agent run inside @traced_generation: the logical request gets a bounded reason
    (not `exception`), the application still gets openai-agents' own exception."""
    require_library(LIBRARIES["openai_agents"])
    import asyncio

    from agents import Runner, function_tool

    fault_server.reset()
    wire = Wire(fault_server, scenario)
    output = Weather if scenario.startswith("json") else str
    agent = _agents_agent(wire, tools=[function_tool(get_weather)], output_type=output)

    @failsight.traced_generation(name="agent_run")
    async def run() -> Any:
        return await Runner.run(agent, "weather?", max_turns=max_turns)

    failsight.instrument_openai()
    try:
        with pytest.raises(Exception) as info:
            asyncio.run(run())
    finally:
        failsight.uninstrument_openai()
    assert type(info.value).__name__ == raised
    assert len(fault_server.requests) == requests
    assert telemetry.value("genai_requests_total", call_site="agent_run") == 1
    assert (
        telemetry.value(
            "genai_failures_total",
            call_site="agent_run",
            failure_class=failure_class,
            reason=reason,
        )
        == 1
    )
    assert telemetry.value("genai_failures_total", reason="exception") == 0
    attributes = dict(telemetry.span("agent_run").attributes or {})
    assert attributes["failsight.failure_reason"] == reason


# --------------------------------------------------------------------------- llama-index


def _llama(wire: Wire) -> Any:
    from llama_index.llms.openai import OpenAI

    # llama-index drops `stream_options` from requests that do not stream.
    return OpenAI(
        model=MODEL, api_key=DUMMY_KEY, api_base=wire.base_url, default_headers=wire.headers,
        http_client=wire.http_client(), max_retries=2,
        additional_kwargs={"stream_options": {"include_usage": True}},
    )  # fmt: skip


def _llama_chat(wire: Wire, text: str) -> Any:
    from llama_index.core.llms import ChatMessage

    response = _llama(wire).chat([ChatMessage(role="user", content=text)])
    return response.message.content, response.raw.choices[0].finish_reason


@case("llama_index", "plain", "ok")
def llama_index_plain(wire: Wire) -> Any:
    return _llama_chat(wire, "hello")


@case("llama_index", "stream", "ok")
def llama_index_stream(wire: Wire) -> Any:
    from llama_index.core.llms import ChatMessage

    stream = _llama(wire).stream_chat([ChatMessage(role="user", content="hello")])
    return [chunk.delta for chunk in stream]


@case("llama_index", "structured", "echo")
def llama_index_structured(wire: Wire) -> Any:
    from llama_index.core.prompts import PromptTemplate

    weather = _llama(wire).structured_predict(Weather, PromptTemplate("{text}"), text=JSON_PROMPT)
    return weather.model_dump()


@case("llama_index", "tool_call", "tool_calls")
def llama_index_tool_call(wire: Wire) -> Any:
    from llama_index.core.tools import FunctionTool

    llm = _llama(wire)
    response = llm.chat_with_tools(
        [FunctionTool.from_defaults(fn=get_weather)], user_msg="weather?"
    )
    return [(c.tool_name, c.tool_kwargs) for c in llm.get_tool_calls_from_response(response)]


@case("llama_index", "retry_500", "http_500,ok")
def llama_index_retry(wire: Wire) -> Any:
    return llama_index_plain(wire)


@case("llama_index", "soft_content_filter", "content_filter")
def llama_index_soft_content_filter(wire: Wire) -> Any:
    return llama_index_plain(wire)  # returns an empty message with finish_reason content_filter


@pytest.mark.parametrize(
    ("raw", "scrubbed"),
    [
        ('{"duration": "PT0.04247S"}', '{"duration": "<duration>"}'),
        ("took P1DT2H3M4.5S", "took <duration>"),
        ("'elapsed_seconds': 0.0123", "'elapsed_seconds': <elapsed>"),
        ('"latency_ms"=12', '"latency_ms"=<elapsed>'),
        # Behaviour stays: words and counts that merely look alike are kept.
        ("PTO request, 3 PAGES, P2P", "PTO request, 3 PAGES, P2P"),
        ('"output_tokens": 9', '"output_tokens": 9'),
    ],
)
def test_scrub_normalises_timing_not_behaviour(raw: str, scrubbed: str) -> None:
    assert scrub(raw) == scrubbed
