"""What a request declares judged against its answer (`_declared`, `_schemas`, `_judged`): tables
of cases for the pure judge, hostile inputs bounded, and the patch through the real openai SDK
on an in-process transport (create and parse, streamed and not, opt-outs, the caller's objects
unchanged, jsonschema missing). tests/test_declared_e2e.py drives the fault server over a socket.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from failsight import _declared, _schemas
from failsight._declared import Declared, StreamAnswer, declared_of, judge
from failsight._judged import answer_in_traceback

PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def chat_tools(strict: bool = False, name: str = "get_weather") -> list[dict[str, Any]]:
    function = {"name": name, "parameters": PARAMS, **({"strict": True} if strict else {})}
    return [{"type": "function", "function": function}]


def responses_tools(strict: bool = False) -> list[dict[str, Any]]:
    return [{"type": "function", "name": "get_weather", "parameters": PARAMS, "strict": strict}]


def chat_answer(*calls: tuple[str, Any], content: Any = None) -> dict[str, Any]:
    tool_calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    message = {"role": "assistant", "content": content, "tool_calls": tool_calls or None}
    finish = "tool_calls" if calls else "stop"
    return {"object": "chat.completion", "choices": [{"message": message, "finish_reason": finish}]}


def responses_answer(*calls: tuple[str, Any], text: str | None = None) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {"type": "function_call", "name": n, "arguments": a, "call_id": "c"} for n, a in calls
    ]
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": []}
        output.append({"type": "message", "role": "assistant", "content": [part]})
    return {"object": "response", "status": "completed", "output": output}


JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "w", "schema": PARAMS}}
STRICT_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "w", "schema": PARAMS, "strict": True},
}
TEXT_FORMAT = {"format": {"type": "json_schema", "name": "w", "schema": PARAMS}}

# (case, kind, request, answer, reason, [(tool label, outcome)])
CASES: list[tuple[str, str, dict[str, Any], Any, str | None, list[tuple[str, str]]]] = [
    ("ok", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", '{"city": "Paris"}')),
     None, [("get_weather", "ok")]),
    ("not_json", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", '{"city": Paris}')),
     "tool_arguments_not_json", [("get_weather", "not_json")]),
    ("nan_is_not_json", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", "NaN")),
     "tool_arguments_not_json", [("get_weather", "not_json")]),
    ("empty_is_not_json", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", "")),
     "tool_arguments_not_json", [("get_weather", "not_json")]),
    ("undeclared", "chat", {"tools": chat_tools()}, chat_answer(("get_stock", "{}")),
     "tool_not_declared", [("undeclared", "not_declared")]),
    ("invalid", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", '{"city": 42}')),
     "tool_arguments_invalid", [("get_weather", "invalid_arguments")]),
    ("not_an_object", "chat", {"tools": chat_tools()}, chat_answer(("get_weather", "[1]")),
     "tool_arguments_invalid", [("get_weather", "invalid_arguments")]),
    ("strict", "chat", {"tools": chat_tools(strict=True)},
     chat_answer(("get_weather", '{"town": "Paris"}')),
     "tool_arguments_strict_violation", [("get_weather", "strict_violation")]),
    ("first_failure_names_it", "chat", {"tools": chat_tools()},
     chat_answer(("get_weather", '{"city": 1}'), ("nope", "{}"), ("get_weather", "{")),
     "tool_arguments_invalid",
     [("get_weather", "invalid_arguments"), ("undeclared", "not_declared"),
      ("get_weather", "not_json")]),
    ("required_missing", "chat", {"tools": chat_tools(), "tool_choice": "required"},
     chat_answer(content="It is sunny."), "tool_call_missing", []),
    ("named_missing", "chat",
     {"tools": chat_tools() + chat_tools(name="other"),
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     chat_answer(("other", '{"city": "x"}')), "tool_call_missing", [("other", "ok")]),
    ("allowed_tools_required", "chat",
     {"tools": chat_tools(), "tool_choice": {"type": "allowed_tools",
                                             "allowed_tools": {"mode": "required", "tools": []}}},
     chat_answer(content="x"), "tool_call_missing", []),
    ("auto_no_call", "chat", {"tools": chat_tools(), "tool_choice": "auto"},
     chat_answer(content="x"), None, []),
    ("json_ok", "chat", {"response_format": JSON_SCHEMA_FORMAT},
     chat_answer(content='{"city": "Paris"}'), None, []),
    ("json_not_json", "chat", {"response_format": JSON_SCHEMA_FORMAT},
     chat_answer(content="Sunny."), "invalid_json", []),
    ("json_mismatch", "chat", {"response_format": STRICT_FORMAT},
     chat_answer(content='{"town": "Paris"}'), "output_schema_mismatch", []),
    ("json_object", "chat", {"response_format": {"type": "json_object"}},
     chat_answer(content="not json"), "invalid_json", []),
    ("json_object_ok", "chat", {"response_format": {"type": "json_object"}},
     chat_answer(content='{"anything": 1}'), None, []),
    ("tool_call_no_content", "chat", {"tools": chat_tools(), "response_format": JSON_SCHEMA_FORMAT},
     chat_answer(("get_weather", '{"city": "Paris"}')), None, [("get_weather", "ok")]),
    ("responses_ok", "responses", {"tools": responses_tools()},
     responses_answer(("get_weather", '{"city": "Paris"}')), None, [("get_weather", "ok")]),
    ("responses_not_json", "responses", {"tools": responses_tools()},
     responses_answer(("get_weather", "{")), "tool_arguments_not_json",
     [("get_weather", "not_json")]),
    ("responses_strict", "responses", {"tools": responses_tools(strict=True)},
     responses_answer(("get_weather", "{}")), "tool_arguments_strict_violation",
     [("get_weather", "strict_violation")]),
    ("responses_missing", "responses",
     {"tools": responses_tools(), "tool_choice": {"type": "function", "name": "get_weather"}},
     responses_answer(text="hi"), "tool_call_missing", []),
    ("responses_output", "responses", {"text": TEXT_FORMAT},
     responses_answer(text='{"town": 1}'), "output_schema_mismatch", []),
    ("responses_output_not_json", "responses", {"text": TEXT_FORMAT},
     responses_answer(text="Sunny"), "invalid_json", []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "request_", "answer", "reason", "calls"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_judge(
    kind: str, request_: dict[str, Any], answer: Any, reason: str | None, calls: list[Any]
) -> None:
    declared = declared_of(request_, kind)
    assert declared is not None
    found = judge(declared, answer, kind)
    assert (found.reason, list(found.calls)) == (reason, calls)
    assert found.errors == ()


@pytest.mark.parametrize(
    "request_",
    [{}, {"model": "m"}, {"tools": []}, {"tools": None}, {"response_format": {"type": "text"}},
     {"tools": openai.NOT_GIVEN}, {"response_format": openai.NOT_GIVEN}],
)  # fmt: skip
def test_nothing_declared_is_none(request_: dict[str, Any]) -> None:
    assert declared_of(request_, "chat") is None
    assert declared_of(request_, "responses") is None


def test_the_failed_tool_is_the_first_failing_call_as_written() -> None:
    declared = declared_of({"tools": chat_tools()}, "chat")
    assert declared is not None
    answer = chat_answer(("get_weather", "{}"), ("x" * 1000, "{}"))
    found = judge(declared, answer, "chat")
    assert found.failed_tool == "get_weather"
    assert judge(declared, chat_answer(("y" * 1000, "{}")), "chat").failed_tool == "y" * 256


# --------------------------------------------------------------------------- streams


def test_stream_answer_assembles_tool_call_deltas_by_index() -> None:
    stream = StreamAnswer("chat", want_text=True)
    pieces = ['{"ci', 'ty": ', '"Paris"}']
    first = {"name": "get_weather", "arguments": ""}
    calls = [
        {"index": 0, "id": "c0", "type": "function", "function": first},
        {"index": 1, "id": "c1", "type": "function", "function": {"name": "other"}},
    ]
    stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    for piece in pieces:
        stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": piece}}]}}]})  # fmt: skip
    stream.chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    declared = declared_of({"tools": chat_tools()}, "chat")
    assert declared is not None
    found = judge(declared, stream.answer(), "chat")
    assert found.calls == (("get_weather", "ok"), ("undeclared", "not_declared"))


def test_stream_answer_of_responses_is_the_final_response() -> None:
    stream = StreamAnswer("responses", want_text=False)
    stream.chunk({"type": "response.function_call_arguments.delta", "delta": "{"})
    final = responses_answer(("get_weather", '{"city": 1}'))
    stream.chunk({"type": "response.completed", "response": final})
    assert stream.answer() is final


@given(st.text(max_size=60), st.integers(min_value=1, max_value=7))
def test_stream_assembly_equals_the_whole(arguments: str, size: int) -> None:
    """However the arguments are cut into deltas, the judgement is the whole answer's."""
    declared = declared_of({"tools": chat_tools()}, "chat")
    assert declared is not None
    stream = StreamAnswer("chat", want_text=False)
    stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "type": "function", "function": {"name": "get_weather"}}]}}]})  # fmt: skip
    for at in range(0, len(arguments), size):
        stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": arguments[at:at + size]}}]}}]})  # fmt: skip
    whole = judge(declared, chat_answer(("get_weather", arguments)), "chat")
    assert judge(declared, stream.answer(), "chat") == whole


