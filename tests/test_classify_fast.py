"""The classifier's fast path for SDK chat completions decides exactly as the duck-typed one.

`_classify_chat_object` reads the openai SDK's parsed `ChatCompletion` with plain attribute
look-ups; `_classify_choices` reads anything. On every generated response both must give the
same `Outcome`, and the fast path must be the one taken for what the SDK parses.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from failsight._classify import (
    _classify_chat_object,
    _classify_choices,
    _with_filters,
    classify_result,
)

FINISH = st.sampled_from(
    ["stop", "length", "content_filter", "tool_calls", "function_call", "SAFETY", None]
)
TEXT = st.one_of(st.none(), st.sampled_from(["", "  ", "Hello", "\n"]), st.text(max_size=5))
TOOL_CALLS = st.one_of(
    st.none(),
    st.just([]),
    st.just([{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
)
FUNCTION_CALL = st.one_of(st.none(), st.just({"name": "f", "arguments": "{}"}))
COUNT = st.one_of(st.none(), st.integers(min_value=0, max_value=10**6))


@st.composite
def usage(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    found: dict[str, Any] = {
        "prompt_tokens": draw(st.integers(min_value=0, max_value=10**6)),
        "completion_tokens": draw(st.integers(min_value=0, max_value=10**6)),
        "total_tokens": 0,
    }
    if draw(st.booleans()):
        found["prompt_tokens_details"] = {"cached_tokens": draw(COUNT)}
    if draw(st.booleans()):
        found["completion_tokens_details"] = {"reasoning_tokens": draw(COUNT)}
    return found


@st.composite
def completion(draw: st.DrawFn) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "finish_reason": draw(FINISH),
            "message": {
                "role": "assistant",
                "content": draw(TEXT),
                "refusal": draw(st.one_of(st.none(), st.sampled_from(["", "I can't"]))),
                "tool_calls": draw(TOOL_CALLS),
                "function_call": draw(FUNCTION_CALL),
            },
        }
        for i in range(draw(st.integers(min_value=1, max_value=3)))
    ]
    return {
        "id": draw(st.sampled_from(["chatcmpl-1", ""])),
        "object": "chat.completion",
        "created": 0,
        "model": draw(st.sampled_from(["gpt-4o-mini", ""])),
        "choices": choices,
        "usage": draw(usage()),
    }


@settings(max_examples=300, deadline=None)
@given(payload=completion())
def test_fast_and_duck_typed_paths_agree(payload: dict[str, Any]) -> None:
    parsed = ChatCompletion.construct(**payload)  # as the SDK builds what it parses: loosely
    fast = _classify_chat_object(parsed)
    assert fast is not None  # what the SDK parses takes the fast path
    assert fast == _classify_choices(parsed, list(parsed.choices))
    # Both paths then add the filter categories of a content-filtered answer, alike.
    judged = _with_filters(fast, parsed)
    assert judged == _with_filters(fast, payload)
    assert classify_result(parsed, kind="chat") == judged
    assert classify_result(payload, kind="chat") == judged  # the raw JSON, duck-typed


def test_objects_of_other_shapes_take_the_duck_typed_path() -> None:
    payload = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "hi"}}],
    }

    class Response:  # a completion-like object holding raw JSON choices
        id, model, usage = "x", "m", None
        choices = payload["choices"]

    assert _classify_chat_object(Response()) is None
    assert classify_result(Response(), kind="chat") == classify_result(payload, kind="chat")

    class Hostile:
        @property
        def choices(self) -> Any:
            raise RuntimeError("accessor")

    assert _classify_chat_object(Hostile()) is None
    assert classify_result(Hostile(), kind="chat") == classify_result({}, kind="chat")
