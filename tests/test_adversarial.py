"""Specific bugs, one test each: what the engine must do where the easy implementation slips.

(a) an async generator whose scope cannot open still forwards asend/athrow/aclose;
(b) client subclasses named against their kind are patched by what they are, not their name;
(c) a call after a non-retryable client error is not a retry; after 429/5xx it is;
(d) `asyncio.wait_for` timing out an SDK call in a scope is a `timeout`;
(e) clients derived with `with_options()`/`copy()` stay instrumented;
(f) `with_raw_response` over a 200 body that cannot be used: the caller's view is unchanged;
(g) `with_streaming_response` + `parse()` streams are judged like plain streams;
(h) `with_raw_response.parse` ending in `length`: soft/length, the same LengthFinishReasonError;
(i) keys in error messages (known prefix or the client's own key) never reach a span;
(j) a wrong `mark_failure` argument warns (FailsightWarning) instead of passing silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from opentelemetry import trace

import failsight
from conftest import Telemetry, sdk_httpx
from failsight import current_generation, traced_generation
from failsight.testing import OK_TEXT, USAGE, FaultServer, mock_openai_client, stream_body
from openai_calls import MESSAGES, assert_one_request, async_client, headers, sync_client

# ---------------------------------------------------------------------- helpers


class BrokenTracerProvider(trace.TracerProvider):
    """A tracer provider whose tracer cannot start a span: no scope can open."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return BrokenTracer()


class BrokenTracer(trace.Tracer):
    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("tracer.start_span is broken")

    @contextlib.contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        raise RuntimeError("tracer.start_as_current_span is broken")
        yield  # pragma: no cover


@contextlib.contextmanager
def sdk_patched() -> Iterator[None]:
    failsight.instrument_openai()
    try:
        yield
    finally:
        failsight.uninstrument_openai()


@dataclass
class Seen:
    """What a caller saw: a value, or an exception and the step it surfaced at."""

    value: Any = None
    error: BaseException | None = None
    step: str = ""

    def same_as(self, other: Seen) -> None:
        assert self.step == other.step, (self, other)
        if other.error is None:
            assert self.error is None, f"failsight made the caller see {self.error!r}"
            assert self.value == other.value
        else:
            assert self.error is not None, f"expected {other.error!r}, the caller got {self.value}"
            assert type(self.error) is type(other.error)
            assert str(self.error) == str(other.error)


async def close(client: Any) -> None:
    """Close an SDK client in the loop that opened it (not later, from its finaliser)."""
    closed = client.close()
    if inspect.isawaitable(closed):
        await closed


def comparable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return (type(value).__qualname__, value.model_dump())
    return value


def all_span_text(t: Telemetry) -> str:
    """Every string failsight put on any span: names, attributes, events, status."""
    parts: list[str] = []
    for span in t.spans():
        parts.append(span.name)
        parts.append(str(span.status.description))
        for value in (span.attributes or {}).values():
            parts.append(str(value))
        for event in span.events:
            parts.append(event.name)
            for value in (event.attributes or {}).values():
                parts.append(str(value))
    return "\n".join(parts)


# ---------------------------------------------------------------------- (a)


@pytest.mark.usefixtures("swallow_internal_errors")
async def test_a_async_generator_forwards_everything_when_the_scope_cannot_open(
    telemetry: Telemetry,
) -> None:
    failsight.configure(registry=telemetry.registry, tracer_provider=BrokenTracerProvider())
    closed: list[list[Any]] = []

    async def echo() -> Any:
        received: list[Any] = []
        try:
            while True:
                try:
                    value = yield len(received)
                except KeyError:
                    received.append("thrown")
                    continue
                received.append(value)
        finally:
            closed.append(received)

    async def conversation(agen: Any) -> list[Any]:
        log = [await agen.__anext__()]
        log.append(await agen.asend("x"))
        log.append(await agen.athrow(KeyError("k")))
        log.append(await agen.asend("y"))
        await agen.aclose()
        return log

    async def uncaught(agen: Any, error: BaseException) -> BaseException:
        await agen.__anext__()
        with pytest.raises(ValueError) as caught:
            await agen.athrow(error)
        return caught.value

    bare_log = await conversation(echo())
    bare_closed = closed.copy()
    closed.clear()
    traced = traced_generation(name="agen")(echo)
    traced_log = await conversation(traced())
    assert traced_log == bare_log == [0, 1, 2, 3]
    assert closed == bare_closed == [["x", "thrown", "y"]]  # aclose reached the generator

    closed.clear()
    error = ValueError("thrown in by the caller")
    assert await uncaught(traced(), error) is error  # athrow reached it, and came back out
    assert closed == [[]]

    # Metrics never depend on spans: both logical requests counted, neither left in flight.
    assert telemetry.value("genai_requests_total", call_site="agen") == 2
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert telemetry.value("genai_failures_total", failure_class="hard", reason="exception") == 1
    assert telemetry.value("genai_in_flight_requests") == 0


