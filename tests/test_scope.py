"""@traced_generation and current_generation(): every failure class on every function kind."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import traceback
import typing
from collections.abc import Callable
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

import failsight
from conftest import Telemetry, api_error, connection_error
from failsight import RetryPolicy, current_generation, traced_generation
from failsight._account import Account
from failsight._metrics import CappedMetric
from failsight.validators import json_output, min_words, non_empty, one_of

KINDS = ["sync", "async", "generator", "async_generator"]


def make(kind: str, body: Callable[[], Any], **options: Any) -> Callable[..., Any]:
    """A traced function of `kind` whose work is `body()` (a generator yields its result)."""
    options.setdefault("name", "site")
    if kind == "sync":

        def sync_fn() -> Any:
            return body()

        return traced_generation(**options)(sync_fn)
    if kind == "async":

        async def async_fn() -> Any:
            await asyncio.sleep(0)
            return body()

        return traced_generation(**options)(async_fn)
    if kind == "generator":

        def gen_fn() -> Any:
            yield body()

        return traced_generation(**options)(gen_fn)

    async def agen_fn() -> Any:
        await asyncio.sleep(0)
        yield body()

    return traced_generation(**options)(agen_fn)


async def run(kind: str, fn: Callable[..., Any]) -> Any:
    if kind == "sync":
        return fn()
    if kind == "async":
        return await fn()
    if kind == "generator":
        return "".join(fn())
    return "".join([item async for item in fn()])


def assert_counted(
    t: Telemetry, failure_class: str, reason: str | None, site: str = "site"
) -> None:
    assert t.value("genai_requests_total", call_site=site) == 1
    assert t.value("genai_requests_total", call_site=site, failure_class=failure_class) == 1
    if reason is None:
        assert t.value("genai_failures_total", call_site=site) == 0
    else:
        assert t.value("genai_failures_total", failure_class=failure_class, reason=reason) == 1
    assert t.value("genai_request_duration_seconds_count", failure_class=failure_class) == 1
    assert t.value("genai_request_attempts_count", call_site=site) == 1
    assert t.value("genai_in_flight_requests") == 0
    span = t.span(site)
    assert span.kind == SpanKind.INTERNAL
    assert span.attributes["failsight.failure_class"] == failure_class
    assert span.attributes["failsight.call_site"] == site
    if reason is None:
        assert span.status.status_code == StatusCode.UNSET
        assert "failsight.failure_reason" not in span.attributes
    else:
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == reason
        assert span.attributes["failsight.failure_reason"] == reason


# --------------------------------------------------------------------- each failure class


@pytest.mark.parametrize("kind", KINDS)
async def test_success(telemetry: Telemetry, kind: str) -> None:
    fn = make(kind, lambda: "fine", validate=[non_empty()])
    assert await run(kind, fn) == "fine"
    assert_counted(telemetry, "none", None)
    assert telemetry.span("site").attributes["failsight.attempts"] == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("make_error", "reason"),
    [
        (lambda: api_error(429), "rate_limited"),
        (lambda: api_error(400, param="temperature", code="invalid_value"), "bad_request"),
        (lambda: api_error(503), "unavailable"),
        (lambda: connection_error(timeout=True), "timeout"),
        (lambda: connection_error(), "connection"),
        (lambda: KeyError("mine"), "exception"),
    ],
)
async def test_hard(telemetry: Telemetry, kind: str, make_error: Any, reason: str) -> None:
    error = make_error()

    def body() -> Any:
        raise error

    with pytest.raises(type(error)) as caught:
        await run(kind, make(kind, body))
    assert caught.value is error
    assert_counted(telemetry, "hard", reason)
    span = telemetry.span("site")
    assert span.attributes["error.type"] == (
        f"openai.{type(error).__name__}" if isinstance(error, openai.OpenAIError) else "KeyError"
    )
    assert [event.name for event in span.events] == ["exception"]


async def test_hard_error_details_on_span(telemetry: Telemetry) -> None:
    def body() -> Any:
        raise api_error(400, param="temperature", code="invalid_value", message="sk-abcdef1234567")

    with pytest.raises(openai.BadRequestError):
        await run("sync", make("sync", body))
    attributes = telemetry.span("site").attributes
    assert attributes["http.response.status_code"] == 400
    assert attributes["failsight.error.param"] == "temperature"
    assert attributes["failsight.error.code"] == "invalid_value"
    assert attributes["failsight.request_id"] == "req_123"
    message = telemetry.span("site").events[0].attributes["exception.message"]
    assert "sk-abcdef1234567" not in message and "sk-***" in message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reason", ["content_filter", "length"])
async def test_soft_from_finish_reason(telemetry: Telemetry, kind: str, reason: str) -> None:
    def body() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_finish_reason(reason)
        return ""

    assert await run(kind, make(kind, body)) == ""
    assert_counted(telemetry, "soft", reason)
    assert telemetry.value("genai_finish_reasons_total", finish_reason=reason) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_soft_from_sdk_exception(telemetry: Telemetry, kind: str) -> None:
    error = openai.ContentFilterFinishReasonError()

    def body() -> Any:
        raise error

    with pytest.raises(openai.ContentFilterFinishReasonError):
        await run(kind, make(kind, body))
    assert_counted(telemetry, "soft", "content_filter")


@pytest.mark.parametrize("kind", KINDS)
async def test_soft_marked_by_handle(telemetry: Telemetry, kind: str) -> None:
    def body() -> str:
        handle = current_generation()
        assert handle is not None
        handle.mark_failure("soft", "image_filtered")
        return "x"

    await run(kind, make(kind, body))
    assert_counted(telemetry, "soft", "image_filtered")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("validator", "output", "reason"),
    [
        (non_empty(), "   ", "empty_output"),
        (json_output(), "not json", "invalid_json"),
        (one_of("positive", "negative", "neutral"), "It is positive!", "unexpected_label"),
        (min_words(10), "three short words", "too_short"),
    ],
)
async def test_silent(
    telemetry: Telemetry, kind: str, validator: Any, output: str, reason: str
) -> None:
    assert await run(kind, make(kind, lambda: output, validate=[validator])) == output
    assert_counted(telemetry, "silent", reason)


@pytest.mark.parametrize("kind", KINDS)
async def test_custom_validator_name_is_reason(telemetry: Telemetry, kind: str) -> None:
    def Mentions_Price(result: Any) -> bool:
        return "$" in result

    await run(kind, make(kind, lambda: "no price", validate=Mentions_Price))
    assert_counted(telemetry, "silent", "mentions_price")


async def test_validators_pass(telemetry: Telemetry) -> None:
    fn = make("sync", lambda: ' {"label": "x"} ', validate=[json_output(), non_empty()])
    await run("sync", fn)
    assert_counted(telemetry, "none", None)
    fn2 = make("sync", lambda: "Neutral", validate=[one_of("positive", "neutral")], name="b")
    await run("sync", fn2)
    assert telemetry.value("genai_requests_total", call_site="b", failure_class="none") == 1


def test_validators_read_sdk_objects() -> None:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletion

    completion = construct_type(
        type_=ChatCompletion,
        value={
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "[1, 2]"},
                }
            ],
        },
    )
    assert json_output()(completion) is True
    assert min_words(3)(completion) is False
    assert non_empty()({"choices": []}) is False
    assert non_empty()({"answer": 1}) is True


# --------------------------------------------------------------------- precedence


async def test_recorded_soft_failure_explains_a_generic_exception(telemetry: Telemetry) -> None:
    """Common code raises ValueError after seeing content_filter: the reason is the filter."""

    def body() -> Any:
        handle = current_generation()
        assert handle is not None
        handle.record_finish_reason("content_filter")
        raise ValueError("Generation blocked by content filter")

    with pytest.raises(ValueError):
        await run("sync", make("sync", body))
    assert_counted(telemetry, "soft", "content_filter")


async def test_video_left_open_by_an_exception_times_out(telemetry: Telemetry) -> None:
    def body() -> Any:
        handle = current_generation()
        assert handle is not None
        handle.record_video_status("queued")
        raise TimeoutError("Video task did not complete within 600s")

    with pytest.raises(TimeoutError):
        await run("sync", make("sync", body, operation="video_generation"))
    assert_counted(telemetry, "soft", "video_timeout")
    assert telemetry.value("genai_video_jobs_total", status="timed_out") == 1


@pytest.mark.parametrize(
    ("status", "job_status", "reason"),
    [
        ("succeed", "succeeded", None),
        ("succeeded", "succeeded", None),
        ("failed", "failed", "video_failed"),
        ("cancelled", "cancelled", "video_cancelled"),
    ],
)
async def test_video_status(
    telemetry: Telemetry, status: str, job_status: str, reason: str | None
) -> None:
    def body() -> str:
        handle = current_generation()
        assert handle is not None
        for step in ("queued", "in_progress", status):
            handle.record_video_status(step)
        return "done"

    await run("sync", make("sync", body, operation="video_generation", model="kling"))
    assert_counted(telemetry, "soft" if reason else "none", reason)
    assert telemetry.value("genai_video_jobs_total", status=job_status, model="kling") == 1
    assert telemetry.value("genai_video_job_duration_seconds_count", status=job_status) == 1


# --------------------------------------------------------------------- retries


def sequence(*outcomes: Any) -> Callable[[], Any]:
    """A body that raises or returns the next outcome on each call."""
    calls = iter(outcomes)

    def body() -> Any:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    return body


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_retry_recovers(telemetry: Telemetry, kind: str) -> None:
    waits: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(
        max_attempts=3, sleep=waits.append, async_sleep=async_sleep, jitter=lambda: 0.5
    )
    fn = make(kind, sequence(api_error(429), api_error(500), "ok"), retry=policy)
    assert await run(kind, fn) == "ok"
    assert_counted(telemetry, "none", None)
    assert waits == [1.5, 2.5]
    assert telemetry.value("genai_retries_total", reason="rate_limited") == 1
    assert telemetry.value("genai_retries_total", reason="server_error") == 1
    assert telemetry.value("genai_request_attempts_sum") == 3
    assert telemetry.value("genai_request_attempts_bucket", le="2.0") == 0
    assert telemetry.value("genai_request_attempts_bucket", le="3.0") == 1
    span = telemetry.span("site")
    assert span.attributes["failsight.attempts"] == 3
    assert span.attributes["failsight.retry_count"] == 2
    events = [e for e in span.events if e.name == "retry"]
    assert [(e.attributes["attempt"], e.attributes["reason"]) for e in events] == [
        (2, "rate_limited"),
        (3, "server_error"),
    ]
    assert events[0].attributes["status_code"] == 429
    assert events[0].attributes["wait_seconds"] == 1.5


@pytest.mark.parametrize(
    "error",
    [
        api_error(429),
        api_error(500),
        api_error(502),
        api_error(503),
        api_error(504),
        connection_error(timeout=True),
        connection_error(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retry_3_reruns_transient_failures(telemetry: Telemetry, error: Exception) -> None:
    calls: list[int] = []

    @traced_generation(name="site", retry=RetryPolicy(max_attempts=3, sleep=lambda s: None))
    def flaky() -> str:
        calls.append(1)
        raise error

    with pytest.raises(type(error)) as caught:
        flaky()
    assert caught.value is error
    assert len(calls) == 3
    reason = failsight.classify_exception(error).reason
    assert_counted(telemetry, "hard", reason)
    assert telemetry.value("genai_retries_total", reason=reason) == 2
    assert telemetry.value("genai_request_attempts_sum") == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_retry_never_reruns_client_errors(telemetry: Telemetry, status: int) -> None:
    calls: list[int] = []

    @traced_generation(name="site", retry=3)
    def wrong() -> str:
        calls.append(1)
        raise api_error(status)

    with pytest.raises(openai.APIStatusError):
        wrong()
    assert calls == [1]
    assert telemetry.value("genai_retries_total") == 0


def test_retry_honours_retry_after_and_deadline(telemetry: Telemetry) -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=5, deadline=10, sleep=waits.append)
    fn = make(
        "sync",
        sequence(
            api_error(429, headers={"retry-after": "7"}),
            api_error(429, headers={"retry-after": "7"}),
            "never",
        ),
        retry=policy,
    )
    with pytest.raises(openai.RateLimitError):
        fn()
    assert waits == [7.0]  # the second wait would pass the 10 s deadline
    assert telemetry.value("genai_request_attempts_sum") == 2


def test_retry_int_uses_the_default_policy(telemetry: Telemetry) -> None:
    fn = make("sync", sequence(api_error(429, headers={"retry-after-ms": "5"}), "ok"), retry=2)
    assert fn() == "ok"  # really slept the server's 5 ms
    assert telemetry.value("genai_retries_total", reason="rate_limited") == 1


# --------------------------------------------------------------------- transparency


def test_return_value_identity_and_metadata(telemetry: Telemetry) -> None:
    sentinel = object()

    def original(text: str, *, count: int = 2) -> object:
        """Docstring kept."""
        return sentinel

    traced = traced_generation(original)
    assert traced("x") is sentinel
    assert traced.__name__ == "original"
    assert traced.__doc__ == "Docstring kept."
    assert traced.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(traced) == inspect.signature(original)
    assert typing.get_type_hints(traced) == typing.get_type_hints(original)
    assert (
        telemetry.value("genai_requests_total", call_site=f"{__name__}.{original.__qualname__}")
        == 1
    )


@pytest.mark.parametrize("kind", ["async", "generator", "async_generator"])
def test_function_kind_is_kept(kind: str) -> None:
    fn = make(kind, lambda: "x")
    checks = {
        "async": inspect.iscoroutinefunction,
        "generator": inspect.isgeneratorfunction,
        "async_generator": inspect.isasyncgenfunction,
    }
    assert checks[kind](fn)


def test_exception_identity_and_traceback(telemetry: Telemetry) -> None:
    error = api_error(500)

    def deep_inside() -> None:
        raise error

    @traced_generation
    def call() -> None:
        deep_inside()

    with pytest.raises(openai.InternalServerError) as caught:
        call()
    assert caught.value is error
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[-2:] == ["call", "deep_inside"]


def test_methods_and_bare_decorator(telemetry: Telemetry) -> None:
    class Service:
        @traced_generation
        def run(self, value: int) -> int:
            return value * 2

    assert Service().run(21) == 42
    assert telemetry.value("genai_requests_total", failure_class="none") == 1


# --------------------------------------------------------------------- fault injection


class ExplodingProcessor(SpanProcessor):
    def on_end(self, span: Any) -> None:
        raise RuntimeError("exporter down")


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_broken_registry_does_not_touch_the_caller(
    telemetry: Telemetry, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = CappedMetric.child

    def broken(self: CappedMetric, values: tuple[str, ...]) -> Any:
        if self.metric._name == "genai_requests":
            raise RuntimeError("registry broken")
        return original(self, values)

    monkeypatch.setattr(CappedMetric, "child", broken)
    sentinel = object()
    assert await run(kind, make(kind, lambda: sentinel)) is sentinel
    error = api_error(429)

    def failing() -> Any:
        raise error

    with pytest.raises(openai.RateLimitError) as caught:
        await run(kind, make(kind, failing))
    assert caught.value is error
    assert telemetry.value("genai_telemetry_errors_total", stage="account") == 2
    # The rest of the request was still counted, and the gauge released.
    assert telemetry.value("genai_request_duration_seconds_count") == 2
    assert telemetry.value("genai_in_flight_requests") == 0


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("kind", KINDS)
async def test_broken_span_export_does_not_touch_the_caller(
    telemetry: Telemetry, kind: str
) -> None:
    telemetry.provider.add_span_processor(ExplodingProcessor())
    assert await run(kind, make(kind, lambda: "fine")) == "fine"
    error = ValueError("mine")

    def failing() -> Any:
        raise error

    with pytest.raises(ValueError) as caught:
        await run(kind, make(kind, failing))
    assert caught.value is error
    assert telemetry.value("genai_telemetry_errors_total", stage="span") == 2
    assert telemetry.value("genai_requests_total") == 2  # metrics recorded before the span end


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("kind", KINDS)
async def test_raising_validator_is_silent_failure(telemetry: Telemetry, kind: str) -> None:
    def exploding_validator(result: Any) -> bool:
        raise RuntimeError("validator bug")

    sentinel = "value"
    assert await run(kind, make(kind, lambda: sentinel, validate=[exploding_validator])) == "value"
    assert_counted(telemetry, "silent", "exploding_validator")
    assert telemetry.value("genai_telemetry_errors_total", stage="validator") == 1


@pytest.mark.usefixtures("swallow_internal_errors")
def test_broken_tracer_still_runs_the_function(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = failsight._config.get_state()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer broken")

    monkeypatch.setattr(state.tracer, "start_span", broken)
    assert make("sync", lambda: 5)() == 5
    assert telemetry.value("genai_telemetry_errors_total", stage="span") == 1
    # Metrics never depend on spans: the request is counted without one.
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert telemetry.value("genai_in_flight_requests") == 0


def test_internal_errors_raise_under_the_suite(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite's own setting: a telemetry bug surfaces as a test failure, not a silent count."""
    state = failsight._config.get_state()
    monkeypatch.setattr(state.tracer, "start_span", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        make("sync", lambda: 5)()


# --------------------------------------------------------------------- handle & nesting


def test_current_generation_outside_is_none() -> None:
    assert current_generation() is None


def test_counts_follow_a_model_set_midway(telemetry: Telemetry) -> None:
    @traced_generation(name="midway", operation="chat")
    def midway() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=1)  # before the model is known
        handle.record_finish_reason("stop")
        handle.set_model("m1")
        handle.record_usage(input=2)
        handle.set_model("m1")  # no change
        handle.record_usage(input=4)
        return "ok"

    midway()
    site = {"call_site": "midway"}
    assert telemetry.value("genai_tokens_total", model="unknown", **site) == 1
    assert telemetry.value("genai_finish_reasons_total", model="unknown", **site) == 1
    assert telemetry.value("genai_tokens_total", model="m1", **site) == 6
    assert telemetry.value("genai_requests_total", model="m1", **site) == 1
    assert telemetry.value("genai_requests_total", model="unknown", **site) == 0
    assert telemetry.value("genai_request_duration_seconds_count", model="m1", **site) == 1
    # The in-flight gauge goes back to zero on the labels it went up on.
    assert telemetry.value("genai_in_flight_requests", model="unknown", **site) == 0
    # No series is made in advance for labels that never used it.
    in_flight = [s["model"] for s in telemetry.series("genai_in_flight_requests")]
    attempts = {s["model"] for s in telemetry.series("genai_request_attempts_count")}
    assert in_flight == ["unknown"] and attempts == {"m1"}


