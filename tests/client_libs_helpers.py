"""Plumbing for tests/test_client_libraries.py: real client libraries against the fault server.

- `LIBRARIES` / `require_library`: which library runs in which venv, and the skip (or, under
  ``CI``, failure) when one is missing.
- `Wire`: one run's connection to the `FaultServer`: the scenario sequence (sent as headers, with
  a per-run key so the server walks the sequence request by request), openai clients pointed at
  loopback with a dummy key, and the JSON body of every request those clients send.
- `run_once`: a case's result, or the exception it raised, with per-response ids scrubbed.
- `expected_metrics` (from the server's record of the requests it answered, and what each
  request declared: `declared_outcome` judges the fault server's declared-output scenarios) and
  `observed_metrics` (from the Prometheus registry), in one comparable shape.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from prometheus_client import CollectorRegistry

from failsight._vocabulary import VOCABULARY
from failsight.testing import (
    HTTP_ERROR_SCENARIOS,
    KEY_HEADER,
    SCENARIO_HEADER,
    USAGE,
    FaultServer,
    RecordedRequest,
)

DUMMY_KEY = "sk-failsight-dummy-0000"
MODEL = "gpt-4o-mini"
OPENAI_MAJOR = int(openai.__version__.split(".")[0])
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


# --------------------------------------------------------------------------- libraries


@dataclass(frozen=True)
class Library:
    """A client library, the module proving it is installed, and where `make test` runs it."""

    name: str
    module: str
    requirement: str
    openai_major: int  # the openai major of the venv `make test` installs it in
    extra: str  # the pyproject extra that installs it

    @property
    def venv(self) -> str:
        return ".venv" if self.extra == "clientlibs" else f".venv-openai{self.openai_major}"


LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        # instructor pins jiter<0.15, which holds openai 3.x back at 3.3: it runs with 2.x.
        Library("instructor", "instructor", "instructor", 2, "clientlibs-openai2"),
        Library("langchain", "langchain_openai", "langchain-openai", 3, "clientlibs"),
        Library(
            "pydantic_ai", "pydantic_ai.models.openai", "pydantic-ai-slim[openai]", 3, "clientlibs"
        ),
        Library("openai_agents", "agents", "openai-agents", 3, "clientlibs"),
        # llama-index-llms-openai pins openai<3.
        Library(
            "llama_index",
            "llama_index.llms.openai",
            "llama-index-llms-openai",
            2,
            "clientlibs-openai2",
        ),
    )
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_library(lib: Library) -> None:
    """Import `lib` or skip the test; under ``CI`` a library missing from its own venv fails."""
    try:
        importlib.import_module(lib.module)
    except ImportError as exc:
        if lib.openai_major != OPENAI_MAJOR:
            pytest.skip(
                f"{lib.requirement} runs against openai {lib.openai_major}.x: `make test` runs "
                f"it in {lib.venv} (this venv has openai {openai.__version__})"
            )
        reason = f"{lib.requirement} is not installed ({exc}); pip install -e '.[{lib.extra}]'"
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so this test must run", pytrace=False)
        pytest.skip(reason)


# --------------------------------------------------------------------------- the wire


@dataclass
class Wire:
    """One run's link to the fault server; every client a case builds comes from here."""

    server: FaultServer
    scenario: str  # comma-separated: request n of this run gets element n (the last repeats)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def headers(self) -> dict[str, str]:
        return {SCENARIO_HEADER: self.scenario, KEY_HEADER: self.key}

    def _record(self, request: Any) -> None:
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            body = {}
        self.bodies.append(body if isinstance(body, dict) else {})

    def http_client(self) -> Any:
        """The SDK's own httpx(2) client class, noting each request body it sends."""
        return openai.DefaultHttpxClient(event_hooks={"request": [self._record]})

    def async_http_client(self) -> Any:
        async def record(request: Any) -> None:
            self._record(request)

        return openai.DefaultAsyncHttpxClient(event_hooks={"request": [record]})

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=DUMMY_KEY, default_headers=self.headers,
            http_client=self.http_client(), max_retries=2, **kwargs,
        )  # fmt: skip

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=DUMMY_KEY, default_headers=self.headers,
            http_client=self.async_http_client(), max_retries=2, **kwargs,
        )  # fmt: skip


# --------------------------------------------------------------------------- results