# --------------------------------------------------------------------------- hostile inputs


def declares(**request: Any) -> Declared:
    found = declared_of(request, "chat")
    assert found is not None
    return found


def test_ten_megabyte_arguments_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    real = json.loads

    def loads(text: str, **options: Any) -> Any:
        parsed.append(len(text))
        return real(text, **options)

    monkeypatch.setattr(_declared.json, "loads", loads)
    huge = '{"city": "' + "x" * (10 * 1024 * 1024) + '"}'
    found = judge(declares(tools=chat_tools()), chat_answer(("get_weather", huge)), "chat")
    assert found == _declared.Judgement(None)  # neither judged nor counted
    assert parsed == []
    # An undeclared name is known without parsing.
    found = judge(declares(tools=chat_tools()), chat_answer(("nope", huge)), "chat")
    assert found.calls == (("undeclared", "not_declared"),) and parsed == []


def test_a_thousand_tool_calls_judge_at_most_the_bound() -> None:
    calls = [("get_weather", '{"city": "x"}')] * 1000
    found = judge(declares(tools=chat_tools()), chat_answer(*calls), "chat")
    assert len(found.calls) == _declared.MAX_TOOL_CALLS == 128


def test_parsed_characters_are_bounded_per_answer() -> None:
    """Many calls each under the bound are parsed only up to the bound in all."""
    big = '{"city": "' + "x" * (300 * 1024) + '"}'
    found = judge(declares(tools=chat_tools()), chat_answer(*[("get_weather", big)] * 10), "chat")
    assert len(found.calls) == _declared.MAX_PARSED_LENGTH // len(big) == 3


