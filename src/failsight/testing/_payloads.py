"""Response bodies in OpenAI's wire format, built from a scenario.

Pure functions returning JSON-ready dicts; the server decides status codes and framing.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._scenarios import USAGE, filter_of, finish_of

JSON = dict[str, Any]

OK_TEXT = "The quick brown fox jumps over the lazy dog."
TRUNCATED_TEXT = "The quick brown fox jumps"
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
TOOL_NAME = "get_weather"
# A failed Response's `error` (usage is still reported: the tokens were spent).
FAILED_ERROR = {"code": "server_error", "message": "The model failed to complete the response."}
TOOL_ARGUMENTS = '{"city": "Paris"}'
# What the declared-output scenarios answer (the conformance suite's tool and schema take a
# string `city`): arguments that are not JSON (a bare word), arguments of the wrong type, a
# tool no request of the suite declares, and contents for a response format.
NOT_JSON_ARGUMENTS = '{"city": Paris}'
INVALID_ARGUMENTS = '{"city": 42}'
UNDECLARED_TOOL = "get_stock_price"
UNDECLARED_ARGUMENTS = '{"symbol": "ACME"}'
NO_TOOL_TEXT = "It is sunny in Paris today."
JSON_TEXT = '{"city": "Paris"}'
NOT_JSON_TEXT = "The weather in Paris is sunny."
MISMATCHED_JSON_TEXT = '{"town": "Paris"}'
EMBEDDING_DIMENSIONS = 8
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
# A 1x1 transparent PNG, so image URLs and b64_json decode to a real image.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
PNG_BYTES = base64.b64decode(PNG_B64)


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's, e.g. ``chatcmpl-…`` or ``video_…``."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def words(text: str) -> list[str]:
    """Split text into stream deltas that concatenate back to it: ``["The", " quick", …]``."""
    return re.findall(r"\s*\S+|\s+", text)


def error_body(
    message: str, type_: str, param: str | None, code: str | None, inner: Any = None
) -> JSON:
    error: JSON = {"message": message, "type": type_, "param": param, "code": code}
    if inner is not None:
        error["innererror"] = _plain(inner)
    return {"error": error}


def _plain(value: Any) -> Any:
    """Read-only mappings (the scenario tables) as JSON-ready dicts."""
    if hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    return value


# Azure's annotations: every category, each filtered or not, with a severity.
def azure_filter_results(fired: str | None = None, severity: str | None = "high") -> JSON:
    results: JSON = {
        name: {"filtered": False, "severity": "safe"}
        for name in ("hate", "self_harm", "sexual", "violence")
    }
    results["protected_material_text"] = {"filtered": False, "detected": False}
    if fired is not None:  # any category name, spelled as the scenario spells it
        results[fired] = {"filtered": True, **({"severity": severity} if severity else {})}
    return results


def azure_prompt_results() -> list[JSON]:
    return [{"prompt_index": 0, "content_filter_results": azure_filter_results()}]


@dataclass(frozen=True)
class Answer:
    """What the "model" says for a text scenario, independent of the API shape."""

    text: str | None
    finish_reason: str
    refusal: str | None = None
    tool_call: bool = False
    azure_filter: str | None = None  # the category Azure's results say fired
    filter_severity: str | None = "high"  # its severity (None: no severity field)
    verbatim: bool = False  # `finish=`: the finish reason as given, whatever the API
    tool_name: str = TOOL_NAME
    arguments: str = TOOL_ARGUMENTS
    call_id: str = field(default_factory=lambda: new_id("call_"))


# Declared-output scenarios: (text, finish reason, tool name and arguments or None).
_DECLARED: Final[Mapping[str, tuple[str | None, str, tuple[str, str] | None]]] = {
    "tool_args_not_json": (None, "tool_calls", (TOOL_NAME, NOT_JSON_ARGUMENTS)),
    "tool_undeclared": (None, "tool_calls", (UNDECLARED_TOOL, UNDECLARED_ARGUMENTS)),
    "tool_args_invalid": (None, "tool_calls", (TOOL_NAME, INVALID_ARGUMENTS)),
    "tool_missing": (NO_TOOL_TEXT, "stop", None),
    "json_ok": (JSON_TEXT, "stop", None),
    "json_not_json": (NOT_JSON_TEXT, "stop", None),
    "json_schema_mismatch": (MISMATCHED_JSON_TEXT, "stop", None),
}


def answer_for(scenario: str, echo_text: str) -> Answer:
    """Map a text scenario to the model's answer; anything else (e.g. after ``timeout``) is ok."""
    finish = finish_of(scenario)
    if finish is not None:
        return Answer(OK_TEXT, finish, verbatim=True)
    fired = filter_of(scenario)
    if fired is not None:
        return Answer(TRUNCATED_TEXT, "content_filter", azure_filter=fired[0],
                      filter_severity=fired[1])  # fmt: skip
    if scenario == "echo":
        return Answer(echo_text, "stop")
    if scenario in _DECLARED:
        text, finish, call = _DECLARED[scenario]
        if call is None:
            return Answer(text, finish)
        return Answer(text, finish, tool_call=True, tool_name=call[0], arguments=call[1])
    if scenario == "tool_calls":
        return Answer(None, "tool_calls", tool_call=True)
    if scenario == "content_filter":
        return Answer(None, "content_filter")
    if scenario == "azure_content_filter":
        return Answer(TRUNCATED_TEXT, "content_filter", azure_filter="violence")
    if scenario == "gemini_safety":
        return Answer(None, "SAFETY")
    if scenario == "gemini_recitation":
        return Answer(TRUNCATED_TEXT, "RECITATION")
    if scenario == "length":
        return Answer(TRUNCATED_TEXT, "length")
    if scenario == "empty_content":
        return Answer(None, "stop")
    if scenario == "refusal":
        return Answer(None, "stop", refusal=REFUSAL_TEXT)
    if scenario == "response_failed":  # the Responses API's `status: failed`, part-way through
        return Answer(TRUNCATED_TEXT, "failed")
    return Answer(OK_TEXT, "stop")


