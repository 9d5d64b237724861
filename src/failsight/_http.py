"""The raw-HTTP patch: the SDK patch's telemetry for code that calls gateways directly.

`requests.Session.send` and `httpx(2).Client.send`/`AsyncClient.send` are wrapped. A request
whose URL path ends in an OpenAI-compatible route (`/chat/completions`, `/images/generations`,
`/videos`, `/videos/{id}`, ...) becomes a call of the SDK patch's engine (`_openai._Call`):
the same CLIENT span, classifier, tokens, finish reasons, video jobs and logical-request
account. Every other request passes through after one string check on its path.

The JSON body is read only where the caller's library has read it anyway (a non-streamed
response); a streamed body is observed as the caller reads it, never read ahead or buffered
beyond a small bound. httpx(2) sends share the SDK patch's `send` wrapper (see
`_openai.set_raw_send_hooks`): during a patched SDK call the SDK patch records, never this one.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import json
import re
import sys
import threading
import types
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus, urlsplit

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace

from failsight import _openai
from failsight import _spans as attrs
from failsight._classify import (
    HARD,
    SOFT,
    VIDEO_TERMINAL,
    Outcome,
    classify_exception,
    classify_result,
    provider_for_host,
)
from failsight._config import get_state
from failsight._guard import report_internal_error
from failsight._redact import mask_secrets
from failsight._openai import (
    Endpoint,
    StreamRecorder,
    _active_call,
    _begin,
    _Call,
    _on_error,
)
from failsight._scope import UNKNOWN

__all__ = [
    "DEFAULT_ROUTES",
    "ROUTE_KINDS",
    "instrument_http",
    "is_http_instrumented",
    "uninstrument_http",
]

_STAGE: Final = "http"
_MAX_TEXT: Final = 256  # bound on a model name or id copied out of a body
_MAX_REQUEST_JSON: Final = 4 << 20  # request bodies parsed for `model`; larger ones are skipped
_MAX_BODY: Final = 1 << 20  # streamed non-SSE body kept to classify at its end
_MAX_LINE: Final = 1 << 20  # one SSE line; longer and the stream is no longer observed
_SSE_KINDS: Final = frozenset({"chat", "text_completion", "responses"})


def _endpoint(operation: str, kind: str, api_type: str, role: str = "call") -> Endpoint:
    # A raw route has no SDK location: only the fields the engine reads are set.
    return Endpoint((), "", "", "", "", operation, kind, api_type, role)


# Route kind → (HTTP method, engine endpoint). `video_poll` advances a job; it is not a request.
ROUTE_KINDS: Final[Mapping[str, tuple[str, Endpoint]]] = types.MappingProxyType(
    {
        "chat": ("POST", _endpoint("chat", "chat", "chat_completions")),
        "text_completion": ("POST", _endpoint("text_completion", "text_completion", "completions")),
        "responses": ("POST", _endpoint("chat", "responses", "responses")),
        "embeddings": ("POST", _endpoint("embeddings", "embeddings", "embeddings")),
        "image_generation": ("POST", _endpoint("image_generation", "image", "images")),
        "video_generation": ("POST", _endpoint("video_generation", "video", "videos")),
        "video_poll": ("GET", _endpoint("video_generation", "video", "videos", role="poll")),
    }
)

# Path suffix → route kind. A `{name}` segment matches any one segment.
DEFAULT_ROUTES: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "/chat/completions": "chat",
        "/completions": "text_completion",
        "/responses": "responses",
        "/embeddings": "embeddings",
        "/images/generations": "image_generation",
        "/images/edits": "image_generation",
        "/images/variations": "image_generation",
        "/videos": "video_generation",
        "/videos/{id}/remix": "video_generation",
        "/videos/{id}": "video_poll",
    }
)

_PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}\Z")
_MULTIPART_MODEL: Final = re.compile(
    rb'name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]{1,256})\r\n'
)
_FORM_MODEL: Final = re.compile(r"(?:^|&)model=([^&]{1,512})")


# ---------------------------------------------------------------------- routes


@dataclass(frozen=True)
class _Route:
    pattern: str
    segments: tuple[str | None, ...]  # None: a `{name}` segment
    method: str
    endpoint: Endpoint
    id_at: int | None  # index of the job id segment (polls)


def _parse_route(pattern: Any, kind: Any) -> _Route:
    where = f"failsight.instrument_http: route {pattern!r}"
    if not isinstance(pattern, str):
        raise TypeError(f"{where}: a route is a path string such as '/v1/chat/completions'")
    if not pattern.startswith("/") or "?" in pattern or "#" in pattern or len(pattern) > 512:
        raise ValueError(f"{where} must be a URL path starting with '/', without query")
    segments: list[str | None] = []
    for part in pattern.rstrip("/")[1:].split("/"):
        if not part:
            raise ValueError(f"{where} has an empty segment")
        if "{" in part or "}" in part:
            if not _PLACEHOLDER.match(part):
                raise ValueError(f"{where}: a placeholder is a whole segment such as '{{id}}'")
            segments.append(None)
        else:
            segments.append(part)
    if segments[-1] is None and (len(segments) < 2 or segments[-2] is None):
        raise ValueError(f"{where} must end in a fixed segment, or in one '{{id}}' after one")
    if not isinstance(kind, str) or kind not in ROUTE_KINDS:
        raise ValueError(
            f"{where}: unknown kind {kind!r}; use one of {', '.join(ROUTE_KINDS)} "
            "(or None to drop a default route)"
        )
    method, endpoint = ROUTE_KINDS[kind]
    id_at = None
    if endpoint.role == "poll":
        id_at = max((i for i, s in enumerate(segments) if s is None), default=None)
    return _Route(pattern, tuple(segments), method, endpoint, id_at)


class _RouteTable:
    """Routes indexed by their last fixed segment, so a non-matching path costs one lookup."""

    __slots__ = ("by_last", "by_parent")

    def __init__(self, routes: Mapping[str, str]) -> None:
        by_last: dict[str, list[_Route]] = {}
        by_parent: dict[str, list[_Route]] = {}
        for pattern, kind in routes.items():
            route = _parse_route(pattern, kind)
            last = route.segments[-1]
            if last is None:
                by_parent.setdefault(route.segments[-2] or "", []).append(route)
            else:
                by_last.setdefault(last, []).append(route)

        def ordered(routes: list[_Route]) -> tuple[_Route, ...]:
            # Longest first: `/chat/completions` is tried before `/completions`.
            return tuple(sorted(routes, key=lambda r: -len(r.segments)))

        self.by_last = {key: ordered(value) for key, value in by_last.items()}
        self.by_parent = {key: ordered(value) for key, value in by_parent.items()}

    def candidates(self, path: str) -> tuple[_Route, ...] | None:
        """Routes that `path` (a path or a URL without query) may match; None for most paths."""
        if path.endswith("/"):
            path = path[:-1]
        head, _, last = path.rpartition("/")
        routes = self.by_last.get(last)
        if routes is None and self.by_parent:
            routes = self.by_parent.get(head[head.rfind("/") + 1 :])
        return routes

    @staticmethod
    def match(
        method: str, path: str, routes: tuple[_Route, ...]
    ) -> tuple[_Route, str | None] | None:
        """(route, job id from the path) of the first route matching `method` and `path`."""
        segments = path.rstrip("/").split("/")
        method = method.upper()
        for route in routes:
            count = len(route.segments)
            if route.method != method or len(segments) <= count:
                continue
            tail = segments[-count:]
            if all(
                (want == got) if want is not None else bool(got)
                for want, got in zip(route.segments, tail, strict=True)
            ):
                job_id = tail[route.id_at][:_MAX_TEXT] if route.id_at is not None else None
                return route, job_id
        return None


def _build_table(routes: Any) -> _RouteTable:
    if routes is None:
        return _RouteTable(DEFAULT_ROUTES)
    if not isinstance(routes, Mapping):
        raise TypeError(
            "failsight.instrument_http: routes must be a mapping of path pattern to kind, "
            f"e.g. {{'/gateway/chat': 'chat'}}; got {type(routes).__name__}"
        )
    merged: dict[str, Any] = dict(DEFAULT_ROUTES)
    for pattern, kind in routes.items():
        if kind is None:
            merged.pop(pattern, None)
        else:
            merged[pattern] = kind
    return _RouteTable(merged)


# ---------------------------------------------------------------------- requests


def _request_fields(body: Any, content_type: Any) -> tuple[str, bool]:
    """(model, stream) of a request body: JSON, a multipart form or an urlencoded form."""
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    if not isinstance(body, (bytes, bytearray)) or not body:
        return UNKNOWN, False
    ctype = content_type.lower() if isinstance(content_type, str) else ""
    if ctype.startswith("multipart/"):
        found = _MULTIPART_MODEL.search(body)
        return (found.group(1).decode("utf-8", "replace") if found else UNKNOWN), False
    if ctype.startswith("application/x-www-form-urlencoded"):
        text = bytes(body[:65536]).decode("latin-1")
        form = _FORM_MODEL.search(text)
        return (unquote_plus(form.group(1))[:_MAX_TEXT] if form else UNKNOWN), False
    if len(body) > _MAX_REQUEST_JSON:
        return UNKNOWN, False
    try:
        fields = json.loads(body)
    except ValueError:
        return UNKNOWN, False
    if not isinstance(fields, dict):
        return UNKNOWN, False
    model = fields.get("model")
    model = model[:_MAX_TEXT] if isinstance(model, str) and model else UNKNOWN
    return model, fields.get("stream") is True


def _form_fields(fields: Any) -> tuple[str, bool]:
    """(model, stream) of httpx multipart fields (an upload body is not read ahead)."""
    for field in fields or ():
        if getattr(field, "name", None) != "model":
            continue
        value = getattr(field, "value", None)
        if value is None:
            value = getattr(field, "file", None)  # `files={"model": (None, "gpt")}`
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            return value[:_MAX_TEXT], False
    return UNKNOWN, False


_servers: dict[tuple[str, str | None, int | None], tuple[str, str | None, int | None]] = {}


def _server(scheme: str, host: str | None, port: int | None) -> tuple[str, str | None, int | None]:
    """(provider, address, port) of a URL's origin; cached per origin."""
    key = (scheme, host, port)
    cached = _servers.get(key)
    if cached is None:
        if port is None:
            port = 443 if scheme == "https" else 80
        cached = (provider_for_host(host), host, port)
        if len(_servers) < 256:
            _servers[key] = cached
    return cached


