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
import contextlib
import contextvars
import importlib
import json
import os
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import failsight
from conftest import Telemetry, api_error
from failsight import RetryPolicy, current_generation, traced_generation
from failsight.testing import USAGE, FaultServer, completion_body, mock_openai_client

MESSAGES: Any = [{"role": "user", "content": "hi"}]
NO_SLEEP = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)

Answer = Any  # what a mock handler returns: a body, or (status, body)


def chat(tokens_in: int, tokens_out: int = 0, finish_reason: str = "stop") -> Answer:
    content = None if finish_reason == "content_filter" else "fine"
    usage = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
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
    """The usual raw-HTTP loop: ask again after a content_filter answer."""

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


def test_a_retry_recorded_and_never_made_leaves_the_failure(instrumented: Telemetry) -> None:
    """A loop that records a retry after every failure, the last one included, then gives
    up: the request is named by the failure that was to be retried."""
    client = sdk(chat(10, finish_reason="content_filter"))

    @traced_generation(name="give_up")
    def give_up() -> None:
        ask(client)
        handle().record_retry("content_filter")
        raise ValueError("still filtered")

    with pytest.raises(ValueError):
        give_up()
    assert instrumented.value("genai_failures_total", reason="content_filter") == 1
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 10}


def test_a_policy_rerun_that_returns_is_a_success(telemetry: Telemetry) -> None:
    attempts = []

    @traced_generation(name="cached", retry=NO_SLEEP)
    def cached() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            handle().record_usage(input=7)
            handle().record_finish_reason("length")
            raise api_error(503)
        return "from the cache"  # nothing called, nothing failed

    assert cached() == "from the cache"
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert wasted(telemetry) == {("input", "hard", "unavailable"): 7}


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

    @traced_generation(name="fan_out")
    def fan_out() -> None:
        ask(client)
        with ThreadPoolExecutor(8) as pool:
            for future in [
                pool.submit(contextvars.copy_context().run, ask, client) for _ in range(8)
            ]:
                future.result()

    fan_out()
    assert retries(instrumented) == {"content_filter": 1}
    assert wasted(instrumented) == {("input", "soft", "content_filter"): 10}
    assert instrumented.value("genai_requests_total", failure_class="none") == 1


# ---------------------------------------------------------------------- the rule, at random
#
# A program is a list of logical requests: unscoped calls, and traced scopes whose steps are
# calls (the answer each gets is chosen by the program), usage and retries recorded by hand,
# marked failures, nested scopes re-run by a retry policy, and threads sharing the scope. It
# runs through the public API while `Rule`, a reference model of README "Wasted tokens and
# spend", follows it step by step; the counters must then be exactly the model's.

NON_RETRYABLE = {"bad_request"}  # of the errors the programs meet: the next call is no retry
PRICE = {"input": 1.0, "output": 2.0}  # US dollars per million tokens, for model "m"
ERRORS = {
    "e429": (429, "rate_limited"),
    "e500": (500, "server_error"),
    "e400": (400, "bad_request"),
}
SOFT_ANSWERS = {"content_filter", "length"}
# What the SDK's HTTP client raises when a connection drops (httpx2 under openai 3, else httpx).
READ_ERROR = (
    getattr(importlib.import_module("openai._base_client"), "httpx2", None)
    or importlib.import_module("httpx")
).ReadError


class Node:
    """The model of one traced scope (or unscoped call)."""

    def __init__(self, parent: Node | None) -> None:
        self.parent = parent
        self.inner: tuple[str, str, str, Piece | None] | None = None
        self.failure: tuple[str, str] | None = None
        self.retried: tuple[str, str] | None = None  # a recorded retry's, until more happens

    def within(self, other: Node) -> bool:
        node: Node | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


class Piece:
    """Usage one answer (or one `record_usage`) reported, and whether it was wasted."""

    def __init__(self, owner: Node, tokens_in: int, tokens_out: int) -> None:
        self.owner = owner
        self.usage = {"input": tokens_in, "output": tokens_out}
        self.cost = (tokens_in * PRICE["input"] + tokens_out * PRICE["output"]) / 1e6
        self.wasted = False


