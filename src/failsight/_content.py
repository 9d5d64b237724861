"""Content capture: prompts and outputs as the GenAI semantic conventions' span attributes.

Only with `configure(capture_content=True)` (or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
=true`). failsight uses the attribute form of the conventions, which replaced the per-message
events: `gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions`,
each a JSON array (`{"role", "parts": [{"type": "text", "content"}], "finish_reason"}`). Every
text is masked for keys, and each attribute is cut to `max_content_length` characters.
Pure: reads dicts and SDK objects alike, never raises on odd shapes (the caller guards).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from failsight._redact import mask_secrets
from failsight._taxonomy import as_list, as_str, field, normalize_finish_reason
from failsight._vocabulary import VOCABULARY

__all__ = ["INPUT", "OUTPUT", "SYSTEM", "StreamText", "input_messages", "output_messages"]

_GEN_AI: Final[Mapping[str, str]] = VOCABULARY["spans"]["gen_ai"]
INPUT: Final[str] = _GEN_AI["input_messages"]
OUTPUT: Final[str] = _GEN_AI["output_messages"]
SYSTEM: Final[str] = _GEN_AI["system_instructions"]
_MAX_ITEMS: Final = 256  # messages or parts read from one request or answer


def _text(value: Any, limit: int) -> str:
    return mask_secrets(value, limit) if isinstance(value, str) else ""


def _parts(content: Any, limit: int) -> list[dict[str, Any]]:
    """Message content (a string, or a list of typed parts) as convention parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": _text(content, limit)}]
    parts: list[dict[str, Any]] = []
    for part in (as_list(content) or [])[:_MAX_ITEMS]:
        kind = as_str(field(part, "type")) or "text"
        text = field(part, "text")
        if text is None:
            text = field(part, "refusal")
        if isinstance(text, str):
            parts.append({"type": "text", "content": _text(text, limit)})
        else:
            parts.append({"type": kind})  # images, audio, files: their kind only
    return parts


def _tool_calls(message: Any, limit: int) -> list[dict[str, Any]]:
    calls = []
    for call in (as_list(field(message, "tool_calls")) or [])[:_MAX_ITEMS]:
        function = field(call, "function")
        calls.append(
            {
                "type": "tool_call",
                "id": as_str(field(call, "id")),
                "name": as_str(field(function, "name")),
                "arguments": _text(field(function, "arguments"), limit),
            }
        )
    return calls


def _dump(items: list[Any], limit: int) -> str:
    text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "…"


def input_messages(kind: str, request: dict[str, Any], limit: int) -> dict[str, str]:
    """Span attributes for a request's prompt: `{INPUT: ..., SYSTEM: ...}` (those present).

    >>> input_messages("chat", {"messages": [{"role": "user", "content": "Hi"}]}, 100)
    {'gen_ai.input.messages': '[{"role":"user","parts":[{"type":"text","content":"Hi"}]}]'}
    """
    messages: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    if kind == "chat":
        for message in (as_list(request.get("messages")) or [])[:_MAX_ITEMS]:
            role = as_str(field(message, "role")) or "user"
            entry: dict[str, Any] = {
                "role": role,
                "parts": _parts(field(message, "content"), limit),
            }
            entry["parts"].extend(_tool_calls(message, limit))
            if role == "tool":
                entry["parts"] = [
                    {"type": "tool_call_response", "id": as_str(field(message, "tool_call_id")),
                     "response": _text(field(message, "content"), limit)}
                ]  # fmt: skip
            messages.append(entry)
    elif kind == "text_completion":
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else (as_list(prompt) or [])
        messages = [{"role": "user", "parts": _parts(p, limit)} for p in prompts[:_MAX_ITEMS]]
    elif kind == "responses":
        given = request.get("input")
        if isinstance(given, str):
            messages.append({"role": "user", "parts": _parts(given, limit)})
        else:
            for item in (as_list(given) or [])[:_MAX_ITEMS]:
                role = as_str(field(item, "role")) or "user"
                messages.append({"role": role, "parts": _parts(field(item, "content"), limit)})
        instructions = request.get("instructions")
        if isinstance(instructions, str):
            system = _parts(instructions, limit)
    found: dict[str, str] = {}
    if messages:
        found[INPUT] = _dump(messages, limit)
    if system:
        found[SYSTEM] = _dump(system, limit)
    return found


def output_messages(kind: str, answer: Any, limit: int) -> str | None:
    """`gen_ai.output.messages` of a whole answer (chat, completion or Responses API)."""
    messages: list[dict[str, Any]] = []
    if kind in ("chat", "text_completion"):
        for choice in (as_list(field(answer, "choices")) or [])[:_MAX_ITEMS]:
            message = field(choice, "message")
            if message is not None:
                parts = _parts(field(message, "content"), limit)
                refusal = field(message, "refusal")
                if isinstance(refusal, str):
                    parts.append({"type": "text", "content": _text(refusal, limit)})
                parts.extend(_tool_calls(message, limit))
            else:
                parts = _parts(field(choice, "text"), limit)
            messages.append(
                {
                    "role": "assistant",
                    "parts": [p for p in parts if p.get("content") != ""],
                    "finish_reason": normalize_finish_reason(field(choice, "finish_reason")),
                }
            )
    elif kind == "responses":
        parts = []
        for item in (as_list(field(answer, "output")) or [])[:_MAX_ITEMS]:
            if field(item, "type") == "message":
                parts.extend(_parts(field(item, "content"), limit))
            elif field(item, "type") == "function_call":
                parts.append(
                    {"type": "tool_call", "id": as_str(field(item, "call_id")),
                     "name": as_str(field(item, "name")),
                     "arguments": _text(field(item, "arguments"), limit)}
                )  # fmt: skip
        status = field(answer, "status")
        messages.append(
            {"role": "assistant", "parts": parts,
             "finish_reason": "stop" if status == "completed" else as_str(status)}
        )  # fmt: skip
    return _dump(messages, limit) if messages else None


class StreamText:
    """The text of a stream, assembled per choice as the chunks pass (bounded by `limit`)."""

    __slots__ = ("limit", "size", "texts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.texts: dict[int, list[str]] = {}

    def chunk(self, kind: str, item: Any) -> None:
        if self.size >= self.limit:
            return
        if kind == "responses":
            if field(item, "type") == "response.output_text.delta":
                self._add(0, field(item, "delta"))
            return
        for choice in (as_list(field(item, "choices")) or [])[:_MAX_ITEMS]:
            index = field(choice, "index")
            index = index if isinstance(index, int) else 0
            delta = field(choice, "delta")
            self._add(
                index, field(delta, "content") if delta is not None else field(choice, "text")
            )

    def _add(self, index: int, text: Any) -> None:
        if isinstance(text, str) and text:
            self.texts.setdefault(index, []).append(text)
            self.size += len(text)

    def output_messages(self, finish_reasons: tuple[str, ...]) -> str:
        messages = []
        for position, index in enumerate(sorted(self.texts) or [0]):
            text = "".join(self.texts.get(index, []))
            reason = finish_reasons[position] if position < len(finish_reasons) else None
            part = {"type": "text", "content": _text(text, self.limit)}
            messages.append({"role": "assistant", "parts": [part], "finish_reason": reason})
        return _dump(messages, self.limit)
