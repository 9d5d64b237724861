"""`Generation`, the user's handle of a traced scope, and `current_generation()`.

The handle is the contract's six methods and nothing else; each is guarded and delegates to
the scope's account. A wrong argument never raises into the caller: it is counted, and a
`FailsightWarning` is issued once per call site (with `FAILSIGHT_RAISE_INTERNAL_ERRORS=1`,
as in a test suite, it raises instead).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Final

from failsight._account import Account, current_account
from failsight._guard import FailsightWarning, guarded, raising, report
from failsight._taxonomy import (
    FAILING_FINISH_REASONS,
    FAILURE_CLASSES,
    NONE,
    SOFT,
    Usage,
    normalize_finish_reason,
)
from failsight._taxonomy import normalize_video_status as _normalize_video_status

__all__ = ["Generation", "current_generation"]

_FAILED_CLASSES: Final = frozenset(FAILURE_CLASSES) - {NONE}


def current_generation() -> Generation | None:
    """The handle of the innermost traced scope running now, or None.

    >>> from failsight import traced_generation
    >>> @traced_generation(name="image")
    ... def make_image():
    ...     if (handle := current_generation()) is not None:  # None outside a scope
    ...         handle.mark_failure("soft", "image_filtered")
    """
    account = current_account.get()
    if account is None:
        return None
    handle = account.handle
    if handle is None:
        handle = account.handle = Generation(account)
    return handle  # type: ignore[no-any-return]


# (method, call site) pairs warned about: once per call site, and a bounded set.
_warned: set[tuple[str, str]] = set()
_WARNED_LIMIT: Final = 1024


def _misuse(account: Account, stage: str, message: str) -> None:
    """A wrong argument to a handle method: ignored, counted, and warned about once per call
    site and method; never raised (but in tests)."""
    error = ValueError(f"failsight: {message}")
    report(stage, error)
    if raising():
        raise error
    key = (stage, account.call_site)
    if key in _warned or len(_warned) >= _WARNED_LIMIT:
        return
    _warned.add(key)
    notice = f"{error.args[0]} (ignored; warned once for {account.call_site:.80})"
    # `-W error` makes a warning an exception: it never reaches the caller.
    with contextlib.suppress(Exception):
        warnings.warn(FailsightWarning(notice), stacklevel=3)


def _shown(value: object) -> str:
    """`value`'s repr, cut at 40 characters; its type's name when the repr raises."""
    try:
        return f"{value!r:.40}"
    except Exception:
        return f"<{type(value).__name__}>"


def _ok(value: object) -> bool:
    return _count(value) is not None


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None  # type: ignore[return-value]


def _wrong_retry(reason: object, status_code: object, wait: object) -> str | None:
    """What is wrong with record_retry's arguments, or None."""
    if not isinstance(reason, str) or not reason:
        return f"a non-empty str reason, got {_shown(reason)}"
    if status_code is not None and (type(status_code) is not int or not 100 <= status_code < 600):
        return f"status_code=None or an HTTP status, got {_shown(status_code)}"
    if wait is not None and (
        isinstance(wait, bool)
        or not isinstance(wait, (int, float))
        or not (math.isfinite(wait) and wait >= 0)
    ):
        return f"wait=None or seconds >= 0, got {_shown(wait)}"
    return None


class Generation:
    """The handle of one traced scope, for code that talks HTTP itself.

    Every method is safe to call at any time: telemetry errors are counted, never raised.
    """

    __slots__ = ("__weakref__", "_account")

    def __init__(self, account: Account) -> None:
        self._account = account

    def set_model(self, model: str) -> None:
        """Set the model label (e.g. after reading it from a raw request body)."""
        if not isinstance(model, str) or not model:
            what = type(model).__name__
            _misuse(self._account, "set_model", f"set_model() takes a non-empty str, got {what}")
            return
        with guarded("set_model"):
            self._account.set_model(model)

    def record_finish_reason(self, finish_reason: str) -> None:
        """Count one returned choice's finish reason; `content_filter`/`length` fail the scope."""
        if not isinstance(finish_reason, str) or not finish_reason:
            got = f"{_shown(finish_reason)}"
            message = f"record_finish_reason() takes a non-empty str, got {got}"
            _misuse(self._account, "record_finish_reason", message)
            return
        with guarded("record_finish_reason"):
            reason = normalize_finish_reason(finish_reason) or "other"
            self._account.count_finish_reasons((reason,))
            failing = FAILING_FINISH_REASONS.get(reason)
            if failing is not None:
                self._account.failure = (SOFT, failing)

    def record_usage(
        self,
        input: int | None = None,
        output: int | None = None,
        reasoning: int | None = None,
        cached_input: int | None = None,
    ) -> None:
        """Count tokens reported by one API response: non-negative ints, or None. Any other
        value is ignored and warned about (the valid ones are counted)."""
        given = {"input": input, "output": output, "reasoning": reasoning,
                 "cached_input": cached_input}  # fmt: skip
        wrong = [
            f"{k}={_shown(v)}" for k, v in given.items() if v is not None and _count(v) is None
        ]
        if wrong:
            message = f"record_usage() takes non-negative ints, got {', '.join(wrong)}"
            _misuse(self._account, "record_usage", message)
        usage = Usage(_count(input), _count(output), _count(reasoning), _count(cached_input))
        if usage == Usage():
            return
        with guarded("record_usage"):
            self._account.record_usage(usage)

    def record_retry(
        self, reason: str, *, status_code: int | None = None, wait: float | None = None
    ) -> None:
        """Count one retry of the logical request, with the reason of the attempt that failed."""
        wrong = _wrong_retry(reason, status_code, wait)
        if wrong is not None:
            _misuse(self._account, "record_retry", f"record_retry() takes {wrong}")
            return
        with guarded("record_retry"):
            self._account.record_retry(reason, status_code=status_code, wait=wait)

    def record_video_status(self, status: str, *, job_id: str | None = None) -> None:
        """Advance this scope's video job (or job `job_id`); a failed or cancelled end fails
        the scope."""
        if not isinstance(status, str) or not status.strip():
            message = f"record_video_status() takes a non-empty str, got {_shown(status)}"
            _misuse(self._account, "record_video_status", message)
            return
        with guarded("record_video_status"):
            normalized = _normalize_video_status(status)
            if normalized is not None:
                self._account.record_video_status(normalized, job_id)

    def mark_failure(self, failure_class: str, reason: str) -> None:
        """Mark the scope failed: `failure_class` is "hard", "soft" or "silent"."""
        if failure_class not in _FAILED_CLASSES:
            _misuse(
                self._account,
                "mark_failure",
                f"mark_failure() takes 'hard', 'soft' or 'silent', got {_shown(failure_class)}",
            )
            return
        if not isinstance(reason, str) or not reason:
            message = f"mark_failure() takes a non-empty str reason, got {_shown(reason)}"
            _misuse(self._account, "mark_failure", message)
            return
        with guarded("mark_failure"):
            self._account.mark_failure(failure_class, reason)