# ---------------------------------------------------------------------- (b)


class LLMClient(openai.AsyncOpenAI):
    """An async client whose name does not start with "Async"."""


class AsyncReadyOpenAI(openai.OpenAI):
    """A sync client whose name starts with "Async"."""


@pytest.mark.parametrize("cls", [LLMClient, AsyncReadyOpenAI], ids=lambda c: c.__name__)
async def test_b_client_subclasses_are_patched_by_kind_not_name(
    telemetry: Telemetry, server: FaultServer, cls: type
) -> None:
    client = cls(base_url=server.base_url, api_key="sk-test-key-123456", max_retries=0)
    failsight.instrument_openai(client)
    try:
        result = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
        )
        if isinstance(client, openai.AsyncOpenAI):
            assert inspect.isawaitable(result)
            result = await result
        elif inspect.isawaitable(result):
            result.close()  # type: ignore[union-attr]
            pytest.fail("a sync client's create() returned a coroutine")
    finally:
        failsight.uninstrument_openai(client)
        await close(client)
    assert isinstance(result, openai.types.chat.ChatCompletion)
    assert result.choices[0].message.content == OK_TEXT
    assert_one_request(telemetry, "chat", "gpt-4o-mini", "none", None)
    assert telemetry.value("genai_finish_reasons_total", finish_reason="stop") == 1
    assert telemetry.value("genai_tokens_total", token_type="input") == USAGE["prompt_tokens"]


# ---------------------------------------------------------------------- (c)


@pytest.mark.parametrize(
    ("status", "retried"),
    [(400, False), (401, False), (403, False), (404, False), (409, False), (422, False),
     (429, True), (500, True)],
)  # fmt: skip
def test_c_only_a_call_after_a_retryable_failure_is_a_retry(
    telemetry: Telemetry, server: FaultServer, status: int, retried: bool
) -> None:
    client = sync_client(server)
    failsight.instrument_openai(client)

    @traced_generation(name="batch")
    def batch() -> list[str | None]:
        """The caller catches the error and moves on to the next prompt."""
        answers: list[str | None] = []
        for scenario in (f"http_{status}", "ok"):
            try:
                completion = client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers(scenario)
                )
                answers.append(completion.choices[0].message.content)
            except openai.APIStatusError as exc:
                assert exc.status_code == status
                answers.append(None)
        return answers

    try:
        assert batch() == [None, OK_TEXT]
    finally:
        failsight.uninstrument_openai(client)
    t = telemetry
    assert t.value("genai_requests_total", call_site="batch") == 1
    scope = t.span("batch")
    retry_events = [e for s in t.spans() for e in s.events if e.name == "retry"]
    if retried:
        reason = {429: "rate_limited", 500: "server_error"}[status]
        assert t.value("genai_retries_total") == 1
        assert t.value("genai_retries_total", reason=reason) == 1
        assert t.value("genai_request_attempts_sum") == 2
        assert scope.attributes["failsight.attempts"] == 2
        assert len(retry_events) == 1
    else:
        assert t.value("genai_retries_total") == 0, t.series("genai_retries_total")
        assert t.value("genai_request_attempts_sum") == 1
        assert t.value("genai_request_attempts_bucket", le="1.0") == 1
        assert scope.attributes["failsight.attempts"] == 1
        assert scope.attributes["failsight.retry_count"] == 0
        assert retry_events == []


# ---------------------------------------------------------------------- (d)


