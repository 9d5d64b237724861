"""`instrument_http`: the SDK patch's telemetry for code that calls gateways directly.

`requests.Session.send` is wrapped here, and httpx/httpx2 sends are claimed through the
shared transport wrapper (`_transport`). A request whose URL path ends in an OpenAI-compatible
route (`_routes`) becomes an engine `Call`: the same CLIENT span, classifier, tokens, finish
reasons, video jobs and logical-request account as an SDK call. During an SDK call the SDK
patch records, never this one. Every other request passes through after one look-up.

The JSON body is read only where the caller's library has read it anyway (a non-streamed
response); a streamed body is observed as the caller reads it (`_body`), never read ahead.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import threading
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import wrapt

from failsight import _deferred, _redact, _spans, _transport
from failsight._body import BodyWatcher, Unsupported, declare_body, judge_content, make_decoder
from failsight._classify import classify_status
from failsight._engine import Call, active_call, expire_video_jobs, send, send_async, start_call
from failsight._guard import guarded, swallow
from failsight._operations import DEFAULT_ROUTES, OPERATIONS
from failsight._provider import server_of
from failsight._routes import Route, RouteTable, build_table, form_fields, parse_request

__all__ = ["DEFAULT_ROUTES", "ROUTE_KINDS", "instrument_http", "is_http_instrumented",
           "uninstrument_http"]  # fmt: skip

ROUTE_KINDS: Final = OPERATIONS  # the kinds a route may name

_MAX_TEXT: Final = 256  # bound on a model name or id copied out of a body
_HTTP: Final = guarded("http")


# ---------------------------------------------------------------------- requests


def _remember_key(headers: Any) -> None:
    """The exact key sent, masked wherever it shows up later (pattern or not)."""
    remember = _redact.remember_secret
    auth = headers.get("authorization")
    if isinstance(auth, str) and auth[:7].lower() == "bearer ":
        remember(auth[7:].strip())
    key = headers.get("api-key")
    if isinstance(key, str):
        remember(key.strip())


def _start(route: Route, model: str, stream: bool, server: tuple[Any, ...]) -> Call | None:
    if not route.op.is_poll:
        expire_video_jobs()
    provider, address, port = server
    call = start_call(route.op, model, provider, address, port, stream)
    if call is not None:
        call.attempt_started(None)  # a raw request is one attempt: its caller retries
    return call


def _start_requests(routes: tuple[Route, ...], request: Any) -> tuple[Call, str | None] | None:
    parts = urlsplit(request.url)
    found = RouteTable.match(request.method or "", parts.path, routes)
    if found is None:
        return None
    route, job_id = found
    _remember_key(request.headers)
    model, stream, fields = parse_request(request.body, request.headers.get("content-type"))
    call = _start(route, model, stream, server_of(parts.scheme, parts.hostname, parts.port))
    if call is not None and fields is not None:
        declare_body(call, fields)
    return (call, job_id) if call is not None else None


def _start_httpx(routes: tuple[Route, ...], request: Any) -> tuple[Call, str | None] | None:
    url = request.url
    found = RouteTable.match(request.method, url.path, routes)
    if found is None:
        return None
    route, job_id = found
    _remember_key(request.headers)
    fields = None
    try:
        content = request.content
    except Exception:  # a streamed upload (multipart): its form fields, never its bytes
        model, stream = form_fields(getattr(request.stream, "fields", None))
    else:
        model, stream, fields = parse_request(content, request.headers.get("content-type"))
    call = _start(route, model, stream, server_of(url.scheme, url.host, url.port))
    if call is not None and fields is not None:
        declare_body(call, fields)
    return (call, job_id) if call is not None else None


# ---------------------------------------------------------------------- responses


def _json_or_none(content: Any) -> Any:
    try:
        return json.loads(content) if content else None
    except (ValueError, RecursionError):  # nested past what Python can read
        return None


def _already_read(response: Any) -> bool:
    if getattr(response, "is_stream_consumed", False) is True:  # httpx(2)
        return True
    return getattr(response, "_content", False) is not False  # requests: cached body


def _is_sse(response: Any) -> bool:
    ctype = response.headers.get("content-type")
    return isinstance(ctype, str) and ctype.lower().startswith("text/event-stream")


def _respond(
    call: Call,
    job_id: str | None,
    response: Any,
    streamed: bool,
    observe: Callable[[BodyWatcher, Any], None] | None,
) -> None:
    """Record an answer (`observe` hooks a streamed body; None: requests' decoded chunks)."""
    status = response.status_code
    call.values[_spans.HTTP_STATUS] = status
    if streamed and _already_read(response):
        streamed = False  # an in-memory transport or adapter has read it already: judge it now
    if status >= 400:
        body = None if streamed else _json_or_none(response.content)
        outcome = classify_status(status, response.headers, body)
        call.attempt_ended(outcome, status, response.headers)
        call.finish(outcome)
        return
    call.attempt_ended(None, status, response.headers)
    request_id = response.headers.get("x-request-id")
    if isinstance(request_id, str):
        call.values[_spans.REQUEST_ID] = _redact.mask_secrets(request_id, _MAX_TEXT)
    sse = _is_sse(response)
    if streamed:
        # httpx streams raw bytes; requests' iter_content has already undone Content-Encoding.
        lost = False
        decompressor = None
        if observe is not _observe_requests:
            try:
                decompressor = make_decoder(response.headers)
            except Unsupported:
                lost = True
        watcher = BodyWatcher(call, job_id, status, sse, decompressor)
        watcher.lost = watcher.lost or lost
        observe(watcher, response)  # type: ignore[misc]
        # A body the caller never reads (or drops) still ends its call, as abandoned.
        weakref.finalize(response, watcher.abandoned)
        return
    if sse:
        watcher = BodyWatcher(call, job_id, status, True, None)
        watcher.chunk(response.content)
        watcher.end(exhausted=True)
        return
    judge_content(call, job_id, status, response.content)


def _record(call: Call, job_id: str | None, response: Any, streamed: bool,
            observe: Callable[[BodyWatcher, Any], None]) -> None:  # fmt: skip
    try:
        with _HTTP:
            _respond(call, job_id, response, streamed, observe)
    finally:
        if not call.done and not streamed:
            status = getattr(response, "status_code", None)
            call.finish(classify_status(status) if isinstance(status, int) else classify_status(0))


def _observed(chunks: Any, observer: BodyWatcher) -> Iterator[Any]:
    """Yields `chunks` unchanged, showing each to `observer`; ends it with the iteration."""
    try:
        for chunk in chunks:
            observer.chunk(chunk)
            yield chunk
    except GeneratorExit:
        _closed_early(observer)
        if isinstance(chunks, types.GeneratorType):
            chunks.close()
        raise
    except BaseException as exc:
        observer.end(exc=exc)
        raise
    observer.end(exhausted=True)


def _closed_early(observer: BodyWatcher) -> None:
    """The caller stopped reading: closed early, not a failure. Closed by the garbage
    collector (an iterator dropped unread), the end is queued: a finaliser never records."""
    if _deferred.in_gc():
        observer.abandoned()
    else:
        observer.end()


# The async twin of `_observed`: an async generator cannot delegate to a sync one.
async def _observed_async(chunks: Any, observer: BodyWatcher) -> AsyncIterator[Any]:
    try:
        async for chunk in chunks:
            observer.chunk(chunk)
            yield chunk
    except GeneratorExit:
        _closed_early(observer)
        raise
    except BaseException as exc:
        observer.end(exc=exc)
        raise
    observer.end(exhausted=True)


class _ObservedIterContent:
    """Stands in for a `requests` response's `iter_content`: every way of reading goes there."""

    __slots__ = ("observer", "response")

    def __init__(self, response: Any, observer: BodyWatcher) -> None:
        self.response = weakref.ref(response)  # no cycle: the response can still be collected
        self.observer = observer

    def __call__(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
        response = self.response()
        if response is None:  # pragma: no cover - only reachable through the response
            raise ReferenceError("response is gone")
        chunks = type(response).iter_content(response, chunk_size, decode_unicode)
        if self.observer.ended:
            return chunks
        return _observed(chunks, self.observer)


def _unshadow(ref: weakref.ref[Any]) -> None:
    response = ref()
    if response is not None:
        vars(response).pop("iter_content", None)


def _observe_requests(observer: BodyWatcher, response: Any) -> None:
    vars(response)["iter_content"] = _ObservedIterContent(response, observer)
    observer.cleanup = functools.partial(_unshadow, weakref.ref(response))


_stream_types: dict[tuple[str, bool], type] = {}


def _stream_type(module: Any, is_async: bool) -> type:
    """An httpx(2) byte stream that shows what the caller reads to an observer (per module)."""
    key = (module.__name__, is_async)
    cls = _stream_types.get(key)
    if cls is not None:
        return cls
    if is_async:

        class ObservedAsyncStream(module.AsyncByteStream):  # type: ignore[misc]
            def __init__(self, inner: Any, observer: BodyWatcher) -> None:
                self._inner = inner
                self._observer = observer

            def __aiter__(self) -> AsyncIterator[bytes]:
                return _observed_async(self._inner, self._observer)

            async def aclose(self) -> None:
                try:
                    await self._inner.aclose()
                finally:
                    self._observer.end()

        cls = ObservedAsyncStream
    else:

        class ObservedStream(module.SyncByteStream):  # type: ignore[misc]
            def __init__(self, inner: Any, observer: BodyWatcher) -> None:
                self._inner = inner
                self._observer = observer

            def __iter__(self) -> Iterator[bytes]:
                return _observed(self._inner, self._observer)

            def close(self) -> None:
                try:
                    self._inner.close()
                finally:
                    self._observer.end()

        cls = ObservedStream
    _stream_types[key] = cls
    return cls


def _observe_httpx(observer: BodyWatcher, response: Any, is_async: bool) -> None:
    module = sys.modules[type(response).__module__.partition(".")[0]]
    response.stream = _stream_type(module, is_async)(response.stream, observer)


def _observe_httpx_sync(observer: BodyWatcher, response: Any) -> None:
    _observe_httpx(observer, response, False)


def _observe_httpx_async(observer: BodyWatcher, response: Any) -> None:
    _observe_httpx(observer, response, True)


# ---------------------------------------------------------------------- sending

_table: RouteTable | None = None


def _matched(args: Any, kwargs: Any, path: Callable[[Any], str],
             start: Callable[..., Any]) -> tuple[Call, str | None] | None:  # fmt: skip
    """The started call of a request to an AI route; None (pass through) for anything else."""
    table = _table
    if table is None or active_call.get() is not None:
        return None  # inside an SDK call (it records), or a redirect of a raw call
    try:
        request = args[0] if args else kwargs["request"]
        routes = table.candidates(path(request))
        if routes is None:
            return None  # most requests: one look-up, and through
        started: tuple[Call, str | None] | None = start(routes, request)
        return started
    except Exception as exc:
        swallow("http", exc)
        return None


def _requests_path(request: Any) -> str:
    return str(request.url.partition("?")[0])


def _httpx_path(request: Any) -> str:
    return str(request.url.path)


def _requests_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    started = _matched(args, kwargs, _requests_path, _start_requests)
    if started is None:
        return wrapped(*args, **kwargs)
    call, job_id = started
    response = send(call, wrapped, args, kwargs)
    streamed = kwargs.get("stream", getattr(instance, "stream", False)) is True
    _record(call, job_id, response, streamed, _observe_requests)
    return response


class _RawSend:
    """The transport's sender of one claimed httpx(2) request."""

    __slots__ = ("call", "job_id")

    def __init__(self, call: Call, job_id: str | None) -> None:
        self.call = call
        self.job_id = job_id

    def send(self, wrapped: Any, args: Any, kwargs: Any) -> Any:
        response = send(self.call, wrapped, args, kwargs)
        streamed = kwargs.get("stream") is True
        _record(self.call, self.job_id, response, streamed, _observe_httpx_sync)
        return response

    async def send_async(self, wrapped: Any, args: Any, kwargs: Any) -> Any:
        response = await send_async(self.call, wrapped, args, kwargs)
        streamed = kwargs.get("stream") is True
        _record(self.call, self.job_id, response, streamed, _observe_httpx_async)
        return response


def _claim(args: Any, kwargs: Any, is_async: bool) -> _RawSend | None:
    started = _matched(args, kwargs, _httpx_path, _start_httpx)
    return _RawSend(*started) if started is not None else None


# ---------------------------------------------------------------------- lifecycle

_lock = threading.Lock()
_requests_patch: list[tuple[Any, str, Any, Any]] = []  # (owner, name, original, our wrapper)


def _patch_requests() -> None:
    try:
        sessions = importlib.import_module("requests.sessions")
    except ImportError:
        return
    owner = sessions.Session
    original = owner.__dict__.get("send")
    if original is None:
        return
    wrapt.wrap_function_wrapper(owner, "send", _requests_send)
    _requests_patch.append((owner, "send", original, owner.__dict__["send"]))


def is_http_instrumented() -> bool:
    """True while `instrument_http()` is on."""
    return _table is not None


def instrument_http(*, routes: Mapping[str, str | None] | None = None) -> None:
    """Record calls to OpenAI-compatible routes made with `requests`, `httpx` or `httpx2`.

    A request is recorded when its URL path ends in a route of `DEFAULT_ROUTES`
    (`/chat/completions`, `/completions`, `/responses`, `/embeddings`, `/images/generations`,
    `/images/edits`, `/images/variations`, `/videos`, `/videos/{id}`, `/videos/{id}/remix`).
    `routes` adds path patterns for gateways with other paths (a kind of `ROUTE_KINDS` each;
    None drops a default). Idempotent: calling again only replaces the routes. Raises
    TypeError/ValueError naming a bad route before anything is patched.

    >>> import failsight
    >>> failsight.instrument_http(routes={
    ...     "/kling/v1/videos/text2video": "video_generation",
    ...     "/kling/v1/videos/text2video/{task_id}": "video_poll",
    ... })  # doctest: +SKIP
    """
    global _table
    table = build_table(routes)
    with _lock:
        _table = table
        if not _requests_patch:
            _patch_requests()
        _transport.register("http", _claim)


def uninstrument_http() -> None:
    """Undo `instrument_http()`: the original `send` functions are restored exactly.

    >>> import failsight
    >>> failsight.uninstrument_http()
    """
    global _table
    with _lock:
        _table = None
        _transport.unregister("http")
        while _requests_patch:
            owner, name, original, wrapper = _requests_patch.pop()
            # Someone wrapped over ours: leave theirs; ours passes everything through now.
            if owner.__dict__.get(name) is wrapper:
                setattr(owner, name, original)
