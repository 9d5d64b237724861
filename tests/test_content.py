"""Content capture: prompts and outputs on spans only when asked, masked and bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import failsight
from conftest import Telemetry
from failsight import _config
from failsight.testing import OK_TEXT, FaultServer

INPUT, OUTPUT, SYSTEM = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)
KEY = "sk-proj-" + "Zq9_xW-2" * 6


@pytest.fixture
def client(server: FaultServer) -> Iterator[openai.OpenAI]:
    failsight.instrument_openai()
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as sdk:
        yield sdk
    failsight.uninstrument_openai()


def capture(telemetry: Telemetry, **options: Any) -> None:
    failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider, **options)


def client_span(telemetry: Telemetry) -> dict[str, Any]:
    spans = [s for s in telemetry.spans() if s.kind.name == "CLIENT"]
    assert len(spans) == 1
    return dict(spans[0].attributes or {})


def chat(client: openai.OpenAI, **extra: Any) -> Any:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"My key is {KEY}, summarise this."},
    ]
    return client.chat.completions.create(model="gpt-4o-mini", messages=messages, **extra)


def test_off_by_default(telemetry: Telemetry, client: openai.OpenAI) -> None:
    chat(client)
    attributes = client_span(telemetry)
    assert INPUT not in attributes and OUTPUT not in attributes


def test_chat_prompt_and_output_in_the_convention_shape(
    telemetry: Telemetry, client: openai.OpenAI
) -> None:
    capture(telemetry, capture_content=True)
    chat(client)
    attributes = client_span(telemetry)
    messages = json.loads(attributes[INPUT])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["parts"] == [{"type": "text", "content": "Answer briefly."}]
    user_text = messages[1]["parts"][0]["content"]
    assert KEY not in user_text and "sk-***" in user_text  # masked
    output = json.loads(attributes[OUTPUT])
    assert output == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": OK_TEXT}],
            "finish_reason": "stop",
        }
    ]


def test_streams_record_the_assembled_output(telemetry: Telemetry, client: openai.OpenAI) -> None:
    capture(telemetry, capture_content=True)
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in chat(client, stream=True) if chunk.choices
    )
    output = json.loads(client_span(telemetry)[OUTPUT])
    assert output[0]["parts"][0]["content"] == text == OK_TEXT
    assert output[0]["finish_reason"] == "stop"


def test_completions_and_responses(telemetry: Telemetry, client: openai.OpenAI) -> None:
    capture(telemetry, capture_content=True)
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    client.responses.create(model="gpt-4o", input="Say hi", instructions="Be terse.")
    spans = {s.attributes["openai.api.type"]: dict(s.attributes) for s in telemetry.spans()}  # type: ignore[index]
    completion = spans["completions"]
    assert json.loads(completion[INPUT]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}
    ]
    assert json.loads(completion[OUTPUT])[0]["parts"][0]["content"] == OK_TEXT
    responses = spans["responses"]
    assert json.loads(responses[SYSTEM]) == [{"type": "text", "content": "Be terse."}]
    assert json.loads(responses[OUTPUT])[0]["parts"][0]["content"] == OK_TEXT


def test_each_attribute_is_bounded(telemetry: Telemetry, client: openai.OpenAI) -> None:
    capture(telemetry, capture_content=True, max_content_length=60)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "word " * 1000}]
    )
    attributes = client_span(telemetry)
    assert len(attributes[INPUT]) <= 61 and len(attributes[OUTPUT]) <= 61


@pytest.mark.parametrize(("env", "option", "captured"), [
    ("true", None, True), ("TRUE", None, True), ("false", None, False), ("", None, False),
    ("true", False, False), ("false", True, True),
])  # fmt: skip
def test_the_opentelemetry_switch_is_honoured(
    telemetry: Telemetry,
    client: openai.OpenAI,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    option: bool | None,
    captured: bool,
) -> None:
    monkeypatch.setenv(_config.CAPTURE_CONTENT_ENV, env)
    capture(telemetry, capture_content=option)
    chat(client)
    assert (INPUT in client_span(telemetry)) is captured


def test_sampled_out_spans_capture_nothing(
    telemetry: Telemetry, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failsight import _content

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("content was read for a span nobody records")

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    failsight.configure(
        registry=telemetry.registry,
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        capture_content=True,
    )
    monkeypatch.setattr(_content, "input_messages", fail)
    monkeypatch.setattr(_content, "output_messages", fail)
    chat(client)
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
