"""Iterating a watched stream: `for`, `next()`, both mixed, `break`, sync and async.

`for chunk in stream` runs through a generator (like the SDK's own `__iter__`), `next(stream)`
through `__next__`; both read the one underlying iterator and feed the one watcher.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from tests.conftest import Telemetry

import failsight
from failsight.testing import mock_openai_client, stream_body

CHUNKS = 6


@pytest.fixture
def patched(telemetry: Telemetry):  # type: ignore[no-untyped-def]
    failsight.instrument_openai()
    try:
        yield telemetry
    finally:
        failsight.uninstrument_openai()


def requests(t: Telemetry, failure_class: str) -> float:
    return t.value("genai_requests_total", failure_class=failure_class)


def make(is_async: bool = False):  # type: ignore[no-untyped-def]
    body = stream_body(chunks=CHUNKS, finish_reason="stop")
    return mock_openai_client(lambda request: body, is_async=is_async)


def test_for_loop_gets_every_chunk_and_counts_once(patched: Telemetry) -> None:
    stream = make().chat.completions.create(model="m", messages=[], stream=True)
    got = [chunk for chunk in stream]
    assert len(got) == CHUNKS
    assert requests(patched, "none") == 1
    assert patched.value("genai_in_flight_requests") == 0
    assert [chunk for chunk in stream] == []  # run out: nothing more, nothing counted twice
    assert requests(patched, "none") == 1


def test_next_then_for_share_one_iterator(patched: Telemetry) -> None:
    stream = make().chat.completions.create(model="m", messages=[], stream=True)
    first = next(stream)
    rest = list(stream)
    assert len(rest) == CHUNKS - 1 and first.choices[0].delta.content
    assert requests(patched, "none") == 1


def test_break_then_resume_in_a_new_loop(patched: Telemetry) -> None:
    stream = make().chat.completions.create(model="m", messages=[], stream=True)
    for _ in stream:
        break
    gc.collect()  # the first loop's generator is gone: the stream is not ended by that
    assert patched.value("genai_in_flight_requests") == 1
    assert len(list(stream)) == CHUNKS - 1
    assert requests(patched, "none") == 1
    assert patched.value("genai_in_flight_requests") == 0


def test_break_then_close_is_a_cut_off_stream(patched: Telemetry) -> None:
    with make().chat.completions.create(model="m", messages=[], stream=True) as stream:
        for _ in stream:
            break
    assert patched.value("genai_in_flight_requests") == 0
    assert requests(patched, "none") + requests(patched, "soft") + requests(patched, "hard") == 1


def test_async_for_and_anext(patched: Telemetry) -> None:
    async def main() -> tuple[int, int]:
        client = make(is_async=True)
        whole = await client.chat.completions.create(model="m", messages=[], stream=True)
        n = len([chunk async for chunk in whole])
        mixed = await client.chat.completions.create(model="m", messages=[], stream=True)
        await mixed.__anext__()
        m = 1 + len([chunk async for chunk in mixed])
        return n, m

    assert asyncio.run(main()) == (CHUNKS, CHUNKS)
    assert requests(patched, "none") == 2
    assert patched.value("genai_in_flight_requests") == 0


def test_the_sdks_error_reaches_the_loop_unchanged(patched: Telemetry) -> None:
    class Boom(Exception):
        pass

    error = Boom("mid-stream")
    stream = make().chat.completions.create(model="m", messages=[], stream=True)

    def chunks():  # type: ignore[no-untyped-def]
        yield from ()
        raise error

    stream.__wrapped__._iterator = chunks()  # the SDK's iterator fails on the next read
    with pytest.raises(Boom) as caught:
        for _ in stream:
            pass
    assert caught.value is error
    assert requests(patched, "hard") == 1
    assert patched.value("genai_in_flight_requests") == 0
