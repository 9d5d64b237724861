"""In-process doubles of an OpenAI-compatible API, for unit tests and benchmarks.

Where `FaultServer` answers over a real socket, these answer inside the client: an
openai SDK client on the HTTP library's `MockTransport`, and the wire-format bodies to
answer with. No network, no thread.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from ._payloads import OK_TEXT

__all__ = ["completion_body", "mock_openai_client", "stream_body"]

_USAGE: Mapping[str, int] = {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}


def completion_body(
    *,
    model: str = "gpt-4o-mini",
    content: str | None = OK_TEXT,
    finish_reason: str = "stop",
    usage: Mapping[str, int] | None = _USAGE,
) -> dict[str, Any]:
    """A chat completion as the API sends it.

    >>> completion_body(finish_reason="content_filter", content=None)["choices"][0]["message"]
    {'role': 'assistant', 'content': None}
    """
    body: dict[str, Any] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content},
            }
        ],
    }
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def stream_body(
    *, model: str = "gpt-4o-mini", chunks: int = 5, finish_reason: str | None = "stop"
) -> bytes:
    """A streamed chat completion (SSE): `chunks` chunks, the last with `finish_reason`."""
    events = []
    for i in range(chunks):
        last = i == chunks - 1
        chunk = {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "" if last else "word "},
                    "finish_reason": finish_reason if last else None,
                }
            ],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n")
    return ("".join(events) + "data: [DONE]\n\n").encode()


def mock_openai_client(
    handler: Callable[[Any], Any], *, is_async: bool = False, **options: Any
) -> Any:
    """An `openai.OpenAI` (or `AsyncOpenAI`) whose requests `handler(request)` answers.

    The handler returns a dict (200, JSON), bytes (200, SSE), or `(status, dict | bytes)`;
    a list of bytes and exceptions streams the bytes as SSE and raises each exception where it
    stands (a stream that breaks: `[chunk, chunk, httpx.ReadError("dropped")]`).

    >>> client = mock_openai_client(lambda request: completion_body())
    >>> client.chat.completions.create(model="m", messages=[]).choices[0].finish_reason
    'stop'
    """
    import openai
    import openai._base_client as base

    # openai 3.x runs on httpx2, older majors on httpx.
    http = getattr(base, "httpx2", None) or importlib.import_module("httpx")

    class Parts(http.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, parts: list[Any]) -> None:
            self.parts = parts

        def __iter__(self) -> Any:
            for part in self.parts:
                if isinstance(part, BaseException):
                    raise part
                yield part

    class AsyncParts(http.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, parts: list[Any]) -> None:
            self.parts = parts

        async def __aiter__(self) -> Any:
            for part in self.parts:
                if isinstance(part, BaseException):
                    raise part
                yield part

    def respond(request: Any) -> Any:
        reply = handler(request)
        status, body = reply if isinstance(reply, tuple) else (200, reply)
        if isinstance(body, list):
            stream = AsyncParts(body) if is_async else Parts(body)
            return http.Response(
                status, stream=stream, headers={"content-type": "text/event-stream"}
            )
        if isinstance(body, (bytes, bytearray)):
            return http.Response(
                status, content=bytes(body), headers={"content-type": "text/event-stream"}
            )
        return http.Response(status, json=body)

    options.setdefault("api_key", "sk-mock")
    options.setdefault("base_url", "http://mock.local/v1")
    options.setdefault("max_retries", 0)
    if is_async:
        transport = http.MockTransport(respond)
        return openai.AsyncOpenAI(
            http_client=openai.DefaultAsyncHttpxClient(transport=transport), **options
        )
    return openai.OpenAI(
        http_client=openai.DefaultHttpxClient(transport=http.MockTransport(respond)), **options
    )