class Rule:
    """README "Wasted tokens and spend", as a model: what each event wastes, and counts."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.tokens: dict[str, int] = {}
        self.cost = 0.0
        self.wasted: dict[tuple[str, str, str], int] = {}
        self.wasted_cost: dict[tuple[str, str], float] = {}
        self.retries: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def report(self, node: Node, tokens_in: int, tokens_out: int) -> Piece:
        node.retried = None
        piece = Piece(node, tokens_in, tokens_out)
        self.pieces.append(piece)
        for token_type, n in piece.usage.items():
            self.tokens[token_type] = self.tokens.get(token_type, 0) + n
        self.cost += piece.cost
        return piece

    def waste(self, pieces: list[Piece], failure_class: str, reason: str) -> None:
        for piece in pieces:
            if piece.wasted:
                continue  # each token is wasted at most once
            piece.wasted = True
            for token_type, n in piece.usage.items():
                if n:
                    key = (token_type, failure_class, reason)
                    self.wasted[key] = self.wasted.get(key, 0) + n
            cost_key = (failure_class, reason)
            self.wasted_cost[cost_key] = self.wasted_cost.get(cost_key, 0.0) + piece.cost

    def retry(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def scope_retry(self, node: Node, reason: str, failure_class: str, rerun: bool) -> None:
        """A policy re-run or `record_retry`: what the scope reported since its previous
        retry (nested scopes included); the failed attempt's failure names the request only
        if the retry is recorded and nothing follows it."""
        self.retry(reason)
        self.waste([p for p in self.pieces if p.owner.within(node)], failure_class, reason)
        failed = node.failure or (node.inner[1:3] if node.inner else None)
        node.retried = None if rerun else failed or node.retried
        node.inner = None
        node.failure = None

    def activity(self, node: Node) -> None:
        """A call or a nested scope starts in `node`: a retry recorded there is being made."""
        node.retried = None

    def call_started(self, node: Node, op: str) -> None:
        self.activity(node)
        inner = node.inner
        if inner is None or inner[0] != op:
            return
        node.inner = None
        if inner[2] not in NON_RETRYABLE:
            self.retry(inner[2])
            self.waste([inner[3]] if inner[3] is not None else [], inner[1], inner[2])

    def call_finished(
        self, node: Node, op: str, outcome: tuple[str, str] | None, piece: Piece | None
    ) -> None:
        if outcome is not None:
            node.inner = (op, outcome[0], outcome[1], piece)
        elif node.inner is not None and node.inner[0] == op:
            node.inner = None

    def close(self, node: Node, raised: tuple[str, str] | None) -> tuple[str, str] | None:
        """The scope ends (`raised`: the class and reason of the exception that ended it)."""
        verdict = None
        if raised is not None and raised[1] != "exception":
            verdict = raised
        elif node.failure is not None:
            verdict = node.failure
        elif node.inner is not None:
            verdict = node.inner[1], node.inner[2]
        elif node.retried is not None:
            verdict = node.retried
        elif raised is not None:
            verdict = raised
        if node.parent is not None:
            if verdict is not None:
                node.parent.failure = verdict
            return verdict
        self.requests[verdict[0] if verdict else "none"] = (
            self.requests.get(verdict[0] if verdict else "none", 0) + 1
        )
        if verdict is not None:
            self.waste([p for p in self.pieces if p.owner.within(node)], *verdict)
        return verdict


def broken_stream(tokens_in: int, tokens_out: int) -> Answer:
    """A chat stream that says `stop` and reports its usage, then loses its connection."""

    def event(**fields: Any) -> bytes:
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        return f"data: {json.dumps({**chunk, **fields})}\n\n".encode()

    usage = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    return [
        event(choices=[{"index": 0, "delta": {"content": "fine"}, "finish_reason": None}]),
        event(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        event(choices=[], usage=usage),
        READ_ERROR("the connection dropped"),
    ]


def _answer(request: Any) -> Answer:
    kind, tokens_in, tokens_out = request.headers["x-answer"].split(",")
    if kind in ERRORS:
        return error(ERRORS[kind][0])
    if kind == "break":
        return broken_stream(int(tokens_in), int(tokens_out))
    if request.url.path.endswith("/embeddings"):
        return embedding(int(tokens_in))
    finish_reason = kind if kind in SOFT_ANSWERS else "stop"
    return chat(int(tokens_in), int(tokens_out), finish_reason)


class Program:
    """Runs a program through the public API, keeping `rule` in step."""

    def __init__(self, client: Any, rule: Rule) -> None:
        self.client = client
        self.rule = rule

    def call(self, node: Node, op: str, kind: str, tokens_in: int, tokens_out: int) -> None:
        rule = self.rule
        rule.call_started(node, op)
        headers = {"x-answer": f"{kind},{tokens_in},{tokens_out}"}
        piece = outcome = None
        try:
            if op == "chat" and kind == "break":
                stream = self.client.chat.completions.create(
                    model="m", messages=MESSAGES, extra_headers=headers, stream=True
                )
                with contextlib.suppress(openai.APIConnectionError):
                    for _ in stream:
                        pass
                # The usage chunk came before the break: usage seen is usage counted.
                piece = rule.report(node, tokens_in, tokens_out)
                outcome = ("hard", "connection")
            elif op == "chat":
                self.client.chat.completions.create(
                    model="m", messages=MESSAGES, extra_headers=headers
                )
            else:
                self.client.embeddings.create(model="m", input="hi", extra_headers=headers)
        except openai.APIStatusError:
            outcome = ("hard", ERRORS[kind][1])
        else:
            if kind != "break":
                piece = rule.report(node, tokens_in, tokens_out if op == "chat" else 0)
            if kind in SOFT_ANSWERS:
                outcome = ("soft", kind)
        rule.call_finished(node, op, outcome, piece)

    def steps(self, node: Node, steps: list[Any]) -> None:
        for step in steps:
            # a nested scope that gave up raises: the enclosing code goes on
            with contextlib.suppress(openai.APIStatusError):
                self.step(node, step)

    def step(self, node: Node, step: Any) -> None:
        kind = step[0]
        if kind == "call":
            self.call(node, *step[1:])
        elif kind == "usage":
            handle().record_usage(input=step[1], output=step[2])
            self.rule.report(node, step[1], step[2])
        elif kind == "retry":
            handle().record_retry(step[1])
            failure_class = {"rate_limited": "hard", "mine": "silent"}.get(step[1], "soft")
            self.rule.scope_retry(node, step[1], failure_class, rerun=False)
        elif kind == "mark":
            handle().mark_failure(step[1], step[2])
            node.failure = (step[1], step[2])
        elif kind == "threads":
            self.threads(node, step[1])
        else:
            self.nested(node, step[1], step[2])

    def threads(self, node: Node, work: list[tuple[list[int], bool]]) -> None:
        own = handle()

        def run(amounts: list[int], calls: bool) -> None:
            for n in amounts:
                own.record_usage(input=n, output=1)
            if calls:
                ask_ok = {"x-answer": "ok,1,1"}
                self.client.chat.completions.create(
                    model="m", messages=MESSAGES, extra_headers=ask_ok
                )

        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(run, *w)) for w in work
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for amounts, calls in work:  # in any order, the same sums: one of them retries
            for n in amounts:
                self.rule.report(node, n, 1)
            if calls:
                self.rule.call_started(node, "chat")
                self.rule.call_finished(node, "chat", None, self.rule.report(node, 1, 1))

    def nested(self, parent: Node, attempts: list[list[Any]], gives_up: bool) -> None:
        self.rule.activity(parent)
        node = Node(parent)
        done = 0
        policy = RetryPolicy(max_attempts=len(attempts), sleep=lambda s: None, jitter=lambda: 0)

        @traced_generation(name="nested", retry=policy)
        def body() -> None:
            nonlocal done
            if done:
                self.rule.scope_retry(node, "rate_limited", "hard", rerun=True)
            done += 1
            self.steps(node, attempts[done - 1])
            if done < len(attempts) or gives_up:
                raise api_error(429)

        try:
            body()
        except openai.APIStatusError:
            self.rule.close(node, ("hard", "rate_limited"))
            raise
        self.rule.close(node, None)

    def request(self, request: Any) -> None:
        if request[0] == "unscoped":
            node = Node(None)
            self.call(node, *request[1:])
            self.rule.close(node, None)
            return
        _, first, steps, end = request
        node = Node(None)

        @traced_generation(name="root", operation="chat", model="m")
        def root() -> None:
            self.call(node, *first[1:])  # the provider label is known from the first call on
            self.steps(node, steps)
            if end == "raise":
                raise ValueError("the caller gives up")
            if end is not None:
                handle().mark_failure(*end)
                node.failure = end

        try:
            root()
        except ValueError:
            self.rule.close(node, ("hard", "exception"))
        else:
            self.rule.close(node, None)


def _programs() -> Any:
    tokens = st.integers(0, 40)
    calls = st.one_of(
        st.tuples(
            st.just("call"),
            st.just("chat"),
            st.sampled_from(["ok", "content_filter", "length", "e429", "e500", "e400", "break"]),
            tokens,
            tokens,
        ),
        st.tuples(
            st.just("call"),
            st.just("embeddings"),
            st.sampled_from(["ok", "e429", "e400"]),
            tokens,
            st.just(0),
        ),
    )
    leaves = st.one_of(
        calls,
        calls,
        st.tuples(st.just("usage"), tokens, tokens),
        st.tuples(
            st.just("retry"), st.sampled_from(["rate_limited", "length", "content_filter", "mine"])
        ),
        st.tuples(
            st.just("mark"),
            st.sampled_from(["hard", "soft", "silent"]),
            st.sampled_from(["mine", "length"]),
        ),
        st.tuples(
            st.just("threads"),
            st.lists(
                st.tuples(st.lists(tokens, max_size=30), st.booleans()), min_size=2, max_size=4
            ),
        ),
    )

    def nest(children: Any) -> Any:
        attempts = st.lists(st.lists(children, max_size=4), min_size=1, max_size=3)
        return st.tuples(st.just("nested"), attempts, st.booleans())

    step = st.recursive(leaves, lambda children: st.one_of(children, nest(children)), max_leaves=10)
    ends = st.one_of(
        st.none(),
        st.just("raise"),
        st.tuples(st.sampled_from(["hard", "soft", "silent"]), st.just("mine")),
    )
    scope = st.tuples(st.just("scope"), calls, st.lists(step, max_size=6), ends)
    return st.lists(
        st.one_of(scope, scope, calls.map(lambda c: ("unscoped", *c[1:]))), min_size=1, max_size=3
    )


def _series(t: Telemetry, name: str, own: tuple[str, ...]) -> dict[tuple[Any, ...], float]:
    """A counter's series summed over the labels `own`, keyed by the remaining labels."""
    found: dict[tuple[Any, ...], float] = {}
    for labels in t.series(name):
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in own))
        found[key] = found.get(key, 0.0) + t.value(name, **labels)
    return found