def test_deeply_nested_arguments_are_not_judged() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    found = judge(declares(tools=chat_tools()), chat_answer(("get_weather", deep)), "chat")
    assert found.calls == ()  # nested past what the interpreter reads: not judged, not counted


def test_a_large_valid_json_is_checked_as_json_only() -> None:
    big = json.dumps({"city": 1, "pad": "x" * (_declared.MAX_VALIDATED_LENGTH + 1)})
    found = judge(declares(tools=chat_tools()), chat_answer(("get_weather", big)), "chat")
    assert found.calls == (("get_weather", "ok"),)


def test_a_schema_past_the_bounds_is_not_checked() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"a": deep}}
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(6000)}}
    for schema in (deep, wide):
        assert _schemas.check(schema, {"a": 1}) == (None, None)


def test_a_recursive_schema_over_a_deep_instance_never_raises() -> None:
    schema = {
        "$ref": "#/$defs/node",
        "$defs": {"node": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
    }
    instance: Any = []
    for _ in range(900):
        instance = [instance]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1200)  # the validator recurses several frames per level
    try:
        valid, error = _schemas.check(schema, instance)
    finally:
        sys.setrecursionlimit(limit)
    assert valid is None and isinstance(error, RecursionError)


def test_a_remote_ref_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fetched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}
    valid, error = _schemas.check(schema, {"a": 1})
    assert valid is None and error is not None and "example.com" in str(error)
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    declared = declares(tools=[tool])
    found = judge(declared, chat_answer(("f", '{"a": 1}')), "chat")
    assert found.calls == (("f", "ok"),) and len(found.errors) == 1


def test_unique_items_is_judged_up_to_its_bound() -> None:
    schema = {"type": "array", "uniqueItems": True}
    assert _schemas.check(schema, [{}, {}]) == (False, None)
    assert _schemas.check(schema, [{}] * (_schemas.MAX_UNIQUE_ITEMS + 1)) == (True, None)


def test_validators_are_cached_per_schema_object_and_bounded() -> None:
    _schemas.clear_cache()
    schema = {"type": "string"}
    first = _schemas._validator(schema)
    assert _schemas._validator(schema) is first
    assert _schemas._validator({"type": "string"}) is not first  # another object: another entry
    for _ in range(_schemas.CACHE_SIZE + 10):
        _schemas._validator({"type": "integer"})
    assert _schemas.cache_size() == _schemas.CACHE_SIZE


def test_without_jsonschema_json_ness_is_still_judged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _schemas.clear_cache()
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import fails
    try:
        declared = declares(tools=chat_tools(strict=True), tool_choice="required")
        cases = [
            (chat_answer(("get_weather", '{"city": 42}')), None),  # schema: not checked
            (chat_answer(("get_weather", "[]")), "tool_arguments_strict_violation"),
            (chat_answer(("get_weather", "{")), "tool_arguments_not_json"),
            (chat_answer(("nope", "{}")), "tool_not_declared"),
            (chat_answer(content="x"), "tool_call_missing"),
        ]
        for answer, reason in cases:
            assert judge(declared, answer, "chat").reason == reason
        assert not _schemas.available()
        said = [r for r in caplog.records if "jsonschema is not installed" in r.getMessage()]
        assert len(said) == 1  # said once
    finally:
        _schemas.clear_cache()


# --------------------------------------------------------------------------- parse() errors


def test_parse_error_reasons() -> None:
    from pydantic import ValidationError

    class City(BaseModel):
        city: str

    output = declares(response_format={"type": "json_object"})
    tools = declares(tools=chat_tools(strict=True))
    from failsight._judged import parse_error_reason

    for text, reason in (("{", "invalid_json"), ('{"town": 1}', "output_schema_mismatch")):
        with pytest.raises(ValidationError) as caught:
            City.model_validate_json(text)
        assert parse_error_reason(caught.value, output) == reason
    with pytest.raises(ValidationError) as caught:
        City.model_validate_json("{")
    assert parse_error_reason(caught.value, tools) == "tool_arguments_not_json"
    assert parse_error_reason(json.JSONDecodeError("x", "{", 0), tools) == (
        "tool_arguments_not_json"
    )
    assert answer_in_traceback(ValueError()) is None