# Values the server makes up per response (ids, clocks) and the libraries' own run ids.
_SCRUB = (
    (re.compile(r"\b(chatcmpl-|cmpl-|call_|resp_|msg_|fc_|req_)[0-9a-f]{24}\b"), r"\1<id>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b(created(?:_at)?['\"]?\s*[=:]\s*)\d{9,}(\.\d+)?"), r"\1<time>"),
    (re.compile(r"\b1[0-9]{9}(\.\d+)?\b"), "<epoch>"),
    # Timing, not behaviour: ISO-8601 durations (pydantic-ai's "PT0.04247S") and elapsed seconds.
    (
        re.compile(r"\bP(?=\d|T\d)(?:\d+(?:\.\d+)?[YMWD])*(?:T(?:\d+(?:\.\d+)?[HMS])+)?\b"),
        "<duration>",
    ),
    (
        re.compile(r"\b((?:duration|elapsed|latency)\w*['\"]?\s*[=:]\s*)\d+(?:\.\d+)?(?:e-?\d+)?"),
        r"\1<elapsed>",
    ),
)


def scrub(value: Any) -> Any:
    """`value` with per-response ids and timestamps replaced, recursively."""
    if isinstance(value, str):
        for pattern, replacement in _SCRUB:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return value


def run_once(case: Callable[[Wire], Any], wire: Wire) -> tuple[Any, ...]:
    """("returned", result) or ("raised", exception type, message); coroutines are run."""
    try:
        result = case(wire)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except Exception as exc:
        return ("raised", f"{type(exc).__module__}.{type(exc).__qualname__}", scrub(str(exc)))
    return ("returned", scrub(result))


# --------------------------------------------------------------------------- metrics

_STATUS_REASONS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    409: "conflict", 422: "unprocessable", 429: "rate_limited", 500: "server_error",
    502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout",
}  # fmt: skip
_TOOL_ANSWERS = ("tool_calls", "tool_args_not_json", "tool_undeclared", "tool_args_invalid")
_CHAT_FINISH = {
    "ok": "stop", "echo": "stop", "content_filter": "content_filter", "length": "length",
    "empty_content": "stop", "refusal": "stop", "tool_missing": "stop", "json_ok": "stop",
    "json_not_json": "stop", "json_schema_mismatch": "stop",
    **dict.fromkeys(_TOOL_ANSWERS, "tool_calls"),
}  # fmt: skip
# Responses API: `completed` → stop (function calls included), incomplete → its reason.
_RESPONSES_FINISH = {**_CHAT_FINISH, **dict.fromkeys(_TOOL_ANSWERS, "stop")}
_DECLARED = VOCABULARY["declared"]
# Without the `schemas` extra (jsonschema), failsight judges JSON-ness and names, not schemas.
SCHEMAS = importlib.util.find_spec("jsonschema") is not None
_UNDECLARED = _DECLARED["undeclared_tool"]
# The tool each tool scenario calls, by name (the cases declare `get_weather(city: str)`).
_CALLED = {"tool_calls": "get_weather", "tool_args_not_json": "get_weather",
           "tool_undeclared": "get_stock_price", "tool_args_invalid": "get_weather"}  # fmt: skip
_SOFT = {"content_filter", "length", "empty_content", "refusal"}
_TOKENS = {
    "input": USAGE["prompt_tokens"],
    "output": USAGE["completion_tokens"],
    "reasoning": USAGE["reasoning_tokens"],
    "cached_input": USAGE["cached_tokens"],
}


def declared_outcome(
    scenario: str | None, body: dict[str, Any], responses: bool
) -> tuple[str, str, tuple[str, str] | None]:
    """(failure_class, reason, (tool, outcome) of its tool call) of an answer judged against what
    the request declared: the fault server's declared-output scenarios say what they break."""
    tools: dict[str, bool] = {}  # declared name -> strict
    for entry in body.get("tools") or []:
        spec = entry if responses else entry.get("function") or {}
        if entry.get("type") == "function" and isinstance(spec.get("name"), str):
            tools[spec["name"]] = spec.get("strict") is True
    text = body.get("text")
    fmt = (text or {}).get("format") if responses else body.get("response_format")
    fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
    if scenario in _CALLED and tools:
        name = _CALLED[str(scenario)]
        if name not in tools:
            outcome, label = "not_declared", _UNDECLARED
        elif scenario == "tool_args_not_json":
            outcome, label = "not_json", name
        elif scenario == "tool_args_invalid" and SCHEMAS:
            outcome, label = ("strict_violation" if tools[name] else "invalid_arguments"), name
        else:
            outcome, label = "ok", name
        reason = _DECLARED["tool_call_reasons"].get(outcome)
        return ("silent", reason, (label, outcome)) if reason else ("none", "", (label, outcome))
    choice = body.get("tool_choice")
    if scenario == "tool_missing" and tools and choice not in (None, "auto", "none"):
        return "silent", _DECLARED["missing_reason"], None
    if scenario == "json_not_json" and fmt_type in ("json_schema", "json_object"):
        return "silent", _DECLARED["output_reasons"]["not_json"], None
    if scenario == "json_schema_mismatch" and fmt_type == "json_schema" and SCHEMAS:
        return "silent", _DECLARED["output_reasons"]["schema_mismatch"], None
    return "none", "", None