def test_raising_the_cap_gives_labels_seen_before_their_own_series(telemetry: Telemetry) -> None:
    def configure(cap: int) -> None:
        failsight.configure(
            registry=telemetry.registry, tracer_provider=telemetry.provider, max_label_values=cap
        )

    configure(1)
    for site in ("a", "b"):
        make("sync", lambda: "x", name=site)()
    assert telemetry.value("genai_requests_total", call_site="other") == 1
    configure(10)
    make("sync", lambda: "x", name="b")()
    assert telemetry.value("genai_requests_total", call_site="b") == 1
    assert telemetry.value("genai_request_duration_seconds_count", call_site="b") == 1
    assert telemetry.value("genai_requests_total", call_site="other") == 1


def test_labels_filled_while_children_are_looked_up_are_not_lost(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread fills the labels between a look-up's read of them and its caching."""
    original = Account.labels
    fired = []

    def labels_then_fill(self: Account) -> tuple[str, str, str, str]:
        labels = original(self)
        if not fired:
            fired.append(labels)
            self.note_call("chat", "openai", "gpt-4o")  # the other thread, right now
        return labels

    monkeypatch.setattr(Account, "labels", labels_then_fill)

    @traced_generation(name="racy")
    def racy() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=3)
        return "ok"

    racy()
    assert fired and fired[0][2] == "unknown"  # the look-up did read the old labels
    site = {"call_site": "racy"}
    assert telemetry.value("genai_requests_total", model="gpt-4o", **site) == 1
    assert telemetry.value("genai_tokens_total", model="gpt-4o", **site) == 3
    assert telemetry.value("genai_requests_total", model="unknown", **site) == 0


