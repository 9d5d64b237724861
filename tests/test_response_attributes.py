"""What failsight writes from a response into span attributes: the response's model and id,
streamed or not, with a client key a server echoed there masked (the fault server's
`key_echo` puts the caller's key in both), and model names never mistaken for keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import failsight
from conftest import Telemetry
from failsight import _redact
from failsight.testing import FaultServer

KEY = "sk-live-echoed-0123456789abcdefXYZ"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def forget_key() -> Iterator[None]:
    yield
    _redact._forget_secrets(KEY)


def call(client: Any, api: str, model: str, stream: bool) -> None:
    if api == "chat":
        result = client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
    elif api == "completions":
        result = client.completions.create(model=model, prompt="hi", stream=stream)
    else:
        result = client.responses.create(model=model, input="hi", stream=stream)
    if stream:
        for _item in result:
            pass


def client_span(t: Telemetry) -> ReadableSpan:
    (span,) = [s for s in t.spans() if s.kind == SpanKind.CLIENT]
    return span


def strings(span: ReadableSpan) -> list[str]:
    """Every string failsight put on the span: attribute values, event attribute values."""
    found = [v for v in (span.attributes or {}).values() if isinstance(v, str)]
    for event in span.events:
        found += [v for v in (event.attributes or {}).values() if isinstance(v, str)]
    return found


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_a_key_echoed_in_model_and_id_is_masked(
    instrumented: Telemetry, server: FaultServer, forget_key: None, api: str, stream: bool
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    call(client, api, "gpt-4o-mini@key_echo", stream)
    span = client_span(instrumented)
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.model"] == "***"
    prefix = "resp_" if api == "responses" else "chatcmpl-" if api == "chat" else "cmpl-"
    assert span.attributes["gen_ai.response.id"] == prefix + "***"
    assert not [text for text in strings(span) if KEY in text or KEY[8:] in text]


@pytest.mark.parametrize("lib", ["requests", "httpx"])
def test_a_key_echoed_to_a_raw_http_call_is_masked(
    telemetry: Telemetry, server: FaultServer, forget_key: None, lib: str
) -> None:
    import httpx

    failsight.instrument_http()
    try:
        body = {"model": "gpt-4o-mini@key_echo", "messages": MESSAGES}
        url = f"{server.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {KEY}"}
        if lib == "requests":
            answer = requests.post(url, json=body, headers=headers, timeout=5).json()
        else:
            answer = httpx.post(url, json=body, headers=headers, timeout=5).json()
    finally:
        failsight.uninstrument_http()
    assert answer["model"] == KEY  # the caller's answer is untouched
    span = client_span(telemetry)
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.model"] == "***"
    assert not [text for text in strings(span) if KEY in text]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_model_names_are_kept_as_the_server_sent_them(
    instrumented: Telemetry, server: FaultServer, api: str, stream: bool
) -> None:
    """No pattern is applied: a model name shaped like a key prefix is a model name."""
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-0123", max_retries=0)
    model = "my-task-classifier-v2-2024-05-13"
    call(client, api, model, stream)
    span = client_span(instrumented)
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.model"] == model
    assert str(span.attributes["gen_ai.response.id"]).startswith(
        "resp_" if api == "responses" else "c"
    )
