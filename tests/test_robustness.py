"""Robustness: arbitrary JSON and hostile objects never make telemetry raise.

`classify_result` / `classify_exception` (every `kind`) and the stream watcher (`CallWatcher`)
are fed hypothesis-generated wire-format look-alikes and objects whose every accessor
raises. Nothing escapes, and what comes out still obeys the label vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Telemetry
from failsight import _sdk_patch, classify_exception, classify_result
from failsight._classify import _classify_exception
from failsight._operations import OPERATIONS
from failsight._streams import CallWatcher
from failsight._taxonomy import FAILURE_CLASSES, FINISH_REASONS, Outcome

PROPERTY = settings(
    max_examples=75,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KINDS = [None, "chat", "text_completion", "responses", "embeddings", "image", "video", "bogus"]

# Wire-format names, so generated documents often look like real responses.
KEYS = [
    "choices", "finish_reason", "message", "content", "refusal", "tool_calls",
    "function_call", "delta", "text", "index", "usage", "prompt_tokens",
    "completion_tokens", "input_tokens", "output_tokens", "prompt_tokens_details",
    "input_tokens_details", "cached_tokens", "completion_tokens_details",
    "output_tokens_details", "reasoning_tokens", "output", "type", "status",
    "incomplete_details", "reason", "data", "url", "b64_json", "revised_prompt", "id",
    "model", "object", "error", "code", "param", "progress", "response", "created",
]  # fmt: skip
WORDS = [
    "stop", "length", "content_filter", "tool_calls", "function_call", "completed",
    "incomplete", "failed", "cancelled", "queued", "in_progress", "succeed", "max_output_tokens",
    "chat.completion", "chat.completion.chunk", "text_completion", "response", "video",
    "message", "output_text", "refusal", "reasoning", "response.completed",
    "response.output_text.delta", "response.incomplete", "task_not_exist", "",
]  # fmt: skip

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=30,
)
json_documents = st.dictionaries(keys, json_values, max_size=8)
# Streamed chunks are small documents; several make one stream.
chunk_documents = st.dictionaries(
    keys,
    st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=8,
    ),
    max_size=4,
)


class Boom(Exception):
    pass


class Hostile:
    """Every attribute and protocol method raises."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):  # the interpreter's and hypothesis' own lookups
            return object.__getattribute__(self, name)
        raise Boom(name)

    def __iter__(self) -> Iterator[Any]:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")

    def __bool__(self) -> bool:
        raise Boom("bool")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __str__(self) -> str:
        raise Boom("str")

    def __repr__(self) -> str:
        return "Hostile()"


class HostileMapping(Mapping[str, Any]):
    """A mapping whose lookups raise."""

    def __getitem__(self, key: str) -> Any:
        raise Boom(key)

    def __iter__(self) -> Iterator[str]:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")

    def get(self, key: str, default: Any = None) -> Any:
        raise Boom(key)


class HostileList(list[Any]):
    def __iter__(self) -> Iterator[Any]:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")


class RaisingProperties:
    """Attributes that exist but raise when read."""

    @property
    def choices(self) -> Any:
        raise Boom("choices")

    @property
    def usage(self) -> Any:
        raise Boom("usage")

    @property
    def status_code(self) -> Any:
        raise Boom("status_code")

    @property
    def response(self) -> Any:
        raise Boom("response")

    @property
    def type(self) -> Any:
        raise Boom("type")


class WeirdNumber(int):
    def __str__(self) -> str:
        raise Boom("str")

    def __float__(self) -> float:
        raise Boom("float")


HOSTILE = [
    Hostile(),
    HostileMapping(),
    HostileList([1, 2]),
    RaisingProperties(),
    WeirdNumber(429),
    10**5000,  # str() of it raises ValueError (int max str digits)
    float("nan"),
    -float("inf"),
    b"\xff\xfe bytes",
    object(),
    type,
    print,
]


def hostile_tree(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(keys, children, max_size=4),
        st.builds(HostileList, st.lists(children, max_size=2)),
    )


# Drawn by index: hypothesis must be able to print every element it reports, which rules
# out the huge int (its repr raises); the tables below cover it.
PRINTABLE_HOSTILE = [value for value in HOSTILE if not isinstance(value, int) or value < 10**9]
anything = st.recursive(
    st.one_of(
        leaves, st.integers(0, len(PRINTABLE_HOSTILE) - 1).map(PRINTABLE_HOSTILE.__getitem__)
    ),
    hostile_tree,
    max_leaves=12,
)


