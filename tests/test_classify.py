"""The failure taxonomy, table-driven: SDK objects, JSON dicts, exceptions, malformed input."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import openai
import pytest
import requests
from openai._models import construct_type
from openai.types import Completion, CreateEmbeddingResponse, ImagesResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from conftest import api_error, connection_error, sdk_httpx
from failsight import Outcome, Usage, classify_exception, classify_result
from failsight._taxonomy import normalize_video_status

USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 3},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def chat(*choices: dict[str, Any], usage: dict[str, Any] | None = USAGE) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": i, "logprobs": None, **c} for i, c in enumerate(choices)],
        "usage": usage,
    }


def message(content: str | None = "hi", **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup", "arguments": "{}"},
}


def responses(status: str, output: list[dict[str, Any]], reason: str | None = None) -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-4o-mini",
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens_details": {"reasoning_tokens": 2},
        },
    }


def out_message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": list(parts),
    }


TEXT = {"type": "output_text", "text": "hello", "annotations": []}
REFUSAL = {"type": "refusal", "refusal": "I can't help with that."}

# (case id, payload, SDK model to validate it into or None, kind hint, class, reason, finish)
RESULT_CASES: list[tuple[str, Any, Any, str | None, str, str | None, tuple[str, ...]]] = [
    (
        "chat ok",
        chat({"message": message(), "finish_reason": "stop"}),
        ChatCompletion,
        None,
        "none",
        None,
        ("stop",),
    ),
    (
        "chat content_filter",
        chat({"message": message(None), "finish_reason": "content_filter"}),
        ChatCompletion,
        None,
        "soft",
        "content_filter",
        ("content_filter",),
    ),
    (
        "chat length",
        chat({"message": message("trunc"), "finish_reason": "length"}),
        ChatCompletion,
        None,
        "soft",
        "length",
        ("length",),
    ),
    (
        "chat null content + stop",
        chat({"message": message(None), "finish_reason": "stop"}),
        ChatCompletion,
        None,
        "soft",
        "empty_content",
        ("stop",),
    ),
    (
        "chat blank content + stop",
        chat({"message": message("  \n"), "finish_reason": "stop"}),
        ChatCompletion,
        None,
        "soft",
        "empty_content",
        ("stop",),
    ),
    (
        "chat tool_calls null content",
        chat({"message": message(None, tool_calls=[TOOL_CALL]), "finish_reason": "tool_calls"}),
        ChatCompletion,
        None,
        "none",
        None,
        ("tool_calls",),
    ),
    (
        "chat refusal",
        chat({"message": message(None, refusal="I can't"), "finish_reason": "stop"}),
        ChatCompletion,
        None,
        "soft",
        "refusal",
        ("stop",),
    ),
    (
        "chat n=2 one filtered",
        chat(
            {"message": message(), "finish_reason": "stop"},
            {"message": message(None), "finish_reason": "content_filter"},
        ),
        ChatCompletion,
        None,
        "soft",
        "content_filter",
        ("stop", "content_filter"),
    ),
    (
        "chat unknown finish",
        chat({"message": message(), "finish_reason": "eos_token"}),
        None,
        None,
        "none",
        None,
        ("other",),
    ),
    (
        "chat function_call",
        chat(
            {
                "message": message(None, function_call={"name": "f", "arguments": "{}"}),
                "finish_reason": "function_call",
            }
        ),
        ChatCompletion,
        None,
        "none",
        None,
        ("function_call",),
    ),
    ("chat no choices", chat(), None, None, "soft", "empty_content", ()),
    (
        "completion ok",
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": None}],
            "usage": USAGE,
        },
        Completion,
        None,
        "none",
        None,
        ("stop",),
    ),
    (
        "completion length",
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": "hi", "finish_reason": "length", "logprobs": None}],
        },
        Completion,
        None,
        "soft",
        "length",
        ("length",),
    ),
    (
        "completion empty",
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}],
        },
        Completion,
        None,
        "soft",
        "empty_content",
        ("stop",),
    ),
    (
        "responses ok",
        responses("completed", [out_message(TEXT)]),
        Response,
        None,
        "none",
        None,
        ("stop",),
    ),
    (
        "responses max_output_tokens",
        responses("incomplete", [], "max_output_tokens"),
        Response,
        None,
        "soft",
        "length",
        ("length",),
    ),
    (
        "responses content_filter",
        responses("incomplete", [], "content_filter"),
        Response,
        None,
        "soft",
        "content_filter",
        ("content_filter",),
    ),
    (
        "responses refusal",
        responses("completed", [out_message(REFUSAL)]),
        Response,
        None,
        "soft",
        "refusal",
        ("stop",),
    ),
    (
        "responses empty",
        responses("completed", []),
        Response,
        None,
        "soft",
        "empty_content",
        ("stop",),
    ),
    (
        "responses function call",
        responses(
            "completed",
            [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "c1",
                    "name": "f",
                    "arguments": "{}",
                    "status": "completed",
                }
            ],
        ),
        Response,
        None,
        "none",
        None,
        ("stop",),
    ),
    (
        "responses failed",
        {**responses("failed", []), "error": {"code": "server_error", "message": "x"}},
        None,
        None,
        "hard",
        "server_error",
        (),
    ),
    (
        "image url",
        {"created": 1, "data": [{"url": "http://x/1.png"}]},
        ImagesResponse,
        None,
        "none",
        None,
        (),
    ),
    (
        "image b64",
        {"created": 1, "data": [{"b64_json": "aGk="}]},
        ImagesResponse,
        None,
        "none",
        None,
        (),
    ),
    (
        "image empty data",
        {"created": 1, "data": []},
        ImagesResponse,
        None,
        "soft",
        "image_filtered",
        (),
    ),
    ("image data missing", {"created": 1}, ImagesResponse, "image", "soft", "image_filtered", ()),
    (
        "image item without url",
        {"created": 1, "data": [{"url": None}]},
        None,
        "image",
        "soft",
        "image_filtered",
        (),
    ),
    (
        "embeddings",
        {
            "object": "list",
            "model": "m",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        },
        CreateEmbeddingResponse,
        None,
        "none",
        None,
        (),
    ),
    (
        "video succeeded",
        {"id": "video_1", "object": "video", "status": "completed"},
        None,
        None,
        "none",
        None,
        (),
    ),
    (
        "video kling succeed",
        {"id": "t1", "status": "succeed", "output": ["http://x"]},
        None,
        "video",
        "none",
        None,
        (),
    ),
    (
        "video failed",
        {"id": "video_1", "object": "video", "status": "failed", "error": None},
        None,
        None,
        "soft",
        "video_failed",
        (),
    ),
    (
        "video cancelled",
        {"id": "t1", "status": "cancelled"},
        None,
        None,
        "soft",
        "video_cancelled",
        (),
    ),
    (
        "video canceled",
        {"id": "t1", "status": "canceled"},
        None,
        "video",
        "soft",
        "video_cancelled",
        (),
    ),
    ("video queued", {"id": "t1", "status": "queued", "progress": 0}, None, None, "none", None, ()),
]


def sdk_object(model: Any, payload: dict[str, Any]) -> Any:
    """The object the SDK hands its caller: built the way the SDK parses responses."""
    return construct_type(type_=model, value=payload)


# Every case as a plain JSON dict, and again as the SDK object where the SDK has a model for it.
RESULT_PARAMS = [
    pytest.param(payload, kind, cls, reason, finish, id=f"{name} [dict]")
    for name, payload, _, kind, cls, reason, finish in RESULT_CASES
] + [
    pytest.param(sdk_object(model, payload), kind, cls, reason, finish, id=f"{name} [sdk]")
    for name, payload, model, kind, cls, reason, finish in RESULT_CASES
    if model is not None
]


@pytest.mark.parametrize(("payload", "kind", "failure_class", "reason", "finish"), RESULT_PARAMS)
def test_classify_result(
    payload: Any,
    kind: str | None,
    failure_class: str,
    reason: str | None,
    finish: tuple[str, ...],
) -> None:
    outcome = classify_result(payload, kind=kind)
    assert (outcome.failure_class, outcome.reason) == (failure_class, reason)
    assert outcome.finish_reasons == finish


@pytest.mark.parametrize(
    ("payload", "usage"),
    [
        (chat({"message": message(), "finish_reason": "stop"}), Usage(10, 5, 2, 3)),
        (responses("completed", [out_message(TEXT)]), Usage(10, 5, 2, 3)),
        (
            chat(
                {"message": message(), "finish_reason": "stop"},
                usage={"prompt_tokens": 7, "completion_tokens": 1},
            ),
            Usage(7, 1, None, None),
        ),
        (chat({"message": message(), "finish_reason": "stop"}, usage=None), None),
    ],
)
def test_usage_shapes(payload: Any, usage: Usage | None) -> None:
    assert classify_result(payload).usage == usage
    if usage is not None:
        sdk = sdk_object(ChatCompletion if "choices" in payload else Response, payload)
        assert classify_result(sdk).usage == usage


def test_image_revised_prompt_is_noted() -> None:
    outcome = classify_result({"created": 1, "data": [{"url": "u", "revised_prompt": "a cat"}]})
    assert outcome.revised_prompt == "a cat" and not outcome.failed


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("completed", "succeeded"),
        ("succeeded", "succeeded"),
        ("succeed", "succeeded"),
        ("SUCCESS", "succeeded"),
        ("failed", "failed"),
        ("failure", "failed"),
        ("error", "failed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("queued", "queued"),
        ("in_progress", "in_progress"),
        (None, None),
        (3, None),
    ],
)
def test_video_status_spellings(raw: Any, normalized: str | None) -> None:
    assert normalize_video_status(raw) == normalized


# ------------------------------------------------------------------------- exceptions

STATUS_REASONS = [
    (400, "bad_request"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (404, "not_found"),
    (409, "conflict"),
    (422, "unprocessable"),
    (429, "rate_limited"),
    (500, "server_error"),
    (502, "bad_gateway"),
    (503, "unavailable"),
    (504, "gateway_timeout"),
    (418, "other_4xx"),
    (451, "other_4xx"),
    (501, "other_5xx"),
    (599, "other_5xx"),
]


@pytest.mark.parametrize(("status", "reason"), STATUS_REASONS)
def test_sdk_status_errors(status: int, reason: str) -> None:
    exc = api_error(status, code="invalid_value", param="temperature")
    outcome = classify_exception(exc)
    assert (outcome.failure_class, outcome.reason, outcome.status_code) == ("hard", reason, status)
    assert (outcome.error_param, outcome.error_code) == ("temperature", "invalid_value")
    assert outcome.request_id == "req_123"
    assert outcome.error_type == f"openai.{type(exc).__name__}"


@pytest.mark.parametrize(("status", "reason"), STATUS_REASONS)
def test_requests_and_httpx_status_errors(status: int, reason: str) -> None:
    resp = requests.Response()
    resp.status_code = status
    assert classify_exception(requests.HTTPError(response=resp)).reason == reason
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    err = httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )
    assert classify_exception(err).reason == reason


def _chat_completion(finish: str) -> ChatCompletion:
    return sdk_object(ChatCompletion, chat({"message": message(None), "finish_reason": finish}))


@pytest.mark.parametrize(
    ("exc", "failure_class", "reason"),
    [
        (connection_error(timeout=True), "hard", "timeout"),
        (connection_error(), "hard", "connection"),
        (requests.Timeout(), "hard", "timeout"),
        (requests.ConnectTimeout(), "hard", "timeout"),
        (requests.ReadTimeout(), "hard", "timeout"),
        (requests.ConnectionError(), "hard", "connection"),
        (requests.exceptions.ChunkedEncodingError(), "hard", "connection"),
        (requests.exceptions.JSONDecodeError("x", "doc", 0), "hard", "invalid_response"),
        (httpx.ReadTimeout("x"), "hard", "timeout"),
        (httpx.ConnectTimeout("x"), "hard", "timeout"),
        (httpx.ConnectError("x"), "hard", "connection"),
        (httpx.RemoteProtocolError("x"), "hard", "connection"),
        (sdk_httpx().ReadTimeout("x"), "hard", "timeout"),
        (TimeoutError(), "hard", "timeout"),
        (asyncio.TimeoutError(), "hard", "timeout"),
        (TimeoutError(), "hard", "timeout"),
        (ConnectionResetError(), "hard", "connection"),
        (json.JSONDecodeError("x", "doc", 0), "hard", "invalid_response"),
        (ValueError("mine"), "hard", "exception"),
        (KeyError("k"), "hard", "exception"),
        (openai.LengthFinishReasonError(completion=_chat_completion("length")), "soft", "length"),
        (openai.ContentFilterFinishReasonError(), "soft", "content_filter"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exceptions(exc: BaseException, failure_class: str, reason: str) -> None:
    outcome = classify_exception(exc)
    assert (outcome.failure_class, outcome.reason) == (failure_class, reason)


def test_response_validation_error_is_invalid_response() -> None:
    http = sdk_httpx()
    request = http.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    exc = openai.APIResponseValidationError(http.Response(200, request=request), body={"x": 1})
    outcome = classify_exception(exc)
    assert (outcome.reason, outcome.status_code) == ("invalid_response", 200)


def test_length_error_carries_usage_and_finish() -> None:
    exc = openai.LengthFinishReasonError(completion=_chat_completion("length"))
    outcome = classify_exception(exc)
    assert outcome.finish_reasons == ("length",)
    assert outcome.usage == Usage(10, 5, 2, 3)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-1"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert classify_exception(api_error(429, headers=headers)).retry_after == seconds


def test_task_not_exist_is_transient() -> None:
    exc = api_error(404, code="task_not_exist", message="task_not_exist")
    outcome = classify_exception(exc)
    assert outcome.transient and outcome.reason == "not_found"
    assert not classify_exception(api_error(404)).transient


def test_retryable_property() -> None:
    assert classify_exception(api_error(429)).retryable
    assert classify_exception(api_error(503)).retryable
    assert not classify_exception(api_error(400)).retryable
    assert not classify_exception(api_error(401)).retryable
    assert not Outcome("soft", "length").retryable


# ------------------------------------------------------------------------- malformed input


class Exploding:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


class BadStatus(Exception):
    status_code = "not a number"


class ExplodingError(Exception):
    def __getattribute__(self, name: str) -> Any:
        if name in ("response", "status_code", "status", "body", "code", "param", "request_id"):
            raise RuntimeError(name)
        return super().__getattribute__(name)


MALFORMED = [
    None,
    0,
    1.5,
    math.nan,
    "",
    "x" * 1_000_000,
    b"bytes",
    [],
    [1, 2],
    {},
    {"choices": None},
    {"choices": "nope"},
    {"choices": [None]},
    {"choices": [{"message": 3}]},
    {"choices": [{"finish_reason": 7, "message": {"content": 5}}]},
    {"object": "chat.completion", "choices": [{"message": None, "finish_reason": None}]},
    {"usage": {"prompt_tokens": "ten", "completion_tokens": -4}, "choices": []},
    {"status": "incomplete", "object": "response", "incomplete_details": "bad"},
    {"status": "completed", "object": "response", "output": [None, 5, {"type": None}]},
    {"data": "not a list"},
    {"data": [None, 1, "x"]},
    {"object": "video", "status": None},
    {"status": {"nested": True}},
    Exploding(),
    object(),
]


@pytest.mark.parametrize("payload", MALFORMED, ids=lambda p: type(p).__name__)
def test_malformed_results_never_raise(payload: Any) -> None:
    outcome = classify_result(payload)
    assert outcome.failure_class in ("none", "hard", "soft", "silent")
    for kind in ("chat", "text_completion", "responses", "embeddings", "image", "video"):
        assert classify_result(payload, kind=kind).failure_class in ("none", "hard", "soft")


def test_huge_strings_are_bounded() -> None:
    outcome = classify_result({"id": "x" * 1_000_000, "object": "video", "status": "failed"})
    assert outcome.reason == "video_failed"
    assert outcome.response_id is not None and len(outcome.response_id) <= 256


@pytest.mark.parametrize(
    "exc",
    [
        BadStatus(),
        ExplodingError(),
        Exception(),
        KeyboardInterrupt(),
        type("ErrWithResponse", (Exception,), {"response": object()})(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_odd_exceptions_never_raise(exc: BaseException) -> None:
    outcome = classify_exception(exc)
    assert outcome.failure_class == "hard"
    assert outcome.reason == "exception"