def chat_usage() -> JSON:
    return {
        "prompt_tokens": USAGE["prompt_tokens"],
        "completion_tokens": USAGE["completion_tokens"],
        "total_tokens": USAGE["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": USAGE["cached_tokens"], "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": USAGE["reasoning_tokens"],
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage() -> JSON:
    return {
        "input_tokens": USAGE["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": USAGE["cached_tokens"], "cache_write_tokens": 0},
        "output_tokens": USAGE["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": USAGE["reasoning_tokens"]},
        "total_tokens": USAGE["total_tokens"],
    }


def _tool_call(answer: Answer) -> JSON:
    return {
        "id": answer.call_id,
        "type": "function",
        "function": {"name": answer.tool_name, "arguments": answer.arguments},
    }


def argument_pieces(arguments: str, size: int = 4) -> list[str]:
    """Stream deltas of a tool call's arguments, a few characters each as OpenAI sends them,
    so a client must assemble them: ``['{"ci', 'ty":', ...]``."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


# --- chat completions -------------------------------------------------------------------------


def chat_completion(model: str, answer: Answer, n: int) -> JSON:
    message: JSON = {
        "role": "assistant",
        "content": answer.text,
        "refusal": answer.refusal,
        "annotations": [],
    }
    if answer.tool_call:
        message["tool_calls"] = [_tool_call(answer)]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
                **_choice_filters(answer),
            }
            for i in range(n)
        ],
        "usage": chat_usage(),
        "service_tier": "default",
        "system_fingerprint": "fp_failsight",
        **({"prompt_filter_results": azure_prompt_results()} if answer.azure_filter else {}),
    }


def _choice_filters(answer: Answer, finish: bool = True) -> JSON:
    if answer.azure_filter is None:
        return {}
    if not finish:
        return {"content_filter_results": azure_filter_results()}
    fired = azure_filter_results(answer.azure_filter, answer.filter_severity)
    return {"content_filter_results": fired}


def chat_chunks(model: str, answer: Answer, n: int, include_usage: bool) -> list[JSON]:
    """Every chunk of a streamed chat completion, ending with the finish (and usage) chunks."""
    ident, created = new_id("chatcmpl-"), now()

    def chunk(index: int, delta: JSON, finish: str | None = None) -> JSON:
        choice: JSON = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        choice.update(_choice_filters(answer, finish is not None))
        body: JSON = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_failsight",
            "choices": [choice],
        }
        if include_usage:
            body["usage"] = None
        return body

    chunks: list[JSON] = []
    if answer.azure_filter is not None:  # Azure's first chunk: the prompt's results only
        chunks.append(
            {"id": "", "object": "", "created": 0, "model": "", "choices": [],
             "prompt_filter_results": azure_prompt_results()}
        )  # fmt: skip
    for index in range(n):
        first: JSON = {"role": "assistant", "content": "", "refusal": None}
        if answer.tool_call:
            first["content"] = None
            call = _tool_call(answer)
            call["function"]["arguments"] = ""
            first["tool_calls"] = [{"index": 0, **call}]
        chunks.append(chunk(index, first))
        for piece in words(answer.text or ""):
            chunks.append(chunk(index, {"content": piece}))
        for piece in words(answer.refusal or ""):
            chunks.append(chunk(index, {"refusal": piece}))
        if answer.tool_call:
            for piece in argument_pieces(answer.arguments):
                chunks.append(
                    chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
        chunks.append(chunk(index, {}, answer.finish_reason))
    if include_usage:
        chunks.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_failsight",
                "choices": [],
                "usage": chat_usage(),
            }
        )
    return chunks


# --- legacy completions -----------------------------------------------------------------------


def completion(model: str, answer: Answer, n: int) -> JSON:
    return {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "text": answer.text or "",
                "index": i,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
            for i in range(n)
        ],
        "usage": chat_usage(),
        "system_fingerprint": "fp_failsight",
    }


def completion_chunks(model: str, answer: Answer, n: int, include_usage: bool) -> list[JSON]:
    ident, created = new_id("cmpl-"), now()

    def chunk(index: int, text: str, finish: str | None = None) -> JSON:
        body: JSON = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_failsight",
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    chunks = [chunk(index, piece) for index in range(n) for piece in words(answer.text or "")] + [
        chunk(index, "", answer.finish_reason) for index in range(n)
    ]
    if include_usage:
        chunks.append(
            {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_failsight",
                "choices": [],
                "usage": chat_usage(),
            }
        )
    return chunks


# --- Responses API ----------------------------------------------------------------------------


@dataclass
class _ResponseIds:
    response: str = field(default_factory=lambda: new_id("resp_"))
    item: str = field(default_factory=lambda: new_id("msg_"))
    call: str = field(default_factory=lambda: new_id("fc_"))


def _response_status(answer: Answer) -> tuple[str, JSON | None]:
    if answer.verbatim:  # `finish=<reason>`: an incomplete Response, for that reason
        return "incomplete", {"reason": answer.finish_reason}
    if answer.finish_reason == "failed":
        return "failed", None
    if answer.finish_reason in ("content_filter", "SAFETY", "RECITATION"):
        return "incomplete", {"reason": "content_filter"}
    if answer.finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def _response_items(answer: Answer, ids: _ResponseIds) -> list[JSON]:
    status, _ = _response_status(answer)
    status = "incomplete" if status == "failed" else status  # an item's own status
    if answer.tool_call:
        return [
            {
                "type": "function_call",
                "id": ids.call,
                "call_id": answer.call_id,
                "name": answer.tool_name,
                "arguments": answer.arguments,
                "status": "completed",
            }
        ]
    if answer.refusal is not None:
        part: JSON = {"type": "refusal", "refusal": answer.refusal}
    elif answer.text is not None:
        part = {"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}
    else:
        return []
    return [
        {
            "type": "message",
            "id": ids.item,
            "status": status,
            "role": "assistant",
            "content": [part],
        }
    ]


def _response_object(
    model: str, answer: Answer, ids: _ResponseIds, created: int, *, final: bool
) -> JSON:
    status, incomplete = _response_status(answer) if final else ("in_progress", None)
    return {
        "id": ids.response,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": FAILED_ERROR if status == "failed" else None,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": _response_items(answer, ids) if final else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": responses_usage() if final else None,
        "user": None,
        "metadata": {},
    }


def response(model: str, answer: Answer) -> JSON:
    return _response_object(model, answer, _ResponseIds(), now(), final=True)


def response_events(model: str, answer: Answer) -> list[tuple[str, JSON]]:
    """The ``(event, data)`` pairs of a streamed Response, as OpenAI sends them."""
    ids, created = _ResponseIds(), now()
    events: list[tuple[str, JSON]] = []

    def emit(type_: str, **data: Any) -> None:
        events.append((type_, {"type": type_, "sequence_number": len(events), **data}))

    emit("response.created", response=_response_object(model, answer, ids, created, final=False))
    emit(
        "response.in_progress", response=_response_object(model, answer, ids, created, final=False)
    )
    items = _response_items(answer, ids)
    for item in items:
        at: JSON = {"output_index": 0}
        if item["type"] == "function_call":
            emit(
                "response.output_item.added",
                item={**item, "arguments": "", "status": "in_progress"},
                **at,
            )
            for piece in argument_pieces(item["arguments"]):
                emit("response.function_call_arguments.delta", item_id=ids.call, delta=piece, **at)
            emit(
                "response.function_call_arguments.done",
                item_id=ids.call,
                name=item["name"],
                arguments=item["arguments"],
                **at,
            )
            emit("response.output_item.done", item=item, **at)
            continue
        part = item["content"][0]
        at = {**at, "item_id": ids.item, "content_index": 0}
        emit(
            "response.output_item.added",
            item={**item, "status": "in_progress", "content": []},
            output_index=0,
        )
        if part["type"] == "refusal":
            emit("response.content_part.added", part={"type": "refusal", "refusal": ""}, **at)
            for piece in words(part["refusal"]):
                emit("response.refusal.delta", delta=piece, **at)
            emit("response.refusal.done", refusal=part["refusal"], **at)
        else:
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", part=empty, **at)
            for piece in words(part["text"]):
                emit("response.output_text.delta", delta=piece, logprobs=[], **at)
            emit("response.output_text.done", text=part["text"], logprobs=[], **at)
        emit("response.content_part.done", part=part, **at)
        emit("response.output_item.done", item=item, output_index=0)
    final = _response_object(model, answer, ids, created, final=True)
    emit(f"response.{final['status']}", response=final)  # completed, incomplete or failed
    return events


# --- embeddings, images, models ---------------------------------------------------------------


def _vector(text: str, index: int) -> list[float]:
    seed = zlib.crc32(f"{index}:{text}".encode())
    return [round(math.sin(seed + k), 6) for k in range(EMBEDDING_DIMENSIONS)]


def embeddings(model: str, inputs: Sequence[str], encoding_format: str | None) -> JSON:
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(text, index)
        # openai 1.x/2.x ask for base64 by default and decode little-endian float32 themselves.
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if encoding_format == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": USAGE["prompt_tokens"], "total_tokens": USAGE["prompt_tokens"]},
    }


def images(scenario: str, n: int, prompt: str, origin: str) -> JSON:
    data: list[JSON] = []
    if scenario != "image_empty":
        for _ in range(n):
            if scenario == "image_b64":
                data.append({"b64_json": PNG_B64})
                continue
            # Signed like OpenAI's image URLs (Azure blob SAS): readable for one hour.
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now() + 3600))
            item: JSON = {
                "url": f"{origin}/v1/images/content/{new_id('img_')}.png"
                f"?se={expires}&sp=r&sig=fault-server"
            }
            if scenario == "image_revised_prompt":
                item["revised_prompt"] = f"A detailed, safe rendering of: {prompt}"
            data.append(item)
    return {"created": now(), "data": data}


def models(names: Sequence[str]) -> JSON:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "failsight"}
            for name in names
        ],
    }