def as_object(value: Any) -> Any:
    """A JSON document as attribute objects (what the SDK builds), lists kept as lists."""
    if isinstance(value, dict):
        namespace = SimpleNamespace()
        for key, item in value.items():
            if not key.startswith("__"):
                setattr(namespace, key, as_object(item))
        return namespace
    if isinstance(value, list):
        return [as_object(item) for item in value]
    return value


def assert_well_formed(outcome: Outcome) -> None:
    assert isinstance(outcome, Outcome)
    assert outcome.failure_class in FAILURE_CLASSES
    assert outcome.reason is None or (isinstance(outcome.reason, str) and outcome.reason)
    assert (outcome.reason is None) == (outcome.failure_class == "none") or outcome.transient
    assert isinstance(outcome.finish_reasons, tuple)
    assert all(reason in FINISH_REASONS for reason in outcome.finish_reasons)
    if outcome.usage is not None:
        for _token_type, count in outcome.usage.items():
            assert isinstance(count, int) and count >= 0
    for text in (outcome.response_id, outcome.response_model, outcome.error_param,
                 outcome.error_code, outcome.request_id, outcome.revised_prompt):  # fmt: skip
        assert text is None or (isinstance(text, str) and len(text) <= 256)
    if outcome.retry_after is not None:
        assert math.isfinite(outcome.retry_after) and outcome.retry_after >= 0
    if outcome.status_code is not None:
        assert 100 <= outcome.status_code <= 599


# --------------------------------------------------------------------------- classify_result


@given(document=json_documents, kind=st.sampled_from(KINDS), objects=st.booleans())
@PROPERTY
def test_classify_result_takes_any_json(document: dict[str, Any], kind: str, objects: bool) -> None:
    subject = as_object(document) if objects else document
    assert_well_formed(classify_result(subject, kind=kind))