# The raw call being sent: a redirect that `requests` re-sends through `send` is not another.
_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "failsight_http_call", default=False
)


def _start_call(route: _Route, model: str, stream: bool, server: tuple[Any, ...]) -> _Call:
    if route.endpoint.role != "poll":
        jobs = get_state().video_jobs
        if len(jobs):
            # A job past its deadline ends at the next tracked call, not only at its own poll.
            jobs.expire()
    provider, address, port = server
    return _begin(route.endpoint, model, provider, address, port, stream)


def _start_requests(routes: tuple[_Route, ...], request: Any) -> tuple[_Call, str | None] | None:
    if _active_call.get() is not None or _in_call.get():
        return None
    parts = urlsplit(request.url)
    found = _RouteTable.match(request.method or "", parts.path, routes)
    if found is None:
        return None
    route, job_id = found
    model, stream = _request_fields(request.body, request.headers.get("content-type"))
    server = _server(parts.scheme, parts.hostname, parts.port)
    return _start_call(route, model, stream, server), job_id


def _start_httpx(routes: tuple[_Route, ...], request: Any) -> tuple[_Call, str | None] | None:
    if _in_call.get():
        return None
    url = request.url
    found = _RouteTable.match(request.method, url.path, routes)
    if found is None:
        return None
    route, job_id = found
    try:
        content = request.content
    except Exception:  # a streamed upload (multipart): its form fields, never its bytes
        model, stream = _form_fields(getattr(request.stream, "fields", None))
    else:
        model, stream = _request_fields(content, request.headers.get("content-type"))
    return _start_call(route, model, stream, _server(url.scheme, url.host, url.port)), job_id


