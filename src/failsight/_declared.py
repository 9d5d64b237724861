"""What a request declares, judged against its answer: tool calls and structured output.

A request that offers `tools`, forces a call with `tool_choice`, or asks for structured output
(`response_format` of chat completions, `text.format` of the Responses API) says what a correct
answer looks like, so a wrong one is a silent failure seen without a user validator. Pure: the
request's keyword arguments (or JSON body) and the answer (an SDK object or decoded JSON) in, a
`Judgement` out; no telemetry. `declared_of` returns None at once for a request that declares
nothing, so such a call pays one dictionary look-up per field.

Order of the checks (the first failure found names the request; every tool call judged gets
its own outcome in `tool_calls_total`; a user validator runs after all of these):

1. choice by choice (chat completions; the Responses API has one output):
   a. each tool call in the order the answer gives them, at most `max_tool_calls` (128; the
      rest are neither judged nor counted): a name the request did not declare is
      `not_declared` (label `undeclared`); arguments that are not JSON (NaN and Infinity are
      not JSON) are `not_json`; JSON that is not an object, or that its declared `parameters`
      schema rejects, is `strict_violation` when the tool said `strict: true` (the provider
      broke its promise), else `invalid_arguments`; otherwise `ok`;
   b. `tool_choice` "required" (or `allowed_tools` in mode "required") with no tool call at
      all, or naming a function (or custom tool) that was not called: `tool_call_missing`;
   c. structured output (`json_schema` or `json_object`): content that is not JSON is
      `invalid_json`; JSON that the `json_schema` schema rejects is `output_schema_mismatch`.
      Content that is absent (a tool call, a refusal) is not judged.
2. Only answers the classifier found usable are judged: a soft or hard outcome (a truncated
   `length` answer, a refusal, a content filter) keeps its own reason.

Bounds (`declared.limits`, shared with the Node package): a string longer than
`max_parsed_length` (1 MiB) characters is not parsed, and its call is neither judged nor
counted (an undeclared name still is); the arguments of one answer are parsed up to that many
characters in all. JSON longer than `max_validated_length` (64 KiB) is judged as JSON but not
against its schema (`ok`: it passed every check that ran), as is everything when `jsonschema`
is missing (see `_schemas`). `strict` counts only where the request says `strict: true`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from failsight import _schemas
from failsight._taxonomy import MAX_TEXT, as_list, field
from failsight._vocabulary import VOCABULARY

__all__ = [
    "MISSING",
    "NOT_JSON",
    "OK",
    "OUTPUT_MISMATCH",
    "OUTPUT_NOT_JSON",
    "STRICT_VIOLATION",
    "TOOL_CALL_REASONS",
    "Declared",
    "Judgement",
    "StreamAnswer",
    "declared_of",
    "judge",
]

_D: Final = VOCABULARY["declared"]
_LIMITS: Final[Mapping[str, int]] = _D["limits"]
MAX_TOOL_CALLS: Final = _LIMITS["max_tool_calls"]
MAX_PARSED_LENGTH: Final = _LIMITS["max_parsed_length"]
MAX_VALIDATED_LENGTH: Final = _LIMITS["max_validated_length"]
UNDECLARED: Final[str] = _D["undeclared_tool"]
TOOL_CALL_REASONS: Final[Mapping[str, str]] = _D["tool_call_reasons"]
MISSING: Final[str] = _D["missing_reason"]
OUTPUT_NOT_JSON: Final[str] = _D["output_reasons"]["not_json"]
OUTPUT_MISMATCH: Final[str] = _D["output_reasons"]["schema_mismatch"]
# Tool-call outcomes (`tool_call_outcomes`): the first passes, the others fail.
OK: Final[str] = VOCABULARY["tool_call_outcomes"][0]
NOT_JSON: Final = "not_json"
NOT_DECLARED: Final = "not_declared"
INVALID_ARGUMENTS: Final = "invalid_arguments"
STRICT_VIOLATION: Final = "strict_violation"
if {NOT_JSON, NOT_DECLARED, INVALID_ARGUMENTS, STRICT_VIOLATION} != set(TOOL_CALL_REASONS):
    raise RuntimeError("failsight: vocabulary.json's tool-call outcomes are not these")

_FUNCTION: Final = "function"
_CUSTOM: Final = "custom"
_JSON_SCHEMA: Final = "json_schema"
_JSON_OBJECT: Final = "json_object"
_REQUIRED: Final = "required"
_ANY: Final = ""  # `Declared.choice`: some tool call must come back


class Tool(NamedTuple):
    """A declared function: its `parameters` schema (None: not given) and `strict`."""

    schema: Any
    strict: bool


class Declared(NamedTuple):
    """What one request declares; made by `declared_of`."""

    tools: Mapping[str, Tool]  # function tools by name
    custom: frozenset[str]  # custom tools (free-form input: their calls are not judged)
    choice: str | None  # None: no call required; "": some call; else the name to call
    output: str | None  # None, "json_object" or "json_schema"
    schema: Any  # the output's JSON Schema (json_schema)
    strict: bool  # the output format said `strict: true`


class Judgement(NamedTuple):
    """The verdict on one answer: the silent reason (None: none), and per tool call judged
    its `tool` label and outcome, the first failing call's name as the model gave it, and
    the errors that stopped a schema check (counted by the caller)."""

    reason: str | None
    calls: tuple[tuple[str, str], ...] = ()
    failed_tool: str | None = None
    errors: tuple[BaseException, ...] = ()


def _tools(entries: Any) -> tuple[dict[str, Tool], set[str]]:
    tools: dict[str, Tool] = {}
    custom: set[str] = set()
    for entry in entries:
        kind = field(entry, "type")
        inner = field(entry, kind) if isinstance(kind, str) else None
        spec = inner if isinstance(inner, Mapping) else entry  # chat nests, Responses does not
        name = field(spec, "name")
        if not isinstance(name, str):
            continue
        if kind == _FUNCTION:
            tools[name] = Tool(field(spec, "parameters"), field(spec, "strict") is True)
        elif kind == _CUSTOM:
            custom.add(name)
    return tools, custom


def _choice(choice: Any) -> str | None:
    if choice == _REQUIRED:
        return _ANY
    kind = field(choice, "type")
    if kind in (_FUNCTION, _CUSTOM):
        inner = field(choice, kind)
        name = field(inner if isinstance(inner, Mapping) else choice, "name")
        return name if isinstance(name, str) else None
    if kind == "allowed_tools":
        inner = field(choice, "allowed_tools")
        mode = field(inner if isinstance(inner, Mapping) else choice, "mode")
        return _ANY if mode == _REQUIRED else None
    return None


def declared_of(request: Mapping[str, Any], kind: str) -> Declared | None:
    """What `request` (an SDK call's keyword arguments, or a JSON body) declares for an answer
    of `kind` ("chat" or "responses"); None when nothing is declared.

    >>> declared_of({"model": "gpt-4o"}, "chat") is None
    True
    >>> declared_of({"response_format": {"type": "json_object"}}, "chat").output
    'json_object'
    """
    entries = request.get("tools")
    fmt = request.get("text" if kind == "responses" else "response_format")
    if fmt is None and entries is None:
        return None  # the plain call: two look-ups
    if kind == "responses":
        fmt = fmt.get("format") if isinstance(fmt, Mapping) else None
        spec = fmt
    else:
        spec = field(fmt, _JSON_SCHEMA) if isinstance(fmt, Mapping) else None
    output = fmt.get("type") if isinstance(fmt, Mapping) else None
    if output not in (_JSON_SCHEMA, _JSON_OBJECT):
        output = None
    if not isinstance(entries, (list, tuple)) or not entries:
        if output is None:
            return None
        entries = ()
    tools, custom = _tools(entries)
    return Declared(
        tools, frozenset(custom), _choice(request.get("tool_choice")), output,
        field(spec, "schema") if output == _JSON_SCHEMA else None,
        output is not None and field(spec, "strict") is True,
    )  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(text: str) -> tuple[bool, Any]:
    """(True, value) for JSON text; (False, None) when it is not JSON. RecursionError passes."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return False, None


class _Run:
    """One judgement being made: the budget of characters parsed, what was found."""

    __slots__ = ("budget", "calls", "declared", "errors", "failed_tool", "reason")

    def __init__(self, declared: Declared) -> None:
        self.declared = declared
        self.budget = MAX_PARSED_LENGTH
        self.calls: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self.reason: str | None = None
        self.failed_tool: str | None = None

    def fail(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def matches(self, schema: Any, instance: Any, length: int) -> bool:
        """False only when `schema` was checked and rejects `instance`."""
        if schema is None or length > MAX_VALIDATED_LENGTH:
            return True
        valid, error = _schemas.check(schema, instance)
        if error is not None and len(self.errors) < 8:
            self.errors.append(error)
        return valid is not False

    def tool_call(self, name: Any, arguments: Any) -> None:
        if len(self.calls) >= MAX_TOOL_CALLS:
            return
        tool = self.declared.tools.get(name) if isinstance(name, str) else None
        outcome = self._outcome(tool, arguments)
        if outcome is None:
            return  # past the bounds: not judged, not counted
        self.calls.append((name if tool is not None else UNDECLARED, outcome))
        if outcome != OK:
            if self.reason is None:
                self.failed_tool = name[:MAX_TEXT] if isinstance(name, str) else None
            self.fail(TOOL_CALL_REASONS[outcome])

    def _outcome(self, tool: Tool | None, arguments: Any) -> str | None:
        if tool is None:
            return NOT_DECLARED
        if isinstance(arguments, str):
            length = len(arguments)
            if length > self.budget:
                return None
            self.budget -= length
            try:
                is_json, value = _parse(arguments)
            except RecursionError:
                return None  # nested past what the interpreter can read: not judged
            if not is_json:
                return NOT_JSON
        elif isinstance(arguments, Mapping):  # a gateway that sends arguments decoded
            value, length = arguments, 0
        else:
            return NOT_JSON
        if not isinstance(value, Mapping) or not self.matches(tool.schema, value, length):
            return STRICT_VIOLATION if tool.strict else INVALID_ARGUMENTS
        return OK

    def content(self, text: Any) -> None:
        declared = self.declared
        if declared.output is None or not isinstance(text, str) or not text.strip():
            return
        length = len(text)
        if length > MAX_PARSED_LENGTH:
            return
        try:
            is_json, value = _parse(text)
        except RecursionError:
            return
        if not is_json:
            self.fail(OUTPUT_NOT_JSON)
        elif not self.matches(declared.schema, value, length):
            self.fail(OUTPUT_MISMATCH)

    def called(self, names: list[Any]) -> None:
        choice = self.declared.choice
        if choice is None:
            return
        if (choice == _ANY and not names) or (choice != _ANY and choice not in names):
            self.fail(MISSING)

    def judgement(self) -> Judgement:
        return Judgement(self.reason, tuple(self.calls), self.failed_tool, tuple(self.errors))


def _judge_chat(run: _Run, answer: Any) -> None:
    for choice in as_list(field(answer, "choices")) or ():
        message = field(choice, "message")
        names: list[Any] = []
        for call in as_list(field(message, "tool_calls")) or ():
            if field(call, "type") == _CUSTOM:
                names.append(field(field(call, _CUSTOM), "name"))
                continue
            function = field(call, _FUNCTION)
            name = field(function, "name")
            names.append(name)
            run.tool_call(name, field(function, "arguments"))
        run.called(names)
        if not field(message, "refusal"):
            run.content(field(message, "content"))


def _judge_responses(run: _Run, answer: Any) -> None:
    names: list[Any] = []
    texts: list[str] = []
    for item in as_list(field(answer, "output")) or ():
        kind = field(item, "type")
        if kind == "message":
            for part in as_list(field(item, "content")) or ():
                text = field(part, "text")
                if field(part, "type") == "output_text" and isinstance(text, str):
                    texts.append(text)
        elif kind == "function_call":
            name = field(item, "name")
            names.append(name)
            if not field(item, "namespace"):  # a namespaced tool's declaration is not read
                run.tool_call(name, field(item, "arguments"))
        elif kind != "reasoning":
            names.append(field(item, "name"))  # a custom or hosted tool call: a call
    run.called(names)
    if texts:
        run.content("".join(texts))


def judge(declared: Declared, answer: Any, kind: str) -> Judgement:
    """The verdict on `answer` (kind "chat" or "responses") for what `declared` asks.

    >>> d = declared_of({"tools": [{"type": "function", "function": {"name": "f"}}]}, "chat")
    >>> call = {"type": "function", "function": {"name": "f", "arguments": "{oops"}}
    >>> judge(d, {"choices": [{"message": {"tool_calls": [call]}}]}, "chat").reason
    'tool_arguments_not_json'
    """
    run = _Run(declared)
    if kind == "responses":
        _judge_responses(run, answer)
    else:
        _judge_chat(run, answer)
    return run.judgement()


# --------------------------------------------------------------------------- streams


class StreamAnswer:
    """A streamed answer put back together for `judge`: chat deltas (tool calls by index, text
    when structured output is declared), or a Responses stream's final response.

    Strings are kept up to `max_parsed_length` + 1 characters (what is longer is not judged
    anyway), tool calls up to `max_tool_calls` per choice.

    >>> stream = StreamAnswer("chat", want_text=False)
    >>> stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [
    ...     {"index": 0, "function": {"name": "f", "arguments": '{"a"'}}]}}]})
    >>> stream.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [
    ...     {"index": 0, "function": {"arguments": ": 1}"}}]}}]})
    >>> stream.answer()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    '{"a": 1}'
    """

    __slots__ = ("choices", "final", "kind", "want_text")

    def __init__(self, kind: str, want_text: bool) -> None:
        self.kind = kind
        self.want_text = want_text
        # choice index -> [text pieces, refusal seen, {tool index -> [type, name, arguments]}]
        self.choices: dict[int, list[Any]] = {}
        self.final: Any = None

    def chunk(self, item: Any) -> None:
        if self.kind == "responses":
            if field(item, "type") == "response.completed":
                self.final = field(item, "response")
            return
        choices = field(item, "choices")
        if not isinstance(choices, (list, tuple)):
            return
        for choice in choices:
            delta = field(choice, "delta")
            if delta is None:
                continue
            index = field(choice, "index")
            state = self.choices.get(index if isinstance(index, int) else 0)
            if state is None:
                if len(self.choices) >= MAX_TOOL_CALLS:
                    continue
                state = self.choices[index if isinstance(index, int) else 0] = [[], False, {}]
            if self.want_text:
                text = field(delta, "content")
                if isinstance(text, str) and text:
                    _append(state[0], text)
            if field(delta, "refusal"):
                state[1] = True
            calls = field(delta, "tool_calls")
            if isinstance(calls, (list, tuple)):
                for call in calls:
                    self._tool_delta(state[2], call)

    @staticmethod
    def _tool_delta(calls: dict[Any, list[Any]], delta: Any) -> None:
        at = field(delta, "index")
        entry = calls.get(at)
        if entry is None:
            if len(calls) >= MAX_TOOL_CALLS:
                return
            entry = calls[at] = [_FUNCTION, [], []]
        kind = field(delta, "type")
        if isinstance(kind, str):
            entry[0] = kind
        function = field(delta, _FUNCTION)
        if function is None:
            return
        # Pieces are concatenated, as the SDK does; the name comes whole in the first delta.
        piece = field(function, "name")
        if isinstance(piece, str) and piece:
            _append(entry[1], piece)
        piece = field(function, "arguments")
        if isinstance(piece, str) and piece:
            _append(entry[2], piece)

    def answer(self) -> Any:
        """The answer as `judge` reads it (a chat completion dict, or the final response)."""
        if self.kind == "responses":
            return self.final
        choices = []
        for index in sorted(self.choices):
            text, refused, calls = self.choices[index]
            tool_calls = [
                {"type": kind, _FUNCTION: {"name": "".join(name), "arguments": "".join(args)}}
                for kind, name, args in (calls[at] for at in calls)
            ]
            message = {"content": "".join(text) if text else None, "refusal": refused,
                       "tool_calls": tool_calls}  # fmt: skip
            choices.append({"message": message})
        return {"choices": choices}


def _append(pieces: list[str], piece: str) -> None:
    """Add `piece` unless the pieces already pass MAX_PARSED_LENGTH (then one more character
    marks the string as too long to judge)."""
    size = len(pieces)  # the cheap test first: most strings are a few pieces
    if size > 64 and sum(map(len, pieces)) > MAX_PARSED_LENGTH:
        return
    pieces.append(piece)
