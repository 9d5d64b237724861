"""Scenario names, which routes they apply to, and how a request picks one.

Pure functions and tables only: no I/O, so the selection rules are easy to test.
"""

from __future__ import annotations

import random
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "HARD_SCENARIOS",
    "HTTP_ERROR_SCENARIOS",
    "IMAGE_SCENARIOS",
    "SCENARIOS",
    "TEXT_SCENARIOS",
    "USAGE",
    "VIDEO_SCENARIOS",
    "HttpError",
    "RouteKind",
    "ScenarioError",
    "applicable_scenarios",
    "parse_mix",
    "parse_scenario_list",
    "pick_from_mix",
    "pick_from_sequence",
    "split_model",
    "validate_mix",
]

RouteKind = Literal[
    "chat", "completions", "responses", "embeddings", "images", "videos", "video_get", "models"
]

# Fixed token counts reported by every successful text response, so tests can assert them.
USAGE: Final[Mapping[str, int]] = types.MappingProxyType(
    {
        "prompt_tokens": 11,
        "completion_tokens": 9,
        "total_tokens": 20,
        "cached_tokens": 3,
        "reasoning_tokens": 4,
    }
)


@dataclass(frozen=True)
class HttpError:
    """One hard-failure HTTP answer: status plus the OpenAI error body fields."""

    status: int
    message: str
    type: str
    param: str | None
    code: str | None
    inner: Mapping[str, object] | None = None  # Azure's `innererror`


HTTP_ERROR_SCENARIOS: Final[Mapping[str, HttpError]] = types.MappingProxyType(
    {
        "http_400": HttpError(
            400,
            "Invalid value for 'temperature': expected a number between 0 and 2.",
            "invalid_request_error",
            "temperature",
            "invalid_value",
        ),
        # The key-like string lets telemetry tests check that keys in messages are masked.
        "http_401": HttpError(
            401,
            "Incorrect API key provided: sk-fake****1234. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            "invalid_api_key",
        ),
        "http_403": HttpError(
            403,
            "Your organization does not have access to this model.",
            "permission_error",
            None,
            "model_access_denied",
        ),
        "http_404": HttpError(
            404,
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            "model_not_found",
        ),
        "http_409": HttpError(
            409,
            "The request conflicts with the current state of the resource.",
            "invalid_request_error",
            None,
            "conflict",
        ),
        "http_422": HttpError(
            422,
            "The request was well-formed but could not be processed.",
            "invalid_request_error",
            None,
            "unprocessable_entity",
        ),
        "http_429": HttpError(
            429,
            "Rate limit reached for requests per minute. Please try again later.",
            "requests",
            None,
            "rate_limit_exceeded",
        ),
        "http_429_retry_after": HttpError(
            429,
            "Rate limit reached for requests per minute. Please retry after the delay given.",
            "requests",
            None,
            "rate_limit_exceeded",
        ),
        "http_500": HttpError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        "http_502": HttpError(
            502, "Bad gateway: the upstream provider failed.", "server_error", None, None
        ),
        "http_503": HttpError(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            "service_unavailable",
        ),
        "http_504": HttpError(
            504,
            "Gateway timeout: the upstream provider took too long.",
            "server_error",
            None,
            "gateway_timeout",
        ),
        # Azure OpenAI's prompt filter: a 400 whose `innererror` says which categories fired.
        "azure_prompt_filter": HttpError(
            400,
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy.",
            "invalid_request_error",
            "prompt",
            "content_filter",
            types.MappingProxyType(
                {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": True, "severity": "medium"},
                        "jailbreak": {"filtered": True, "detected": True},
                        "self_harm": {"filtered": False, "severity": "safe"},
                        "sexual": {"filtered": False, "severity": "safe"},
                        "violence": {"filtered": False, "severity": "low"},
                    },
                }
            ),
        ),
    }
)

