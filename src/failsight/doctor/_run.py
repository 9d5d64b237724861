"""Run the checks in order against one endpoint; each request once, judged afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from failsight import traced_generation

from ._checked import (
    VALIDATE_MAX_TOKENS,
    VALIDATE_SITE,
    judge_token_field,
    judge_validation,
    output_of,
    parse_validator,
    refuses_max_tokens,
)
from ._key import judge_auth, judge_key, key_header_for, usable_key
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

    ``headers`` adds headers per probe (``models``, ``chat``, ``chat_tiny``,
    ``chat_validate``, ``image``, ``video_create``, ``video_poll``; a chat call re-sent with
    ``max_completion_tokens`` is its probe's name with ``_mct``); ``transport`` replaces
    httpx's network transport.
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
    api_key_header: str | None = None  # None: `api-key` for Azure OpenAI hosts, else Bearer
    validate: str | None = None  # `parse_validator`'s spelling: the app's own output check
    prompt: str = CHAT_PROMPT  # the prompt whose output `validate` checks


def cost_estimate(config: DoctorConfig) -> str:
    """What the run will send, stated before it sends anything."""
    parts = []
    if "text" in config.only:
        parts.append(
            f"2 chat calls to {config.model} (about 40 input tokens, at most "
            f"{CHAT_MAX_TOKENS + TINY_MAX_TOKENS} output tokens) and GET /models"
        )
    if "text" in config.only and config.validate:
        parts.append(
            f"1 chat call with your prompt for --validate (at most {VALIDATE_MAX_TOKENS} "
            "output tokens)"
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
    header = key_header_for(config.base_url, config.api_key_header)
    key_check = judge_key(config.api_key, config.api_key_env, config.base_url, header)
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
        key_header=header,
    )
    try:
        with recorded() as registry:
            checks.extend(_run_groups(prober, config))
    finally:
        prober.close()
    checks.insert(1, judge_auth(prober.sent, config.api_key_env, header))
    return Report(checks, classify_replies(prober.sent), series(registry))


class _Tokens:
    """Which token-limit field the endpoint takes: `max_tokens` until a 400 refuses it."""

    def __init__(self) -> None:
        self.field = "max_tokens"
        self.refusal: Reply | None = None  # the 400 that said so


def _chat(
    prober: Prober, probe: str, model: str, prompt: str, max_tokens: int, tokens: _Tokens
) -> Reply:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    reply = prober.request(
        probe, "POST", "/chat/completions", {**payload, tokens.field: max_tokens}
    )
    if tokens.field == "max_tokens" and refuses_max_tokens(reply):
        # o-series and gpt-5 models: the same call with the field they take.
        tokens.field, tokens.refusal = "max_completion_tokens", reply
        body = {**payload, "max_completion_tokens": max_tokens}
        reply = prober.request(f"{probe}_mct", "POST", "/chat/completions", body)
    return reply


def _validated(prober: Prober, config: DoctorConfig, tokens: _Tokens) -> Reply:
    """The --validate call inside a traced scope with that validator, as an application
    would make it: an output that fails it is counted `silent` in the series shown."""
    replies: list[Reply] = []

    @traced_generation(name=VALIDATE_SITE, validate=parse_validator(config.validate or ""))
    def generate() -> Any:
        reply = _chat(
            prober, "chat_validate", config.model, config.prompt, VALIDATE_MAX_TOKENS, tokens
        )
        replies.append(reply)
        return output_of(reply)

    generate()
    return replies[0]


def _run_groups(prober: Prober, config: DoctorConfig) -> list[Check]:
    checks: list[Check] = []
    reachable = True
    if "text" in config.only:
        models = prober.request("models", "GET", "/models")
        chat = tiny = checked = None
        tokens = _Tokens()
        if models.status is not None:
            chat = _chat(prober, "chat", config.model, CHAT_PROMPT, CHAT_MAX_TOKENS, tokens)
            if chat.ok:
                tiny = _chat(
                    prober, "chat_tiny", config.model, TINY_PROMPT, TINY_MAX_TOKENS, tokens
                )
                if config.validate:
                    checked = _validated(prober, config, tokens)
        base = judge_base_url(config.base_url, models, chat)
        reachable = base.verdict != "fail"
        checks += [
            base,
            judge_models(models, config.model),
            judge_chat(chat, config.model),
            judge_token_field(chat, tokens.refusal),
            judge_rate_limits([r for r in (models, chat, tiny) if r is not None]),
            judge_truncation(tiny),
            judge_validation(checked, config.validate),
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