async def test_d_wait_for_timing_out_an_sdk_call_is_a_timeout(
    telemetry: Telemetry, server: FaultServer
) -> None:
    client = async_client(server)  # the server answers `timeout` after 1 s

    @traced_generation(name="bounded")
    async def bounded() -> Any:
        return await asyncio.wait_for(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("timeout")
            ),
            timeout=0.1,
        )

    with sdk_patched(), pytest.raises(TimeoutError):
        await bounded()
    await close(client)
    t = telemetry
    assert t.value("genai_requests_total") == 1
    assert t.value("genai_requests_total", call_site="bounded", failure_class="hard") == 1
    assert t.value("genai_failures_total", reason="exception") == 0, t.series(
        "genai_failures_total"
    )
    assert t.value("genai_failures_total", failure_class="hard", reason="timeout") == 1
    assert t.value("genai_in_flight_requests") == 0
    assert t.span("bounded").attributes["failsight.failure_reason"] == "timeout"


# ---------------------------------------------------------------------- (e)


def test_e_clients_derived_from_an_instrumented_client_are_recorded(
    telemetry: Telemetry, server: FaultServer
) -> None:
    client = sync_client(server)
    failsight.instrument_openai(client)
    try:
        for index, derived in enumerate(
            (client, client.with_options(timeout=5), client.copy(), client.with_options(), client)
        ):
            completion = derived.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
            )
            assert completion.choices[0].message.content == OK_TEXT
            assert telemetry.value("genai_requests_total") == index + 1, f"call {index}"
    finally:
        failsight.uninstrument_openai(client)
    assert telemetry.value("genai_requests_total", failure_class="none") == 5
    assert telemetry.value("genai_in_flight_requests") == 0


# ---------------------------------------------------------------------- (f)

UNUSABLE_BODIES: dict[str, bytes] = {
    "malformed_json": b'{"choices": [',
    "non_utf8": b'{"id": "caf\xe9", "object": "chat.completion", "choices": []}',
    "json_list": b"[1, 2, 3]",
    "error_object": json.dumps(
        {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    ).encode(),
}


def raw_body_client(body: bytes, is_async: bool) -> Any:
    """An SDK client whose every request gets HTTP 200, application/json, with `body`."""
    http = sdk_httpx()

    def respond(request: Any) -> Any:
        return http.Response(200, content=body, headers={"content-type": "application/json"})

    options: dict[str, Any] = {
        "api_key": "sk-mock",
        "base_url": "http://mock.local/v1",
        "max_retries": 0,
    }
    if is_async:
        return openai.AsyncOpenAI(
            http_client=openai.DefaultAsyncHttpxClient(transport=http.MockTransport(respond)),
            **options,
        )
    return openai.OpenAI(
        http_client=openai.DefaultHttpxClient(transport=http.MockTransport(respond)), **options
    )


async def raw_create_then_parse(client: Any, extra_headers: dict[str, str] | None = None) -> Seen:
    seen = Seen()
    try:
        seen.step = "create"
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=extra_headers or {}
        )
        if inspect.isawaitable(raw):
            raw = await raw
        seen.step = "parse"
        parsed = raw.parse()
        if inspect.isawaitable(parsed):
            parsed = await parsed
        seen.value = comparable(parsed)
        seen.step = "done"
    except Exception as exc:
        seen.error = exc
    await close(client)
    return seen


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("body", [*UNUSABLE_BODIES, "fault_server_invalid_json"])
async def test_f_raw_response_with_an_unusable_200_body(
    telemetry: Telemetry, server: FaultServer, body: str, mode: str
) -> None:
    is_async = mode == "async"

    def make_client() -> Any:
        if body == "fault_server_invalid_json":
            return async_client(server) if is_async else sync_client(server)
        return raw_body_client(UNUSABLE_BODIES[body], is_async)

    extra = headers("invalid_json") if body == "fault_server_invalid_json" else None
    bare = await raw_create_then_parse(make_client(), extra)
    with sdk_patched():
        traced = await raw_create_then_parse(make_client(), extra)
    traced.same_as(bare)
    assert_one_request(telemetry, "chat", "gpt-4o-mini", "hard", "invalid_response")


