"""Telemetry faults never hurt the caller, nor change the counts (docs/reference.md#counting-rules).

Every public entry point — the decorator in its four shapes, each SDK endpoint family (sync,
async, streamed), and `instrument_http()` with httpx and requests — runs once uninstrumented and
once instrumented under each telemetry fault: a tracer whose `start_span` raises, span processors
whose `on_start`/`on_end` raise, spans whose methods raise one at a time, and an OTel meter whose
histogram `record` raises. Internal errors are swallowed as in production.

For every (entry point × fault) pair the caller sees exactly what it sees without failsight (the
same value, or the same exception: type and message, and for the decorator the very same object
raised through the caller's own frames), and the logical request is counted exactly once, with the
right failure class, and is no longer in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
from opentelemetry import trace
from opentelemetry.metrics import NoOpHistogram, NoOpMeter, NoOpMeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import failsight
from conftest import Telemetry
from failsight import traced_generation
from failsight.testing import OK_TEXT, FaultServer, completion_body, mock_openai_client, stream_body

SCENARIO = "X-Failsight-Scenario"
MESSAGES = [{"role": "user", "content": "hello"}]


# ---------------------------------------------------------------------- telemetry faults


class TelemetryFault(RuntimeError):
    """What every broken telemetry component raises."""


class FaultySpan(trace.Span):
    """A real SDK span behind a proxy whose method `broken` raises (the others delegate)."""

    def __init__(self, inner: trace.Span, broken: str) -> None:
        self._inner = inner
        self._broken = broken

    def _check(self, method: str) -> None:
        if method == self._broken:
            raise TelemetryFault(f"span.{method} is broken")

    def end(self, end_time: int | None = None) -> None:
        self._check("end")
        self._inner.end(end_time)

    def get_span_context(self) -> trace.SpanContext:
        self._check("get_span_context")
        return self._inner.get_span_context()

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._check("set_attributes")
        self._inner.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._check("set_attribute")
        self._inner.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        self._check("add_event")
        self._inner.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        self._check("add_link")
        self._inner.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._check("update_name")
        self._inner.update_name(name)

    def is_recording(self) -> bool:
        self._check("is_recording")
        return self._inner.is_recording()

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._check("set_status")
        self._inner.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._check("record_exception")
        self._inner.record_exception(exception, attributes, timestamp, escaped)


class FaultyTracer(trace.Tracer):
    """Starts real SDK spans wrapped in `FaultySpan`; `start_span` itself may be the broken one."""

    def __init__(self, inner: trace.Tracer, broken: str) -> None:
        self._inner = inner
        self._broken = broken

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        if self._broken == "start_span":
            raise TelemetryFault("tracer.start_span is broken")
        span = self._inner.start_span(
            name,
            context=context,
            kind=kind,
            attributes=attributes,
            links=links,
            start_time=start_time,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        return FaultySpan(span, self._broken)

    @contextlib.contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        span = self.start_span(name, *args, **kwargs)
        with trace.use_span(span, end_on_exit=True) as current:
            yield current


class FaultyTracerProvider(trace.TracerProvider):
    def __init__(self, inner: trace.TracerProvider, broken: str) -> None:
        self._inner = inner
        self._broken = broken

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return FaultyTracer(self._inner.get_tracer(*args, **kwargs), self._broken)


class RaisingProcessor(SpanProcessor):
    def __init__(self, broken: str) -> None:
        self._broken = broken

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self._broken == "on_start":
            raise TelemetryFault("processor.on_start is broken")

    def on_end(self, span: Any) -> None:
        if self._broken == "on_end":
            raise TelemetryFault("processor.on_end is broken")


class RaisingHistogram(NoOpHistogram):
    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        raise TelemetryFault("histogram.record is broken")


class RaisingMeter(NoOpMeter):
    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Any:
        return RaisingHistogram(name, unit=unit, description=description)


class RaisingMeterProvider(NoOpMeterProvider):
    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Any:
        return RaisingMeter(name, version=version, schema_url=schema_url)


SPAN_METHODS = (
    "set_attribute",
    "set_attributes",
    "set_status",
    "add_event",
    "end",
    "is_recording",
    "get_span_context",
    "record_exception",
)
FAULTS = (
    "tracer.start_span",
    "processor.on_start",
    "processor.on_end",
    *(f"span.{method}" for method in SPAN_METHODS),
    "meter.histogram.record",
)


def install_fault(fault: str, t: Telemetry) -> None:
    """Reconfigure failsight (same registry) with the broken telemetry component `fault`."""
    tracer_provider: Any = t.provider
    meter_provider: Any = None
    group, _, what = fault.partition(".")
    if group == "tracer":
        tracer_provider = FaultyTracerProvider(t.provider, "start_span")
    elif group == "span":
        tracer_provider = FaultyTracerProvider(t.provider, what)
    elif group == "processor":
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(t.exporter))
        tracer_provider.add_span_processor(RaisingProcessor(what))
    else:
        meter_provider = RaisingMeterProvider()
    failsight.configure(
        registry=t.registry, tracer_provider=tracer_provider, meter_provider=meter_provider,
        prices=False,
    )  # fmt: skip


# ---------------------------------------------------------------------- what the caller sees


@dataclass
class Observed:
    """One run as the caller saw it: a value, or an exception (and where it surfaced)."""

    value: Any = None
    error: BaseException | None = None
    raised: BaseException | None = None  # the caller's own exception object, for the decorator

    def frames(self) -> list[tuple[str, int]]:
        """The traceback frames of this file's code (the caller's), failsight's left out."""
        assert self.error is not None
        return [
            (frame.name, frame.lineno or 0)
            for frame in traceback.extract_tb(self.error.__traceback__)
            if frame.filename == __file__
        ]


