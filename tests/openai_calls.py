"""Calls of every patched endpoint through the real openai SDK, sync and async, by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import openai

from conftest import Telemetry
from failsight.testing import FaultServer

SCENARIO = "X-Failsight-Scenario"
MESSAGES = [{"role": "user", "content": "hello"}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def headers(scenario: str) -> dict[str, str]:
    return {SCENARIO: scenario}


async def drain(result: Any) -> Any:
    """Consume a stream (sync or async) the way a caller would; plain results pass through."""
    if hasattr(result, "__anext__"):
        return [item async for item in result]
    if hasattr(result, "__next__"):
        return list(result)
    return result


async def maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# name → (operation, model, call(client, scenario) returning the SDK's result or a stream)
CALLS: dict[str, tuple[str, str, Callable[[Any, str], Any]]] = {
    "chat": (
        "chat",
        "gpt-4o-mini",
        lambda c, s: c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers(s)
        ),
    ),
    "chat_stream": (
        "chat",
        "gpt-4o-mini",
        lambda c, s: c.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers(s),
        ),
    ),
    "chat_parse": (
        "chat",
        "gpt-4o-mini",
        lambda c, s: c.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers(s)
        ),
    ),
    "completions": (
        "text_completion",
        "gpt-3.5-turbo-instruct",
        lambda c, s: c.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="hello", extra_headers=headers(s)
        ),
    ),
    "completions_stream": (
        "text_completion",
        "gpt-3.5-turbo-instruct",
        lambda c, s: c.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="hello", stream=True, extra_headers=headers(s)
        ),
    ),
    "responses": (
        "chat",
        "gpt-4o-mini",
        lambda c, s: c.responses.create(
            model="gpt-4o-mini", input="hello", extra_headers=headers(s)
        ),
    ),
    "responses_stream": (
        "chat",
        "gpt-4o-mini",
        lambda c, s: c.responses.create(
            model="gpt-4o-mini", input="hello", stream=True, extra_headers=headers(s)
        ),
    ),
    "embeddings": (
        "embeddings",
        "text-embedding-3-small",
        lambda c, s: c.embeddings.create(
            model="text-embedding-3-small", input="hello", extra_headers=headers(s)
        ),
    ),
    "images_generate": (
        "image_generation",
        "dall-e-3",
        lambda c, s: c.images.generate(model="dall-e-3", prompt="a cat", extra_headers=headers(s)),
    ),
    "images_edit": (
        "image_generation",
        "dall-e-2",
        lambda c, s: c.images.edit(
            model="dall-e-2", image=("cat.png", PNG), prompt="a hat", extra_headers=headers(s)
        ),
    ),
    "images_variation": (
        "image_generation",
        "dall-e-2",
        lambda c, s: c.images.create_variation(
            model="dall-e-2", image=("cat.png", PNG), extra_headers=headers(s)
        ),
    ),
    "videos_create_and_poll": (
        "video_generation",
        "sora-2",
        lambda c, s: c.videos.create_and_poll(
            model="sora-2", prompt="a cat", extra_headers=headers(s)
        ),
    ),
    "videos_create": (
        "video_generation",
        "sora-2",
        lambda c, s: c.videos.create(model="sora-2", prompt="a cat", extra_headers=headers(s)),
    ),
}

# (call name, scenario, failure_class, reason) for every endpoint: success, a hard failure
# and each soft failure it can produce.
CASES: list[tuple[str, str, str, str | None]] = [
    ("chat", "ok", "none", None),
    ("chat", "tool_calls", "none", None),
    ("chat", "http_400", "hard", "bad_request"),
    ("chat", "http_401", "hard", "unauthorized"),
    ("chat", "content_filter", "soft", "content_filter"),
    ("chat", "length", "soft", "length"),
    ("chat", "empty_content", "soft", "empty_content"),
    ("chat", "refusal", "soft", "refusal"),
    ("chat", "invalid_json", "hard", "invalid_response"),
    ("chat_stream", "ok", "none", None),
    ("chat_stream", "http_429", "hard", "rate_limited"),
    ("chat_stream", "content_filter", "soft", "content_filter"),
    ("chat_stream", "length", "soft", "length"),
    ("chat_stream", "empty_content", "soft", "empty_content"),
    ("chat_stream", "refusal", "soft", "refusal"),
    ("chat_stream", "drop_mid_stream", "hard", "connection"),
    ("chat_parse", "ok", "none", None),
    ("chat_parse", "http_503", "hard", "unavailable"),
    ("chat_parse", "content_filter", "soft", "content_filter"),
    ("chat_parse", "length", "soft", "length"),
    ("completions", "ok", "none", None),
    ("completions", "http_404", "hard", "not_found"),
    ("completions", "length", "soft", "length"),
    ("completions", "content_filter", "soft", "content_filter"),
    ("completions_stream", "ok", "none", None),
    ("completions_stream", "length", "soft", "length"),
    ("responses", "ok", "none", None),
    ("responses", "http_500", "hard", "server_error"),
    ("responses", "length", "soft", "length"),
    ("responses", "content_filter", "soft", "content_filter"),
    ("responses", "refusal", "soft", "refusal"),
    ("responses_stream", "ok", "none", None),
    ("responses_stream", "length", "soft", "length"),
    ("responses_stream", "content_filter", "soft", "content_filter"),
    ("embeddings", "ok", "none", None),
    ("embeddings", "http_422", "hard", "unprocessable"),
    ("images_generate", "ok", "none", None),
    ("images_generate", "image_b64", "none", None),
    ("images_generate", "image_revised_prompt", "none", None),
    ("images_generate", "http_403", "hard", "forbidden"),
    ("images_generate", "image_empty", "soft", "image_filtered"),
    ("images_edit", "ok", "none", None),
    ("images_edit", "image_empty", "soft", "image_filtered"),
    ("images_variation", "ok", "none", None),
    ("images_variation", "http_502", "hard", "bad_gateway"),
]

# Video jobs: the SDK has a videos resource from openai 2.x on.
VIDEO_CASES: list[tuple[str, str, str, str | None]] = [
    ("videos_create_and_poll", "video_ok", "none", None),
    ("videos_create_and_poll", "video_succeed", "none", None),
    ("videos_create_and_poll", "video_failed", "soft", "video_failed"),
    ("videos_create_and_poll", "video_cancelled", "soft", "video_cancelled"),
    ("videos_create_and_poll", "http_409", "hard", "conflict"),
    ("videos_create", "video_ok", "none", None),
    ("videos_create", "http_504", "hard", "gateway_timeout"),
]


def sync_client(server: FaultServer, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-key-123456", **options)


def async_client(server: FaultServer, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-key-123456", **options)


async def invoke(name: str, client: Any, scenario: str) -> Any:
    """Run one named call to completion (streams drained); returns result or raised error."""
    try:
        return await drain(await maybe_await(CALLS[name][2](client, scenario)))
    except Exception as exc:  # e.g. the SDK's own JSONDecodeError on an undecodable body
        return exc


def assert_one_request(
    t: Telemetry, operation: str, model: str, failure_class: str, reason: str | None
) -> None:
    labels = {"operation": operation, "model": model, "call_site": "unscoped"}
    assert t.value("genai_requests_total") == 1, t.series("genai_requests_total")
    assert t.value("genai_requests_total", failure_class=failure_class, **labels) == 1
    assert t.value("genai_request_attempts_count", **labels) == 1
    assert t.value("genai_in_flight_requests") == 0
    if reason is None:
        assert t.value("genai_failures_total") == 0
    else:
        assert t.value("genai_failures_total", reason=reason, failure_class=failure_class) == 1


async def run_case(
    t: Telemetry,
    server: FaultServer,
    mode: str,
    name: str,
    scenario: str,
    failure_class: str,
    reason: str | None,
) -> None:
    """One named call in `mode` (sync/async), then exactly one logical request as expected."""
    client = sync_client(server) if mode == "sync" else async_client(server)
    await invoke(name, client, scenario)
    operation, model, _ = CALLS[name]
    assert_one_request(t, operation, model, failure_class, reason)