# ---------------------------------------------------------------------- (g)


@dataclass(frozen=True)
class StreamCase:
    scenario: str  # a fault-server scenario, or "quiet_cut" (mock: no finish reason, [DONE])
    failure_class: str
    reason: str | None
    finish_reason: str | None
    tokens: bool  # the server reports usage
    first_token: bool  # content arrived, so a time to first token exists


STREAM_CASES = [
    StreamCase("ok", "none", None, "stop", True, True),
    StreamCase("content_filter", "soft", "content_filter", "content_filter", True, False),
    StreamCase("drop_mid_stream", "hard", "connection", None, False, True),
    StreamCase("quiet_cut", "hard", "connection", None, False, True),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", STREAM_CASES, ids=lambda c: c.scenario)
async def test_g_streaming_response_parse_is_judged_like_a_stream(
    telemetry: Telemetry, server: FaultServer, case: StreamCase, mode: str
) -> None:
    is_async = mode == "async"
    if case.scenario == "quiet_cut":
        client = mock_openai_client(
            lambda request: stream_body(finish_reason=None), is_async=is_async
        )
    else:
        client = async_client(server) if is_async else sync_client(server)
    chunks: list[Any] = []
    failed: BaseException | None = None
    with sdk_patched():
        manager = client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers(case.scenario) if case.scenario != "quiet_cut" else {},
        )
        try:
            if is_async:
                async with manager as response:
                    stream = await response.parse()
                    async for chunk in stream:
                        chunks.append(chunk)
            else:
                with manager as response:
                    for chunk in response.parse():
                        chunks.append(chunk)
        except Exception as exc:
            failed = exc
    await close(client)
    assert chunks
    assert (failed is not None) == (case.scenario == "drop_mid_stream"), failed
    assert_one_request(telemetry, "chat", "gpt-4o-mini", case.failure_class, case.reason)
    t = telemetry
    if case.finish_reason is not None:
        assert t.value("genai_finish_reasons_total", finish_reason=case.finish_reason) == 1
    else:
        assert t.value("genai_finish_reasons_total") == 0
    if case.tokens:
        assert t.value("genai_tokens_total", token_type="input") == USAGE["prompt_tokens"]
        assert t.value("genai_tokens_total", token_type="output") == USAGE["completion_tokens"]
    if case.first_token:
        assert t.value("genai_time_to_first_token_seconds_count") == 1


# ---------------------------------------------------------------------- (h)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_h_raw_response_parse_ending_in_length(
    telemetry: Telemetry, server: FaultServer, mode: str
) -> None:
    is_async = mode == "async"

    async def call() -> Seen:
        client = async_client(server) if is_async else sync_client(server)
        seen = Seen()
        try:
            seen.step = "create"
            raw = client.chat.completions.with_raw_response.parse(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("length")
            )
            if inspect.isawaitable(raw):
                raw = await raw
            seen.step = "parse"
            parsed = raw.parse()
            if inspect.isawaitable(parsed):
                parsed = await parsed
            seen.value = comparable(parsed)
            seen.step = "done"
        except Exception as exc:
            seen.error = exc
        await close(client)
        return seen

    bare = await call()
    assert isinstance(bare.error, openai.LengthFinishReasonError) and bare.step == "parse"
    with sdk_patched():
        traced = await call()
    traced.same_as(bare)
    assert isinstance(traced.error, openai.LengthFinishReasonError)
    assert_one_request(telemetry, "chat", "gpt-4o-mini", "soft", "length")
    assert telemetry.value("genai_finish_reasons_total", finish_reason="length") == 1


# ---------------------------------------------------------------------- (i)

PARTIAL_KEY = "sk-proj-AbC1" + "*" * 40 + "Q7vZ"  # as OpenAI echoes a wrong key
FULL_KEY = "sk-proj-" + "Xy9_aB-3" * 6  # a whole project key
CLIENT_KEY = "my-secret-key-1234567890"  # no known prefix: only the client knows it is a key


