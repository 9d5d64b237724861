"""Scenario names, which routes they apply to, and how a request picks one.

Pure functions and tables only: no I/O, so the selection rules are easy to test.
"""

from __future__ import annotations

import random
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ._ratelimits import RATELIMIT_HEADER_SCENARIOS

__all__ = [
    "DECLARED_SCENARIOS",
    "HARD_SCENARIOS",
    "HTTP_ERROR_SCENARIOS",
    "IMAGE_SCENARIOS",
    "PARAMETERISED",
    "RATELIMIT_SCENARIOS",
    "SCENARIOS",
    "TEXT_SCENARIOS",
    "USAGE",
    "VIDEO_SCENARIOS",
    "HttpError",
    "RouteKind",
    "ScenarioError",
    "applicable_scenarios",
    "applies",
    "filter_of",
    "finish_of",
    "http_error",
    "is_hard",
    "is_scenario",
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
# Answers judged against what the request declared (its `tools`, `tool_choice`, response
# format), on chat and the Responses API: a tool call whose arguments are not JSON, that names
# a tool the request did not declare, or whose arguments break the declared schema; a plain
# answer where a tool call was required; content that is JSON fitting the conformance schema
# (`json_ok`), not JSON at all, or JSON that does not fit it. `tool_calls` is the correct call.
DECLARED_SCENARIOS: Final[frozenset[str]] = frozenset(
    {
        "tool_args_not_json",
        "tool_undeclared",
        "tool_args_invalid",
        "tool_missing",
        "json_ok",
        "json_not_json",
        "json_schema_mismatch",
    }
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

# Answers with rate-limit headers: `ratelimited` draws on the server's budget (`RateLimit`:
# counts down across calls, then 429 with Retry-After); the others carry fixed headers.
RATELIMIT_SCENARIOS: Final[frozenset[str]] = frozenset(RATELIMIT_HEADER_SCENARIOS) | {"ratelimited"}

SCENARIOS: Final[frozenset[str]] = (
    RATELIMIT_SCENARIOS
    | HARD_SCENARIOS
    | TEXT_SCENARIOS
    | DECLARED_SCENARIOS
    | RESPONSES_SCENARIOS
    | IMAGE_SCENARIOS
    | VIDEO_SCENARIOS
)

_BY_ROUTE: Final[Mapping[RouteKind, frozenset[str]]] = types.MappingProxyType(
    {
        "chat": TEXT_SCENARIOS | DECLARED_SCENARIOS | HARD_SCENARIOS | RATELIMIT_SCENARIOS,
        "responses": (
            TEXT_SCENARIOS
            | DECLARED_SCENARIOS
            | RESPONSES_SCENARIOS
            | HARD_SCENARIOS
            | RATELIMIT_SCENARIOS
        ),
        # Legacy completions have neither tool calls nor a refusal field.
        "completions": (
            (TEXT_SCENARIOS - {"tool_calls", "refusal"}) | HARD_SCENARIOS | RATELIMIT_SCENARIOS
        ),
        "embeddings": frozenset({"ok"}) | HARD_SCENARIOS | RATELIMIT_SCENARIOS,
        "images": IMAGE_SCENARIOS | HARD_SCENARIOS,
        "videos": VIDEO_SCENARIOS | HARD_SCENARIOS,
        # A poll follows the job's own scenario; only hard faults can be injected on it.
        "video_get": frozenset({"ok"}) | HARD_SCENARIOS,
        "models": frozenset({"ok"}) | HARD_SCENARIOS,
    }
)


# Parameterised scenarios carry their value in the name, verbatim, so a test can send any
# spelling a provider uses: `http_418` (any status from 300 to 599, an OpenAI-shaped error),
# `finish=end_turn` (an answer ending with that finish reason: a choice's `finish_reason`, or an
# incomplete Response's `incomplete_details.reason`), `filter=selfharm:high` (an Azure-style
# answer whose `content_filter_results` mark that category filtered, with that severity if
# given; finish reason `content_filter`). No `,` or `@`: those split a model's scenario list.
PARAMETERISED: Final = ("http_<status>", "finish=<finish_reason>", "filter=<category>[:<severity>]")
_HTTP: Final = re.compile(r"http_([3-5][0-9]{2})")
_FINISH: Final = re.compile(r"finish=([A-Za-z0-9_.\-]{1,64})")
_FILTER: Final = re.compile(r"filter=([A-Za-z0-9_.\-]{1,64})(?::([A-Za-z]{1,16}))?")
_FINISH_KINDS: Final[frozenset[RouteKind]] = frozenset({"chat", "completions", "responses"})


def http_error(name: str) -> HttpError | None:
    """The HTTP error a scenario answers with: a named one, or any ``http_<status>``.

    >>> http_error("http_418").status
    418
    """
    found = HTTP_ERROR_SCENARIOS.get(name)
    match = _HTTP.fullmatch(name) if found is None else None
    if match is None:
        return found
    status = int(match[1])
    return HttpError(
        status,
        f"failsight fault server: HTTP {status}, as the scenario asked.",
        "server_error" if status >= 500 else "invalid_request_error",
        None,
        None,
    )


def finish_of(name: str) -> str | None:
    """The finish reason a ``finish=<reason>`` scenario sends, verbatim.

    >>> finish_of("finish=MAX_TOKENS")
    'MAX_TOKENS'
    """
    match = _FINISH.fullmatch(name)
    return match[1] if match else None


def filter_of(name: str) -> tuple[str, str | None] | None:
    """The (category, severity or None) a ``filter=<category>[:<severity>]`` scenario fires.

    >>> filter_of("filter=selfharm:high")
    ('selfharm', 'high')
    """
    match = _FILTER.fullmatch(name)
    return (match[1], match[2]) if match else None


def is_hard(name: str) -> bool:
    """Whether the scenario fails the request itself (so it applies to every route)."""
    return name in HARD_SCENARIOS or _HTTP.fullmatch(name) is not None


def is_scenario(name: str) -> bool:
    """Whether ``name`` is a scenario: a named one or a parameterised one."""
    return (
        name in SCENARIOS
        or is_hard(name)
        or finish_of(name) is not None
        or (filter_of(name) is not None)
    )


def applies(name: str, kind: RouteKind) -> bool:
    """Whether scenario ``name`` makes sense on a route kind (see `applicable_scenarios`)."""
    if name in _BY_ROUTE[kind] or is_hard(name):
        return True
    if finish_of(name) is not None:
        return kind in _FINISH_KINDS
    return kind == "chat" and filter_of(name) is not None


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
    unknown = [name for name in names if not is_scenario(name)]
    if not names or unknown:
        bad = ", ".join(repr(name) for name in unknown) or repr(text)
        raise ScenarioError(
            f"failsight fault server: unknown scenario {bad} in {param}. "
            f"Valid scenarios: {', '.join((*sorted(SCENARIOS), *PARAMETERISED))}.",
            param=param,
            code="unknown_scenario",
        )
    return names


def pick_from_sequence(names: Sequence[str], index: int) -> str:
    """Element ``index`` of a sequence; indexes past the end use the last element."""
    return names[min(max(index, 0), len(names) - 1)]


def parse_mix(spec: str) -> dict[str, float]:
    """Parse the command-line form ``ok=0.7,content_filter=0.1`` into a weight mapping.

    The weight follows the last ``=``, so ``finish=end_turn=0.1`` names ``finish=end_turn``.
    """
    mix: dict[str, float] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, weight = item.rpartition("=")
        if not sep:
            raise ValueError(f"mix entry {item!r} is not of the form name=weight")
        mix[name.strip()] = float(weight)
    return mix


def validate_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Check names and weights of a mix; return a plain copy."""
    unknown = sorted(name for name in mix if not is_scenario(name))
    if unknown:
        raise ValueError(f"unknown scenarios in mix: {', '.join(unknown)}")
    if any(weight < 0 for weight in mix.values()) or not any(mix.values()):
        raise ValueError("mix weights must be non-negative and not all zero")
    return dict(mix)


def pick_from_mix(mix: Mapping[str, float], kind: RouteKind, rng: random.Random) -> str:
    """Draw a weighted scenario among those that apply to ``kind``; ``ok`` if none do."""
    names = [name for name, weight in mix.items() if applies(name, kind) and weight > 0]
    if not names:
        return "ok"
    return rng.choices(names, weights=[mix[name] for name in names])[0]