@given(value=anything, kind=st.sampled_from(KINDS))
@PROPERTY
def test_classify_result_takes_any_object(value: Any, kind: str) -> None:
    assert_well_formed(classify_result(value, kind=kind))
    assert_well_formed(classify_result({"choices": [value], "data": value}, kind=kind))
    assert_well_formed(classify_result(SimpleNamespace(output=value, usage=value), kind=kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_classify_result_takes_each_hostile_object(value: Any, kind: str) -> None:
    assert_well_formed(classify_result(value, kind=kind))


# --------------------------------------------------------------------------- classify_exception

# Class names the classifier recognises anywhere in an exception's MRO.
EXCEPTION_NAMES = [
    "APITimeoutError", "ReadTimeout", "APIConnectionError", "ConnectError", "RemoteDisconnected",
    "APIResponseValidationError", "JSONDecodeError", "LengthFinishReasonError",
    "ContentFilterFinishReasonError", "APIStatusError", "HTTPError", "Whatever",
]  # fmt: skip
ATTRIBUTES = ["status_code", "status", "response", "body", "param", "code", "request_id",
              "completion", "headers", "message"]  # fmt: skip


@st.composite
def exceptions(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> BaseException:
    name = draw(st.sampled_from(EXCEPTION_NAMES))
    cls = type(name, (Exception,), {"__module__": draw(st.sampled_from(["openai", "x", ""]))})
    exc = cls(*draw(st.lists(values, max_size=2)))
    for attribute in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=5, unique=True)):
        value = draw(values)
        if attribute == "response" and draw(st.booleans()):
            value = SimpleNamespace(status_code=draw(values), headers=draw(values))
        object.__setattr__(exc, attribute, value)
    return exc


@given(exc=exceptions(json_values))
@PROPERTY
def test_classify_exception_takes_json_attributes(exc: BaseException) -> None:
    outcome = classify_exception(exc)
    assert_well_formed(outcome)
    assert outcome.failure_class in ("hard", "soft")
    # Plain data is classified on its merits, not by the last-resort fallback.
    assert _classify_exception(exc) == outcome


@given(exc=exceptions(anything))
@PROPERTY
def test_classify_exception_takes_hostile_attributes(exc: BaseException) -> None:
    assert_well_formed(classify_exception(exc))


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise Boom("str")

    def __getattr__(self, name: str) -> Any:
        raise Boom(name)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_classify_exception_takes_each_hostile_attribute(value: Any) -> None:
    for attribute in ATTRIBUTES:
        exc = Exception("x")
        setattr(exc, attribute, value)
        assert_well_formed(classify_exception(exc))
    exc = Exception("x")
    exc.response = SimpleNamespace(status_code=429, headers={"retry-after": value})  # type: ignore[attr-defined]
    assert_well_formed(classify_exception(exc))
    exc.response = SimpleNamespace(status_code=value, headers=value)  # type: ignore[attr-defined]
    assert_well_formed(classify_exception(exc))
    assert_well_formed(classify_exception(UnprintableError()))


# --------------------------------------------------------------------------- the stream recorder


class _Resource:
    _client = None


def _recorder(kind: str) -> CallWatcher:
    op = next(op for op in OPERATIONS.values() if op.kind == kind)
    call = _sdk_patch._start(op, _Resource(), {"model": "gpt-4o-mini", "stream": True})
    assert call is not None
    return CallWatcher(call)


def _requests(t: Telemetry) -> float:
    return t.value("genai_requests_total")


@given(
    chunks=st.lists(chunk_documents, max_size=4),
    kind=st.sampled_from(["chat", "text_completion", "responses"]),
    exhausted=st.booleans(),
)
@PROPERTY
def test_stream_recorder_takes_any_json_chunk(
    telemetry: Telemetry, chunks: list[dict[str, Any]], kind: str, exhausted: bool
) -> None:
    """Wire-format look-alikes (as the SDK builds them without validation) are data, not
    telemetry errors: they pass even with internal errors re-raised (the suite's default)."""
    before = _requests(telemetry)
    errors = telemetry.value("genai_telemetry_errors_total")
    recorder = _recorder(kind)
    for chunk in chunks:
        recorder.chunk(as_object(chunk))
    recorder.end(exhausted=exhausted)
    recorder.end()  # exactly once
    assert _requests(telemetry) == before + 1
    assert telemetry.value("genai_telemetry_errors_total") == errors
    assert telemetry.value("genai_in_flight_requests") == 0


@given(
    chunks=st.lists(anything, max_size=4),
    kind=st.sampled_from(["chat", "text_completion", "responses"]),
    exhausted=st.booleans(),
)
@PROPERTY
def test_stream_recorder_takes_any_object(
    telemetry: Telemetry,
    swallow_internal_errors: None,
    chunks: list[Any],
    kind: str,
    exhausted: bool,
) -> None:
    """Production behaviour: whatever a chunk is, nothing reaches the caller, and the call
    is still recorded exactly once."""
    before = _requests(telemetry)
    recorder = _recorder(kind)
    for chunk in chunks:
        recorder.chunk(chunk)
        recorder.chunk(SimpleNamespace(choices=[chunk], usage=chunk, type=chunk, response=chunk))
    recorder.end(exhausted=exhausted)
    recorder.end(exc=Boom("late"))
    assert _requests(telemetry) == before + 1
    assert telemetry.value("genai_in_flight_requests") == 0


@pytest.mark.parametrize("route", ["/chat/completions", "/videos/video_1"])
def test_json_nested_past_pythons_limit_is_an_invalid_response(
    telemetry: Telemetry, route: str
) -> None:
    """Valid JSON that Python's parser cannot read (nested past the recursion limit) is an
    answer the application cannot use either: hard/invalid_response, the body passed on."""
    import httpx

    import failsight

    deep = b"[" * 100_000 + b"]" * 100_000
    failsight.instrument_http()
    try:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=deep))
        with httpx.Client(transport=transport, base_url="http://gateway.test/v1") as client:
            if route.startswith("/videos"):
                response = client.get(route)
            else:
                response = client.post(route, json={"model": "m", "messages": []})
    finally:
        failsight.uninstrument_http()
    assert response.content == deep
    assert telemetry.value("genai_telemetry_errors_total") == 0
    if not route.startswith("/videos"):
        assert telemetry.value("genai_failures_total", reason="invalid_response") == 1


def test_json_output_calls_unreadably_deep_json_invalid() -> None:
    from failsight.validators import json_output

    assert json_output()("[" * 100_000 + "]" * 100_000) is False


@pytest.mark.parametrize("collecting", [True, False])
def test_a_raw_stream_closed_by_the_collector_queues_its_end(
    monkeypatch: pytest.MonkeyPatch, collecting: bool
) -> None:
    """The raw-HTTP body iterator closed by the garbage collector is a finaliser: it records
    nothing where it runs (maybe inside a lock) and queues its end; closed by the caller, it
    ends at once."""
    from failsight import _deferred, _http_patch

    seen: list[str] = []
    observer = SimpleNamespace(
        chunk=lambda chunk: None,
        end=lambda **kw: seen.append("end"),
        abandoned=lambda: seen.append("queued"),
    )
    body = _http_patch._observed(iter([b"a", b"b"]), observer)  # type: ignore[arg-type]
    assert next(body) == b"a"
    monkeypatch.setattr(_deferred, "in_gc", lambda: collecting)
    body.close()
    assert seen == (["queued"] if collecting else ["end"])
