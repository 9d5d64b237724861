"""One finish path: whichever recording step raises, every request still ends exactly once.

Each internal step (start, record, per chunk, end, the account's verdict, the span's
attributes) is made to raise in turn, on every path: SDK call, SDK stream, raw call, raw
SSE, and the scope in its four shapes. Each time: the caller's answer is unchanged, the
span ended once, `genai_in_flight_requests` is back to 0 and the request counted once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import failsight
from conftest import Telemetry
from failsight import _account, _engine, _spans, _stream_judge
from failsight.testing import FaultServer, completion_body, mock_openai_client, stream_body

MESSAGES = [{"role": "user", "content": "hi"}]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected telemetry bug")


# step -> (object, attribute) made to raise
STEPS: dict[str, tuple[Any, str]] = {
    "start": (_account.Account, "note_call"),
    "record": (_engine.Call, "_record"),
    "chunk": (_stream_judge.StreamJudge, "chunk"),
    "end": (_stream_judge.StreamJudge, "outcome"),
    "verdict": (_account.Account, "_resolve"),
    "span": (_spans, "error_attributes"),
    "usage": (_account.Account, "add_usage"),
    "call_end": (_account.Account, "call_finished"),
}


def _chat_client() -> Any:
    return mock_openai_client(lambda request: completion_body())


def _stream_client() -> Any:
    return mock_openai_client(lambda request: stream_body())


def sdk_call() -> Any:
    return (
        _chat_client()
        .chat.completions.create(model="m", messages=MESSAGES)
        .choices[0]
        .message.content
    )


def sdk_stream() -> Any:
    stream = _stream_client().chat.completions.create(model="m", messages=MESSAGES, stream=True)
    return [c.choices[0].delta.content for c in stream if c.choices]


def _raw_url(server: FaultServer) -> str:
    return f"{server.base_url}/chat/completions"


def raw_call(server: FaultServer) -> Any:
    body = {"model": "m", "messages": MESSAGES}
    return httpx.post(_raw_url(server), json=body, timeout=10).json()["choices"][0]["finish_reason"]


def raw_sse(server: FaultServer) -> Any:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", _raw_url(server), json=body, timeout=10) as response:
        return [line for line in response.iter_lines() if line][-1]


def scope_sync() -> Any:
    @failsight.traced_generation(name="site")
    def run() -> Any:
        return sdk_call()

    return run()


def scope_async() -> Any:
    @failsight.traced_generation(name="site")
    async def run() -> Any:
        return sdk_call()

    return asyncio.run(run())


def scope_generator() -> Any:
    @failsight.traced_generation(name="site")
    def run() -> Iterator[Any]:
        yield sdk_call()
        yield from sdk_stream()

    return list(run())


def scope_async_generator() -> Any:
    @failsight.traced_generation(name="site")
    async def run() -> Any:
        yield sdk_call()
        for item in sdk_stream():
            yield item

    async def consume() -> list[Any]:
        return [item async for item in run()]

    return asyncio.run(consume())


PATHS: dict[str, tuple[Callable[..., Any], bool]] = {
    # name -> (run, needs the fault server)
    "sdk_call": (sdk_call, False),
    "sdk_stream": (sdk_stream, False),
    "raw_call": (raw_call, True),
    "raw_sse": (raw_sse, True),
    "scope_sync": (scope_sync, False),
    "scope_async": (scope_async, False),
    "scope_generator": (scope_generator, False),
    "scope_async_generator": (scope_async_generator, False),
}


@pytest.fixture
def wired(telemetry: Telemetry) -> Iterator[Telemetry]:
    failsight.instrument_openai()
    failsight.instrument_http()
    yield telemetry
    failsight.uninstrument_http()
    failsight.uninstrument_openai()


def _run(path: str, server: FaultServer) -> Any:
    run, needs_server = PATHS[path]
    return run(server) if needs_server else run()


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_request_ends_once_whatever_step_raises(
    wired: Telemetry, server: FaultServer, monkeypatch: pytest.MonkeyPatch, path: str, step: str
) -> None:
    expected = _run(path, server)  # the same path with no fault: the caller's answer
    baseline_requests = wired.value("genai_requests_total")
    baseline_spans = len(wired.spans())
    assert baseline_requests == 1 and wired.value("genai_in_flight_requests") == 0

    owner, attribute = STEPS[step]
    monkeypatch.setattr(owner, attribute, _boom)
    assert _run(path, server) == expected
    monkeypatch.undo()

    assert wired.value("genai_requests_total") == 2, "the request was not counted exactly once"
    assert wired.value("genai_in_flight_requests") == 0
    spans = wired.spans()[baseline_spans:]
    assert len(spans) == baseline_spans, [s.name for s in spans]  # each span ended, once
    assert len({id(s) for s in spans}) == len(spans)


def test_the_faults_are_felt(wired: Telemetry, server: FaultServer, monkeypatch: pytest.MonkeyPatch,
                             swallow_internal_errors: None) -> None:  # fmt: skip
    """The injected steps run on these paths: each fault is counted as a telemetry error."""
    for step, (owner, attribute) in STEPS.items():
        before = wired.value("genai_telemetry_errors_total")
        with monkeypatch.context() as patch:
            patch.setattr(owner, attribute, _boom)
            for path in ("sdk_stream", "scope_generator", "raw_sse"):
                _run(path, server)
        assert wired.value("genai_telemetry_errors_total") > before, step
    json.dumps(STEPS, default=str)  # the table stays printable in a failure message