def test_a_cap_raised_mid_scope_applies_to_the_rest_of_it(telemetry: Telemetry) -> None:
    def configure(cap: int) -> None:
        failsight.configure(
            registry=telemetry.registry, tracer_provider=telemetry.provider, max_label_values=cap
        )

    def record_tokens() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=5)
        return "ok"

    configure(1)
    traced_generation(name="a")(record_tokens)()  # "a" takes the one place

    @traced_generation(name="b")
    def b() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=1)  # "b" is past the cap: other
        configure(10)
        handle.record_usage(input=10)  # now "b" has room
        return "ok"

    b()
    assert telemetry.value("genai_tokens_total", call_site="a") == 5
    assert telemetry.value("genai_tokens_total", call_site="other") == 1
    assert telemetry.value("genai_tokens_total", call_site="b") == 10
    assert telemetry.value("genai_requests_total", call_site="b") == 1


class _HostileModel(str):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("boom")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("boom")

    __hash__ = str.__hash__


@pytest.mark.usefixtures("swallow_internal_errors")
def test_set_model_swallows_a_hostile_model(telemetry: Telemetry) -> None:
    @traced_generation(name="hostile", model="m")
    def hostile() -> str:
        handle = current_generation()
        assert handle is not None
        handle.set_model(_HostileModel("x"))
        return "ok"

    assert hostile() == "ok"
    assert telemetry.value("genai_telemetry_errors_total", stage="set_model") == 1