def _enter(call: _Call) -> tuple[Any, Any]:
    # CLIENT span current while sending: HTTP-level instrumentations nest under it.
    return _in_call.set(True), otel_context.attach(trace.set_span_in_context(call.span))


def _exit(tokens: tuple[Any, Any] | None) -> None:
    if tokens is None:
        return
    try:
        otel_context.detach(tokens[1])
        _in_call.reset(tokens[0])
    except Exception:
        report_internal_error(_STAGE)


def _guard(func: Callable[..., Any], *args: Any) -> Any:
    try:
        return func(*args)
    except Exception:
        report_internal_error(_STAGE)
        return None


def _finish_anyway(call: _Call, outcome: Outcome) -> None:
    """After a telemetry error: still end the call, so no span or in-flight count is left open."""
    try:
        call.finish(outcome)
    except Exception:
        report_internal_error(_STAGE)


def _record_error(call: _Call, exc: BaseException) -> None:
    try:
        _on_error(call, exc)
    except Exception:
        report_internal_error(_STAGE)
        _finish_anyway(call, Outcome(HARD, "exception"))


def _record_response(
    call: _Call,
    job_id: str | None,
    response: Any,
    streamed: bool,
    observe: Callable[[_BodyObserver, Any], None],
) -> None:
    try:
        _on_response(call, job_id, response, streamed, observe)
    except Exception:
        report_internal_error(_STAGE)
        status = getattr(response, "status_code", None)
        _finish_anyway(call, Outcome(status_code=status if isinstance(status, int) else None))


