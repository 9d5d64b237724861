"""The failure taxonomy as pure functions: exceptions and API responses in, `Outcome` out.

No I/O and no telemetry imports. Everything is duck-typed, so openai SDK objects, plain
JSON dicts of the wire format and `requests`/`httpx` errors are read the same way, and a
malformed input yields a best-effort `Outcome` instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "classify_exception",
    "classify_result",
    "classify_status",
    "extract_usage",
    "parse_retry_after",
    "worst_soft_reason",
]

from failsight._filters import filters_of_error, filters_of_response
from failsight._taxonomy import (
    CONNECTION_NAMES,
    FAILING_FINISH_REASONS,
    FINISH_REASONS,
    HARD,
    INVALID_RESPONSE_NAMES,
    MAX_TEXT,
    NONE,
    RETRYABLE_REASONS,
    SOFT,
    SOFT_EXCEPTIONS,
    SOFT_PRIORITY,
    TIMEOUT_NAMES,
    VIDEO_FAILURE_REASONS,
    Outcome,
    Usage,
    normalize_finish_reason,
    normalize_video_status,
    reason_for_status,
)
from failsight._taxonomy import as_int as _int
from failsight._taxonomy import as_list as _list
from failsight._taxonomy import as_str as _str
from failsight._taxonomy import field as _get

# --------------------------------------------------------------------------- exceptions


def _mro_names(exc: BaseException) -> set[str]:
    try:
        return {cls.__name__ for cls in type(exc).__mro__}
    except Exception:
        return set()


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


def _status_of(exc: BaseException) -> int | None:
    status = _int(_get(exc, "status_code"))
    if status is None:
        status = _int(_get(_get(exc, "response"), "status_code"))
    if status is None:
        status = _int(_get(exc, "status"))  # aiohttp ClientResponseError
    return status if status is not None and 100 <= status <= 599 else None


def _headers_get(headers: Any, name: str) -> Any:
    if headers is None:
        return None
    try:
        return headers.get(name)
    except Exception:
        return None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds; HTTP dates ignored)."""
    raw_ms = _headers_get(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
        except (TypeError, ValueError):
            pass
    raw = _headers_get(headers, "retry-after")
    if raw is not None:
        try:
            seconds = float(raw)
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
        except (TypeError, ValueError):
            return None
    return None


def _error_fields(exc: BaseException) -> tuple[str | None, str | None]:
    """(param, code) of an API error: openai's attributes, else the `error` object of the body."""
    param = _str(_get(exc, "param"))
    code = _str(_get(exc, "code"))
    if param is None and code is None:
        body = _get(exc, "body")
        err = _get(body, "error") if isinstance(_get(body, "error"), Mapping) else body
        if isinstance(err, Mapping):
            param, code = _str(_get(err, "param")), _str(_get(err, "code"))
    return param, code


def _is_task_not_exist(code: str | None, exc: BaseException) -> bool:
    if code == "task_not_exist":
        return True
    try:
        return "task_not_exist" in str(exc)[:MAX_TEXT]
    except Exception:
        return False


def classify_exception(exc: BaseException) -> Outcome:
    """Classify an exception raised by an API call (or by code around it).

    >>> classify_exception(TimeoutError()).reason
    'timeout'
    """
    try:
        return _classify_exception(exc)
    except Exception:  # an exception with hostile attributes never escapes as an error
        try:
            error_type: str | None = _qualified_name(exc)
        except Exception:
            error_type = None
        return Outcome(HARD, "exception", error_type=error_type)


def _classify_exception(exc: BaseException) -> Outcome:
    names = _mro_names(exc)
    error_type = _qualified_name(exc)
    for name, reason in SOFT_EXCEPTIONS.items():
        if name in names:
            completion = _get(exc, "completion")
            inner = classify_result(completion) if completion is not None else Outcome()
            return Outcome(
                SOFT,
                reason,
                finish_reasons=inner.finish_reasons or (reason,),
                usage=inner.usage,
                error_type=error_type,
                response_id=inner.response_id,
                response_model=inner.response_model,
                filters=inner.filters,
            )

    response = _get(exc, "response")
    headers = _get(response, "headers")
    request_id = _str(_get(exc, "request_id")) or _str(_headers_get(headers, "x-request-id"))
    param, code = _error_fields(exc)
    status = _status_of(exc)
    filters = tuple(filters_of_error(_get(exc, "body"))) if code == "content_filter" else ()

    if names & INVALID_RESPONSE_NAMES:
        reason = "invalid_response"
    elif names & TIMEOUT_NAMES:
        reason = "timeout"
    elif status is not None and status >= 300:
        # a 3xx too: the SDK got an answer it cannot use (the status fallback, invalid_response)
        reason = reason_for_status(status)
    elif names & CONNECTION_NAMES:
        reason = "connection"
    else:
        reason = "exception"
    return Outcome(
        HARD,
        reason,
        status_code=status,
        error_type=error_type,
        error_param=param,
        error_code=code,
        request_id=request_id,
        retry_after=parse_retry_after(headers) if reason in RETRYABLE_REASONS else None,
        transient=reason == "not_found" and _is_task_not_exist(code, exc),
        filters=filters,
    )


def classify_status(status: int, headers: Any = None, body: Any = None) -> Outcome:
    """An HTTP answer seen without an exception (raw HTTP, one SDK attempt), judged by status.

    An error status is classified as the error it would become; `error.type` stays unset (no
    exception was raised, so it is the reason: docs/reference.md#status-and-errors). `body` is
    the decoded JSON, if any.

    >>> classify_status(429, {"retry-after": "2"}).retry_after
    2.0
    >>> classify_status(200).failed
    False
    """
    try:
        if not isinstance(status, int) or status < 400:
            return Outcome(status_code=status if isinstance(status, int) else None)
        error = _get(body, "error")
        err = error if isinstance(error, Mapping) else body
        param = code = message = None
        if isinstance(err, Mapping):
            param, code = _str(_get(err, "param")), _str(_get(err, "code"))
            message = _str(_get(err, "message"))
        reason = reason_for_status(status)
        transient = reason == "not_found" and (
            code == "task_not_exist" or (message is not None and "task_not_exist" in message)
        )
        return Outcome(
            HARD,
            reason,
            status_code=status,
            error_param=param,
            error_code=code,
            request_id=_str(_headers_get(headers, "x-request-id")),
            retry_after=parse_retry_after(headers) if reason in RETRYABLE_REASONS else None,
            transient=transient,
            filters=tuple(filters_of_error(body)) if code == "content_filter" else (),
        )
    except Exception:  # hostile headers or body never escape as an error
        return Outcome(HARD, "invalid_response", status_code=status)


# --------------------------------------------------------------------------- responses


def extract_usage(usage: Any) -> Usage | None:
    """Token usage from chat (`prompt_tokens`…) or Responses (`input_tokens`…) shapes."""
    if usage is None:
        return None
    input_tokens = _int(_get(usage, "prompt_tokens"))
    output_tokens = _int(_get(usage, "completion_tokens"))
    if input_tokens is None and output_tokens is None:
        input_tokens = _int(_get(usage, "input_tokens"))
        output_tokens = _int(_get(usage, "output_tokens"))
        input_details = _get(usage, "input_tokens_details")
        output_details = _get(usage, "output_tokens_details")
    else:
        input_details = _get(usage, "prompt_tokens_details")
        output_details = _get(usage, "completion_tokens_details")
    # Details are mostly absent: skip their look-ups then.
    reasoning = None if output_details is None else _int(_get(output_details, "reasoning_tokens"))
    cached = None if input_details is None else _int(_get(input_details, "cached_tokens"))
    if input_tokens is None and output_tokens is None and reasoning is None and cached is None:
        return None
    return Usage(input_tokens, output_tokens, reasoning, cached)


def _blank(text: Any) -> bool:
    if text is None:
        return True
    if isinstance(text, str):
        return not text.strip()
    if isinstance(text, list):  # content parts
        return all(_blank(_get(part, "text")) for part in text)
    return False


# Soft failures of several choices: the most telling one names the request.


def worst_soft_reason(reasons: list[str]) -> str | None:
    if not reasons:
        return None
    found = set(reasons)
    for reason in SOFT_PRIORITY:
        if reason in found:
            return reason
    return None


def _classify_choices(obj: Any, choices: list[Any]) -> Outcome:
    finish: list[str] = []
    failures: list[str] = []
    for choice in choices:
        finish_reason = normalize_finish_reason(_get(choice, "finish_reason"))
        if finish_reason is not None:
            finish.append(finish_reason)
        message = _get(choice, "message")
        if message is None and _get(choice, "delta") is not None:
            continue  # a stream chunk: content is judged by the stream recorder
        failing = FAILING_FINISH_REASONS.get(finish_reason) if finish_reason else None
        if failing is not None:
            failures.append(failing)
            continue
        if message is not None:
            if _get(message, "refusal"):
                failures.append("refusal")
            elif (
                finish_reason in ("stop", None)
                and _blank(_get(message, "content"))
                and not _get(message, "tool_calls")
                and not _get(message, "function_call")
            ):
                failures.append("empty_content")
        elif finish_reason in ("stop", None) and _blank(_get(choice, "text")):
            failures.append("empty_content")  # legacy completion
    reason = worst_soft_reason(failures)
    return Outcome(
        SOFT if reason else NONE,
        reason,
        finish_reasons=tuple(finish),
        usage=extract_usage(_get(obj, "usage")),
        response_id=_str(_get(obj, "id")),
        response_model=_str(_get(obj, "model")),
    )


_plain_types: dict[type, bool] = {dict: False}  # type -> an object, not a Mapping


def _plain(*objects: Any) -> bool:
    """None of `objects` is a Mapping (raw JSON is left to the duck-typed path)."""
    for obj in objects:
        cls = type(obj)
        plain = _plain_types.get(cls)
        if plain is None:
            plain = not issubclass(cls, Mapping)
            if len(_plain_types) < 512:
                _plain_types[cls] = plain
        if not plain:
            return False
    return True


def _classify_chat_object(obj: Any) -> Outcome | None:
    """`_classify_choices` for a chat completion as the openai SDK parses it (objects all
    the way down, every field present), read with plain attribute look-ups and no call per
    field: the one shape nearly every call returns. Anything else (a Mapping inside, a field
    left out, an accessor that raises) returns None and the duck-typed path decides. A test
    holds the two paths equal on generated responses.
    """
    try:
        choices = obj.choices
        if type(choices) is not list or not choices or not _plain(obj):
            return None
        finish: list[str] = []
        failures: list[str] = []
        for choice in choices:
            message = choice.message
            if message is None or not _plain(choice, message):
                return None  # a chunk, a legacy completion, raw JSON
            reason = choice.finish_reason
            if reason is not None:
                if reason not in FINISH_REASONS:
                    reason = normalize_finish_reason(reason)
                finish.append(reason)
                if reason == "content_filter" or reason == "length":
                    failures.append(reason)
                    continue
            if message.refusal:
                failures.append("refusal")
            elif (
                (reason is None or reason == "stop")
                and _blank(message.content)
                and not message.tool_calls
                and not message.function_call
            ):
                failures.append("empty_content")
        usage = obj.usage
        if usage is not None:
            if not _plain(usage):
                return None
            input_tokens = _int(usage.prompt_tokens)
            output_tokens = _int(usage.completion_tokens)
            if input_tokens is None and output_tokens is None:
                return None  # perhaps the Responses spelling
            details = usage.prompt_tokens_details
            cached = None if details is None else _int(details.cached_tokens)
            details = usage.completion_tokens_details
            reasoning = None if details is None else _int(details.reasoning_tokens)
            usage = Usage(input_tokens, output_tokens, reasoning, cached)
        reason = worst_soft_reason(failures) if failures else None
        return Outcome(
            SOFT if reason else NONE,
            reason,
            finish_reasons=tuple(finish),
            usage=usage,
            response_id=_str(obj.id),
            response_model=_str(obj.model),
        )
    except Exception:  # a field left out, an accessor that raises: the duck-typed path
        return None


def _classify_response_api(obj: Any) -> Outcome:
    status = _get(obj, "status")
    usage = extract_usage(_get(obj, "usage"))
    rid, model = _str(_get(obj, "id")), _str(_get(obj, "model"))

    def outcome(
        failure: str, reason: str | None, finish: tuple[str, ...] = (), **kw: Any
    ) -> Outcome:
        return Outcome(
            failure, reason, finish_reasons=finish, usage=usage, response_id=rid,
            response_model=model, **kw,
        )  # fmt: skip

    if status == "incomplete":
        why = _get(_get(obj, "incomplete_details"), "reason")
        finish = normalize_finish_reason(why)
        finish = finish or "other"
        return outcome(SOFT, finish if finish == "content_filter" else "length", (finish,))
    if status == "failed":
        code = _str(_get(_get(obj, "error"), "code"))
        reason = "rate_limited" if code == "rate_limit_exceeded" else "server_error"
        return outcome(HARD, reason, error_code=code)
    if status not in ("completed", None):
        return outcome(NONE, None)  # queued / in_progress / cancelled background work
    has_text = has_other = refused = False
    for item in _list(_get(obj, "output")) or []:
        kind = _get(item, "type")
        if kind == "message":
            for part in _list(_get(item, "content")) or []:
                if _get(part, "type") == "refusal":
                    refused = True
                elif not _blank(_get(part, "text")):
                    has_text = True
        elif kind != "reasoning":
            has_other = True  # tool and function calls: output by design
    done: tuple[str, ...] = ("stop",) if status == "completed" else ()
    if refused and not has_text:
        return outcome(SOFT, "refusal", done)
    if not (has_text or has_other):
        return outcome(SOFT, "empty_content", done)
    return outcome(NONE, None, done)


def _classify_images(obj: Any) -> Outcome:
    data = _list(_get(obj, "data")) or []
    usage = extract_usage(_get(obj, "usage"))
    revised = None
    usable = False
    for item in data:
        if revised is None:
            revised = _str(_get(item, "revised_prompt"))
        if _get(item, "url") or _get(item, "b64_json"):
            usable = True
    if not usable:
        return Outcome(SOFT, "image_filtered", usage=usage, revised_prompt=revised)
    return Outcome(usage=usage, revised_prompt=revised)


def _classify_video(obj: Any) -> Outcome:
    status = normalize_video_status(_get(obj, "status"))
    error = _get(obj, "error")
    code = _str(_get(error, "code")) if not isinstance(error, str) else None
    reason = VIDEO_FAILURE_REASONS.get(status or "")
    return Outcome(
        SOFT if reason else NONE,
        reason,
        response_id=_str(_get(obj, "id")) or _str(_get(obj, "task_id")),
        response_model=_str(_get(obj, "model")),
        video_status=status,
        error_code=code,
    )


_KINDS: Final = frozenset({"chat", "text_completion", "responses", "embeddings", "image", "video"})


def _detect_kind(obj: Any) -> str | None:
    marker = _get(obj, "object")
    if marker in ("chat.completion", "chat.completion.chunk", "text_completion"):
        return "chat"
    if marker == "response":
        return "responses"
    if marker == "video":
        return "video"
    data = _get(obj, "data")
    if marker == "list" and isinstance(data, (list, tuple)):
        return "embeddings"
    if _get(obj, "choices") is not None:
        return "chat"
    if _get(obj, "incomplete_details") is not None or _get(obj, "output_text") is not None:
        return "responses"
    if isinstance(data, (list, tuple)) or (_get(obj, "created") is not None and data is None):
        return "image"
    if _get(obj, "status") is not None:
        output = _list(_get(obj, "output"))
        if output and isinstance(_get(output[0], "type"), str):
            return "responses"
        return "video"
    return None


def _with_filters(outcome: Outcome, obj: Any) -> Outcome:
    """A content-filtered answer with the categories it gives (`_filters`); others as they are."""
    if "content_filter" in outcome.finish_reasons:
        return outcome._replace(filters=tuple(filters_of_response(obj)))
    return outcome


def classify_result(obj: Any, *, kind: str | None = None) -> Outcome:
    """Classify an API response object or JSON dict; `kind` skips shape detection.

    `kind` is one of "chat", "text_completion", "responses", "embeddings", "image", "video".

    >>> classify_result({"data": []}, kind="image").reason
    'image_filtered'
    """
    try:
        if kind not in _KINDS:
            kind = _detect_kind(obj)
        if kind == "chat" and type(obj) is not dict:
            found = _classify_chat_object(obj)
            if found is not None:
                return _with_filters(found, obj)
        if kind in ("chat", "text_completion"):
            choices = _list(_get(obj, "choices"))
            if choices is None:
                return Outcome(HARD, "invalid_response")
            if not choices:
                if _get(obj, "object") == "chat.completion.chunk":
                    return Outcome(usage=extract_usage(_get(obj, "usage")))
                return Outcome(SOFT, "empty_content", usage=extract_usage(_get(obj, "usage")))
            return _with_filters(_classify_choices(obj, choices), obj)
        if kind == "responses":
            return _classify_response_api(obj)
        if kind == "image":
            return _classify_images(obj)
        if kind == "video":
            return _classify_video(obj)
        if kind == "embeddings":
            return Outcome(
                usage=extract_usage(_get(obj, "usage")),
                response_model=_str(_get(obj, "model")),
            )
    except Exception:  # a malformed object never escapes as an error
        return Outcome(HARD, "invalid_response")
    return Outcome()