def test_handle_records(telemetry: Telemetry) -> None:
    @traced_generation(name="raw", operation="image_generation")
    def raw() -> str:
        handle = current_generation()
        assert handle is not None
        handle.set_model("dall-e-3")
        handle.record_usage(input=10, output=5, reasoning=2, cached_input=3)
        with pytest.raises(ValueError, match="record_usage"):  # warned and ignored outside tests
            handle.record_usage(input=-1, output=True)  # type: ignore[arg-type]
        handle.record_retry("rate_limited", status_code=429, wait=1.0)
        handle.record_finish_reason("stop")
        return "ok"

    raw()
    labels = {"operation": "image_generation", "model": "dall-e-3", "call_site": "raw"}
    for token_type, count in [("input", 10), ("output", 5), ("reasoning", 2), ("cached_input", 3)]:
        assert telemetry.value("genai_tokens_total", token_type=token_type, **labels) == count
    assert telemetry.value("genai_retries_total", reason="rate_limited", **labels) == 1
    assert telemetry.value("genai_request_attempts_sum", **labels) == 2
    assert telemetry.value("genai_requests_total", failure_class="none", **labels) == 1
    span = telemetry.span("raw")
    assert span.attributes["gen_ai.usage.input_tokens"] == 10
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 3
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["gen_ai.request.model"] == "dall-e-3"


