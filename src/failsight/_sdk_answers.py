"""What an SDK call returns, recorded: an answer judged at once, a stream followed to its end,
a `with_raw_response`/`with_streaming_response` answer judged when the caller parses it.
"""

from __future__ import annotations

import inspect
import weakref
from typing import TYPE_CHECKING, Any, Final, cast

import wrapt

from failsight import _content, _deferred
from failsight._classify import classify_exception, classify_result, classify_status
from failsight._engine import Call
from failsight._guard import guarded, swallow
from failsight._judged import declare, judged, judged_error
from failsight._spans import is_recording
from failsight._streams import watch
from failsight._taxonomy import Outcome

__all__ = ["RAW_RESPONSE_HEADER", "answer", "declare_request", "set_stream_types"]

RAW_RESPONSE_HEADER: Final = "X-Stainless-Raw-Response"
_RESULT: Final = guarded("call_record")

if TYPE_CHECKING:
    _ProxyBase = wrapt.ObjectProxy[Any]
else:  # wrapt 1.x proxies are not generic at run time
    _ProxyBase = wrapt.ObjectProxy

_stream_types: tuple[type, ...] = ()  # the SDK's Stream and AsyncStream


def set_stream_types(types: tuple[type, ...]) -> None:
    """The SDK's stream classes (resolved when the patch is applied)."""
    global _stream_types
    _stream_types = types


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


def _judge(call: Call, parsed: Any) -> None:
    outcome = Outcome()
    try:
        outcome = classify_result(parsed, kind=call.op.kind)
        if call.declared is not None:
            outcome = judged(call, outcome, parsed)
        call.record(outcome, parsed)
        settings = call.state.settings
        if settings.capture_content and is_recording(call.span):
            limit = settings.max_content_length
            output = _content.output_messages(call.op.kind, parsed, limit)
            if output is not None:
                call.values[_content.OUTPUT] = output
    except Exception as exc:
        swallow("call_record", exc)
    finally:
        call.finish(outcome)


# `parse()`'s pydantic types -> the format the SDK sends for them (built once per type).
_formats: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary()


def _format_of(parse_type: type, responses: bool) -> Any:
    """The `response_format` (chat) or `text` (Responses) that `parse()` sends for a type."""
    found = _formats.get(parse_type)
    if found is None:
        from openai.lib._parsing._completions import type_to_response_format_param

        found = cast(Any, type_to_response_format_param(parse_type))  # the SDK's own conversion
        _formats[parse_type] = found
    if responses:  # the Responses API's `text.format` spells the same schema flat
        spec = found["json_schema"]
        return {"format": {"type": found["type"], "strict": True, "name": spec["name"],
                           "schema": spec["schema"]}}  # fmt: skip
    return found


def declare_request(call: Call, kwargs: dict[str, Any]) -> None:
    """Keep on `call` what its request declares (`_judged.declare`); `parse()`'s pydantic
    `response_format` / `text_format` are read as the JSON Schema the SDK sends for them."""
    if (
        "tools" not in kwargs
        and "response_format" not in kwargs
        and "text" not in kwargs
        and "text_format" not in kwargs
    ):
        return  # the plain call: four `in` tests, no call
    try:
        request: Any = kwargs
        if call.op.kind == "responses":
            text_format = kwargs.get("text_format")
            if isinstance(text_format, type):
                request = {**kwargs, "text": _format_of(text_format, True)}
        elif isinstance(kwargs.get("response_format"), type):
            request = {**kwargs, "response_format": _format_of(kwargs["response_format"], False)}
        declare(call, request)
    except Exception as exc:
        swallow("call_start", exc)


# ---------------------------------------------------------------------- raw responses


class _RawAnswer:
    """A `with_raw_response`/`with_streaming_response` answer: judged when parsed."""

    __slots__ = ("call", "is_async", "judged", "status", "stream")

    def __init__(self, call: Call, is_async: bool, status: Any) -> None:
        self.call = call
        self.is_async = is_async
        self.status = status if isinstance(status, int) else None
        self.judged = False
        self.stream: Any = None  # the proxy of a parsed stream, returned on every parse()

    def parsed(self, parsed: Any) -> Any:
        if _stream_types and isinstance(parsed, _stream_types):
            if self.stream is None:
                self.stream = watch(self.call, parsed, self.is_async)
            return self.stream
        if not self.judged:
            self.judged = True
            _judge(self.call, parsed)
        return parsed

    def failed(self, exc: BaseException) -> None:
        """`parse()` raised: the SDK's soft-failure errors keep their class; anything else
        means the body was unusable (hard, `invalid_response`)."""
        if self.judged:
            return
        self.judged = True
        outcome = Outcome()
        try:
            with _RESULT:
                # A declared answer `parse()` refused is judged as `create` would be.
                outcome = judged_error(self.call, exc, classify_exception(exc))
                if outcome.reason == "exception":
                    outcome = outcome._replace(reason="invalid_response")
                if outcome.usage is not None or outcome.finish_reasons:
                    self.call.record(outcome)
        finally:
            self.call.finish(outcome, exc)

    def closed(self) -> None:
        """The body was released: whatever was not parsed is known by its status only."""
        stream = self.stream
        if stream is not None:
            stream._self_watcher.end()
        else:
            self.call.finish(classify_status(self.status) if self.status else Outcome())

    def abandoned(self) -> None:
        if not self.call.done:
            _deferred.defer(self.closed)


class RawResponseProxy(_ProxyBase):
    """An SDK raw response whose `parse()` the patch judges (or follows, for a stream)."""

    def __init__(self, wrapped: Any, answer: _RawAnswer) -> None:
        super().__init__(wrapped)
        self._self_answer = answer

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            parsed = self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            self._self_answer.failed(exc)
            raise
        return self._self_answer.parsed(parsed)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_answer.closed()


# The async twin of RawResponseProxy: the SDK's async parse() and close() are awaited.
class AsyncRawResponseProxy(_ProxyBase):
    """An async SDK raw response whose `await parse()` the patch judges or follows."""

    def __init__(self, wrapped: Any, answer: _RawAnswer) -> None:
        super().__init__(wrapped)
        self._self_answer = answer

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            parsed = await self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            self._self_answer.failed(exc)
            raise
        return self._self_answer.parsed(parsed)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_answer.closed()


def _raw(call: Call, result: Any, mode: str, is_async: bool) -> Any:
    answer = _RawAnswer(call, is_async, getattr(result, "status_code", None))
    async_parse = inspect.iscoroutinefunction(getattr(type(result), "parse", None))
    proxy: Any = (
        AsyncRawResponseProxy(result, answer) if async_parse else RawResponseProxy(result, answer)
    )
    if mode == "true" and not async_parse:
        # The body is read already: judge it now (parse() is cached by the SDK, so the
        # caller's parse() gets the same object; a failing parse raises again for the caller).
        try:
            answer.parsed(result.parse())
        except Exception as exc:
            answer.failed(exc)
    weakref.finalize(proxy, answer.abandoned)
    return proxy


def answer(call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    """What the caller gets back: the result, or a proxy that finishes the call later."""
    mode = _raw_mode(kwargs)
    if mode is not None:
        return _raw(call, result, mode, is_async)
    if _stream_types and isinstance(result, _stream_types):
        return watch(call, result, is_async)
    _judge(call, result)
    return result
