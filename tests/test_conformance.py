"""The cross-language conformance suite, Python side: tests/conformance/cases.json (written by
hand) and vocabulary_cases.json (written by tests/conformance/generate.py from the vocabulary).

Each case names a fault-server scenario (in the model name) and a call shape; it expects exact
metric deltas and span attributes. The Node.js package reads the same files (js/test/), so a case
added once is checked in both languages. How a case's compact `expect` becomes series is in
`expected_series` here and `expectedSeries` in js/test/conformance.test.mjs: keep them alike.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel, ConfigDict

import failsight
from failsight import RetryPolicy, validators
from failsight.testing import FaultServer

CASES_FILE = Path(__file__).parent / "conformance" / "cases.json"
VOCABULARY_CASES_FILE = CASES_FILE.with_name("vocabulary_cases.json")
CONFORMANCE: dict[str, Any] = json.loads(CASES_FILE.read_text())
# The hand-written cases: also the workload of the parity and Prometheus tests.
CASES: list[dict[str, Any]] = CONFORMANCE["cases"]
# One case per vocabulary entry the hand-written ones leave out (same server settings).
VOCABULARY_CASES: list[dict[str, Any]] = json.loads(VOCABULARY_CASES_FILE.read_text())["cases"]
ALL_CASES = CASES + VOCABULARY_CASES
PROVIDER = "127.0.0.1"

# Time-dependent samples: only their counts are compared.
_TIMED = ("genai_request_duration_seconds", "genai_time_to_first_token_seconds",
          "genai_video_job_duration_seconds", "genai_retry_backoff_seconds",
          "genai_request_phase_seconds", "genai_ratelimit_reset_seconds")  # fmt: skip

Key = tuple[str, tuple[tuple[str, str], ...]]

# Attempts, backoff and rate-limit headroom (issue 29): compared only in the cases that expect
# them (`attempts_by_status`), in both languages (js/test/conformance.test.mjs: PER_ATTEMPT).
_PER_ATTEMPT = ("genai_attempts_total", "genai_retry_backoff_seconds",
                "genai_request_phase_seconds", "genai_ratelimit_")  # fmt: skip

# The one tool and the one output schema the declared-output shapes send (js/test/cases.mjs
# sends the same): a string `city`, nothing else.
TOOL_NAME = "get_weather"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


class Weather(BaseModel):
    """`chat_parse`'s response format: the SDK sends WEATHER_SCHEMA (strict) and validates."""

    model_config = ConfigDict(extra="forbid")
    city: str