@pytest.mark.usefixtures("swallow_internal_errors")
def test_handle_bad_mark_is_survived(telemetry: Telemetry) -> None:
    @traced_generation(name="raw")
    def raw() -> str:
        handle = current_generation()
        assert handle is not None
        handle.mark_failure("catastrophic", "x")
        return "ok"

    assert raw() == "ok"
    assert_counted(telemetry, "none", None, site="raw")
    assert telemetry.value("genai_telemetry_errors_total", stage="mark_failure") == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_nested_scopes_count_once(telemetry: Telemetry, kind: str) -> None:
    inner = make("sync", lambda: "inner", name="inner", validate=[min_words(5)])

    def body() -> str:
        handle = current_generation()
        assert handle is not None and handle._account.call_site == "outer"
        result = inner()
        assert current_generation() is handle
        return str(result)

    await run(kind, make(kind, body, name="outer"))
    assert telemetry.value("genai_requests_total") == 1
    assert telemetry.value("genai_requests_total", call_site="outer", failure_class="silent") == 1
    assert telemetry.value("genai_failures_total", reason="too_short") == 1
    outer_span, inner_span = telemetry.span("outer"), telemetry.span("inner")
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert inner_span.attributes["failsight.failure_reason"] == "too_short"


# --------------------------------------------------------------------- generators


