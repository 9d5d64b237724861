"""Wasted usage is exact: each token wasted once, by the rule of README "Wasted tokens and
spend", whatever mixes calls, failures, recorded retries, nested scopes, retry policies and
threads.

The scenarios answer from an in-process mock transport (`failsight.testing`), so each answer
reports the usage a test chooses; one of them runs over a socket against the fault server.
The property test at the end drives random programs through the public API and compares the
counters with a reference model of the rule written here.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pytest

import failsight
from conftest import Telemetry
from failsight import RetryPolicy, current_generation, traced_generation
from failsight.testing import USAGE, FaultServer, completion_body, mock_openai_client

MESSAGES: Any = [{"role": "user", "content": "hi"}]
NO_SLEEP = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)

Answer = Any  # what a mock handler returns: a body, or (status, body)


def chat(tokens_in: int, tokens_out: int = 0, finish_reason: str = "stop") -> Answer:
    content = None if finish_reason == "content_filter" else "fine"
    usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
             "total_tokens": tokens_in + tokens_out}  # fmt: skip
    return completion_body(model="m", content=content, finish_reason=finish_reason, usage=usage)


def embedding(tokens_in: int) -> Answer:
    return {
        "object": "list",
        "model": "m",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
    }


def error(status: int) -> Answer:
    return (status, {"error": {"message": "no", "type": "error", "param": None, "code": None}})


def replies(*answers: Answer) -> Callable[[Any], Answer]:
    """A mock handler answering `answers` in order (one per request)."""
    queue = deque(answers)
    lock = threading.Lock()

    def handler(request: Any) -> Answer:
        with lock:
            return queue.popleft()

    return handler


def sdk(*answers: Answer) -> Any:
    return mock_openai_client(replies(*answers))


def ask(client: Any) -> Any:
    return client.chat.completions.create(model="m", messages=MESSAGES)


def wasted(t: Telemetry) -> dict[tuple[str, str, str], float]:
    """Every non-zero wasted-token series, by (token_type, failure_class, reason)."""
    found: dict[tuple[str, str, str], float] = {}
    for labels in t.series("genai_wasted_tokens_total"):
        key = (labels["token_type"], labels["failure_class"], labels["reason"])
        found[key] = found.get(key, 0.0) + t.value("genai_wasted_tokens_total", **labels)
    return {key: value for key, value in found.items() if value}


def retries(t: Telemetry) -> dict[str, float]:
    found = {labels["reason"]: 0.0 for labels in t.series("genai_retries_total")}
    return {reason: t.value("genai_retries_total", reason=reason) for reason in found}


def handle() -> failsight.Generation:
    found = current_generation()
    assert found is not None
    return found


# ---------------------------------------------------------------------- counted twice


def test_a_recorded_retry_wastes_the_failed_call_once(instrumented: Telemetry) -> None:
    client = sdk(chat(10, finish_reason="content_filter"), chat(3))

    @traced_generation(name="site")
    def site() -> str:
        assert ask(client).choices[0].finish_reason == "content_filter"
        handle().record_retry("content_filter")
        return str(ask(client).choices[0].message.content)

    assert site() == "fine"
    assert instrumented.value("genai_tokens_total", token_type="input") == 13
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 10}
    # The recorded retry is the retry: the next call is that retry, not a second one.
    assert retries(instrumented) == {"content_filter": 1}
    assert instrumented.value("genai_request_attempts_sum") == 2
    assert instrumented.value("genai_requests_total", failure_class="none") == 1


def test_two_recorded_retries_in_a_row_waste_once(instrumented: Telemetry) -> None:
    client = sdk(chat(10, finish_reason="content_filter"), chat(3))

    @traced_generation(name="site")
    def site() -> None:
        ask(client)
        handle().record_retry("content_filter")
        handle().record_retry("rate_limited")  # nothing reported since the previous retry
        ask(client)

    site()
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 10}
    assert retries(instrumented) == {"content_filter": 1, "rate_limited": 1}
    assert instrumented.value("genai_request_attempts_sum") == 3


# ---------------------------------------------------------------------- an enclosing scope's share


def test_an_inner_policy_retry_wastes_nothing_of_the_outer_scope(
    instrumented: Telemetry,
) -> None:
    client = sdk(chat(5), error(429), chat(7))

    @traced_generation(name="inner", retry=NO_SLEEP)
    def inner() -> Any:
        return ask(client)

    @traced_generation(name="outer")
    def outer() -> Any:
        ask(client)
        return inner()

    outer()
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert retries(instrumented) == {"rate_limited": 1}
    assert instrumented.value("genai_tokens_total", token_type="input") == 12
    assert wasted(instrumented) == {}


def test_an_inner_policy_retry_wastes_its_own_attempt_only(instrumented: Telemetry) -> None:
    client = sdk(chat(5), chat(4), error(503), chat(6), embedding(2))

    @traced_generation(name="inner", retry=NO_SLEEP)
    def inner() -> None:
        ask(client)
        client.embeddings.create(model="m", input="hi")  # 503 the first time

    @traced_generation(name="outer")
    def outer() -> None:
        ask(client)
        inner()

    outer()
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert wasted(instrumented) == {("input", "hard", "unavailable"): 4}


def test_a_recorded_retry_in_a_nested_scope_keeps_the_outer_share(
    instrumented: Telemetry,
) -> None:
    @traced_generation(name="inner")
    def inner() -> None:
        handle().record_usage(input=4)
        handle().record_retry("length")
        handle().record_usage(input=6)

    @traced_generation(name="outer")
    def outer() -> None:
        handle().record_usage(input=5)
        inner()
        handle().record_retry("content_filter")  # the outer scope's: all it spent so far

    outer()
    assert wasted(instrumented) == {
        ("input", "soft", "length"): 4,
        ("input", "soft", "content_filter"): 11,
    }


async def test_interleaved_async_generators_waste_their_own_shares(
    telemetry: Telemetry,
) -> None:
    """Two nested generator scopes open at once: a retry in one, or in the enclosing scope,
    wastes what that scope spent since its previous retry, never a sibling's."""

    def source(tokens: int, retry_at: int | None) -> Callable[[], AsyncIterator[int]]:
        @traced_generation(name=f"source{tokens}")
        async def items() -> AsyncIterator[int]:
            for n in range(3):
                handle().record_usage(input=tokens)
                if n == retry_at:
                    handle().record_retry("length")
                yield n

        return items

    @traced_generation(name="outer")
    async def outer() -> None:
        own = handle()
        first, second = source(1, retry_at=2)(), source(10, retry_at=None)()
        async for _pair in _zip(first, second):
            own.record_usage(input=100)
            if _pair == (0, 0):
                own.record_retry("content_filter")

    await outer()
    assert wasted(telemetry) == {
        # the outer retry after the first round: 100 + 1 + 10
        ("input", "soft", "content_filter"): 111,
        # source1's retry in its third round: its own two tokens since the outer retry
        ("input", "soft", "length"): 2,
    }