def _hard_reason(scenario: str | None) -> str | None:
    error = HTTP_ERROR_SCENARIOS.get(scenario or "")
    return None if error is None else _STATUS_REASONS[error.status]


def _reports_usage(request: RecordedRequest, body: dict[str, Any]) -> bool:
    """Non-streamed answers and streamed Responses carry usage; a chat stream only on request."""
    if not request.stream or request.path.endswith("/responses"):
        return True
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def expected_metrics(
    requests: Sequence[RecordedRequest], bodies: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """What failsight must have counted for the requests the server answered.

    Each SDK call outside a traced scope is one logical request; its SDK-internal retries
    are the following requests the server saw with ``x-stainless-retry-count`` > 0.
    """
    assert len(bodies) == len(requests), (
        f"the clients sent {len(bodies)} requests, the server answered {len(requests)}"
    )
    calls: list[list[tuple[RecordedRequest, dict[str, Any]]]] = []
    for request, body in zip(requests, bodies, strict=True):
        if not calls or not request.retry_count:
            calls.append([])
        calls[-1].append((request, body))
    totals: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    finish_reasons: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    tool_calls: Counter[tuple[str, str]] = Counter()
    series: set[tuple[str, str, str, str]] = set()
    for attempts in calls:
        last, last_body = attempts[-1]
        responses = last.path.endswith("/responses")
        hard = _hard_reason(last.scenario)
        if hard is not None:
            failure_class, reason = "hard", hard
        elif last.scenario in _SOFT:
            failure_class, reason = "soft", str(last.scenario)
        else:
            failure_class, reason, _ = declared_outcome(last.scenario, last_body, responses)
        totals[failure_class] += 1
        if reason:
            failures[failure_class, reason] += 1
        series.add(("chat", "127.0.0.1", last.model or MODEL, "unscoped"))
        for previous, _ in attempts[:-1]:
            retries[_hard_reason(previous.scenario) or "unknown"] += 1
        for request, body in attempts:
            if _hard_reason(request.scenario) is not None:
                continue
            responses = request.path.endswith("/responses")
            table = _RESPONSES_FINISH if responses else _CHAT_FINISH
            finish_reasons[table[str(request.scenario)]] += 1
            called = declared_outcome(request.scenario, body, responses)[2]
            if called is not None:
                tool_calls[called] += 1
            if _reports_usage(request, body):
                tokens.update(_TOKENS)
    return {
        "requests_total": dict(totals),
        "failures_total": dict(failures),
        "finish_reasons_total": dict(finish_reasons),
        "tokens_total": dict(tokens),
        "retries_total": dict(retries),
        "tool_calls_total": dict(tool_calls),
        "request_attempts": {
            "count": len(calls),
            "sum": sum(len(attempts) for attempts in calls),
        },
        "in_flight_requests": 0,
        "request_series": series,
    }


def observed_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The same shape as `expected_metrics`, read from the registry failsight wrote to."""
    totals: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    finish_reasons: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    tool_calls: Counter[tuple[str, str]] = Counter()
    attempts = {"count": 0, "sum": 0}
    in_flight = 0.0
    series: set[tuple[str, str, str, str]] = set()
    for metric in registry.collect():
        for sample in metric.samples:
            labels, value = sample.labels, sample.value
            name = sample.name
            if name == "genai_requests_total" and value:
                totals[labels["failure_class"]] += int(value)
                series.add(
                    (labels["operation"], labels["provider"], labels["model"], labels["call_site"])
                )
            elif name == "genai_failures_total" and value:
                failures[labels["failure_class"], labels["reason"]] += int(value)
            elif name == "genai_finish_reasons_total" and value:
                finish_reasons[labels["finish_reason"]] += int(value)
            elif name == "genai_tokens_total" and value:
                tokens[labels["token_type"]] += int(value)
            elif name == "genai_retries_total" and value:
                retries[labels["reason"]] += int(value)
            elif name == "genai_tool_calls_total" and value:
                tool_calls[labels["tool"], labels["outcome"]] += int(value)
            elif name == "genai_request_attempts_count":
                attempts["count"] += int(value)
            elif name == "genai_request_attempts_sum":
                attempts["sum"] += int(value)
            elif name == "genai_in_flight_requests":
                in_flight += value
    return {
        "requests_total": dict(totals),
        "failures_total": dict(failures),
        "finish_reasons_total": dict(finish_reasons),
        "tokens_total": dict(tokens),
        "retries_total": dict(retries),
        "tool_calls_total": dict(tool_calls),
        "request_attempts": attempts,
        "in_flight_requests": int(in_flight) if in_flight == int(in_flight) else in_flight,
        "request_series": series,
    }