def test_generator_break_is_recorded_once_without_failure(telemetry: Telemetry) -> None:
    cleaned: list[bool] = []

    @traced_generation(name="gen", validate=[json_output()])
    def numbers() -> Any:
        try:
            yield from ("a", "b", "c")
        finally:
            cleaned.append(current_generation() is not None)

    for item in numbers():
        if item == "a":
            break
    assert cleaned == [True]  # the generator's cleanup ran inside its scope
    assert_counted(telemetry, "none", None, site="gen")


def test_generator_failure_mid_way(telemetry: Telemetry) -> None:
    @traced_generation(name="gen")
    def numbers() -> Any:
        yield "a"
        raise connection_error()

    items = []
    with pytest.raises(openai.APIConnectionError):
        items.extend(numbers())
    assert items == ["a"]
    assert_counted(telemetry, "hard", "connection", site="gen")


def test_generator_send_throw_and_return_value(telemetry: Telemetry) -> None:
    @traced_generation(name="gen")
    def echo() -> Any:
        received = []
        while True:
            try:
                value = yield len(received)
            except KeyError:
                received.append("thrown")
                continue
            if value is None:
                return received
            received.append(value)

    gen = echo()
    assert next(gen) == 0
    assert gen.send("x") == 1
    assert gen.throw(KeyError("k")) == 2
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == ["x", "thrown"]
    assert_counted(telemetry, "none", None, site="gen")


