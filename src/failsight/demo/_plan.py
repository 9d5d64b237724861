"""The demo's plan: each step, the failure it asks the fault server for, and `expected_totals`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One logical request of the plan and what failsight should record for it."""

    name: str
    failure_class: str
    reason: str | None
    call_site: str
    operation: str
    retries: tuple[str, ...] = ()
    video_status: str | None = None
    is_async: bool = False
    # Answers reporting the fault server's USAGE that bought nothing kept (README "Wasted
    # tokens and spend"), and the model they were priced as.
    wasted: int = 0
    model: str = "gpt-4o-mini"


def _step(kind: str, scenario: str, failure_class: str, reason: str | None, call_site: str,
          operation: str = "chat", **extra: Any) -> tuple[Step, str]:  # fmt: skip
    return Step(
        f"{kind}:{scenario}", failure_class, reason, call_site, operation, **extra
    ), scenario


def build_plan(rounds: int = 4) -> list[tuple[Step, str]]:
    """The workload: `rounds` repetitions of a mix covering every failure class.

    Each entry is (step, scenario); a round is 52 logical requests.
    """
    u = "unscoped"
    one_round = [
        *([_step("chat", "ok", "none", None, u)] * 8),
        _step("chat", "tool_calls", "none", None, u),
        *([_step("chat", "content_filter", "soft", "content_filter", u, wasted=1)] * 3),
        _step("chat", "azure_content_filter", "soft", "content_filter", u, wasted=1),
        _step("chat", "gemini_safety", "soft", "content_filter", u, wasted=1),
        _step("chat", "length", "soft", "length", u, wasted=1),
        _step("chat", "empty_content", "soft", "empty_content", u, wasted=1),
        _step("chat", "refusal", "soft", "refusal", u, wasted=1),
        _step("chat", "http_429,ok", "none", None, u, retries=("rate_limited",)),
        _step("chat", "http_500,http_503,ok", "none", None, u,
              retries=("server_error", "unavailable")),
        _step("chat_once", "http_400", "hard", "bad_request", u),
        _step("chat_once", "azure_prompt_filter", "hard", "bad_request", u),
        _step("chat_once", "http_401", "hard", "unauthorized", u),
        _step("chat_once", "http_404", "hard", "not_found", u),
        _step("chat", "http_429,http_429,http_429", "hard", "rate_limited", u,
              retries=("rate_limited", "rate_limited")),
        _step("chat_once", "http_502", "hard", "bad_gateway", u),
        _step("chat_once", "http_504", "hard", "gateway_timeout", u),
        _step("chat_once", "invalid_json", "hard", "invalid_response", u),
        _step("stream", "ok", "none", None, u),
        _step("stream", "content_filter", "soft", "content_filter", u),
        _step("stream", "drop_mid_stream", "hard", "connection", u),
        _step("responses", "ok", "none", None, u),
        _step("responses", "length", "soft", "length", u, wasted=1),
        _step("embeddings", "ok", "none", None, u, operation="embeddings"),
        _step("image", "ok", "none", None, u, operation="image_generation"),
        _step("image", "image_empty", "soft", "image_filtered", u, operation="image_generation"),
        _step("video", "video_ok", "none", None, u, operation="video_generation",
              video_status="succeeded"),
        _step("video", "video_failed", "soft", "video_failed", u, operation="video_generation",
              video_status="failed"),
        _step("classify", "ok", "silent", "unexpected_label", "classify_review", wasted=1),
        _step("extract", "http_503,ok", "silent", "invalid_json", "extract_json",
              retries=("unavailable",), wasted=1),
        _step("summarize", "ok", "silent", "too_short", "summarize"),
        _step("safe_complete", "content_filter", "soft", "content_filter", "safe_complete",
              wasted=1),
        _step("safe_complete", "ok", "none", None, "safe_complete"),
        _step("generate_image", "image_empty", "soft", "image_filtered", "generate_image_safe",
              operation="image_generation"),
        _step("generate_image", "image_b64", "none", None, "generate_image_safe",
              operation="image_generation"),
        _step("submit_and_poll", "video_succeed", "none", None, "submit_and_poll_video",
              operation="video_generation", video_status="succeeded"),
        _step("submit_and_poll", "video_stuck", "soft", "video_timeout", "submit_and_poll_video",
              operation="video_generation", video_status="timed_out"),
        # Judged against what the request declares (its tools, its output schema).
        *([_step("plan_trip", "tool_calls", "none", None, "plan_trip")] * 3),
        _step("plan_trip", "tool_args_invalid", "silent", "tool_arguments_invalid", "plan_trip",
              wasted=1),
        _step("plan_trip", "json_ok", "none", None, "plan_trip"),
        _step("plan_trip", "json_schema_mismatch", "silent", "output_schema_mismatch",
              "plan_trip", wasted=1),
    ]  # fmt: skip
    return one_round * rounds


ASYNC_MIX = ("ok", "ok", "ok", "content_filter", "length", "http_500,ok")


def async_plan(count: int) -> list[tuple[Step, str]]:
    """`count` concurrent asyncio requests through AsyncOpenAI."""
    plan = []
    for i in range(count):
        scenario = ASYNC_MIX[i % len(ASYNC_MIX)]
        failure = {"content_filter": ("soft", "content_filter"), "length": ("soft", "length")}
        cls, reason = failure.get(scenario, ("none", None))
        retries = ("server_error",) if scenario == "http_500,ok" else ()
        step = Step(f"async:{scenario}", cls, reason, "unscoped", "chat", retries, is_async=True,
                    wasted=1 if reason else 0, model="gpt-4o")  # fmt: skip
        plan.append((step, scenario))
    return plan


def expected_totals(plan: Iterable[tuple[Step, str]]) -> dict[str, Counter[Any]]:
    """What the plan should record: requests by class, failures and retries by reason, and
    the wasted answers by (class, reason) and by model."""
    requests: Counter[str] = Counter()
    wasted: Counter[tuple[str, str]] = Counter()
    wasted_models: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    retries: Counter[str] = Counter()
    videos: Counter[str] = Counter()
    for step, _ in plan:
        requests[step.failure_class] += 1
        if step.reason:
            failures[(step.failure_class, step.reason)] += 1
        retries.update(step.retries)
        if step.video_status:
            videos[step.video_status] += 1
        if step.wasted and step.reason:
            wasted[(step.failure_class, step.reason)] += step.wasted
            wasted_models[step.model] += step.wasted
    return {
        "requests": requests, "failures": failures, "retries": retries, "videos": videos,
        "wasted": wasted, "wasted_models": wasted_models,
    }  # fmt: skip