# Scenarios that make the request itself fail; they apply to every route.
HARD_SCENARIOS: Final[frozenset[str]] = frozenset(HTTP_ERROR_SCENARIOS) | {
    "timeout",
    "drop",
    "drop_mid_stream",
    # A stream whose usage arrived before the drop: after the finish and usage chunks (or,
    # for the Responses API, after its final event), or mid-way with usage on every chunk.
    "drop_after_usage",
    "drop_mid_stream_usage",
    "invalid_json",
}
# `azure_content_filter`: Azure's filter results on the answer (violence, high);
# `gemini_safety`/`gemini_recitation`: Gemini's finish reasons, as gateways pass them through.
FILTER_SCENARIOS: Final[frozenset[str]] = frozenset(
    {"azure_content_filter", "gemini_safety", "gemini_recitation"}
)
# `key_echo`: a misbehaving gateway that puts the caller's API key in the answer's model and id.
TEXT_SCENARIOS: Final[frozenset[str]] = (
    frozenset({"ok", "echo", "tool_calls", "content_filter", "length", "empty_content", "refusal"})
    | FILTER_SCENARIOS
    | {"key_echo"}
)
# The Responses API only: a stream (or answer) that ends `failed`, its usage reported.
RESPONSES_SCENARIOS: Final[frozenset[str]] = frozenset({"response_failed"})
IMAGE_SCENARIOS: Final[frozenset[str]] = frozenset(
    {"ok", "image_b64", "image_revised_prompt", "image_empty"}
)
VIDEO_SCENARIOS: Final[frozenset[str]] = frozenset(
    {
        "ok",
        "video_ok",
        "video_succeed",
        "video_succeeded",
        "video_failed",
        "video_cancelled",
        "video_stuck",
        "video_task_not_exist",
    }
)

SCENARIOS: Final[frozenset[str]] = (
    HARD_SCENARIOS | TEXT_SCENARIOS | RESPONSES_SCENARIOS | IMAGE_SCENARIOS | VIDEO_SCENARIOS
)

_BY_ROUTE: Final[Mapping[RouteKind, frozenset[str]]] = types.MappingProxyType(
    {
        "chat": TEXT_SCENARIOS | HARD_SCENARIOS,
        "responses": TEXT_SCENARIOS | RESPONSES_SCENARIOS | HARD_SCENARIOS,
        # Legacy completions have neither tool calls nor a refusal field.
        "completions": (TEXT_SCENARIOS - {"tool_calls", "refusal"}) | HARD_SCENARIOS,
        "embeddings": frozenset({"ok"}) | HARD_SCENARIOS,
        "images": IMAGE_SCENARIOS | HARD_SCENARIOS,
        "videos": VIDEO_SCENARIOS | HARD_SCENARIOS,
        # A poll follows the job's own scenario; only hard faults can be injected on it.
        "video_get": frozenset({"ok"}) | HARD_SCENARIOS,
        "models": frozenset({"ok"}) | HARD_SCENARIOS,
    }
)


class ScenarioError(ValueError):
    """A request named a scenario that does not exist or does not fit its route."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def applicable_scenarios(kind: RouteKind) -> frozenset[str]:
    """Return the scenario names that make sense on a route kind."""
    return _BY_ROUTE[kind]


def split_model(model: str | None) -> tuple[str | None, str | None]:
    """Split ``"gpt-4o@http_429,ok"`` into the model and the scenario list, on the last ``@``.

    >>> split_model("gpt-4o@http_429,ok")
    ('gpt-4o', 'http_429,ok')
    """
    if model is None or "@" not in model:
        return model, None
    name, _, scenarios = model.rpartition("@")
    return name, scenarios


def parse_scenario_list(text: str, *, param: str) -> tuple[str, ...]:
    """Parse a comma-separated scenario sequence, rejecting unknown names."""
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in SCENARIOS]
    if not names or unknown:
        bad = ", ".join(repr(name) for name in unknown) or repr(text)
        raise ScenarioError(
            f"failsight fault server: unknown scenario {bad} in {param}. "
            f"Valid scenarios: {', '.join(sorted(SCENARIOS))}.",
            param=param,
            code="unknown_scenario",
        )
    return names


def pick_from_sequence(names: Sequence[str], index: int) -> str:
    """Element ``index`` of a sequence; indexes past the end use the last element."""
    return names[min(max(index, 0), len(names) - 1)]


def parse_mix(spec: str) -> dict[str, float]:
    """Parse the command-line form ``ok=0.7,content_filter=0.1`` into a weight mapping."""
    mix: dict[str, float] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, weight = item.partition("=")
        if not sep:
            raise ValueError(f"mix entry {item!r} is not of the form name=weight")
        mix[name.strip()] = float(weight)
    return mix


def validate_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Check names and weights of a mix; return a plain copy."""
    unknown = sorted(set(mix) - SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios in mix: {', '.join(unknown)}")
    if any(weight < 0 for weight in mix.values()) or not any(mix.values()):
        raise ValueError("mix weights must be non-negative and not all zero")
    return dict(mix)


def pick_from_mix(mix: Mapping[str, float], kind: RouteKind, rng: random.Random) -> str:
    """Draw a weighted scenario among those that apply to ``kind``; ``ok`` if none do."""
    usable = applicable_scenarios(kind)
    names = [name for name, weight in mix.items() if name in usable and weight > 0]
    if not names:
        return "ok"
    return rng.choices(names, weights=[mix[name] for name in names])[0]
