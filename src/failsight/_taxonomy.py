"""The failure taxonomy's vocabulary: classes, reasons, statuses, `Outcome`, `Usage`.

Tables and small pure helpers shared by the classifier and the stream judge. No I/O, no
telemetry imports, nothing from the rest of failsight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

__all__ = [
    "CONNECTION_NAMES", "FAILURE_CLASSES", "FINISH_REASONS", "HARD", "HARD_REASONS",
    "INVALID_RESPONSE_NAMES", "MAX_TEXT", "NONE", "NON_RETRYABLE_CLIENT_ERRORS", "OTHER",
    "REASONS", "RETRYABLE_REASONS", "SILENT", "SILENT_REASONS", "SOFT", "SOFT_EXCEPTIONS",
    "SOFT_REASONS", "TIMEOUT_NAMES", "TOKEN_TYPES", "UNKNOWN", "VIDEO_FAILURE_REASONS",
    "VIDEO_TERMINAL", "Outcome", "Usage", "as_int", "as_list", "as_str", "field",
    "normalize_finish_reason", "normalize_video_status", "reason_for_status",
]  # fmt: skip

NONE: Final = "none"
HARD: Final = "hard"
SOFT: Final = "soft"
SILENT: Final = "silent"
FAILURE_CLASSES: Final = (NONE, HARD, SOFT, SILENT)

FINISH_REASONS: Final = frozenset(
    {"stop", "length", "content_filter", "tool_calls", "function_call", "other"}
)

STATUS_REASONS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "unprocessable",
    429: "rate_limited",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}

RETRYABLE_REASONS: Final = frozenset(
    {
        "rate_limited",
        "server_error",
        "bad_gateway",
        "unavailable",
        "gateway_timeout",
        "timeout",
        "connection",
    }
)

# A call after one of these is a new attempt, not a retry: the retry policy never retries them.
NON_RETRYABLE_CLIENT_ERRORS: Final = frozenset(
    {"bad_request", "unauthorized", "forbidden", "not_found", "conflict", "unprocessable"}
)

OTHER: Final = "other"
# A label value nothing gave (a model, operation or provider not known).
UNKNOWN: Final = "unknown"

# The closed `reason` vocabulary (docs/reference.md#reasons), by failure class: never
# capped. Anything else (a validator's name, a reason given to `mark_failure` or
# `record_retry`) is capped like a common label.
HARD_REASONS: Final = frozenset(
    {
        "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "unprocessable",
        "rate_limited", "server_error", "bad_gateway", "unavailable", "gateway_timeout",
        "other_4xx", "other_5xx", "timeout", "connection", "invalid_response", "exception",
    }
)  # fmt: skip
SOFT_REASONS: Final = frozenset(
    {
        "content_filter", "length", "empty_content", "refusal", "image_filtered",
        "video_failed", "video_cancelled", "video_timeout",
    }
)  # fmt: skip
SILENT_REASONS: Final = frozenset({"empty_output", "invalid_json", "unexpected_label", "too_short"})
# ...and what capped values become
REASONS: Final = HARD_REASONS | SOFT_REASONS | SILENT_REASONS | {OTHER}

# Exception class names (anywhere in the MRO) recognised without importing their libraries.
# Timeouts are checked first: requests' ConnectTimeout is also a ConnectionError.
TIMEOUT_NAMES: Final = frozenset(
    {
        "APITimeoutError",  # openai
        "Timeout",  # requests
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutException",  # httpx
        "ServerTimeoutError",  # aiohttp
        "TimeoutError",  # builtins, asyncio
    }
)
CONNECTION_NAMES: Final = frozenset(
    {
        "APIConnectionError",  # openai
        "ConnectionError",  # builtins, requests
        "ConnectError",  # httpx
        "NetworkError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "ProtocolError",  # urllib3
        "ChunkedEncodingError",  # requests
        "IncompleteRead",  # http.client
        "RemoteDisconnected",
        "ClientConnectionError",  # aiohttp
        "ServerDisconnectedError",
        "ClientPayloadError",
    }
)
INVALID_RESPONSE_NAMES: Final = frozenset(
    {"APIResponseValidationError", "JSONDecodeError", "InvalidJSONError", "ContentDecodingError"}
)
SOFT_EXCEPTIONS: Final[Mapping[str, str]] = {
    "LengthFinishReasonError": "length",
    "ContentFilterFinishReasonError": "content_filter",
}

VIDEO_STATUSES: Final[Mapping[str, str]] = {
    "completed": "succeeded",
    "succeeded": "succeeded",
    "succeed": "succeeded",
    "success": "succeeded",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "queued": "queued",
    "pending": "queued",
    "submitted": "queued",
    "not_start": "queued",
    "in_progress": "in_progress",
    "processing": "in_progress",
    "running": "in_progress",
}
VIDEO_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
VIDEO_FAILURE_REASONS: Final[Mapping[str, str]] = {
    "failed": "video_failed",
    "cancelled": "video_cancelled",
}

MAX_TEXT: Final = 256  # bound on any string copied out of an input


# The `token_type` label values, in the order of Usage's fields.
TOKEN_TYPES: Final = ("input", "output", "reasoning", "cached_input")


class Usage(NamedTuple):
    """Token counts reported by one API response; None where the response did not say."""

    input: int | None = None
    output: int | None = None
    reasoning: int | None = None
    cached_input: int | None = None

    def items(self) -> Iterable[tuple[str, int]]:
        """(token_type, count) pairs for the counts present, in `token_type` label spelling."""
        for token_type, count in zip(TOKEN_TYPES, self, strict=True):
            if count is not None:
                yield token_type, count


class Outcome(NamedTuple):
    """What one exception or response means in the failure taxonomy.

    >>> from failsight import classify_result
    >>> classify_result({"choices": [{"finish_reason": "content_filter", "message": {}}]})
    ... # doctest: +ELLIPSIS
    Outcome(failure_class='soft', reason='content_filter', finish_reasons=('content_filter',), ...)
    """

    failure_class: str = NONE
    reason: str | None = None
    finish_reasons: tuple[str, ...] = ()
    usage: Usage | None = None
    status_code: int | None = None
    error_type: str | None = None
    error_param: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    retry_after: float | None = None
    video_status: str | None = None
    revised_prompt: str | None = None
    transient: bool = False
    # (category, stage, severity) a provider gave for a content filter (`_filters`)
    filters: tuple[tuple[str, str, str], ...] = ()

    @property
    def failed(self) -> bool:
        return self.failure_class != NONE

    @property
    def retryable(self) -> bool:
        """True for the reasons the retry policy (docs/reference.md#retries) re-attempts."""
        return self.failure_class == HARD and self.reason in RETRYABLE_REASONS


# --------------------------------------------------------------------------- accessors


_mapping_types: dict[type, bool] = {dict: True}


def field(obj: Any, key: str) -> Any:
    """obj[key] for mappings, obj.key otherwise; None on any failure (odd objects never raise)."""
    if obj is None:
        return None
    cls = type(obj)
    is_mapping = _mapping_types.get(cls)
    try:
        if is_mapping is None:
            is_mapping = issubclass(cls, Mapping)
            if len(_mapping_types) < 512:
                _mapping_types[cls] = is_mapping
        if is_mapping:
            return obj.get(key)
        return getattr(obj, key, None)
    except Exception:
        return None


def as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def as_int(value: Any) -> int | None:
    if type(value) is int:  # the common case first
        return value if value >= 0 else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def as_list(value: Any) -> list[Any] | None:
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


# --------------------------------------------------------------------------- vocabulary


def reason_for_status(status: int) -> str:
    """An HTTP error status's reason (docs/reference.md#status-codes): 429 → "rate_limited"."""
    reason = STATUS_REASONS.get(status)
    if reason is not None:
        return reason
    if 400 <= status < 500:
        return "other_4xx"
    if 500 <= status < 600:
        return "other_5xx"
    return "invalid_response"


# Gemini's filter finish reasons, as gateways pass them through (compared lower-cased).
_FILTER_FINISH_REASONS: Final = frozenset(
    {"safety", "recitation", "prohibited_content", "blocklist", "spii", "image_safety"}
)


def normalize_finish_reason(value: Any) -> str | None:
    """A finish reason in label spelling (`other` for unknown strings), None when absent.

    >>> normalize_finish_reason("SAFETY")  # Gemini's, through a gateway
    'content_filter'
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value in FINISH_REASONS:
            return value
        return "content_filter" if value.lower()[:32] in _FILTER_FINISH_REASONS else "other"
    return "other"


def normalize_video_status(value: Any) -> str | None:
    """Gateway spellings → `succeeded`/`failed`/`cancelled`/`queued`/`in_progress`."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()[:32]
    return VIDEO_STATUSES.get(key, key.replace(" ", "_") or None)
