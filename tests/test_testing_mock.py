"""failsight.testing's in-process doubles: what the real SDK makes of them."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from failsight.testing import completion_body, mock_openai_client, stream_body


def test_completion_and_stream_bodies_parse_in_the_sdk() -> None:
    client = mock_openai_client(
        lambda request: (
            stream_body(chunks=4, finish_reason="length")
            if b'"stream":true' in request.content
            else completion_body(model="m1", content=None, finish_reason="content_filter")
        )
    )
    reply = client.chat.completions.create(model="m1", messages=[])
    assert (reply.model, reply.choices[0].finish_reason) == ("m1", "content_filter")
    assert reply.choices[0].message.content is None
    assert reply.usage is not None and reply.usage.prompt_tokens == 11
    chunks = list(client.chat.completions.create(model="m1", messages=[], stream=True))
    assert len(chunks) == 4
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, "length"]


def test_status_replies_raise_the_sdk_error() -> None:
    client = mock_openai_client(lambda request: (429, {"error": {"message": "slow down"}}))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[])


async def test_async_client() -> None:
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request.url.path)
        return completion_body(usage=None)

    client = mock_openai_client(handler, is_async=True)
    reply = await client.chat.completions.create(model="m", messages=[])
    assert reply.usage is None and seen == ["/v1/chat/completions"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_list_streams_its_bytes_then_raises_where_an_exception_stands(
    is_async: bool,
) -> None:
    import importlib

    import openai._base_client as base

    http = getattr(base, "httpx2", None) or importlib.import_module("httpx")
    first, *_ = stream_body(chunks=2).split(b"\n\n")
    client = mock_openai_client(
        lambda request: [first + b"\n\n", http.ReadError("dropped")], is_async=is_async
    )
    messages: Any = [{"role": "user", "content": "hi"}]
    seen = []
    with pytest.raises(openai.APIConnectionError):
        if is_async:
            async for chunk in await client.chat.completions.create(
                model="m", messages=messages, stream=True
            ):
                seen.append(chunk)
        else:
            for chunk in client.chat.completions.create(model="m", messages=messages, stream=True):
                seen.append(chunk)
    assert len(seen) == 1
