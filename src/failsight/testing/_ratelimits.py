"""Rate-limit headers as providers send them: a budget that counts down across calls and then
refuses with 429 and a Retry-After, and fixed answers in other spellings (Anthropic's through
a gateway, malformed values).

Pure state and tables, no I/O; the server asks `RateLimitBudget.take` once per request of the
`ratelimited` scenario and adds the headers it returns to the answer.
"""

from __future__ import annotations

import math
import threading
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

__all__ = [
    "HEADERS_KEY",
    "RATELIMIT_HEADER_SCENARIOS",
    "RATE_LIMITED",
    "RateLimit",
    "RateLimitBudget",
]

# Where a request keeps the rate-limit headers its answer gets (`RequestKey` from aiohttp 3.13).
HEADERS_KEY: Final[Any] = (
    web.RequestKey("failsight_headers", dict) if hasattr(web, "RequestKey") else "failsight_headers"
)

# The 429 of a spent budget: message, type, param, code (as OpenAI words it).
RATE_LIMITED: Final = (
    "Rate limit reached for requests (the failsight fault server's budget).",
    "requests", None, "rate_limit_exceeded",
)  # fmt: skip


@dataclass(frozen=True)
class RateLimit:
    """The budget of the `ratelimited` scenario: `requests` and `tokens` per window (an answer
    spends one request and its usage's total tokens); once either is spent, the next
    `refusals` requests get 429 with `retry-after-ms: retry_after_ms` (and `retry-after` in
    whole seconds), then a new window starts. `reset` is what `x-ratelimit-reset-*` say (a Go
    duration, as OpenAI sends it). `start_empty`: the first window starts spent (another
    client of the same account spent it), so the first requests are refused.

    >>> RateLimit(requests=3).requests
    3
    """

    requests: int = 20
    tokens: int = 2000
    refusals: int = 2
    retry_after_ms: int = 20
    reset: str = "6m0s"
    start_empty: bool = False

    def __post_init__(self) -> None:
        for name in ("requests", "tokens", "refusals", "retry_after_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RateLimit.{name} must be an int >= 1, got {value!r}")


class RateLimitBudget:
    """The server's one budget (an account's: every `ratelimited` request draws from it)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._requests = 0 if limit.start_empty else limit.requests
        self._tokens = 0 if limit.start_empty else limit.tokens
        self._refusals = limit.refusals

    def answer(self, scenario: str, usage: Mapping[str, int]) -> tuple[bool, dict[str, str]]:
        """(refused, rate-limit headers) of a request of a rate-limit scenario."""
        fixed = RATELIMIT_HEADER_SCENARIOS.get(scenario)
        if fixed is not None:
            return False, dict(fixed)
        return self.take(usage["total_tokens"])

    def take(self, tokens: int) -> tuple[bool, dict[str, str]]:
        """Spend one request of `tokens` tokens: (refused, the answer's rate-limit headers)."""
        limit = self.limit
        with self._lock:
            refused = self._requests < 1 or self._tokens < tokens
            if refused:
                self._refusals -= 1
                requests, left = self._requests, self._tokens
                if self._refusals <= 0:  # the window ends: the next request has a full budget
                    self._requests, self._tokens = limit.requests, limit.tokens
                    self._refusals = limit.refusals
            else:
                self._requests -= 1
                self._tokens -= tokens
                requests, left = self._requests, self._tokens
        headers = {
            "x-ratelimit-limit-requests": str(limit.requests),
            "x-ratelimit-remaining-requests": str(requests),
            "x-ratelimit-reset-requests": limit.reset,
            "x-ratelimit-limit-tokens": str(limit.tokens),
            "x-ratelimit-remaining-tokens": str(left),
            "x-ratelimit-reset-tokens": limit.reset,
        }
        if refused:
            headers["retry-after-ms"] = str(limit.retry_after_ms)
            headers["retry-after"] = str(math.ceil(limit.retry_after_ms / 1000))
        return refused, headers


# Answers that carry fixed rate-limit headers: OpenAI's spellings with Go durations, a budget
# almost spent (2% of requests and tokens left: the continuous demo's rate-limit squeeze),
# Anthropic's through a gateway (RFC 3339 resets; input and output tokens besides the combined
# ones), and malformed values next to readable ones (`x-ratelimit-limit-requests` is the
# readable one).
RATELIMIT_HEADER_SCENARIOS: Final[Mapping[str, Mapping[str, str]]] = types.MappingProxyType(
    {
        "ratelimit_openai": {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-limit-tokens": "160000",
            "x-ratelimit-remaining-tokens": "159980",
            "x-ratelimit-reset-tokens": "1h2m3.5s",
        },
        "ratelimit_low": {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "100",
            "x-ratelimit-reset-requests": "40s",
            "x-ratelimit-limit-tokens": "160000",
            "x-ratelimit-remaining-tokens": "3200",
            "x-ratelimit-reset-tokens": "45s",
        },
        "ratelimit_anthropic": {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
            "anthropic-ratelimit-input-tokens-reset": "2030-01-01T00:00:00Z",
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-output-tokens-remaining": "800",
            "anthropic-ratelimit-output-tokens-reset": "2030-01-01T00:00:00Z",
        },
        "ratelimit_malformed": {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "lots",
            "x-ratelimit-reset-requests": "soon",
            "x-ratelimit-remaining-tokens": "-5",
        },
    }
)
