"""Run the checks in order against one endpoint; each request once, judged afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._key import judge_auth, judge_key, usable_key
from ._media import (
    image_payload,
    judge_image,
    judge_image_params,
    judge_video_job,
    judge_video_statuses,
    run_video,
)
from ._model import Check, skip
from ._probe import Prober, Reply
from ._recorded import recorded, series
from ._taxonomy_view import classify_replies
from ._text import (
    CHAT_MAX_TOKENS,
    CHAT_PROMPT,
    TINY_MAX_TOKENS,
    TINY_PROMPT,
    judge_base_url,
    judge_chat,
    judge_models,
    judge_rate_limits,
    judge_truncation,
)

__all__ = ["DoctorConfig", "Report", "cost_estimate", "run_checks", "run_doctor"]

GROUPS = ("text", "image", "video")


@dataclass
class DoctorConfig:
    """What to check. ``api_key`` is the raw value of ``api_key_env`` (None when unset).

    ``headers`` adds headers per probe (``models``, ``chat``, ``chat_tiny``, ``image``,
    ``video_create``, ``video_poll``); ``transport`` replaces httpx's network transport.
    """

    base_url: str
    api_key: str | None
    api_key_env: str = "OPENAI_API_KEY"
    model: str = "gpt-4o-mini"
    image_model: str | None = None
    video_model: str | None = None
    only: tuple[str, ...] = GROUPS
    timeout_s: float = 30.0
    video_wait_s: float = 120.0
    video_interval_s: float = 2.0
    headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    transport: Any = None


def cost_estimate(config: DoctorConfig) -> str:
    """What the run will send, stated before it sends anything."""
    parts = []
    if "text" in config.only:
        parts.append(
            f"2 chat calls to {config.model} (about 40 input tokens, at most "
            f"{CHAT_MAX_TOKENS + TINY_MAX_TOKENS} output tokens) and GET /models"
        )
    if "image" in config.only and config.image_model:
        parts.append(f"1 image from {config.image_model} (billed as one image)")
    if "video" in config.only and config.video_model:
        parts.append(f"1 video job of 4 seconds from {config.video_model} (billed per second)")
    return "; ".join(parts) if parts else "nothing"


@dataclass(frozen=True)
class Report:
    """The checks in screen order, the failure classes of the requests they sent, and the
    series failsight's instrumentation recorded of them (`_recorded.series`)."""

    checks: list[Check]
    classes: dict[str, int]
    series: list[dict[str, Any]] = field(default_factory=list)


def run_checks(config: DoctorConfig) -> list[Check]:
    """Every check, in screen order. Sends nothing without a key."""
    return run_doctor(config).checks


def run_doctor(config: DoctorConfig) -> Report:
    """Run every check; sends nothing without a key."""
    key_check = judge_key(config.api_key, config.api_key_env, config.base_url)
    checks = [key_check]
    key = usable_key(config.api_key)
    if key is None:
        return Report([*checks, skip("key.accepted", "key", "no key: nothing was sent")], {})
    prober = Prober(
        config.base_url,
        key,
        timeout=config.timeout_s,
        headers=config.headers,
        transport=config.transport,
    )
    try:
        with recorded() as registry:
            checks.extend(_run_groups(prober, config))
    finally:
        prober.close()
    checks.insert(1, judge_auth(prober.sent, config.api_key_env))
    return Report(checks, classify_replies(prober.sent), series(registry))


def _chat(prober: Prober, probe: str, model: str, prompt: str, max_tokens: int) -> Reply:
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    }
    return prober.request(probe, "POST", "/chat/completions", payload)


def _run_groups(prober: Prober, config: DoctorConfig) -> list[Check]:
    checks: list[Check] = []
    reachable = True
    if "text" in config.only:
        models = prober.request("models", "GET", "/models")
        chat = None
        tiny = None
        if models.status is not None:
            chat = _chat(prober, "chat", config.model, CHAT_PROMPT, CHAT_MAX_TOKENS)
            if chat.ok:
                tiny = _chat(prober, "chat_tiny", config.model, TINY_PROMPT, TINY_MAX_TOKENS)
        base = judge_base_url(config.base_url, models, chat)
        reachable = base.verdict != "fail"
        checks += [
            base,
            judge_models(models, config.model),
            judge_chat(chat, config.model),
            judge_rate_limits([r for r in (models, chat, tiny) if r is not None]),
            judge_truncation(tiny),
        ]
    if "image" in config.only:
        image = None
        if config.image_model and reachable:
            image = prober.request(
                "image", "POST", "/images/generations", image_payload(config.image_model)
            )
        why = _why_not(config.image_model, "--image-model", reachable)
        checks += [judge_image(image, why), judge_image_params(config.image_model)]
    if "video" in config.only:
        run = None
        if config.video_model and reachable:
            run = run_video(
                prober,
                config.video_model,
                wait_s=config.video_wait_s,
                interval_s=config.video_interval_s,
            )
        why = _why_not(config.video_model, "--video-model", reachable)
        checks += [judge_video_job(run, why), judge_video_statuses(run, why)]
    return checks


def _why_not(model: str | None, flag: str, reachable: bool) -> str:
    return f"not run (give {flag})" if model is None or reachable else "not run: see text.base_url"
