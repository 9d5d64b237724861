"""The continuous demo's traffic: a steady weighted mix of the plan's steps, and incidents.

Pure tables and arithmetic, no I/O: `_continuous` drives them against the fault server.
A request picks one entry of `STEADY_MIX` by weight; while an incident runs, a request
that lands on the incident's call site (and model) becomes one of the incident's failing
steps with probability `Incident.share`. The steady mix stays below half of every alert
threshold of dashboards/rules/failsight-alerts.yml (at a few requests a second, 5 minutes of
a call site are a few dozen requests: a share near a threshold would cross it by chance);
each incident crosses one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ._plan import Step

__all__ = [
    "INCIDENTS",
    "STEADY_MIX",
    "Incident",
    "Schedule",
    "pick",
]

# `echo` answers with the prompt: Workload sends each validated call site a prompt its
# validator accepts, so these steps succeed.
ECHO = "echo"


def _w(weight: float, kind: str, scenario: str, failure_class: str = "none",
       reason: str | None = None, call_site: str = "unscoped", operation: str = "chat",
       **extra: Any) -> tuple[float, Step, str]:  # fmt: skip
    step = Step(f"{kind}:{scenario}", failure_class, reason, call_site, operation, **extra)
    return weight, step, scenario


IMG, VID = "image_generation", "video_generation"
# Weights are per ~121 requests. Unscoped SDK calls share one series per model and
# operation (gpt-4o-mini chat: chat, stream and responses); decorated call sites have their own.
STEADY_MIX: tuple[tuple[float, Step, str], ...] = (
    _w(40, "chat", "ok"),
    _w(2, "chat", "tool_calls"),
    _w(0.5, "chat", "content_filter", "soft", "content_filter", wasted=1),
    _w(0.3, "chat", "azure_content_filter", "soft", "content_filter", wasted=1),
    _w(0.3, "chat", "gemini_safety", "soft", "content_filter", wasted=1),
    _w(1, "chat", "length", "soft", "length", wasted=1),
    _w(0.5, "chat", "empty_content", "soft", "empty_content", wasted=1),
    _w(0.5, "chat", "refusal", "soft", "refusal", wasted=1),
    _w(1.5, "chat", "http_429,ok", retries=("rate_limited",)),
    _w(1, "chat", "http_500,http_503,ok", retries=("server_error", "unavailable")),
    _w(0.4, "chat_once", "http_400", "hard", "bad_request"),
    _w(0.4, "chat_once", "azure_prompt_filter", "hard", "bad_request"),
    _w(0.2, "chat_once", "http_401", "hard", "unauthorized"),
    _w(0.2, "chat_once", "http_404", "hard", "not_found"),
    _w(0.2, "chat", "http_429,http_429,http_429", "hard", "rate_limited",
       retries=("rate_limited", "rate_limited")),
    _w(0.3, "chat_once", "http_502", "hard", "bad_gateway"),
    _w(0.3, "chat_once", "http_504", "hard", "gateway_timeout"),
    _w(0.2, "chat_once", "invalid_json", "hard", "invalid_response"),
    # Answers with rate-limit headers from the fault server's budget (counting down, then
    # 429s with Retry-After the SDK honours): the headroom gauges move live. The test server's
    # budget (20 requests) outlasts a test run, so these steps declare no retry.
    _w(3, "chat", "ratelimited"),
    _w(6, "stream", "ok"),
    _w(0.2, "stream", "content_filter", "soft", "content_filter"),
    _w(0.3, "stream", "drop_mid_stream", "hard", "connection"),
    _w(4, "responses", "ok"),
    _w(0.3, "responses", "length", "soft", "length", wasted=1),
    # Every embeddings answer reports the budget, as OpenAI's do: plenty left (ratelimit_openai),
    # until the rate-limit squeeze. An answer without the headers would keep the gauge's last
    # value, and the squeeze's 2% would outlast it.
    _w(4, "embeddings", "ratelimit_openai", operation="embeddings",
       model="text-embedding-3-small"),
    _w(3, "image", "ok", operation=IMG, model="dall-e-3"),
    _w(0.4, "image", "image_empty", "soft", "image_filtered", operation=IMG, model="dall-e-3"),
    _w(1, "video", "video_ok", operation=VID, video_status="succeeded", model="sora-2"),
    _w(0.1, "video", "video_failed", "soft", "video_failed", operation=VID,
       video_status="failed", model="sora-2"),
    # AsyncOpenAI, another model.
    _w(8, "async", "ok", is_async=True, model="gpt-4o"),
    _w(0.2, "async", "content_filter", "soft", "content_filter", is_async=True, wasted=1,
       model="gpt-4o"),
    _w(0.2, "async", "length", "soft", "length", is_async=True, wasted=1, model="gpt-4o"),
    _w(0.4, "async", "http_500,ok", retries=("server_error",), is_async=True, model="gpt-4o"),
    # Decorated call sites: validators, a scope retry, raw-HTTP images and video polling.
    _w(8, "classify", ECHO, call_site="classify_review"),
    _w(0.08, "classify", "ok", "silent", "unexpected_label", "classify_review", wasted=1),
    _w(8, "extract", ECHO, call_site="extract_json"),
    _w(0.4, "extract", f"http_503,{ECHO}", call_site="extract_json", retries=("unavailable",)),
    _w(0.08, "extract", "ok", "silent", "invalid_json", "extract_json", wasted=1),
    _w(6, "summarize", ECHO, call_site="summarize"),
    _w(0.06, "summarize", "ok", "silent", "too_short", "summarize"),
    _w(8, "safe_complete", "ok", call_site="safe_complete"),
    _w(0.08, "safe_complete", "content_filter", "soft", "content_filter", "safe_complete",
       wasted=1),
    _w(3, "generate_image", "image_b64", call_site="generate_image_safe", operation=IMG,
       model="dall-e-3"),
    _w(0.2, "generate_image", "image_empty", "soft", "image_filtered", "generate_image_safe",
       operation=IMG, model="dall-e-3"),
    _w(1, "submit_and_poll", "video_succeed", call_site="submit_and_poll_video", operation=VID,
       video_status="succeeded", model="veo3-fast"),
    _w(0.1, "submit_and_poll", "video_stuck", "soft", "video_timeout", "submit_and_poll_video",
       operation=VID, video_status="timed_out", model="veo3-fast"),
    # Judged against what the request declares: tool calls and structured output.
    _w(4, "plan_trip", "tool_calls", call_site="plan_trip"),
    _w(0.04, "plan_trip", "tool_args_invalid", "silent", "tool_arguments_invalid", "plan_trip",
       wasted=1),
    _w(1, "plan_trip", "json_ok", call_site="plan_trip"),
    _w(0.02, "plan_trip", "json_schema_mismatch", "silent", "output_schema_mismatch",
       "plan_trip", wasted=1),
)  # fmt: skip


@dataclass(frozen=True)
class Incident:
    """A failure wave at one call site and model, and the alert it should fire."""

    title: str
    call_site: str
    model: str
    alert: str
    steps: tuple[tuple[Step, str], ...]
    share: float  # of the requests at this call site and model that fail the incident's way

    def hits(self, step: Step) -> bool:
        return (step.call_site, step.model) == (self.call_site, self.model)


def _steps(*entries: tuple[float, Step, str]) -> tuple[tuple[Step, str], ...]:
    return tuple((step, scenario) for _, step, scenario in entries)


# The order matters: the first incident is the one whose alert has no last-day baseline,
# so the spike alerts (ratio above twice the last day's) find their call sites quiet.
INCIDENTS: tuple[Incident, ...] = (
    Incident("silent-failure burst", "extract_json", "gpt-4o-mini", "GenAISilentFailures",
             _steps(_w(0, "extract", "ok", "silent", "invalid_json", "extract_json",
                       wasted=1)), 0.6),
    Incident("content_filter spike", "safe_complete", "gpt-4o-mini", "GenAIContentFilterSpike",
             _steps(_w(0, "safe_complete", "content_filter", "soft", "content_filter",
                       "safe_complete", wasted=1)), 0.5),
    Incident("429 storm", "unscoped", "gpt-4o", "GenAIRateLimitSurge",
             _steps(_w(0, "async", "http_429,http_429,ok", is_async=True, model="gpt-4o",
                       retries=("rate_limited", "rate_limited")),
                    _w(0, "async", "http_429,http_429,http_429", "hard", "rate_limited",
                       is_async=True, model="gpt-4o",
                       retries=("rate_limited", "rate_limited"))), 0.7),
    Incident("truncation (length) wave", "summarize", "gpt-4o-mini", "GenAITruncationSpike",
             _steps(_w(0, "summarize", "length", "soft", "length", "summarize")), 0.5),
    # Every answer of the model reports 2% of its budget left: the headroom gauges read at each
    # scrape stay below 10% for the whole incident. The answers succeed; no other alert moves.
    Incident("rate-limit squeeze", "unscoped", "text-embedding-3-small",
             "GenAIRateLimitHeadroomLow",
             _steps(_w(0, "embeddings", "ratelimit_low", operation="embeddings",
                       model="text-embedding-3-small")), 1.0),
)  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """Incident slots of `every` seconds: normal traffic, then an incident in the slot's last
    `length` seconds. Slot i runs `INCIDENTS[i % len(INCIDENTS)]`.

    >>> Schedule(every=1380, length=1080).active(400).title
    'silent-failure burst'
    """

    every: float
    length: float

    def __post_init__(self) -> None:
        if not 0 < self.length < self.every:
            raise ValueError("an incident must be shorter than its slot (0 < length < every)")

    def slot(self, elapsed: float) -> tuple[int, float, float]:
        """(slot index, incident start, incident end) of the slot holding `elapsed`."""
        index = int(elapsed // self.every)
        end = (index + 1) * self.every
        return index, end - self.length, end

    def active(self, elapsed: float) -> Incident | None:
        index, start, end = self.slot(elapsed)
        return INCIDENTS[index % len(INCIDENTS)] if start <= elapsed < end else None


def pick(rng: random.Random, incident: Incident | None = None) -> tuple[Step, str]:
    """One request of the mix; during `incident`, its call site fails the incident's way.

    >>> step, scenario = pick(random.Random(1))
    """
    weights = [weight for weight, _, _ in STEADY_MIX]
    _, step, scenario = rng.choices(STEADY_MIX, weights)[0]
    if incident is not None and incident.hits(step) and rng.random() < incident.share:
        return rng.choice(incident.steps)
    return step, scenario
