"""The `retry=` policy of `@traced_generation` (SPEC §4)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from failsight._classify import RETRYABLE_REASONS, Outcome

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Re-run a traced function on transient hard failures.

    `max_attempts` counts every attempt (`retry=3` → up to 3 calls, as in the seed article's
    `complete_with_retry(max_retries=3)`). The wait before re-attempt *n* (0-based) is the
    server's `Retry-After` when it sent one, else `2**n + random()`; no re-attempt starts
    whose wait would pass `deadline` seconds after the first attempt.

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
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.deadline is not None and (
            isinstance(self.deadline, bool)
            or not isinstance(self.deadline, (int, float))
            or not self.deadline > 0
        ):
            raise ValueError(f"RetryPolicy.deadline must be > 0 or None, got {self.deadline!r}")
        unknown = set(self.retry_on) - RETRYABLE_REASONS
        if unknown:
            raise ValueError(
                f"RetryPolicy.retry_on: {sorted(unknown)} are not retryable reasons; "
                f"choose from {sorted(RETRYABLE_REASONS)}"
            )
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
