"""Span attribute names (docs/reference.md#spans; GenAI semconv v1.41.0) and span helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from failsight._guard import guarded, swallow
from failsight._redact import mask_secrets
from failsight._taxonomy import TOKEN_TYPES

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

# GenAI semantic conventions.
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_CACHED_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
OPENAI_API_TYPE: Final = "openai.api.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"

# failsight's own.
FAILURE_CLASS: Final = "failsight.failure_class"
FAILURE_REASON: Final = "failsight.failure_reason"
ATTEMPTS: Final = "failsight.attempts"
RETRY_COUNT: Final = "failsight.retry_count"
CALL_SITE: Final = "failsight.call_site"
ERROR_PARAM: Final = "failsight.error.param"
ERROR_CODE: Final = "failsight.error.code"
REQUEST_ID: Final = "failsight.request_id"
ERROR_MESSAGE: Final = "failsight.error.message"
REVISED_PROMPT: Final = "failsight.image.revised_prompt"
VIDEO_STATUS: Final = "failsight.video.status"
# The priced usage of a response (CLIENT span) or request (scope span): there is no
# semantic-convention name for it (v1.41.0).
COST_USD: Final = "failsight.cost.usd"
WASTED_COST_USD: Final = "failsight.wasted_cost.usd"

# Token types as they map onto span attributes.
USAGE_ATTRIBUTES: Final = {
    "input": GEN_AI_INPUT_TOKENS,
    "output": GEN_AI_OUTPUT_TOKENS,
    "reasoning": GEN_AI_REASONING_TOKENS,
    "cached_input": GEN_AI_CACHED_TOKENS,
}
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