def unauthorized(message: str) -> tuple[int, dict[str, Any]]:
    return 401, {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


@pytest.mark.parametrize("scoped", [False, True], ids=["unscoped", "scoped"])
def test_i_keys_in_error_messages_never_reach_a_span(
    telemetry: Telemetry, server: FaultServer, scoped: bool
) -> None:
    def echo_the_key(request: Any) -> Any:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return unauthorized(f"Incorrect API key provided: {key}. Check the key {key} and retry.")

    calls: list[tuple[Any, dict[str, str]]] = [
        (sync_client(server), headers("http_401")),  # "sk-fake****1234"
        (mock_openai_client(lambda r: unauthorized(f"Incorrect API key provided: {PARTIAL_KEY}.")),
         {}),
        (mock_openai_client(lambda r: unauthorized(f"Incorrect API key provided: {FULL_KEY}.")),
         {}),
        (mock_openai_client(echo_the_key, api_key=CLIENT_KEY), {}),
    ]  # fmt: skip

    def call_all() -> None:
        for client, extra in calls:
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, extra_headers=extra
                )

    with sdk_patched():
        if scoped:
            # Each in its own scope, whose own exception event carries the message too.
            for client, extra in calls:

                @traced_generation(name="auth")
                def one(client: Any = client, extra: dict[str, str] = extra) -> Any:
                    return client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, extra_headers=extra
                    )

                with pytest.raises(openai.AuthenticationError):
                    one()
        else:
            call_all()
    assert telemetry.value("genai_failures_total", reason="unauthorized") == len(calls)
    recorded = all_span_text(telemetry)
    assert "Incorrect API key provided" in recorded  # the messages are recorded, masked
    secrets = ("sk-fake****1234", "sk-fake", PARTIAL_KEY, "sk-proj-AbC1", "Q7vZ", FULL_KEY,
               "Xy9_aB-3", CLIENT_KEY, "1234567890")  # fmt: skip
    leaked = [secret for secret in secrets if secret in recorded]
    assert leaked == [], f"reached a span: {leaked}"


# ---------------------------------------------------------------------- (j)


@pytest.mark.usefixtures("swallow_internal_errors")
def test_j_a_wrong_mark_failure_warns(telemetry: Telemetry) -> None:
    from failsight._guard import FailsightWarning

    assert issubclass(FailsightWarning, UserWarning)

    @traced_generation(name="marked")
    def marked() -> str:
        handle = current_generation()
        assert handle is not None
        handle.mark_failure("medium", "x")
        return "ok"

    with pytest.warns(FailsightWarning, match="medium"):
        assert marked() == "ok"
    assert telemetry.value("genai_requests_total", call_site="marked") == 1
    assert telemetry.value("genai_in_flight_requests") == 0


VIEWS = ["with_raw_response", "with_streaming_response"]


def _call(view_name: str, view: Any) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "extra_headers": headers("ok"),
    }
    if view_name == "with_raw_response":
        view.create(**kwargs).parse()
    else:
        with view.create(**kwargs) as response:
            response.parse()


@pytest.mark.parametrize("view_name", VIEWS)
def test_e_raw_views_taken_before_the_patch_are_recorded_then_restored(
    telemetry: Telemetry, server: FaultServer, view_name: str
) -> None:
    client = sync_client(server)
    taken = getattr(client.chat.completions, view_name)  # held by the caller before the patch
    before = taken.create
    failsight.instrument_openai(client)
    try:
        _call(view_name, taken)
    finally:
        failsight.uninstrument_openai(client)
    assert_one_request(telemetry, "chat", "gpt-4o-mini", "none", None)
    assert taken.create is before  # restored exactly
    _call(view_name, taken)
    assert telemetry.value("genai_requests_total") == 1  # nothing recorded after uninstrument


@pytest.mark.parametrize("view_name", VIEWS)
def test_e_raw_views_built_while_patched_are_forgotten_on_uninstrument(
    telemetry: Telemetry, server: FaultServer, view_name: str
) -> None:
    client = sync_client(server)
    failsight.instrument_openai(client)
    try:
        during = getattr(client.chat.completions, view_name)
        _call(view_name, during)
    finally:
        failsight.uninstrument_openai(client)
    after = getattr(client.chat.completions, view_name)
    assert after is not during  # rebuilt around the SDK's own method
    _call(view_name, after)
    assert telemetry.value("genai_requests_total") == 1