def snapshot(registry: Any) -> dict[Key, float]:
    """Every genai_* sample that the suite compares, keyed by name and sorted labels."""
    found: dict[Key, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            name = sample.name
            if not name.startswith("genai_") or name.endswith(("_created", "_bucket")):
                continue
            if name.startswith(_TIMED) and not name.endswith("_count"):
                continue
            found[(name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def expected_series(case: dict[str, Any]) -> dict[Key, float]:
    """The compact `expect` of a case as exact series deltas (the Node runner does the same)."""
    exp = case["expect"]
    common = {"provider": PROVIDER, **case["labels"]}

    def key(name: str, **own: str) -> Key:
        return (name, tuple(sorted({**common, **own}.items())))

    series: dict[Key, float] = {}

    def add(k: Key, value: float) -> None:
        series[k] = series.get(k, 0) + value

    cls = exp["failure_class"]
    add(key("genai_requests_total", failure_class=cls), 1)
    if cls != "none":
        add(key("genai_failures_total", failure_class=cls, reason=exp["reason"]), 1)
    add(key("genai_request_duration_seconds_count", failure_class=cls), 1)
    add(key("genai_request_attempts_count"), 1)
    add(key("genai_request_attempts_sum"), exp.get("attempts", 1))
    for reason, n in exp.get("retries", {}).items():
        add(key("genai_retries_total", reason=reason), n)
    for reason, n in exp.get("finish_reasons", {}).items():
        add(key("genai_finish_reasons_total", finish_reason=reason), n)
    for token_type, n in exp.get("tokens", {}).items():
        add(key("genai_tokens_total", token_type=token_type), n)
    # Wasted tokens: listed as "token_type|failure_class|reason", or else all the tokens of a
    # request that failed, with its class and reason (docs/reference.md#wasted-usage).
    wasted = exp.get("wasted")
    if wasted is None and cls != "none":
        wasted = {f"{t}|{cls}|{exp['reason']}": n for t, n in exp.get("tokens", {}).items()}
    for spec, n in (wasted or {}).items():
        token_type, wasted_class, reason = spec.split("|")
        add(key("genai_wasted_tokens_total", token_type=token_type,
                failure_class=wasted_class, reason=reason), n)  # fmt: skip
    for spec, n in exp.get("filters", {}).items():
        category, stage, severity = spec.split("|")
        add(key("genai_content_filter_total", category=category, stage=stage,
                severity=severity), n)  # fmt: skip
    if exp.get("ttft"):
        add(key("genai_time_to_first_token_seconds_count"), exp["ttft"])
    for status, n in exp.get("video_jobs", {}).items():
        add(key("genai_video_jobs_total", status=status), n)
        add(key("genai_video_job_duration_seconds_count", status=status), n)
    # Tool calls judged against the request's declared tools: "tool|outcome".
    for spec, n in exp.get("tool_calls", {}).items():
        tool, outcome = spec.split("|")
        add(key("genai_tool_calls_total", tool=tool, outcome=outcome), n)
    if "attempts_by_status" in exp:  # every attempt, its backoff, the request's two phases
        for status, n in exp["attempts_by_status"].items():
            add(key("genai_attempts_total", status=status), n)
        for asked, n in exp.get("backoff", {}).items():
            add(key("genai_retry_backoff_seconds_count", retry_after=asked), n)
        for phase in ("attempts", "backoff"):
            add(key("genai_request_phase_seconds_count", phase=phase), 1)
        # Headroom gauges: "resource|figure" -> the value last seen (one series per model).
        model = {"provider": PROVIDER, "model": case["labels"]["model"]}
        for spec, value in exp.get("ratelimit", {}).items():
            resource, figure = spec.split("|")
            gauge = (
                f"genai_ratelimit_{figure}",
                tuple(sorted({**model, "resource": resource}.items())),
            )
            add(gauge, value)
    for stage, n in exp.get("telemetry_errors", {}).items():  # telemetry errors a case expects
        add(("genai_telemetry_errors_total", (("stage", stage),)), n)
    return {k: v for k, v in series.items() if v}


def make_validators(specs: list[dict[str, Any]]) -> list[Any]:
    made = []
    for spec in specs:
        kind = spec["kind"]
        if kind == "non_empty":
            made.append(validators.non_empty())
        elif kind == "json_output":
            made.append(validators.json_output())
        elif kind == "one_of":
            made.append(validators.one_of(*spec["labels"]))
        elif kind == "min_words":
            made.append(validators.min_words(spec["n"]))
        else:
            raise ValueError(f"unknown validator kind {kind!r}")
    return made


def raised_class(name: str | None) -> type[Exception]:
    """What `chat_then_raise` raises: RuntimeError, or a subclass of a class named `name` (an
    agent framework's, as failsight recognises it: by name, anywhere in the MRO)."""
    if name is None:
        return RuntimeError
    named = type(name, (Exception,), {})
    return type(f"App{name}", (named,), {})


def declared(call: dict[str, Any], responses: bool) -> dict[str, Any]:
    """The `tools` and `tool_choice` a declared-output shape sends, in the API's own format."""
    strict = call.get("strict", False)  # always sent: the Responses API's default is strict
    if responses:
        tool: dict[str, Any] = {"type": "function", "name": TOOL_NAME, "parameters": WEATHER_SCHEMA,
                                "strict": strict}  # fmt: skip
    else:
        function = {"name": TOOL_NAME, "parameters": WEATHER_SCHEMA}
        tool = {
            "type": "function",
            "function": {**function, **({"strict": True} if strict else {})},
        }
    found: dict[str, Any] = {"tools": [tool]}
    choice = call.get("tool_choice")
    if choice in ("auto", "required", "none"):
        found["tool_choice"] = choice
    elif choice is not None:  # a function's name
        found["tool_choice"] = (
            {"type": "function", "name": choice}
            if responses
            else {"type": "function", "function": {"name": choice}}
        )
    return found


def _chat_answer(message: Any) -> Any:
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    return calls or message.content


def perform_declared(client: openai.OpenAI, call: dict[str, Any], headers: dict[str, str]) -> Any:
    """The declared-output shapes: tools (`strict`, `tool_choice`) or a response format."""
    shape, model = call["shape"], call["model"]
    messages: Any = [{"role": "user", "content": "weather in Paris?"}]
    stream = shape.endswith("_stream")
    json_schema = {"name": "weather", "schema": WEATHER_SCHEMA, "strict": call.get("strict", True)}
    if shape == "chat_parse":
        parsed = client.chat.completions.parse(
            model=model, messages=messages, response_format=Weather, extra_headers=headers
        )
        return parsed.choices[0].message.parsed
    if shape.startswith("chat_"):
        options: dict[str, Any] = declared(call, False) if "_tools" in shape else {}
        if shape.startswith("chat_json_schema"):
            options["response_format"] = {"type": "json_schema", "json_schema": json_schema}
        elif shape == "chat_json_object":
            options["response_format"] = {"type": "json_object"}
        if not stream:
            resp = client.chat.completions.create(
                model=model, messages=messages, extra_headers=headers, **options
            )
            return _chat_answer(resp.choices[0].message)
        chunks = client.chat.completions.create(
            model=model, messages=messages, extra_headers=headers, stream=True,
            stream_options={"include_usage": True}, **options,
        )  # fmt: skip
        text, arguments = [], []
        for chunk in chunks:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                for delta in choice.delta.tool_calls or []:
                    arguments.append((delta.function.arguments or "") if delta.function else "")
        return "".join(arguments) or "".join(text)
    options = declared(call, True) if "_tools" in shape else {}
    if shape.startswith("responses_json_schema"):
        options["text"] = {"format": {"type": "json_schema", **json_schema}}
    if not stream:
        resp = client.responses.create(
            model=model, input="weather?", extra_headers=headers, **options
        )
        return [(item.name, item.arguments) for item in resp.output if item.type == "function_call"]
    events = client.responses.create(
        model=model, input="weather?", stream=True, extra_headers=headers, **options
    )
    return [event.type for event in events]


DECLARED_SHAPES = frozenset({
    "chat_tools", "chat_tools_stream", "responses_tools", "responses_tools_stream",
    "chat_json_schema", "chat_json_schema_stream", "chat_json_object", "responses_json_schema",
    "responses_json_schema_stream", "chat_parse",
})  # fmt: skip


def perform(client: openai.OpenAI, call: dict[str, Any], headers: dict[str, str]) -> Any:
    """One call of the case's shape; returns what a traced function would return."""
    shape, model = call["shape"], call["model"]
    messages = [{"role": "user", "content": "hi"}]
    if shape in DECLARED_SHAPES:
        return perform_declared(client, call, headers)
    if shape == "chat":
        resp = client.chat.completions.create(model=model, messages=messages, extra_headers=headers)
        return resp.choices[0].message.content
    if shape == "chat_then_raise":  # the application (or an agent framework) fails after it
        client.chat.completions.create(model=model, messages=messages, extra_headers=headers)
        raise raised_class(call.get("exception", {}).get("python"))(
            "the application failed after the call"
        )
    if shape == "chat_until_done":  # a common loop: ask again after a cut-off answer
        for _ in range(call["max_calls"]):
            resp = client.chat.completions.create(
                model=model, messages=messages, extra_headers=headers
            )
            if resp.choices[0].finish_reason != "length":
                return resp.choices[0].message.content
        return None
    if shape == "chat_retry_recorded":  # code that retries a filtered answer and says so
        for _ in range(call["max_calls"]):
            resp = client.chat.completions.create(
                model=model, messages=messages, extra_headers=headers
            )
            if resp.choices[0].finish_reason != "content_filter":
                return resp.choices[0].message.content
            if (handle := failsight.current_generation()) is not None:
                handle.record_retry("content_filter")
        return None
    if shape in ("chat_stream", "chat_stream_break", "chat_stream_helper"):
        if shape == "chat_stream_helper":
            with client.chat.completions.stream(
                model=model, messages=messages, extra_headers=headers,
                stream_options={"include_usage": True},
            ) as helper:  # fmt: skip
                return helper.get_final_completion().choices[0].message.content
        stream = client.chat.completions.create(
            model=model, messages=messages, stream=True, extra_headers=headers,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text = []
        for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
            if shape == "chat_stream_break":
                break
        stream.close()
        return "".join(text)
    if shape == "responses":
        return client.responses.create(model=model, input="hi", extra_headers=headers).output_text
    if shape == "responses_stream":
        for _event in client.responses.create(
            model=model, input="hi", stream=True, extra_headers=headers
        ):
            pass
        return None
    if shape == "completions":
        return (
            client.completions.create(model=model, prompt="hi", extra_headers=headers)
            .choices[0]
            .text
        )
    if shape == "embeddings":
        return client.embeddings.create(model=model, input="hi", extra_headers=headers).data
    if shape == "images":
        return client.images.generate(model=model, prompt="a cat", extra_headers=headers).data
    if shape == "video":
        video = client.videos.create(model=model, prompt="a cat", extra_headers=headers)
        for _ in range(call.get("max_polls", 5)):
            if video.status in ("completed", "failed", "cancelled"):
                return video.status
            video = client.videos.retrieve(video.id, extra_headers=headers)
        if video.status in ("completed", "failed", "cancelled"):
            return video.status
        raise TimeoutError("video still not done")
    raise ValueError(f"unknown call shape {shape!r}")


def run_case(case: dict[str, Any], base_url: str) -> tuple[Any, BaseException | None]:
    call = case["call"]
    client = openai.OpenAI(
        base_url=base_url, api_key="sk-test", max_retries=call.get("max_retries", 0),
        timeout=call.get("timeout", 10.0),
    )  # fmt: skip
    headers = {"X-Failsight-Key": f"{case['id']}-{uuid.uuid4().hex}"} if call.get("keyed") else {}
    scope = case.get("scope")

    def body() -> Any:
        return perform(client, call, headers)

    fn = body
    if scope is not None:
        retry = scope.get("retry")
        fn = failsight.traced_generation(
            name=scope["name"],
            validate=make_validators(scope.get("validate", [])),
            retry=RetryPolicy(max_attempts=retry, sleep=lambda seconds: None) if retry else None,
        )(body)
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


@pytest.fixture(scope="module")
def conformance_server() -> Any:
    settings = CONFORMANCE["server"]
    with FaultServer(
        retry_after_ms=settings["retry_after_ms"],
        slow_seconds=settings["slow_seconds"],
        video_polls_to_finish=settings["video_polls_to_finish"],
    ) as srv:
        yield srv


@pytest.mark.parametrize("case", ALL_CASES, ids=[c["id"] for c in ALL_CASES])
def test_case(case: dict[str, Any], conformance_server: FaultServer, instrumented: Any) -> None:
    before = snapshot(instrumented.registry)
    _result, error = run_case(case, conformance_server.base_url)
    after = snapshot(instrumented.registry)
    assert (error is not None) == case["expect"].get("raises", False), error

    deltas = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    in_flight = {k: v for k, v in after.items() if k[0] == "genai_in_flight_requests" and v}
    assert not in_flight, f"in-flight not back to 0: {in_flight}"
    deltas = {k: v for k, v in deltas.items() if v and k[0] != "genai_in_flight_requests"}
    if "attempts_by_status" not in case["expect"]:
        deltas = {k: v for k, v in deltas.items() if not k[0].startswith(_PER_ATTEMPT)}
    assert deltas == expected_series(case)

    spans = instrumented.spans()
    want = case["span"]
    found = [s for s in spans if s.name == want["name"]]
    assert found, f"no span {want['name']!r} in {[s.name for s in spans]}"
    attributes = dict(found[-1].attributes or {})
    for name, value in want["attributes"].items():
        got = attributes.get(name)
        got = list(got) if isinstance(got, tuple) else got
        assert got == value, f"{name}: {got!r} != {value!r}"
    if "client_spans" in case:
        assert sum(1 for s in spans if s.kind.name == "CLIENT") == case["client_spans"]
