"""What each route answers: request bodies in, aiohttp responses out (JSON, SSE, errors).

No server state here: the server parses a request into a ``Call``, picks the scenario,
and hands the call to one of these builders.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import _payloads as payloads
from ._payloads import JSON
from ._scenarios import USAGE, RouteKind


@dataclass
class Call:
    """A parsed API request on its way to a renderer."""

    request: web.Request
    body: JSON
    model: str
    scenario: str
    stream: bool
    chunk_delay: float = 0.0  # seconds before each streamed event


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


async def read_body(request: web.Request) -> JSON:
    """The request's fields: JSON object, or multipart/urlencoded form (files become names)."""
    if request.method == "GET":
        return {}
    if request.content_type.startswith("multipart/") or (
        request.content_type == "application/x-www-form-urlencoded"
    ):
        form = await request.post()
        fields: JSON = {}
        for name, value in form.items():
            fields[name] = value if isinstance(value, str) else getattr(value, "filename", "")
        return fields
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(
            f"failsight fault server: request body is not valid JSON ({exc}).", None, "invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise BadRequest(
            "failsight fault server: request body must be a JSON object.", None, "invalid_json"
        )
    return body


# --- framing: errors, dropped connections, server-sent events --------------------------------


def error_response(
    status: int,
    message: str,
    type_: str,
    param: str | None,
    code: str | None,
    headers: Mapping[str, str] | None = None,
    inner: Any = None,
) -> web.Response:
    body = payloads.error_body(message, type_, param, code, inner)
    return web.json_response(body, status=status, headers=headers)


