"""Run the checks in order against one endpoint; each request once, judged afterwards."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

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
from ._probe import MAX_BODY, Deadline, Prober, Reply
from ._recorded import recorded, series
from ._secret import KeyMask, url_secrets
from ._taxonomy_view import classes_of
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

__all__ = ["DEADLINE_S", "DoctorConfig", "Report", "cost_estimate", "run_checks", "run_doctor"]

GROUPS = ("text", "image", "video")
DEADLINE_S: Final = 60.0  # the whole run, unless a video job is polled (then plus its wait)


@dataclass
class DoctorConfig:
    """What to check. ``api_key`` is the raw value of ``api_key_env`` (None when unset).

    ``headers`` adds headers per probe (``models``, ``chat``, ``chat_tiny``,
    ``chat_validate``, ``image``, ``video_create``, ``video_poll``; a chat call re-sent with
    ``max_completion_tokens`` is its probe's name with ``_mct``); ``transport`` replaces
    httpx's network transport. ``deadline_s`` bounds the whole run (None: `DEADLINE_S`, plus
    ``video_wait_s`` when a video job is polled), ``timeout_s`` each request and
    ``max_body_bytes`` each answer's body. Durations must be finite and positive (ValueError).

    >>> DoctorConfig("http://127.0.0.1:9/v1", None, video_wait_s=float("nan"))
    Traceback (most recent call last):
    ValueError: video_wait_s must be a finite number of seconds above 0, not nan
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
    deadline_s: float | None = None
    max_body_bytes: int = MAX_BODY

    def __post_init__(self) -> None:
        # A NaN wait never ends and a zero one spins: refused before anything is sent.
        for name in ("timeout_s", "video_wait_s", "video_interval_s", "deadline_s"):
            value = getattr(self, name)
            if value is None and name == "deadline_s":
                continue
            if not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"{name} must be a finite number of seconds above 0, not {value!r}"
                )
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, not {self.max_body_bytes}")

    @property
    def run_deadline_s(self) -> float:
        """The whole run's bound: `deadline_s`, or `DEADLINE_S` plus the video wait."""
        if self.deadline_s is not None:
            return float(self.deadline_s)
        polls = "video" in self.only and self.video_model is not None
        return DEADLINE_S + (self.video_wait_s if polls else 0.0)


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
    """The checks in screen order, the failure classes of the requests they sent (read from
    the series, so that the two agree), the series failsight's instrumentation recorded of
    them (`_recorded.series`), and the run's deadline."""

    checks: list[Check]
    classes: dict[str, int]
    series: list[dict[str, Any]] = field(default_factory=list)
    deadline_s: float | None = None


def run_checks(config: DoctorConfig) -> list[Check]:
    """Every check, in screen order. Sends nothing without a key."""
    return run_doctor(config).checks


def run_doctor(config: DoctorConfig) -> Report:
    """Run every check, within `config.run_deadline_s`; sends nothing without a key.

    >>> run_doctor(DoctorConfig("http://127.0.0.1:9/v1", None)).checks[0].verdict
    'fail'
    """
    deadline = Deadline(config.run_deadline_s)  # started first: the bound is the whole run's
    header = key_header_for(config.base_url, config.api_key_header)
    key_check = judge_key(config.api_key, config.api_key_env, config.base_url, header)
    checks = [key_check]
    key = usable_key(config.api_key)
    if key is None:
        skipped = skip("key.accepted", "key", "no key: nothing was sent")
        return Report([*checks, skipped], {}, deadline_s=deadline.seconds)
    mask = KeyMask([config.api_key, key, *url_secrets(config.base_url)])
    prober = Prober(
        config.base_url,
        key,
        timeout=config.timeout_s,
        headers=config.headers,
        transport=config.transport,
        key_header=header,
        deadline=deadline,
        max_body=config.max_body_bytes,
        mask=mask,
    )
    try:
        with recorded() as registry:
            checks.extend(_run_groups(prober, config))
    finally:
        prober.close()
    checks.insert(1, judge_auth(prober.sent, config.api_key_env, header))
    # A label may hold what the server sent (a model name, a finish reason).
    rows = [{**row, "labels": mask.value(row["labels"])} for row in series(registry)]
    return Report(checks, classes_of(rows), rows, deadline.seconds)


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