def normalize(value: Any) -> Any:
    """A comparable form of what the caller got: SDK models by type and dumped fields."""
    if hasattr(value, "model_dump"):
        return (type(value).__qualname__, value.model_dump())
    if isinstance(value, (list, tuple)):
        return [normalize(item) for item in value]
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    return value


_VOLATILE = frozenset({"id", "created", "created_at"})


def scrub(value: Any) -> Any:
    """The fault server's bodies without their random ids and timestamps."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


def scrub_sse(lines: list[str]) -> list[Any]:
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(scrub(json.loads(line[len("data: ") :])))
        else:
            out.append(line)
    return out


@contextlib.contextmanager
def patched(family: str, instrumented: bool) -> Iterator[None]:
    if not instrumented or family == "decorator":
        yield
        return
    if family == "sdk":
        failsight.instrument_openai()
        try:
            yield
        finally:
            failsight.uninstrument_openai()
        return
    failsight.instrument_http()
    try:
        yield
    finally:
        failsight.uninstrument_http()


@dataclass(frozen=True)
class Ctx:
    instrumented: bool
    server: FaultServer


Runner = Callable[[Ctx], Awaitable[Observed]]


@dataclass(frozen=True)
class Entry:
    id: str
    family: str  # "decorator" | "sdk" | "http"
    run: Runner
    failure_class: str
    reason: str | None = None
    requests: int = 1


# ---------------------------------------------------------------------- the decorator's shapes


def plain_sync(error: BaseException | None) -> Any:
    if error is not None:
        raise error
    return {"answer": 42}


async def plain_async(error: BaseException | None) -> Any:
    await asyncio.sleep(0)
    if error is not None:
        raise error
    return {"answer": 42}


def plain_generator(error: BaseException | None) -> Any:
    yield "first"
    if error is not None:
        raise error
    yield "second"


async def plain_async_generator(error: BaseException | None) -> Any:
    await asyncio.sleep(0)
    yield "first"
    if error is not None:
        raise error
    yield "second"


SHAPES: dict[str, Callable[..., Any]] = {
    "sync": plain_sync,
    "async": plain_async,
    "generator": plain_generator,
    "async_generator": plain_async_generator,
}


async def drive(
    shape: str, fn: Callable[..., Any], error: BaseException | None, items: list[Any]
) -> Any:
    """Call `fn` the way a caller of `shape` does; generators' items go to `items` as they come."""
    if shape == "sync":
        return fn(error)
    if shape == "async":
        return await fn(error)
    if shape == "generator":
        for item in fn(error):
            items.append(item)
        return items
    async for item in fn(error):
        items.append(item)
    return items


def decorator_entry(shape: str, fail: bool) -> Entry:
    async def run(ctx: Ctx) -> Observed:
        raw = SHAPES[shape]
        fn = traced_generation(name="site")(raw) if ctx.instrumented else raw
        error = ValueError("the caller's own error") if fail else None
        observed = Observed(raised=error)
        items: list[Any] = []
        try:
            observed.value = await drive(shape, fn, error, items)
        except ValueError as exc:
            observed.error = exc
            observed.value = items
        return observed

    outcome = ("hard", "exception") if fail else ("none", None)
    return Entry(f"decorator-{shape}-{'raise' if fail else 'ok'}", "decorator", run, *outcome)


# ---------------------------------------------------------------------- SDK calls (mock client)


def responses_body(status: str = "completed", output: bool = True) -> dict[str, Any]:
    return {
        "id": "resp_mock",
        "object": "response",
        "created_at": 1,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "model": "gpt-4o-mini",
        "output": [
            {
                "type": "message",
                "id": "msg_mock",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": OK_TEXT, "annotations": []}],
            }
        ]
        if output
        else [],
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 20,
        }
        if output
        else None,
    }


