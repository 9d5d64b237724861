"""Guards that keep telemetry from ever becoming the reason a caller's request broke."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["guarded", "mask_secrets", "report_internal_error", "sanitize_reason"]

logger = logging.getLogger("failsight")

T = TypeVar("T")

# Set by the test suite so telemetry bugs fail tests instead of hiding; fault-injection
# tests turn it off to prove the caller sees no difference.
RAISE_INTERNAL_ERRORS_ENV: Final = "FAILSIGHT_RAISE_INTERNAL_ERRORS"

# Every stage that reports errors; initialised to 0 so dashboards and alerts see the series.
STAGES: Final = (
    "scope_start", "scope_enter", "scope_exit", "scope_finish", "retry", "validator",
    "record_finish_reason", "record_usage", "record_retry", "record_video_status",
    "mark_failure", "openai_start", "openai_enter", "openai_exit", "openai_result",
    "openai_finish", "openai_attempt", "stream_chunk", "stream_end", "http",
)  # fmt: skip

_error_sink: Callable[[str], None] | None = None


def set_error_sink(sink: Callable[[str], None] | None) -> None:
    """Where swallowed errors are counted (the metric set's `telemetry_errors` counter)."""
    global _error_sink
    _error_sink = sink


def report_internal_error(stage: str) -> None:
    """Log and count an internal error; re-raise it when the suite asks for it.

    Must be called from inside an `except` block.
    """
    logger.debug("failsight telemetry error in stage %s", stage, exc_info=True)
    sink = _error_sink
    if sink is not None:
        try:
            sink(stage)
        except Exception:
            logger.debug("failsight could not count a telemetry error", exc_info=True)
    if os.environ.get(RAISE_INTERNAL_ERRORS_ENV) == "1":
        raise


def guarded(stage: str, func: Callable[[], T], default: T) -> T:
    """`func()`, or `default` after an internal error was reported."""
    try:
        return func()
    except Exception:
        report_internal_error(stage)
        return default


_SECRET_PATTERNS: Final = (
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 ***"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?token|token|secret|password|key)([\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]{4,}"
        ),
        r"\1\2***",
    ),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza***"),
)


def mask_secrets(text: str, limit: int = 1024) -> str:
    """Truncate `text` to `limit` characters and mask anything that looks like a credential.

    >>> mask_secrets("Incorrect API key provided: sk-abc123def456")
    'Incorrect API key provided: sk-***'
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_REASON_OK: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def sanitize_reason(name: str, limit: int = 40) -> str:
    """A label-safe reason from a validator's name: lower snake case, bounded."""
    out = []
    last_underscore = True
    for char in name.lower()[: limit * 2]:
        if char in _REASON_OK:
            out.append(char)
            last_underscore = char == "_"
        elif not last_underscore:
            out.append("_")
            last_underscore = True
    reason = "".join(out).strip("_")[:limit]
    return reason or "validator"