# ---------------------------------------------------------------------- responses


class _HttpStatusError(Exception):
    """An HTTP error answer (`send` returned normally), classified like the error it becomes."""

    def __init__(self, status: int, response: Any, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if message is None and isinstance(body, dict):
            message = body.get("message")
        super().__init__(message[:_MAX_TEXT] if isinstance(message, str) else status)
        self.status_code = status
        self.response = response
        self.body = body


def _json_or_none(content: Any) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _already_read(response: Any) -> bool:
    if getattr(response, "is_stream_consumed", False) is True:  # httpx(2)
        return True
    return getattr(response, "_content", False) is not False  # requests: cached body


def _is_sse(response: Any) -> bool:
    ctype = response.headers.get("content-type")
    return isinstance(ctype, str) and ctype.lower().startswith("text/event-stream")


def _on_response(
    call: _Call,
    job_id: str | None,
    response: Any,
    streamed: bool,
    observe: Callable[[_BodyObserver, Any], None],
) -> None:
    status = response.status_code
    if call.span.is_recording():
        call.attrs[attrs.HTTP_STATUS] = status
    if streamed and _already_read(response):
        streamed = False  # an in-memory transport or adapter has read it already: judge it now
    if status >= 400:
        body = None if streamed else _json_or_none(response.content)
        outcome = classify_exception(_HttpStatusError(status, response, body))
        # No exception was raised: `error.type` is the reason (SPEC §3), not our stand-in's name.
        outcome = outcome._replace(error_type=None)
        attrs.error_attributes(call.attrs, outcome)  # an own call's span gets them from here
        call.finish(outcome)
        return
    request_id = response.headers.get("x-request-id")
    if isinstance(request_id, str) and call.span.is_recording():
        call.attrs[attrs.REQUEST_ID] = mask_secrets(request_id, _MAX_TEXT)
    sse = _is_sse(response)
    if streamed:
        # httpx streams raw bytes; requests' iter_content has already undone Content-Encoding.
        decoder = None if observe is _observe_requests else _decoder(response.headers)
        observer = _BodyObserver(call, job_id, status, sse, decoder)
        observe(observer, response)
        # A body the caller never reads (or drops) still ends its call, as abandoned.
        weakref.finalize(response, observer.end)
        return
    if sse:
        observer = _BodyObserver(call, job_id, status, True, None)
        observer.feed(response.content)
        observer.end(exhausted=True)
        return
    _judge_content(call, job_id, status, response.content)


def _judge_content(call: _Call, job_id: str | None, status: int, content: bytes) -> None:
    try:
        parsed = json.loads(content)
    except ValueError:  # undecodable body (UnicodeDecodeError is a ValueError too)
        call.finish(Outcome(HARD, "invalid_response", status_code=status))
        return
    _settle(call, job_id, classify_result(parsed, kind=call.endpoint.kind))


def _settle(call: _Call, job_id: str | None, outcome: Outcome) -> None:
    """Record a judged response; a poll that finds its job past the deadline is `video_timeout`."""
    key = None
    jobs = call.state.video_jobs
    if outcome.video_status is not None:
        if outcome.response_id is None and job_id:
            outcome = outcome._replace(response_id=job_id)
        key = outcome.response_id
    was_open = key is not None and jobs.is_open(key)
    call.record_response(outcome, None)
    if was_open and outcome.video_status not in VIDEO_TERMINAL and not jobs.is_open(key):
        # This poll's update ended the job `timed_out`: the job failed, as the scope should know.
        outcome = outcome._replace(failure_class=SOFT, reason="video_timeout")
    call.finish(outcome)


class _Unsupported:
    """A content encoding the observer cannot decode: the body is left unobserved."""


_UNSUPPORTED: Final = _Unsupported()


def _decoder(headers: Any) -> Any:
    encoding = headers.get("content-encoding")
    if not encoding:
        return None
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    return _UNSUPPORTED


def _namespace(fields: dict[str, Any]) -> types.SimpleNamespace:
    # SSE events as attribute objects: the SDK's StreamRecorder reads SDK chunks that way.
    return types.SimpleNamespace(**fields)


class _BodyObserver:
    """A streamed body seen as the caller reads it; ends its call exactly once.

    SSE events of text routes go to the SDK patch's `StreamRecorder`; another body is kept
    up to `_MAX_BODY` bytes and classified at its end (beyond that, only its status counts).
    """

    __slots__ = (
        "_lock",
        "call",
        "chunks",
        "cleanup",
        "data",
        "decoder",
        "done",
        "invalid",
        "job_id",
        "lost",
        "pending",
        "recorder",
        "size",
        "status",
    )

    def __init__(
        self, call: _Call, job_id: str | None, status: int, sse: bool, decoder: Any
    ) -> None:
        self.call = call
        self.job_id = job_id
        self.status = status
        text_events = sse and call.endpoint.kind in _SSE_KINDS
        self.recorder = StreamRecorder(call, call.endpoint.kind) if text_events else None
        # Other event streams (e.g. partial images) are not judged: their status is all we know.
        self.lost = decoder is _UNSUPPORTED or (sse and not text_events)
        self.decoder = None if decoder is _UNSUPPORTED else decoder
        self.chunks: list[bytes] = []
        self.size = 0
        self.pending = b""
        self.data: list[bytes] = []
        self.invalid: BaseException | None = None
        self.cleanup: Callable[[], None] | None = None
        self.done = False
        self._lock = threading.Lock()

    def feed(self, data: Any) -> None:
        if self.done or self.lost:
            return
        try:
            if isinstance(data, str):  # requests' iter_content(decode_unicode=True)
                data = data.encode("utf-8")
            if self.decoder is not None:
                data = self.decoder.decompress(data)
            self._take(data)
        except Exception:
            self.lost = True
            report_internal_error(_STAGE)

    def _take(self, data: bytes) -> None:
        if self.recorder is not None:
            self._sse(data)
        else:
            self.size += len(data)
            if self.size > _MAX_BODY:
                self.lost = True
                self.chunks = []
            else:
                self.chunks.append(bytes(data))

    def _sse(self, data: bytes) -> None:
        lines = (self.pending + data if self.pending else bytes(data)).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > _MAX_LINE:
            self.lost = True  # not an event stream we can follow; the caller's read is unaffected
            return
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            value = line[5:]
            self.data.append(value[1:] if value.startswith(b" ") else value)

    def _dispatch(self) -> None:
        if not self.data:
            return
        payload = self.data[0] if len(self.data) == 1 else b"\n".join(self.data)
        self.data = []
        if payload == b"[DONE]" or self.recorder is None:
            return
        try:
            item = json.loads(payload, object_hook=_namespace)
        except ValueError as exc:
            if self.invalid is None:
                self.invalid = exc.with_traceback(None)
            return
        self.recorder.chunk(item)

    def end(self, exhausted: bool = False, exc: BaseException | None = None) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
        try:
            self._end(exhausted and not self.lost, exc)
        except Exception:
            report_internal_error(_STAGE)
            _finish_anyway(self.call, Outcome(status_code=self.status))
        finally:
            cleanup, self.cleanup = self.cleanup, None
            if cleanup is not None:
                _guard(cleanup)

    def _end(self, exhausted: bool, exc: BaseException | None) -> None:
        call = self.call
        if exhausted and self.decoder is not None:
            self._take(self.decoder.flush())
            exhausted = not self.lost
        recorder = self.recorder
        if recorder is not None:
            if exhausted:
                if self.pending:
                    self._line(self.pending)
                    self.pending = b""
                self._dispatch()
            if exc is None and self.invalid is not None:
                exc = self.invalid  # an undecodable event: hard `invalid_response`, as the SDK
            recorder.end(exhausted=exhausted, exc=exc)
            return
        if exc is not None:
            _on_error(call, exc)
        elif exhausted:
            content = b"".join(self.chunks)
            self.chunks = []
            _judge_content(call, self.job_id, self.status, content)
        else:
            # Closed before its end, or too large to keep: its status is all we know.
            call.finish(Outcome(status_code=self.status))


def _observed(chunks: Any, observer: _BodyObserver) -> Iterator[Any]:
    """Yields `chunks` unchanged, showing each to `observer`; ends it with the iteration."""
    try:
        for chunk in chunks:
            observer.feed(chunk)
            yield chunk
    except GeneratorExit:
        observer.end()  # the caller stopped reading: closed early, not a failure
        if isinstance(chunks, types.GeneratorType):
            chunks.close()
        raise
    except BaseException as exc:
        observer.end(exc=exc)
        raise
    observer.end(exhausted=True)


async def _observed_async(chunks: Any, observer: _BodyObserver) -> AsyncIterator[Any]:
    try:
        async for chunk in chunks:
            observer.feed(chunk)
            yield chunk
    except GeneratorExit:
        observer.end()
        raise
    except BaseException as exc:
        observer.end(exc=exc)
        raise
    observer.end(exhausted=True)


class _ObservedIterContent:
    """Stands in for a `requests` response's `iter_content`: every way of reading goes there."""

    __slots__ = ("observer", "response")

    def __init__(self, response: Any, observer: _BodyObserver) -> None:
        self.response = weakref.ref(response)  # no cycle: the response can still be collected
        self.observer = observer

    def __call__(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
        response = self.response()
        if response is None:  # pragma: no cover - only reachable through the response
            raise ReferenceError("response is gone")
        chunks = type(response).iter_content(response, chunk_size, decode_unicode)
        if self.observer.done:
            return chunks
        return _observed(chunks, self.observer)


def _unshadow(ref: weakref.ref[Any]) -> None:
    response = ref()
    if response is not None:
        vars(response).pop("iter_content", None)


def _observe_requests(observer: _BodyObserver, response: Any) -> None:
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
            def __init__(self, inner: Any, observer: _BodyObserver) -> None:
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
            def __init__(self, inner: Any, observer: _BodyObserver) -> None:
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


def _observe_httpx(observer: _BodyObserver, response: Any, is_async: bool) -> None:
    module = sys.modules[type(response).__module__.partition(".")[0]]
    response.stream = _stream_type(module, is_async)(response.stream, observer)


def _observe_httpx_sync(observer: _BodyObserver, response: Any) -> None:
    _observe_httpx(observer, response, False)


def _observe_httpx_async(observer: _BodyObserver, response: Any) -> None:
    _observe_httpx(observer, response, True)


# ---------------------------------------------------------------------- the wrappers

_table: _RouteTable | None = None


def _matched_call(
    args: Any, kwargs: Any, path_of: Callable[[Any], str], start: Callable[..., Any]
) -> tuple[_Call, str | None] | None:
    """The started call of a request to an AI route; None (pass through) for anything else."""
    table = _table
    if table is None:
        return None
    try:
        request = args[0] if args else kwargs["request"]
        routes = table.candidates(path_of(request))
    except Exception:
        report_internal_error(_STAGE)
        return None
    if routes is None:
        return None
    started: tuple[_Call, str | None] | None = _guard(start, routes, request)
    return started


def _requests_path(request: Any) -> str:
    return str(request.url.partition("?")[0])


def _httpx_path(request: Any) -> str:
    return str(request.url.path)


def _requests_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    started = _matched_call(args, kwargs, _requests_path, _start_requests)
    if started is None:
        return wrapped(*args, **kwargs)
    call, job_id = started
    tokens = _guard(_enter, call)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _exit(tokens)
        _record_error(call, exc)
        raise
    _exit(tokens)
    streamed = kwargs.get("stream", getattr(instance, "stream", False)) is True
    _record_response(call, job_id, response, streamed, _observe_requests)
    return response


def _httpx_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    started = _matched_call(args, kwargs, _httpx_path, _start_httpx)
    if started is None:
        return wrapped(*args, **kwargs)
    call, job_id = started
    tokens = _guard(_enter, call)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _exit(tokens)
        _record_error(call, exc)
        raise
    _exit(tokens)
    _record_response(call, job_id, response, kwargs.get("stream") is True, _observe_httpx_sync)
    return response


async def _httpx_send_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    started = _matched_call(args, kwargs, _httpx_path, _start_httpx)
    if started is None:
        return await wrapped(*args, **kwargs)
    call, job_id = started
    tokens = _guard(_enter, call)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _exit(tokens)
        _record_error(call, exc)
        raise
    _exit(tokens)
    _record_response(call, job_id, response, kwargs.get("stream") is True, _observe_httpx_async)
    return response


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
    table = _build_table(routes)
    with _lock:
        _table = table
        if not _requests_patch:
            _patch_requests()
        _openai.set_raw_send_hooks((_httpx_send, _httpx_send_async))


def uninstrument_http() -> None:
    """Undo `instrument_http()`: the original `send` functions are restored exactly.

    >>> import failsight
    >>> failsight.uninstrument_http()
    """
    global _table
    with _lock:
        _table = None
        _openai.set_raw_send_hooks(None)
        while _requests_patch:
            owner, name, original, wrapper = _requests_patch.pop()
            # Someone wrapped over ours: leave theirs; ours passes everything through now.
            if owner.__dict__.get(name) is wrapper:
                setattr(owner, name, original)
