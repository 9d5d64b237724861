"""The single error sink: telemetry errors are counted, logged and never reach the caller.

`guarded(stage)` is both a decorator and a context manager (after logfire's
`handle_internal_errors`). What it swallows is counted in `genai_telemetry_errors_total{stage}`
and logged at WARNING, rate-limited per stage, with keys masked (never with `exc_info`: a
chained traceback would print the caller's exception unmasked). With
`FAILSIGHT_RAISE_INTERNAL_ERRORS=1` (set by test suites) it re-raises instead, so bugs fail
tests. Imports nothing from failsight but `_redact`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, TypeVar

from failsight._redact import mask_secrets
from failsight._vocabulary import VOCABULARY

__all__ = [
    "STAGES",
    "FailsightWarning",
    "guarded",
    "raising",
    "report",
    "report_internal_error",
    "set_error_sink",
    "swallow",
]

logger = logging.getLogger("failsight")

F = TypeVar("F", bound=Callable[..., Any])

RAISE_INTERNAL_ERRORS_ENV: Final = "FAILSIGHT_RAISE_INTERNAL_ERRORS"

# The closed vocabulary of `stage` values (`vocabulary.json`, `guard_stages`); each series
# starts at 0 so alerts see it.
STAGES: Final[tuple[str, ...]] = VOCABULARY["guard_stages"]
_STAGE_SET: Final = frozenset(STAGES)

_LOG_INTERVAL: Final = 60.0  # seconds between two warnings of one stage

_error_sink: Callable[[str], None] | None = None
_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


class FailsightWarning(UserWarning):
    """A misuse of failsight's API at run time that was survived (e.g. a wrong argument)."""


def set_error_sink(sink: Callable[[str], None] | None) -> None:
    """Where swallowed errors are counted (the metric set's `telemetry_errors` counter)."""
    global _error_sink
    _error_sink = sink


def raising() -> bool:
    """True under a test suite that asked for telemetry errors to raise."""
    return os.environ.get(RAISE_INTERNAL_ERRORS_ENV) == "1"


def _log(stage: str, exc: BaseException) -> None:
    now = time.monotonic()
    with _log_lock:
        last = _last_logged.get(stage)
        if last is not None and now - last < _LOG_INTERVAL:
            return
        _last_logged[stage] = now
    try:
        detail = mask_secrets(f"{type(exc).__qualname__}: {exc}", 512)
    except Exception:
        detail = type(exc).__qualname__
    logger.warning(
        "failsight swallowed a telemetry error at stage %s (the caller is unaffected): %s",
        stage,
        detail,
    )
    if logger.isEnabledFor(logging.DEBUG):
        # Chained exceptions may be the caller's (an API error whose message echoes the key,
        # a frame's source line passing it): the whole text is masked, never `exc_info`.
        try:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            text = mask_secrets(text, 16384)
        except Exception:  # a chain that cannot be formatted or masked is not logged
            text = "(traceback unavailable)"
        logger.debug("failsight traceback at stage %s:\n%s", stage, text)


def report(stage: str, exc: BaseException) -> None:
    """Count and log a swallowed telemetry error of `stage` (never raises)."""
    if stage not in _STAGE_SET:
        stage = "other"
    try:
        sink = _error_sink
        if sink is not None:
            sink(stage)
        _log(stage, exc)
    except Exception:  # the sink itself broke: nothing more to do without risking the caller
        pass


def swallow(stage: str, exc: Exception) -> None:
    """What `guarded` does with an error, for hot paths written as `except Exception as exc:`
    (a try block costs nothing until it raises; a context manager costs two calls)."""
    report(stage, exc)
    if raising():
        raise exc


def report_internal_error(stage: str) -> None:
    """`report` for the exception being handled; re-raises it under the test suite."""
    exc = sys.exc_info()[1]
    if exc is not None:
        report(stage, exc)
    if raising():
        raise


class guarded:
    """Swallow, count and log any `Exception` of one telemetry step.

    >>> import os
    >>> under_tests = os.environ.pop(RAISE_INTERNAL_ERRORS_ENV, None)  # as in production
    >>> with guarded("span"):
    ...     raise RuntimeError("a broken span processor")
    >>> @guarded("span")
    ... def step() -> int:
    ...     return 1 // 0
    >>> step() is None
    True
    >>> if under_tests is not None:
    ...     os.environ[RAISE_INTERNAL_ERRORS_ENV] = under_tests
    """

    __slots__ = ("stage",)

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, GeneratorExit pass
        report(self.stage, exc)
        return not raising()

    def __call__(self, func: F) -> F:
        stage = self.stage

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                report(stage, exc)
                if raising():
                    raise
                return None

        return wrapper  # type: ignore[return-value]
