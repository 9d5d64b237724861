"""Span attribute names (docs/reference.md#spans; GenAI semconv v1.41.0) and span helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from failsight._guard import guarded, swallow
from failsight._redact import mask_secrets
from failsight._taxonomy import TOKEN_TYPES
from failsight._vocabulary import VOCABULARY

if TYPE_CHECKING:
    from failsight._taxonomy import Outcome

__all__ = [
    "add_exception_event",
    "end_span",
    "error_attributes",
    "exemplar_of",
    "is_recording",
    "otel_point",
    "start_span",
]

# Every span step is guarded on its own: a broken tracer, span or processor loses span
# detail, never a metric (docs/reference.md#counting-rules: metrics never depend on spans).
_SPAN: Final = guarded("span")

# GenAI semantic conventions (the vocabulary's `spans`, at its `semconv_version`).
_SPANS: Final = VOCABULARY["spans"]
_GEN_AI: Final[Mapping[str, str]] = _SPANS["gen_ai"]
_USAGE: Final[Mapping[str, str]] = _SPANS["usage"]
_OWN: Final[Mapping[str, str]] = _SPANS["failsight"]
SEMCONV_VERSION: Final[str] = _SPANS["semconv_version"]
GEN_AI_OPERATION: Final[str] = _GEN_AI["operation"]
GEN_AI_PROVIDER: Final[str] = _GEN_AI["provider"]
GEN_AI_REQUEST_MODEL: Final[str] = _GEN_AI["request_model"]
GEN_AI_RESPONSE_MODEL: Final[str] = _GEN_AI["response_model"]
GEN_AI_RESPONSE_ID: Final[str] = _GEN_AI["response_id"]
GEN_AI_FINISH_REASONS: Final[str] = _GEN_AI["finish_reasons"]
GEN_AI_INPUT_TOKENS: Final[str] = _USAGE["input"]
GEN_AI_OUTPUT_TOKENS: Final[str] = _USAGE["output"]
GEN_AI_CACHED_TOKENS: Final[str] = _USAGE["cached_input"]
GEN_AI_REASONING_TOKENS: Final[str] = _USAGE["reasoning"]
GEN_AI_REQUEST_STREAM: Final[str] = _GEN_AI["stream"]
GEN_AI_TIME_TO_FIRST_CHUNK: Final[str] = _GEN_AI["time_to_first_chunk"]
GEN_AI_TOKEN_TYPE: Final[str] = _GEN_AI["token_type"]
OPENAI_API_TYPE: Final[str] = _GEN_AI["api_type"]
SERVER_ADDRESS: Final[str] = _GEN_AI["server_address"]
SERVER_PORT: Final[str] = _GEN_AI["server_port"]
ERROR_TYPE: Final[str] = _GEN_AI["error_type"]
HTTP_STATUS: Final[str] = _GEN_AI["http_status"]

# failsight's own.
FAILURE_CLASS: Final[str] = _OWN["failure_class"]
FAILURE_REASON: Final[str] = _OWN["failure_reason"]
ATTEMPTS: Final[str] = _OWN["attempts"]
RETRY_COUNT: Final[str] = _OWN["retry_count"]
CALL_SITE: Final[str] = _OWN["call_site"]
ERROR_PARAM: Final[str] = _OWN["error_param"]
ERROR_CODE: Final[str] = _OWN["error_code"]
REQUEST_ID: Final[str] = _OWN["request_id"]
ERROR_MESSAGE: Final[str] = _OWN["error_message"]
REVISED_PROMPT: Final[str] = _OWN["revised_prompt"]
VIDEO_STATUS: Final[str] = _OWN["video_status"]
# The priced usage of a response (CLIENT span) or request (scope span): there is no
# semantic-convention name for it (v1.41.0).
COST_USD: Final[str] = _OWN["cost_usd"]
WASTED_COST_USD: Final[str] = _OWN["wasted_cost_usd"]
# Tool calls of an answer judged against the request's declarations (`_judged`).
TOOL_CALLS: Final[str] = _OWN["tool_calls"]
TOOL_CALLS_FAILED: Final[str] = _OWN["tool_calls_failed"]
FAILED_TOOL: Final[str] = _OWN["failed_tool"]

# Token types as they map onto span attributes.
USAGE_ATTRIBUTES: Final[Mapping[str, str]] = _USAGE
# The same names in the order of `Usage`'s fields.
USAGE_ATTRIBUTE_NAMES: Final = tuple(USAGE_ATTRIBUTES[token_type] for token_type in TOKEN_TYPES)


def start_span(
    tracer: Tracer, name: str, kind: SpanKind, attributes: Mapping[str, Any] | None = None
) -> Span:
    """`tracer.start_span`, or a non-recording span when the tracer (or a processor) raises."""
    try:
        return tracer.start_span(name, kind=kind, attributes=attributes)
    except Exception as exc:
        swallow("span", exc)
        return INVALID_SPAN


def is_recording(span: Span) -> bool:
    """`span.is_recording()`, False when it raises."""
    try:
        return span.is_recording()
    except Exception as exc:
        swallow("span", exc)
        return False


def end_span(
    span: Span,
    values: dict[str, Any],
    failure_reason: str | None = None,
    exc: BaseException | None = None,
) -> None:
    """Set `values`, the ERROR status (when `failure_reason`) and the exception event, then end
    the span; each step on its own, and `end()` whatever the others raised."""
    try:
        if values and is_recording(span):
            try:
                span.set_attributes(values)
            except Exception as error:
                swallow("span", error)
            if failure_reason is not None:
                try:
                    span.set_status(Status(StatusCode.ERROR, failure_reason))
                except Exception as error:
                    swallow("span", error)
            if exc is not None:
                try:
                    add_exception_event(span, exc)
                except Exception as error:
                    swallow("span", error)
    finally:
        try:
            span.end()
        except Exception as exc:
            swallow("span", exc)


def exemplar_of(span: Span | None) -> dict[str, str] | None:
    """`{"trace_id": ...}` for a sampled span, else None (no exemplar)."""
    if span is None:
        return None
    try:
        context = span.get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return {"trace_id": format(context.trace_id, "032x")}
    except Exception as exc:
        swallow("span", exc)
        return None


def otel_point(labels: tuple[str, ...]) -> dict[str, Any]:
    """Semantic-convention metric attributes of (operation, provider, model, ...) labels."""
    return {
        GEN_AI_OPERATION: labels[0],
        GEN_AI_PROVIDER: labels[1],
        GEN_AI_REQUEST_MODEL: labels[2],
    }


def error_attributes(values: dict[str, Any], outcome: Outcome) -> None:
    """Add an API error's status, param, code and request id to span `values`.

    They come from the server's body and headers, so they are masked like messages.
    """
    if outcome.status_code is not None:
        values[HTTP_STATUS] = outcome.status_code
    if outcome.error_param is not None:
        values[ERROR_PARAM] = mask_secrets(outcome.error_param)
    if outcome.error_code is not None:
        values[ERROR_CODE] = mask_secrets(outcome.error_code)
    if outcome.request_id is not None:
        values[REQUEST_ID] = mask_secrets(outcome.request_id)


def add_exception_event(span: Span, exc: BaseException) -> None:
    """An `exception` event with the message masked (never `span.record_exception`'s raw text)."""
    try:
        message = mask_secrets(str(exc))
    except Exception:
        message = "<unprintable>"
    cls = type(exc)
    span.add_event(
        "exception",
        {"exception.type": f"{cls.__module__}.{cls.__qualname__}", "exception.message": message},
    )