def responses_stream_body() -> bytes:
    events = [
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": responses_body("in_progress", output=False),
            },
        ),
        (
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "msg_mock",
                "output_index": 0,
                "content_index": 0,
                "delta": OK_TEXT,
                "logprobs": [],
            },
        ),
        (
            "response.completed",
            {"type": "response.completed", "sequence_number": 2, "response": responses_body()},
        ),
    ]
    text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return text.encode()


def completions_body() -> dict[str, Any]:
    return {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": OK_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20},
    }


def completions_stream_body() -> bytes:
    chunks = [
        {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": 1,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }
        for text, finish in (("The quick", None), (" fox", None), ("", "stop"))
    ]
    return ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()


EMBEDDINGS_BODY = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.75]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 2, "total_tokens": 2},
}
IMAGES_BODY = {"created": 1, "data": [{"url": "http://mock.local/cat.png"}]}
RATE_LIMITED = (
    429,
    {
        "error": {
            "message": "Rate limit reached for requests per minute.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    },
)

SdkCall = Callable[[Any], Any]

SDK_CALLS: dict[str, tuple[SdkCall, Any, str, str | None]] = {
    # name: (call(client), the mock's reply, failure class, reason)
    "chat": (
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
        completion_body(),
        "none",
        None,
    ),
    "chat-429": (
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
        RATE_LIMITED,
        "hard",
        "rate_limited",
    ),
    "chat-content_filter": (
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
        completion_body(content=None, finish_reason="content_filter"),
        "soft",
        "content_filter",
    ),
    "chat-stream": (
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True),
        stream_body(),
        "none",
        None,
    ),
    "responses": (
        lambda c: c.responses.create(model="gpt-4o-mini", input="hello"),
        responses_body(),
        "none",
        None,
    ),
    "responses-stream": (
        lambda c: c.responses.create(model="gpt-4o-mini", input="hello", stream=True),
        responses_stream_body(),
        "none",
        None,
    ),
    "embeddings": (
        lambda c: c.embeddings.create(
            model="text-embedding-3-small", input="hello", encoding_format="float"
        ),
        EMBEDDINGS_BODY,
        "none",
        None,
    ),
    "images": (
        lambda c: c.images.generate(model="dall-e-3", prompt="a cat"),
        IMAGES_BODY,
        "none",
        None,
    ),
    "completions": (
        lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello"),
        completions_body(),
        "none",
        None,
    ),
    "completions-stream": (
        lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True),
        completions_stream_body(),
        "none",
        None,
    ),
}


async def close(client: Any) -> None:
    """Close an SDK client in the loop that opened it (not later, from its finaliser)."""
    closed = client.close()
    if inspect.isawaitable(closed):
        await closed


async def drain(result: Any) -> Any:
    """What a caller does with a result: streams are read to the end."""
    if hasattr(result, "__anext__"):
        return [item async for item in result]
    if hasattr(result, "__next__"):
        return list(result)
    return result


def sdk_entry(name: str, mode: str) -> Entry:
    call, reply, failure_class, reason = SDK_CALLS[name]
    is_async = mode == "async"

    async def run(ctx: Ctx) -> Observed:
        client = mock_openai_client(lambda request: reply, is_async=is_async)
        observed = Observed()
        with patched("sdk", ctx.instrumented):
            try:
                result = call(client)
                if is_async:
                    result = await result
                observed.value = normalize(await drain(result))
            except Exception as exc:
                observed.error = exc
        await close(client)
        return observed

    return Entry(f"sdk-{name}-{mode}", "sdk", run, failure_class, reason)


def scoped_sdk_entry(mode: str) -> Entry:
    """A decorated function making one SDK call: one logical request, counted at the scope."""

    async def run(ctx: Ctx) -> Observed:
        if mode == "async":
            client = mock_openai_client(lambda request: completion_body(), is_async=True)

            async def ask_async() -> Any:
                return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

            fn: Callable[..., Any] = ask_async
        else:
            client = mock_openai_client(lambda request: completion_body())

            def ask() -> Any:
                return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

            fn = ask
        if ctx.instrumented:
            fn = traced_generation(name="site")(fn)
        observed = Observed()
        with patched("sdk", ctx.instrumented):
            try:
                result = fn()
                if mode == "async":
                    result = await result
                observed.value = normalize(result)
            except Exception as exc:
                observed.error = exc
        await close(client)
        return observed

    return Entry(f"scoped-sdk-chat-{mode}", "sdk", run, "none", None)