def _check(t: Telemetry, rule: Rule) -> None:
    assert {k: int(v) for k, v in wasted(t).items()} == rule.wasted
    for token_type in ("input", "output"):
        assert t.value("genai_tokens_total", token_type=token_type) == rule.tokens.get(
            token_type, 0
        )
    assert retries(t) == {reason: float(n) for reason, n in rule.retries.items()}
    for failure_class in ("none", "hard", "soft", "silent"):
        assert t.value("genai_requests_total", failure_class=failure_class) == rule.requests.get(
            failure_class, 0
        )
    requests = sum(rule.requests.values())
    assert t.value("genai_request_attempts_sum") == requests + sum(rule.retries.values())
    # wasted <= total, series by series (the labels did not change: each request's are known
    # from its first call on)
    tokens = _series(t, "genai_tokens_total", ())
    for key, n in _series(t, "genai_wasted_tokens_total", ("failure_class", "reason")).items():
        assert n <= tokens.get(key, 0), key
    cost = _series(t, "genai_cost_usd_total", ())
    wasted_cost = _series(t, "genai_wasted_cost_usd_total", ("failure_class", "reason"))
    for key, dollars in wasted_cost.items():
        assert dollars <= cost.get(key, 0.0) * (1 + 1e-9), key
    assert t.value("genai_cost_usd_total") == pytest.approx(rule.cost, rel=1e-9, abs=1e-15)
    for (failure_class, reason), dollars in rule.wasted_cost.items():
        assert t.value(
            "genai_wasted_cost_usd_total", failure_class=failure_class, reason=reason
        ) == pytest.approx(dollars, rel=1e-9, abs=1e-15)


def test_wasted_usage_follows_the_rule_exactly(telemetry: Telemetry) -> None:
    client = mock_openai_client(_answer)
    failsight.instrument_openai()

    @given(_programs())
    @settings(
        max_examples=int(os.environ.get("FAILSIGHT_EXAMPLES", "50")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def check(program: list[Any]) -> None:
        registry = CollectorRegistry()
        failsight.configure(
            registry=registry, tracer_provider=telemetry.provider, prices={"m": PRICE}
        )
        t = Telemetry(registry, telemetry.exporter, telemetry.provider)
        rule = Rule()
        runner = Program(client, rule)
        for request in program:
            runner.request(request)
        _check(t, rule)

    try:
        check()
    finally:
        failsight.uninstrument_openai()