async def _zip(*generators: AsyncIterator[int]) -> AsyncIterator[tuple[int, ...]]:
    while True:
        try:
            yield tuple([await anext(g) for g in generators])
        except StopAsyncIteration:
            return


# ---------------------------------------------------------------------- a retry replaces an attempt


def test_a_policy_rerun_after_a_failed_inner_scope_ends_as_its_last_attempt(
    instrumented: Telemetry,
) -> None:
    client = sdk(chat(4), error(429), chat(4), chat(4))

    @traced_generation(name="inner")
    def inner() -> None:
        ask(client)
        ask(client)  # 429 the first time: the inner scope ends failed, and raises

    @traced_generation(name="outer", retry=NO_SLEEP)
    def outer() -> None:
        inner()

    outer()
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert instrumented.value("genai_failures_total") == 0
    assert wasted(instrumented) == {("input", "hard", "rate_limited"): 4}
    assert instrumented.value("genai_tokens_total", token_type="input") == 12


def test_a_recorded_retry_after_a_recorded_failure_ends_as_its_last_attempt(
    telemetry: Telemetry,
) -> None:
    """The seed article's raw-HTTP loop: ask again after a content_filter answer."""

    @traced_generation(name="raw")
    def raw() -> None:
        for tokens, finish_reason in ((10, "content_filter"), (3, "stop")):
            handle().record_usage(input=tokens)
            handle().record_finish_reason(finish_reason)
            if finish_reason == "content_filter":
                handle().record_retry("content_filter")

    raw()
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert wasted(telemetry) == {("input", "soft", "content_filter"): 10}