# ---------------------------------------------------------------------- raw HTTP (fault server)


def http_entry(lib: str, scenario: str, stream: bool = False) -> Entry:
    async def run(ctx: Ctx) -> Observed:
        url = ctx.server.base_url + "/chat/completions"
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
        if stream:
            body["stream"] = True
        headers = {SCENARIO: scenario}
        observed = Observed()
        with patched("http", ctx.instrumented):
            try:
                if lib == "requests":
                    response = requests.post(url, json=body, headers=headers, timeout=10)
                    response.raise_for_status()
                    observed.value = (response.status_code, scrub(response.json()))
                elif lib == "httpx-async":
                    async with httpx.AsyncClient(timeout=10) as client:
                        response = await client.post(url, json=body, headers=headers)
                        response.raise_for_status()
                        observed.value = (response.status_code, scrub(response.json()))
                elif stream:
                    with (
                        httpx.Client(timeout=10) as client,
                        client.stream("POST", url, json=body, headers=headers) as response,
                    ):
                        lines = [line for line in response.iter_lines() if line]
                        observed.value = (response.status_code, scrub_sse(lines))
                else:
                    with httpx.Client(timeout=10) as client:
                        response = client.post(url, json=body, headers=headers)
                        response.raise_for_status()
                        observed.value = (response.status_code, scrub(response.json()))
            except Exception as exc:
                observed.error = exc
        return observed

    outcome = ("hard", "server_error") if scenario == "http_500" else ("none", None)
    suffix = "-stream" if stream else ""
    return Entry(f"http-{lib}{suffix}-{scenario}", "http", run, *outcome)


ENTRIES: list[Entry] = [
    *(decorator_entry(shape, fail) for shape in SHAPES for fail in (False, True)),
    *(sdk_entry(name, mode) for name in SDK_CALLS for mode in ("sync", "async")),
    *(scoped_sdk_entry(mode) for mode in ("sync", "async")),
    http_entry("httpx", "ok"),
    http_entry("httpx", "ok", stream=True),
    http_entry("httpx-async", "ok"),
    http_entry("requests", "ok"),
    http_entry("requests", "http_500"),
    http_entry("httpx", "http_500"),
]


# ---------------------------------------------------------------------- the matrix


def assert_same_for_the_caller(entry: Entry, bare: Observed, traced: Observed) -> None:
    if bare.error is None:
        assert traced.error is None, f"failsight made the caller see {traced.error!r}"
        assert traced.value == bare.value
        return
    assert traced.error is not None, f"expected {bare.error!r}, the caller got {traced.value!r}"
    assert type(traced.error) is type(bare.error)
    assert str(traced.error) == str(bare.error)
    assert traced.value == bare.value  # e.g. the items a generator yielded before raising
    if entry.family == "decorator":
        assert traced.error is traced.raised, "not the very exception the caller's code raised"
        assert traced.frames() == bare.frames(), "the caller's traceback frames changed"


def assert_counted_once(t: Telemetry, entry: Entry) -> None:
    series = t.series("genai_requests_total")
    assert t.value("genai_requests_total") == entry.requests, series
    assert t.value("genai_requests_total", failure_class=entry.failure_class) == entry.requests, (
        series
    )
    if entry.reason is None:
        assert t.value("genai_failures_total") == 0, t.series("genai_failures_total")
    else:
        assert (
            t.value("genai_failures_total", failure_class=entry.failure_class, reason=entry.reason)
            == entry.requests
        ), t.series("genai_failures_total")
    assert t.value("genai_request_attempts_count") == entry.requests
    assert t.value("genai_request_duration_seconds_count") == entry.requests
    assert t.value("genai_in_flight_requests") == 0


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.id)
async def test_telemetry_fault_never_hurts(
    telemetry: Telemetry, server: FaultServer, entry: Entry, fault: str
) -> None:
    install_fault(fault, telemetry)

    bare = await entry.run(Ctx(instrumented=False, server=server))
    assert telemetry.value("genai_requests_total") == 0  # nothing recorded without failsight

    traced = await entry.run(Ctx(instrumented=True, server=server))

    assert_same_for_the_caller(entry, bare, traced)
    assert_counted_once(telemetry, entry)


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.id)
async def test_without_faults_the_matrix_holds(
    telemetry: Telemetry, server: FaultServer, entry: Entry
) -> None:
    """The control: the same runs with working telemetry (a failure here is not a fault's)."""
    bare = await entry.run(Ctx(instrumented=False, server=server))
    traced = await entry.run(Ctx(instrumented=True, server=server))
    assert_same_for_the_caller(entry, bare, traced)
    assert_counted_once(telemetry, entry)
    assert telemetry.value("genai_telemetry_errors_total") == 0