def drop_connection(
    request: web.Request, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the TCP connection; aiohttp then fails to write and quietly gives up."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return response if response is not None else web.Response()


async def sse(
    request: web.Request,
    events: Sequence[tuple[str | None, JSON | str]],
    *,
    done: bool,
    cut: bool = False,
    delay: float = 0.0,
) -> web.StreamResponse:
    """Write server-sent events; ``cut`` closes the connection instead of ending the body."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
        },
    )
    await response.prepare(request)
    for event, data in events:
        if delay > 0:
            await asyncio.sleep(delay)
        text = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        await response.write(f"{head}data: {text}\n\n".encode())
    if cut:
        return drop_connection(request, response)
    if done:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def drop_mid_stream(
    request: web.Request, kind: RouteKind, model: str, *, delay: float = 0.0
) -> web.StreamResponse:
    """Two content chunks, then the connection closes: no finish reason, no ``[DONE]``."""
    ok = payloads.answer_for("ok", "")
    events: list[tuple[str | None, JSON | str]]
    if kind == "chat":
        events = [(None, c) for c in payloads.chat_chunks(model, ok, 1, False)[:3]]
    elif kind == "completions":
        events = [(None, c) for c in payloads.completion_chunks(model, ok, 1, False)[:2]]
    else:
        stream = payloads.response_events(model, ok)
        deltas = [i for i, (name, _) in enumerate(stream) if name.endswith("output_text.delta")]
        events = [(name, data) for name, data in stream[: deltas[1] + 1]]
    return await sse(request, events, done=False, cut=True, delay=delay)


async def drop_after_usage(
    request: web.Request, kind: RouteKind, model: str, *, mid_stream: bool, delay: float = 0.0
) -> web.StreamResponse:
    """Usage reported, then the connection closes before the stream's end (no ``[DONE]``).

    Not ``mid_stream``: the whole answer, its finish reason and its usage chunk (asked for or
    not), then the drop; a Responses stream is cut after its final event. ``mid_stream``: as
    some gateways do, every chunk carries the usage so far (the prompt's tokens and one output
    token per chunk after the first), and the connection closes after three chunks, before
    any finish reason. The Responses API reports usage only in its final event, so there
    ``mid_stream`` is ``drop_mid_stream``.
    """
    if mid_stream and kind == "responses":
        return await drop_mid_stream(request, kind, model, delay=delay)
    ok = payloads.answer_for("ok", "")
    events: list[tuple[str | None, JSON | str]]
    if kind == "responses":
        events = [(name, data) for name, data in payloads.response_events(model, ok)]
    else:
        make = payloads.chat_chunks if kind == "chat" else payloads.completion_chunks
        chunks = make(model, ok, 1, True)
        if mid_stream:
            chunks = chunks[:3]
            for n, chunk in enumerate(chunks):
                chunk["usage"] = {
                    "prompt_tokens": USAGE["prompt_tokens"],
                    "completion_tokens": n,
                    "total_tokens": USAGE["prompt_tokens"] + n,
                }
        events = [(None, chunk) for chunk in chunks]
    return await sse(request, events, done=False, cut=True, delay=delay)


# --- text routes -----------------------------------------------------------------------------


async def chat(call: Call) -> web.StreamResponse:
    messages = call.body.get("messages")
    answer = payloads.answer_for(call.scenario, _last_user_text(messages))
    n = _count(call.body.get("n"), limit=8)
    if call.stream:
        chunks = payloads.chat_chunks(call.model, answer, n, _include_usage(call.body))
        events = [(None, _echo_key(call, c, "chatcmpl-")) for c in chunks]
        return await sse(call.request, events, done=True, delay=call.chunk_delay)
    body = payloads.chat_completion(call.model, answer, n)
    return web.json_response(_echo_key(call, body, "chatcmpl-"))


async def completions(call: Call) -> web.StreamResponse:
    prompt = call.body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in reversed(prompt) if isinstance(p, str)), "")
    answer = payloads.answer_for(call.scenario, prompt if isinstance(prompt, str) else "")
    n = _count(call.body.get("n"), limit=8)
    if call.stream:
        chunks = payloads.completion_chunks(call.model, answer, n, _include_usage(call.body))
        events = [(None, _echo_key(call, c, "cmpl-")) for c in chunks]
        return await sse(call.request, events, done=True, delay=call.chunk_delay)
    body = payloads.completion(call.model, answer, n)
    return web.json_response(_echo_key(call, body, "cmpl-"))


async def responses(call: Call) -> web.StreamResponse:
    raw = call.body.get("input")
    echo = raw if isinstance(raw, str) else _last_user_text(raw)
    answer = payloads.answer_for(call.scenario, echo)
    if call.stream:
        events = payloads.response_events(call.model, answer)
        for _name, data in events:
            if isinstance(data.get("response"), dict):
                _echo_key(call, data["response"], "resp_")
        return await sse(call.request, list(events), done=False, delay=call.chunk_delay)
    return web.json_response(_echo_key(call, payloads.response(call.model, answer), "resp_"))


# --- embeddings, images ----------------------------------------------------------------------


async def embeddings(call: Call) -> web.StreamResponse:
    raw = call.body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        inputs = [" ".join(map(str, raw))]  # one pre-tokenised input
    elif isinstance(raw, list):
        inputs = [x if isinstance(x, str) else json.dumps(x) for x in raw]
    else:
        inputs = [""]
    encoding = call.body.get("encoding_format")
    body = payloads.embeddings(call.model, inputs, encoding if isinstance(encoding, str) else None)
    return web.json_response(body)


async def images(call: Call) -> web.StreamResponse:
    prompt = call.body.get("prompt")
    n = _count(call.body.get("n"), limit=10)
    body = payloads.images(
        call.scenario, n, prompt if isinstance(prompt, str) else "", origin(call.request)
    )
    return web.json_response(body)


def _echo_key(call: Call, body: JSON, prefix: str) -> JSON:
    """``key_echo``: the caller's API key put in ``body``'s model and id (in place)."""
    if call.scenario == "key_echo":
        headers = call.request.headers
        auth = headers.get("Authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("api-key", "")
        if key:
            body["model"] = key
            body["id"] = prefix + key
    return body


# --- reading a request -----------------------------------------------------------------------


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def text_field(body: JSON, name: str, default: str) -> str:
    value = body.get(name)
    return default if value is None else str(value)


def _count(value: object, *, limit: int) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 1), limit)
    return 1


def _include_usage(body: JSON) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _text_of(content: object) -> str:
    """Text of a message content: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""
