"""The openai SDK patch: a small engine, per-endpoint extractors and stream proxies.

Every patched method runs `_Call`: a CLIENT span, the call's outcome judged by the
classifier, tokens and finish reasons, and the logical-request account (the enclosing
traced scope, or an implicit `unscoped` one). SDK-internal retries are seen at the HTTP
layer: `httpx(2).Client.send` is wrapped and, only while a patched call is running, each
attempt (marked by the SDK's `x-stainless-retry-count` header) is recorded.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from failsight import _spans as attrs
from failsight._classify import (
    HARD,
    NONE,
    SOFT,
    Outcome,
    classify_exception,
    classify_result,
    extract_usage,
    normalize_finish_reason,
    provider_for_host,
)
from failsight._config import State, get_state
from failsight._guard import report_internal_error
from failsight._redact import mask_secrets
from failsight._scope import UNKNOWN, Generation, _current

__all__ = ["instrument_openai", "is_instrumented", "uninstrument_openai"]

RETRY_COUNT_HEADER: Final = "x-stainless-retry-count"
RAW_RESPONSE_HEADER: Final = "X-Stainless-Raw-Response"
_MAX_STREAM_REASONS: Final = 64


@dataclass(frozen=True)
class Endpoint:
    """One patched SDK method: where it lives and how to read what it returns."""

    path: tuple[str, ...]  # attribute path from an OpenAI client to the resource
    module: str  # module holding the resource classes (a package re-export is fine)
    sync_cls: str
    async_cls: str
    method: str
    operation: str  # `operation` label / gen_ai.operation.name
    kind: str  # classify_result kind
    api_type: str  # openai.api.type
    role: str = "call"  # "call" | "poll" (video retrieve: advances a job, not a request)


ENDPOINTS: Final = (
    *(
        Endpoint(("chat", "completions"), "openai.resources.chat.completions", "Completions",
                 "AsyncCompletions", method, "chat", "chat", "chat_completions")
        for method in ("create", "parse")
    ),
    Endpoint(("completions",), "openai.resources.completions", "Completions", "AsyncCompletions",
             "create", "text_completion", "text_completion", "completions"),
    *(
        Endpoint(("responses",), "openai.resources.responses", "Responses", "AsyncResponses",
                 method, "chat", "responses", "responses")
        for method in ("create", "parse")
    ),
    Endpoint(("embeddings",), "openai.resources.embeddings", "Embeddings", "AsyncEmbeddings",
             "create", "embeddings", "embeddings", "embeddings"),
    *(
        Endpoint(("images",), "openai.resources.images", "Images", "AsyncImages", method,
                 "image_generation", "image", "images")
        for method in ("generate", "edit", "create_variation")
    ),
    *(
        Endpoint(("videos",), "openai.resources.videos", "Videos", "AsyncVideos", method,
                 "video_generation", "video", "videos")
        for method in ("create", "create_and_poll", "remix")
    ),
    Endpoint(("videos",), "openai.resources.videos", "Videos", "AsyncVideos", "retrieve",
             "video_generation", "video", "videos", role="poll"),
)  # fmt: skip

# The active patched call, for the HTTP-layer retry hook (and the raw-HTTP patch, which
# must not record what the SDK patch records).
_active_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "failsight_openai_call", default=None
)

# id(resource) -> (weak resource, server): the base URL is read once per resource object.
_server_cache: dict[int, tuple[weakref.ref[Any], tuple[str, str | None, int | None]]] = {}


def _server_of(resource: Any) -> tuple[str, str | None, int | None]:
    """(provider, address, port) of the client behind a resource."""
    entry = _server_cache.get(id(resource))
    if entry is not None and entry[0]() is resource:
        return entry[1]
    client = getattr(resource, "_client", None)
    base_url = getattr(client, "base_url", None)
    host = getattr(base_url, "host", None)
    port = getattr(base_url, "port", None)
    provider = provider_for_host(host if isinstance(host, str) else None)
    if type(client).__name__.startswith(("AzureOpenAI", "AsyncAzureOpenAI")):
        provider = "azure.ai.openai"
    if port is None:
        port = 443 if getattr(base_url, "scheme", "") == "https" else 80
    result = (provider, host if isinstance(host, str) else None, port)
    try:
        if len(_server_cache) > 1024:
            _server_cache.clear()
        _server_cache[id(resource)] = (weakref.ref(resource), result)
    except TypeError:
        pass  # not weak-referenceable: computed each time
    return result


def _model_of(kwargs: dict[str, Any]) -> str:
    model = kwargs.get("model")
    return model if isinstance(model, str) and model else UNKNOWN


def _raw_mode(kwargs: dict[str, Any]) -> str | None:
    """ "true" under `with_raw_response`, "stream" under `with_streaming_response`."""
    headers = kwargs.get("extra_headers")
    if not headers:
        return None
    try:
        value = headers.get(RAW_RESPONSE_HEADER)
    except Exception:
        return None
    return value if isinstance(value, str) else None


class _Call:
    """One patched SDK call: its span, its attempts, and where its outcome goes."""

    __slots__ = (
        "_done",
        "attempt_end",
        "attempt_outcome",
        "attempts",
        "attrs",
        "endpoint",
        "gen",
        "own",
        "span",
        "start",
        "state",
        "stream",
    )

    def __init__(
        self,
        state: State,
        endpoint: Endpoint,
        gen: Generation | None,
        own: bool,
        span: Span,
        stream: bool,
    ) -> None:
        self.state = state
        self.stream = stream
        # Span attributes gathered during the call, set once at its end.
        self.attrs: dict[str, Any] = {
            attrs.OPENAI_API_TYPE: endpoint.api_type,
            attrs.GEN_AI_REQUEST_STREAM: stream,
        }
        self.endpoint = endpoint
        self.gen = gen
        self.own = own  # this call is the logical request (no enclosing scope)
        self.span = span
        self.start = time.perf_counter()
        self.attempts = 0
        self.attempt_outcome: Outcome | None = None
        self.attempt_end = 0.0
        self._done = False

    # ------------------------------------------------------------------ HTTP attempts

    def attempt_started(self, retry_count: int | None) -> None:
        self.attempts += 1
        previous = self.attempt_outcome
        if self.attempts > 1 or (retry_count is not None and retry_count > 0):
            reason = previous.reason if previous is not None and previous.reason else "unknown"
            status = previous.status_code if previous is not None else None
            wait = time.perf_counter() - self.attempt_end if self.attempt_end else None
            if self.gen is not None:
                self.gen.record_retry(reason, status_code=status, wait=wait, span=self.span)
        self.attempt_outcome = None

    def attempt_ended(self, outcome: Outcome | None) -> None:
        self.attempt_outcome = outcome
        self.attempt_end = time.perf_counter()

    # ------------------------------------------------------------------ outcome

    def record_response(self, outcome: Outcome, result: Any) -> None:
        """Tokens, finish reasons, response attributes and video progress of a response."""
        gen = self.gen
        usage = outcome.usage
        if gen is not None:
            if outcome.finish_reasons:
                gen.count_finish_reasons(outcome.finish_reasons)
            if usage is not None:
                gen.add_usage(usage)
        if self.span.is_recording():
            values = self.attrs
            if outcome.response_model:
                values[attrs.GEN_AI_RESPONSE_MODEL] = outcome.response_model
            if outcome.response_id:
                values[attrs.GEN_AI_RESPONSE_ID] = outcome.response_id
            if outcome.finish_reasons:
                values[attrs.GEN_AI_FINISH_REASONS] = outcome.finish_reasons
            if usage is not None:
                for name, count in zip(attrs.USAGE_ATTRIBUTE_NAMES, usage, strict=True):
                    if count is not None:
                        values[name] = count
            request_id = _request_id_of(result)
            if isinstance(request_id, str):
                values[attrs.REQUEST_ID] = mask_secrets(request_id)
            if outcome.video_status:
                values[attrs.VIDEO_STATUS] = outcome.video_status
            if outcome.revised_prompt and self.state.settings.capture_content:
                limit = self.state.settings.max_content_length
                values[attrs.REVISED_PROMPT] = mask_secrets(outcome.revised_prompt, limit)
        if outcome.video_status and outcome.response_id and gen is not None:
            gen.track_video(outcome.response_id, outcome.video_status)

    def finish(self, outcome: Outcome, exc: BaseException | None = None) -> None:
        """End the call once: judge it, end its span, settle the logical request."""
        if self._done:
            return
        self._done = True
        gen = self.gen
        operation = self.endpoint.operation
        counts_as_call = self.endpoint.role == "call" or outcome.failure_class == SOFT
        if gen is not None and counts_as_call:
            gen.call_finished(operation, outcome)
        if self.own and gen is not None:
            # Ends the span with the call's and the logical request's attributes at once.
            gen.finish(exc, span_attributes=self.attrs)
            return
        span = self.span
        if span.is_recording():
            failure_class = NONE if outcome.transient else outcome.failure_class
            values = self.attrs
            values[attrs.FAILURE_CLASS] = failure_class
            if gen is not None:
                values[attrs.CALL_SITE] = gen.call_site
            if failure_class != NONE and outcome.reason:
                values[attrs.FAILURE_REASON] = outcome.reason
                values[attrs.ERROR_TYPE] = outcome.error_type or outcome.reason
                span.set_status(Status(StatusCode.ERROR, outcome.reason))
            attrs.error_attributes(values, outcome)
            span.set_attributes(values)
            if exc is not None:
                attrs.add_exception_event(span, exc)
        span.end()


def _request_id_of(result: Any) -> Any:
    """The SDK's `_request_id` of a parsed response, read without pydantic's slow path."""
    for store in (getattr(result, "__dict__", None), getattr(result, "__pydantic_private__", None)):
        if isinstance(store, dict):
            value = store.get("_request_id")
            if value is not None:
                return value
    return None


# ---------------------------------------------------------------------- starting a call


def _start(endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> _Call:
    provider, address, port = _server_of(resource)
    stream = kwargs.get("stream") is True
    return _begin(endpoint, _model_of(kwargs), provider, address, port, stream)


def _begin(
    endpoint: Endpoint, model: str, provider: str, address: str | None, port: int | None,
    stream: bool,
) -> _Call:  # fmt: skip
    """Start a call from what is known of it; shared with the raw-HTTP patch (`_http`)."""
    state = get_state()
    # Only the sampling-relevant attributes at start: each costs twice there.
    start_attrs: dict[str, Any] = {
        attrs.GEN_AI_OPERATION: endpoint.operation,
        attrs.GEN_AI_PROVIDER: provider,
        attrs.GEN_AI_REQUEST_MODEL: model,
    }
    if address is not None:
        start_attrs[attrs.SERVER_ADDRESS] = address
    if port is not None:
        start_attrs[attrs.SERVER_PORT] = port
    span = state.tracer.start_span(
        f"{endpoint.operation} {model}", kind=SpanKind.CLIENT, attributes=start_attrs
    )
    parent = _current.get()
    if parent is not None:
        parent.note_call(endpoint.operation, provider, model)
        if endpoint.role == "call":
            parent.call_started(endpoint.operation)
        return _Call(state, endpoint, parent, False, span, stream)
    if endpoint.role == "poll":
        # Not a logical request: a job step. Its end is counted in genai_video_jobs_total.
        gen = Generation(
            state, "unscoped", operation=endpoint.operation, model=model, provider=provider,
            span=None, count=False,
        )  # fmt: skip
        return _Call(state, endpoint, gen, False, span, stream)
    gen = Generation(
        state, "unscoped", operation=endpoint.operation, model=model, provider=provider,
        span=span, client_span=True,
    )  # fmt: skip
    return _Call(state, endpoint, gen, True, span, stream)


def _enter(call: _Call) -> tuple[Any, ...]:
    call_token = _active_call.set(call)
    ctx_token = otel_context.attach(trace.set_span_in_context(call.span))
    gen_token = _current.set(call.gen) if call.own else None
    return call_token, ctx_token, gen_token


def _exit(tokens: tuple[Any, ...]) -> None:
    call_token, ctx_token, gen_token = tokens
    if gen_token is not None:
        _current.reset(gen_token)
    otel_context.detach(ctx_token)
    _active_call.reset(call_token)


def _on_error(call: _Call, exc: BaseException) -> None:
    outcome = classify_exception(exc)
    if call.gen is not None and outcome.usage is not None:
        call.gen.add_usage(outcome.usage)
    if call.gen is not None and outcome.finish_reasons:
        call.gen.count_finish_reasons(outcome.finish_reasons)
    call.finish(outcome, exc)


def _on_result(call: _Call, result: Any, raw_mode: str | None, is_async: bool) -> Any:
    """Judge a returned value; a stream is wrapped and judged when it ends."""
    if raw_mode is not None:
        if raw_mode == "true" and not call.stream and not is_async:
            parsed = result.parse()  # cached by the SDK: the caller's parse() gets this object
            _judge(call, parsed)
        else:
            # The body (or stream) is the caller's to read: record the HTTP outcome only.
            _finish_http_only(call, result)
        return result
    if type(result).__name__ in ("Stream", "AsyncStream"):
        recorder = StreamRecorder(call, call.endpoint.kind)
        proxy: Any = (
            AsyncStreamProxy(result, recorder) if is_async else StreamProxy(result, recorder)
        )
        weakref.finalize(proxy, recorder.abandoned)
        return proxy
    _judge(call, result)
    return result


def _judge(call: _Call, parsed: Any) -> None:
    outcome = classify_result(parsed, kind=call.endpoint.kind)
    call.record_response(outcome, parsed)
    call.finish(outcome)


def _finish_http_only(call: _Call, response: Any) -> None:
    status = getattr(response, "status_code", None)
    call.finish(Outcome(status_code=status if isinstance(status, int) else None))


async def _on_result_async(call: _Call, result: Any, raw_mode: str | None) -> Any:
    if raw_mode == "true" and not call.stream:
        parsed = result.parse()
        if hasattr(parsed, "__await__"):
            parsed = await parsed
        _judge(call, parsed)
        return result
    return _on_result(call, result, raw_mode, True)


def _guard_start(endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> _Call | None:
    try:
        return _start(endpoint, resource, kwargs)
    except Exception:
        report_internal_error("openai_start")
        return None


def _make_sync_wrapper(endpoint: Endpoint) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _guard_start(endpoint, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        tokens = _guarded_enter(call)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _guarded_exit(tokens)
            _guarded(_on_error, call, exc)
            raise
        _guarded_exit(tokens)
        try:
            return _on_result(call, result, _raw_mode(kwargs), False)
        except Exception:
            report_internal_error("openai_result")
            return result

    return wrapper


def _make_async_wrapper(endpoint: Endpoint) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _guard_start(endpoint, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        tokens = _guarded_enter(call)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _guarded_exit(tokens)
            _guarded(_on_error, call, exc)
            raise
        _guarded_exit(tokens)
        try:
            return await _on_result_async(call, result, _raw_mode(kwargs))
        except Exception:
            report_internal_error("openai_result")
            return result

    return wrapper


def _guarded(func: Callable[..., Any], *args: Any) -> None:
    try:
        func(*args)
    except Exception:
        report_internal_error("openai_finish")


def _guarded_enter(call: _Call) -> tuple[Any, ...] | None:
    try:
        return _enter(call)
    except Exception:
        report_internal_error("openai_enter")
        return None


def _guarded_exit(tokens: tuple[Any, ...] | None) -> None:
    if tokens is None:
        return
    try:
        _exit(tokens)
    except Exception:
        report_internal_error("openai_exit")


# ---------------------------------------------------------------------- streams


if TYPE_CHECKING:
    _ProxyBase = wrapt.ObjectProxy[Any]
else:  # wrapt 1.x proxies are not generic at run time
    _ProxyBase = wrapt.ObjectProxy


class StreamRecorder:
    """Watches a stream's chunks as the caller reads them; finishes its call exactly once."""

    __slots__ = (
        "_lock",
        "call",
        "done",
        "final_outcome",
        "finish_reasons",
        "first_token",
        "kind",
        "saw_content",
        "saw_refusal",
        "saw_tools",
        "usage",
    )

    def __init__(self, call: _Call, kind: str) -> None:
        self.call = call
        self.kind = kind
        self.done = False
        self.first_token: float | None = None
        self.finish_reasons: list[str] = []
        self.saw_content = False
        self.saw_tools = False
        self.saw_refusal = False
        self.usage: Any = None
        self.final_outcome: Outcome | None = None
        self._lock = threading.Lock()

    def chunk(self, item: Any) -> None:
        try:
            if self.kind == "responses":
                self._response_event(item)
            else:
                self._chat_chunk(item)
        except Exception:
            report_internal_error("stream_chunk")

    def _first(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def _chat_chunk(self, chunk: Any) -> None:
        choices = getattr(chunk, "choices", None)
        if choices and isinstance(choices, list):  # a gateway's odd JSON is data, not an error
            for choice in choices:
                if not self.saw_content:  # once content arrived, deltas decide nothing more
                    self._delta(choice)
                reason = getattr(choice, "finish_reason", None)
                if reason is not None and len(self.finish_reasons) < _MAX_STREAM_REASONS:
                    self.finish_reasons.append(normalize_finish_reason(reason) or "other")
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage

    def _delta(self, choice: Any) -> None:
        delta = getattr(choice, "delta", None)
        if delta is None:
            if getattr(choice, "text", None):  # legacy completions
                self.saw_content = True
                self._first()
            return
        if getattr(delta, "content", None):
            self.saw_content = True
            self._first()
        if getattr(delta, "tool_calls", None) or getattr(delta, "function_call", None):
            self.saw_tools = True
            self._first()
        if getattr(delta, "refusal", None):
            self.saw_refusal = True
            self._first()

    def _response_event(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if not isinstance(kind, str):
            return
        if kind.endswith(".delta"):
            self._first()
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = getattr(event, "response", None)
            self.final_outcome = classify_result(response, kind="responses")

    def outcome(self, exhausted: bool) -> Outcome:
        if self.kind == "responses":
            if self.final_outcome is not None:
                return self.final_outcome
            return Outcome(HARD, "connection") if exhausted else Outcome()
        reasons = tuple(self.finish_reasons)
        usage = extract_usage(self.usage)
        if not reasons:
            # Ran out without a finish reason: the server dropped the connection.
            return Outcome(HARD, "connection", usage=usage) if exhausted else Outcome(usage=usage)
        failure: str | None = None
        if "content_filter" in reasons:
            failure = "content_filter"
        elif self.saw_refusal and not self.saw_content:
            failure = "refusal"
        elif "length" in reasons:
            failure = "length"
        elif not (self.saw_content or self.saw_tools) and "stop" in reasons:
            failure = "empty_content"
        return Outcome(SOFT if failure else NONE, failure, finish_reasons=reasons, usage=usage)

    def end(self, exhausted: bool = False, exc: BaseException | None = None) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
        try:
            call = self.call
            if self.first_token is not None:
                ttft = self.first_token - call.start
                gen = call.gen
                if gen is not None:
                    call.state.metrics.time_to_first_token.child(gen.labels()).observe(ttft)
                if call.span.is_recording():
                    call.span.set_attribute(attrs.GEN_AI_TIME_TO_FIRST_CHUNK, ttft)
            if exc is not None:
                _on_error(call, exc)
                return
            outcome = self.outcome(exhausted)
            call.record_response(outcome, None)
            call.finish(outcome)
        except Exception:
            report_internal_error("stream_end")

    def abandoned(self) -> None:
        self.end()


class StreamProxy(_ProxyBase):
    """A transparent proxy of an SDK `Stream` that records the stream as it is read."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_recorder.end(exhausted=True)
            raise
        except BaseException as exc:
            self._self_recorder.end(exc=exc)
            raise
        self._self_recorder.chunk(item)
        return item

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_recorder.end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_recorder.end()


class AsyncStreamProxy(_ProxyBase):
    """A transparent proxy of an SDK `AsyncStream` that records the stream as it is read."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_recorder.end(exhausted=True)
            raise
        except BaseException as exc:
            self._self_recorder.end(exc=exc)
            raise
        self._self_recorder.chunk(item)
        return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_recorder.end()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_recorder.end()


# ---------------------------------------------------------------------- HTTP-layer retries


# The raw-HTTP patch's recorders (sync, async), run for httpx(2) sends outside SDK calls: they
# ride on this one `send` wrapper so two wrappers never stack (their undo order would matter).
_raw_send_hooks: tuple[Callable[..., Any], Callable[..., Any]] | None = None


def _send_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _active_call.get()
    if call is None:
        hooks = _raw_send_hooks
        if hooks is not None:
            return hooks[0](wrapped, instance, args, kwargs)
        return wrapped(*args, **kwargs)
    _attempt_started(call, args, kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _attempt_ended(call, exc=exc)
        raise
    _attempt_ended(call, response=response)
    return response


async def _async_send_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _active_call.get()
    if call is None:
        hooks = _raw_send_hooks
        if hooks is not None:
            return await hooks[1](wrapped, instance, args, kwargs)
        return await wrapped(*args, **kwargs)
    _attempt_started(call, args, kwargs)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _attempt_ended(call, exc=exc)
        raise
    _attempt_ended(call, response=response)
    return response


def _attempt_started(call: _Call, args: Any, kwargs: Any) -> None:
    try:
        request = args[0] if args else kwargs.get("request")
        raw = request.headers.get(RETRY_COUNT_HEADER)
        count = int(raw) if raw is not None and raw.isdigit() else None
        call.attempt_started(count)
    except Exception:
        report_internal_error("openai_attempt")


def _attempt_ended(call: _Call, *, exc: BaseException | None = None, response: Any = None) -> None:
    try:
        if exc is not None:
            call.attempt_ended(classify_exception(exc))
            return
        status = response.status_code
        if status >= 400:
            call.attempt_ended(classify_exception(_StatusOnly(status, response)))
        else:
            call.attempt_ended(None)
    except Exception:
        report_internal_error("openai_attempt")


class _StatusOnly(Exception):
    """An HTTP error response seen at the transport, classified like the error it becomes."""

    def __init__(self, status: int, response: Any) -> None:
        super().__init__(status)
        self.status_code = status
        self.response = response


# ---------------------------------------------------------------------- lifecycle

_lock = threading.Lock()
_patched: list[tuple[Any, str, Any]] = []  # (owner class, attribute, original)
_send_patched: list[tuple[Any, str, Any]] = []
_client_patches: weakref.WeakKeyDictionary[Any, list[tuple[Any, str]]] = weakref.WeakKeyDictionary()


def _resolve(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _wrap_attribute(
    owner: Any, name: str, wrapper: Callable[..., Any], into: list[tuple[Any, str, Any]]
) -> None:
    original = owner.__dict__.get(name)
    if original is None:
        return
    wrapt.wrap_function_wrapper(owner, name, wrapper)
    into.append((owner, name, original))


def _patch_send() -> None:
    """Wrap httpx(2) `send` once: it records attempts only while a patched call runs."""
    if _send_patched:
        return
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        _wrap_attribute(module.Client, "send", _send_wrapper, _send_patched)
        _wrap_attribute(module.AsyncClient, "send", _async_send_wrapper, _send_patched)


def _unpatch(patches: list[tuple[Any, str, Any]]) -> None:
    while patches:
        owner, name, original = patches.pop()
        setattr(owner, name, original)


def is_instrumented() -> bool:
    """True while the global patch is on."""
    return bool(_patched)


def instrument_openai(client: Any = None) -> None:
    """Patch every OpenAI/AsyncOpenAI (and Azure) client, or only `client`.

    Idempotent. Raises ImportError when the openai package is not installed.

    >>> import failsight
    >>> failsight.instrument_openai()  # doctest: +SKIP
    """
    import openai  # noqa: F401  - a clear ImportError when missing

    with _lock:
        if client is not None:
            _instrument_client(client)
        elif not _patched:
            for endpoint in ENDPOINTS:
                for cls_name, factory in (
                    (endpoint.sync_cls, _make_sync_wrapper),
                    (endpoint.async_cls, _make_async_wrapper),
                ):
                    owner = _resolve(endpoint.module, cls_name)
                    if owner is not None:
                        _wrap_attribute(owner, endpoint.method, factory(endpoint), _patched)
        _patch_send()


def uninstrument_openai(client: Any = None) -> None:
    """Undo `instrument_openai` (for `client` only, if given): originals restored exactly."""
    with _lock:
        if client is not None:
            for resource, name in _client_patches.pop(client, []):
                resource.__dict__.pop(name, None)
        else:
            _unpatch(_patched)
        if not _patched and not len(_client_patches) and _raw_send_hooks is None:
            _unpatch(_send_patched)


def set_raw_send_hooks(hooks: tuple[Callable[..., Any], Callable[..., Any]] | None) -> None:
    """Install (None: remove) the raw-HTTP recorders on the shared httpx(2) `send` wrapper.

    `send` stays wrapped while either patch needs it and is restored exactly after both.
    """
    global _raw_send_hooks
    with _lock:
        _raw_send_hooks = hooks
        if hooks is not None:
            _patch_send()
        elif not _patched and not len(_client_patches):
            _unpatch(_send_patched)


def _instrument_client(client: Any) -> None:
    if client in _client_patches:
        return
    is_async = type(client).__name__.startswith("Async")
    done: list[tuple[Any, str]] = []
    for endpoint in ENDPOINTS:
        resource = client
        for part in endpoint.path:
            resource = getattr(resource, part, None)
            if resource is None:
                break
        if resource is None:
            continue
        method = type(resource).__dict__.get(endpoint.method)
        if method is None:
            continue
        original = getattr(method, "__wrapped__", method)  # the SDK's own, even if patched
        factory = _make_async_wrapper if is_async else _make_sync_wrapper
        wrapper = wrapt.FunctionWrapper(original, factory(endpoint))
        bound = wrapper.__get__(resource, type(resource))
        resource.__dict__[endpoint.method] = bound
        done.append((resource, endpoint.method))
    _client_patches[client] = done
