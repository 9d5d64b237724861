"""The failure taxonomy's vocabulary: classes, reasons, statuses, `Outcome`, `Usage`.

Tables and small pure helpers shared by the classifier and the stream judge. The tables are
the vocabulary's (`vocabulary.json`, shared with the Node.js package). No I/O beyond reading
that file, no telemetry imports, nothing else from failsight.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from failsight._vocabulary import VOCABULARY

__all__ = [
    "AGENT_EXCEPTIONS", "CONNECTION_NAMES", "FAILING_FINISH_REASONS", "FAILURE_CLASSES",
    "FINISH_REASONS", "HARD", "HARD_REASONS", "INVALID_RESPONSE_NAMES", "MAX_TEXT", "NONE",
    "NON_RETRYABLE_CLIENT_ERRORS", "OTHER", "REASONS", "RETRYABLE_REASONS", "SILENT",
    "SILENT_REASONS", "SOFT", "SOFT_EXCEPTIONS", "SOFT_PRIORITY", "SOFT_REASONS", "STATUS_REASONS",
    "TIMEOUT_NAMES", "TOKEN_TYPES", "UNKNOWN", "VIDEO_FAILURE_REASONS", "VIDEO_STATUSES",
    "VIDEO_TERMINAL", "Outcome", "Usage", "as_int", "as_list", "as_str", "field",
    "normalize_finish_reason", "normalize_video_status", "reason_for_status",
]  # fmt: skip

_V: Final = VOCABULARY

NONE: Final = "none"
HARD: Final = "hard"
SOFT: Final = "soft"
SILENT: Final = "silent"
FAILURE_CLASSES: Final[tuple[str, ...]] = _V["failure_classes"]

OTHER: Final[str] = _V["other"]
# A label value nothing gave (a model, operation or provider not known).
UNKNOWN: Final = "unknown"

# HTTP error statuses with a reason of their own: (reason, whether a retry policy re-attempts it).
_STATUSES: Final[Mapping[int, tuple[str, bool]]] = types.MappingProxyType(
    {int(status): (e["reason"], e["retryable"]) for status, e in _V["status_reasons"].items()}
)
STATUS_REASONS: Final[Mapping[int, str]] = types.MappingProxyType(
    {status: reason for status, (reason, _) in _STATUSES.items()}
)
_FALLBACKS: Final[Mapping[str, str]] = _V["status_fallbacks"]

# The closed `reason` vocabulary (docs/reference.md#reasons), by failure class: never
# capped. Anything else (a validator's name, a reason given to `mark_failure` or
# `record_retry`) is capped like a common label. A status's reason is hard.
HARD_REASONS: Final = frozenset[str]((*_V["reasons"]["hard"], *STATUS_REASONS.values()))
SOFT_REASONS: Final = frozenset[str](_V["reasons"]["soft"])
SILENT_REASONS: Final = frozenset[str](_V["reasons"]["silent"])
# ...and what capped values become
REASONS: Final = HARD_REASONS | SOFT_REASONS | SILENT_REASONS | {OTHER}

RETRYABLE_REASONS: Final = frozenset[str](
    (*_V["retryable_reasons"], *(reason for reason, retry in _STATUSES.values() if retry))
)
# A call after one of these is a new attempt, not a retry: the retry policy never retries them.
NON_RETRYABLE_CLIENT_ERRORS: Final = frozenset[str](
    reason for status, (reason, retry) in _STATUSES.items() if status < 500 and not retry
)
# When one answer shows several soft failures, the first of these is its reason.
SOFT_PRIORITY: Final[tuple[str, ...]] = _V["soft_priority"]

FINISH_REASONS: Final = frozenset[str](_V["finish_reasons"]["values"])
# Finish reason → the soft reason it means (content_filter, length).
FAILING_FINISH_REASONS: Final[Mapping[str, str]] = _V["finish_reasons"]["failing"]
# Other providers' spellings, lower-cased, whoever sends them (the file keeps them by provider).
_FINISH_ALIASES: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        key: value
        for aliases in _V["finish_reasons"]["aliases"].values()
        for key, value in aliases.items()
    }
)

# Exception class names (anywhere in the MRO) recognised without importing their libraries.
# Timeouts are checked first: requests' ConnectTimeout is also a ConnectionError.
_EXCEPTIONS: Final = _V["exceptions"]["python"]
TIMEOUT_NAMES: Final = frozenset[str](_EXCEPTIONS["timeout"])
CONNECTION_NAMES: Final = frozenset[str](_EXCEPTIONS["connection"])
INVALID_RESPONSE_NAMES: Final = frozenset[str](_EXCEPTIONS["invalid_response"])
SOFT_EXCEPTIONS: Final[Mapping[str, str]] = _EXCEPTIONS["soft"]
# An agent framework's end of a failed run (openai-agents' MaxTurnsExceeded, ...) -> its reason.
AGENT_EXCEPTIONS: Final[Mapping[str, str]] = _EXCEPTIONS["agents"]

VIDEO_STATUSES: Final[Mapping[str, str]] = _V["video"]["statuses"]
VIDEO_TERMINAL: Final = frozenset[str](_V["video"]["terminal"])
VIDEO_FAILURE_REASONS: Final[Mapping[str, str]] = _V["video"]["failure_reasons"]

MAX_TEXT: Final = 256  # bound on any string copied out of an input


# The `token_type` label values, in the order of Usage's fields.
TOKEN_TYPES: Final[tuple[str, ...]] = VOCABULARY["labels"]["token_types"]


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
    """An HTTP error status's reason (docs/reference.md#status-codes): 429 → "rate_limited".

    >>> reason_for_status(429), reason_for_status(418), reason_for_status(302)
    ('rate_limited', 'other_4xx', 'invalid_response')
    """
    reason = STATUS_REASONS.get(status)
    if reason is not None:
        return reason
    if 400 <= status < 500:
        return _FALLBACKS["4xx"]
    if 500 <= status < 600:
        return _FALLBACKS["5xx"]
    return _FALLBACKS["other"]


def normalize_finish_reason(value: Any) -> str | None:
    """A finish reason in label spelling (`other` for unknown strings), None when absent.

    OpenAI's and Azure's spellings are kept; Anthropic's and Gemini's, as gateways pass them
    through, and the Responses API's incomplete reasons are mapped (any case).

    >>> normalize_finish_reason("SAFETY"), normalize_finish_reason("end_turn")
    ('content_filter', 'stop')
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value in FINISH_REASONS:
            return value
        key = value.strip().lower()[:32]
        if key in FINISH_REASONS:
            return key
        return _FINISH_ALIASES.get(key, OTHER)
    return OTHER


def normalize_video_status(value: Any) -> str | None:
    """Gateway spellings → `succeeded`/`failed`/`cancelled`/`queued`/`in_progress`."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()[:32]
    return VIDEO_STATUSES.get(key, key.replace(" ", "_") or None)