def test_abandoned_generator_is_recorded_on_collection(telemetry: Telemetry) -> None:
    import gc

    fn = make("generator", lambda: "x")
    gen = fn()
    next(gen)
    del gen
    gc.collect()
    assert_counted(telemetry, "none", None)


async def test_async_generator_aclose(telemetry: Telemetry) -> None:
    @traced_generation(name="agen")
    async def stream() -> Any:
        for token in ("a", "b", "c"):
            yield token

    agen = stream()
    assert await agen.__anext__() == "a"
    await agen.aclose()
    assert_counted(telemetry, "none", None, site="agen")


# --------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"validate": [3]}, TypeError),
        ({"validate": 3}, TypeError),
        ({"retry": "3"}, TypeError),
        ({"retry": 0}, ValueError),
        ({"name": ""}, TypeError),
        ({"operation": 5}, TypeError),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        traced_generation(**options)


def test_retry_on_generator_is_rejected() -> None:
    with pytest.raises(TypeError, match="generator"):
        make("generator", lambda: "x", retry=2)


@pytest.mark.parametrize(
    ("factory", "error"),
    [
        (lambda: one_of(), TypeError),
        (lambda: min_words(0), ValueError),
        (lambda: RetryPolicy(retry_on=frozenset({"bad_request"})), ValueError),
        (lambda: RetryPolicy(deadline=-1), ValueError),
    ],
)
def test_bad_validator_and_policy_arguments(factory: Callable[[], Any], error: type) -> None:
    with pytest.raises(error):
        factory()


# --------------------------------------------------------------------- labels, exemplars, load


def test_label_cap_reports_other(telemetry: Telemetry) -> None:
    failsight.configure(
        registry=telemetry.registry, tracer_provider=telemetry.provider, max_label_values=2
    )
    for site in ("a", "b", "c", "d"):
        make("sync", lambda: "x", name=site)()
    sites = {labels["call_site"] for labels in telemetry.series("genai_requests_total")}
    assert sites == {"a", "b", "other"}
    assert telemetry.value("genai_requests_total", call_site="other") == 2


def test_exemplars_carry_the_trace_id(telemetry: Telemetry) -> None:
    make("sync", lambda: "x")()
    trace_id = format(telemetry.span("site").context.trace_id, "032x")
    text = openmetrics(telemetry.registry).decode()
    duration_lines = [
        line
        for line in text.splitlines()
        if line.startswith("genai_request_duration_seconds_bucket")
    ]
    assert any(f'# {{trace_id="{trace_id}"}}' in line for line in duration_lines)
    request_lines = [line for line in text.splitlines() if line.startswith("genai_requests_total")]
    assert any(trace_id in line for line in request_lines)


def test_threads_count_exactly(telemetry: Telemetry) -> None:
    outcomes = [("none", None), ("hard", "rate_limited"), ("silent", "invalid_json")]

    @traced_generation(name="load", validate=[json_output()])
    def work(i: int) -> str:
        if i % 3 == 1:
            raise api_error(429)
        return "{}" if i % 3 == 0 else "nope"

    def worker(offset: int) -> None:
        for i in range(offset, offset + 60):
            with contextlib.suppress(openai.RateLimitError):
                work(i)

    threads = [threading.Thread(target=worker, args=(n * 60,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = 16 * 60
    assert telemetry.value("genai_requests_total", call_site="load") == total
    for failure_class, _ in outcomes:
        assert telemetry.value("genai_requests_total", failure_class=failure_class) == total / 3
    assert len(telemetry.spans()) == total
    assert telemetry.value("genai_in_flight_requests") == 0


async def test_asyncio_tasks_keep_their_own_scope(telemetry: Telemetry) -> None:
    @traced_generation(name="task")
    async def task(i: int) -> int:
        handle = current_generation()
        await asyncio.sleep(0)
        assert current_generation() is handle
        if i % 2:
            handle.mark_failure("soft", "length")  # type: ignore[union-attr]
        return i

    results = await asyncio.gather(*(task(i) for i in range(500)))
    assert results == list(range(500))
    assert telemetry.value("genai_requests_total", failure_class="none") == 250
    assert telemetry.value("genai_failures_total", reason="length") == 250