def test_an_inner_scope_that_ended_failed_is_retried_by_hand(instrumented: Telemetry) -> None:
    client = sdk(chat(4, finish_reason="content_filter"), chat(5))

    @traced_generation(name="inner")
    def inner() -> str | None:
        answer = ask(client)
        return answer.choices[0].message.content  # type: ignore[no-any-return]

    @traced_generation(name="outer")
    def outer() -> str | None:
        if inner() is None:
            handle().record_retry("content_filter")
            return inner()
        return None

    assert outer() == "fine"
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 4}


def test_over_a_socket_a_recorded_retry_wastes_once(
    instrumented: Telemetry, server: FaultServer
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)

    @traced_generation(name="socket")
    def site() -> None:
        client.chat.completions.create(model="gpt-4o-mini@content_filter", messages=MESSAGES)
        handle().record_retry("content_filter")
        client.chat.completions.create(model="gpt-4o-mini@ok", messages=MESSAGES)

    site()
    # The fault server's answers report USAGE: 11 input (3 cached), 9 output (4 reasoning).
    assert wasted(instrumented) == {
        ("input", "soft", "content_filter"): USAGE["prompt_tokens"],
        ("output", "soft", "content_filter"): USAGE["completion_tokens"],
        ("reasoning", "soft", "content_filter"): USAGE["reasoning_tokens"],
        ("cached_input", "soft", "content_filter"): USAGE["cached_tokens"],
    }
    assert retries(instrumented) == {"content_filter": 1}
    assert instrumented.value("genai_requests_total", failure_class="none") == 1


# ---------------------------------------------------------------------- threads


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch often, as on a loaded machine: lost updates show at once."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
async def test_threads_sharing_a_scope_lose_no_usage(telemetry: Telemetry) -> None:
    @traced_generation(name="threads")
    async def scope() -> None:
        own = handle()

        def work() -> None:
            for _ in range(25_000):
                own.record_usage(input=1, output=1)

        await asyncio.gather(*(asyncio.to_thread(work) for _ in range(4)))
        own.mark_failure("silent", "bad_output")

    await scope()
    assert telemetry.value("genai_tokens_total", token_type="input") == 100_000
    assert wasted(telemetry) == {
        ("input", "silent", "bad_output"): 100_000,
        ("output", "silent", "bad_output"): 100_000,
    }
    span = telemetry.span("threads")
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 100_000


@pytest.mark.usefixtures("busy_switching")
def test_threads_retrying_one_failed_call_count_one_retry(instrumented: Telemetry) -> None:
    client = sdk(chat(10, finish_reason="content_filter"), *(chat(1) for _ in range(8)))
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    @traced_generation(name="fan_out")
    def fan_out() -> None:
        ask(client)
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(contextvars.copy_context().run, ask, client)
                           for _ in range(8)]:  # fmt: skip
                future.result()

    fan_out()
    assert retries(instrumented) == {"content_filter": 1}
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 10}
    assert instrumented.value("genai_requests_total", failure_class="none") == 1
