"""The `retry=` policy of `@traced_generation` (docs/reference.md#the-retry-policy)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from failsight._taxonomy import RETRYABLE_REASONS, Outcome

__all__ = ["RetryPolicy"]

MAX_ATTEMPTS_LIMIT: Final = 100  # a typo such as 10**9 fails here instead of retrying forever
DEADLINE_LIMIT: Final = 86_400.0  # seconds: a day


@dataclass(frozen=True)
class RetryPolicy:
    """Re-run a traced function on transient hard failures.

    `max_attempts` counts every attempt (`retry=3` → up to 3 calls, as in the usual hand-written
    `complete_with_retry(max_retries=3)`). The wait before re-attempt *n* (0-based) is the
    server's `Retry-After` when it sent one, else `2**n + random()`; no re-attempt starts
    whose wait would pass `deadline` seconds after the first attempt. `max_attempts` is at
    most 100 and `deadline` at most a day (or None: no deadline); `retry_on` is a set of
    reasons from `RETRYABLE_REASONS`.

    >>> RetryPolicy(max_attempts=5, sleep=lambda seconds: None).max_attempts
    5
    """

    max_attempts: int = 3
    deadline: float | None = 60.0
    retry_on: frozenset[str] = RETRYABLE_REASONS
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(
                f"RetryPolicy.max_attempts must be an int in 1..{MAX_ATTEMPTS_LIMIT}, "
                f"got {type(attempts).__name__} {attempts!r}"
            )
        if not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(
                f"RetryPolicy.max_attempts must be in 1..{MAX_ATTEMPTS_LIMIT}, got {attempts}"
            )
        deadline = self.deadline
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not (math.isfinite(deadline) and 0 < deadline <= DEADLINE_LIMIT)
        ):
            raise ValueError(
                f"RetryPolicy.deadline must be seconds in (0, {DEADLINE_LIMIT:g}] or None, "
                f"got {deadline!r}"
            )
        retry_on = self.retry_on
        if isinstance(retry_on, (str, bytes)):
            raise TypeError(
                f"RetryPolicy.retry_on takes a set of reasons, not a string: "
                f"retry_on={{{retry_on!r}}}, not retry_on={retry_on!r}"
            )
        try:
            reasons = frozenset(retry_on)
        except TypeError:
            raise TypeError(
                f"RetryPolicy.retry_on takes a set of reasons, got {type(retry_on).__name__}"
            ) from None
        unknown = reasons - RETRYABLE_REASONS
        if unknown:
            raise ValueError(
                f"RetryPolicy.retry_on: {sorted(unknown, key=repr)} are not retryable "
                f"reasons; choose from {sorted(RETRYABLE_REASONS)}"
            )
        object.__setattr__(self, "retry_on", reasons)  # a list or set given: stored frozen
        for name in ("sleep", "async_sleep", "jitter"):
            if not callable(getattr(self, name)):
                raise TypeError(f"RetryPolicy.{name} must be callable")

    @classmethod
    def coerce(cls, retry: int | RetryPolicy | None) -> RetryPolicy | None:
        """`retry=` as given to the decorator: None, an attempt count, or a policy."""
        if retry is None or isinstance(retry, RetryPolicy):
            return retry
        if isinstance(retry, bool) or not isinstance(retry, int):
            raise TypeError(
                f"traced_generation(retry=...) takes an int or a RetryPolicy, got {retry!r}"
            )
        return cls(max_attempts=retry)

    def wait_before_next(self, attempt: int, outcome: Outcome, elapsed: float) -> float | None:
        """Seconds to wait before re-attempting after failed attempt `attempt`, or None."""
        if outcome.failure_class != "hard" or outcome.reason not in self.retry_on:
            return None
        if attempt + 1 >= self.max_attempts:
            return None
        wait = outcome.retry_after
        if wait is None:
            wait = 2.0**attempt + self.jitter()
        if self.deadline is not None and elapsed + wait > self.deadline:
            return None
        return wait
