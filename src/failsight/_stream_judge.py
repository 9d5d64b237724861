"""The stream judge: streamed chunks in, one `Outcome` out. Pure, like the classifier.

Every streamed path (SDK `Stream` objects, SSE events decoded by the raw-HTTP patch as
dicts) feeds chunks here; the soft-failure priority is the classifier's
(`worst_soft_reason`), decided nowhere else.
"""

from __future__ import annotations

import time
from typing import Any, Final

from failsight._classify import classify_result, extract_usage, worst_soft_reason
from failsight._filters import Filter, filters_of_choice, filters_of_prompt
from failsight._taxonomy import (
    FAILING_FINISH_REASONS,
    HARD,
    MAX_TEXT,
    NONE,
    SOFT,
    Outcome,
    normalize_finish_reason,
)

__all__ = ["StreamJudge"]

_MAX_REASONS: Final = 64
_FINAL_EVENTS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _read(obj: Any, key: str) -> Any:
    """obj[key] of a dict, else obj.key; None when absent or when reading it raises (the
    per-chunk accessor: SDK chunks are objects, decoded events dicts or namespaces)."""
    if type(obj) is dict:
        return obj.get(key)
    try:
        return getattr(obj, key, None)
    except Exception:
        return None


class StreamJudge:
    """Watches chunks of one stream of `kind` ("chat", "text_completion" or "responses").

    >>> judge = StreamJudge("chat")
    >>> judge.chunk({"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]})
    >>> judge.chunk({"choices": [{"delta": {}, "finish_reason": "length"}]})
    >>> judge.outcome(exhausted=True).reason
    'length'
    """

    __slots__ = (
        "filters",
        "final",
        "finish_reasons",
        "first_token",
        "kind",
        "response_id",
        "response_model",
        "saw_content",
        "saw_refusal",
        "saw_tools",
        "usage",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.first_token: float | None = None  # perf_counter() of the first content
        self.finish_reasons: list[str] = []
        self.saw_content = False
        self.saw_tools = False
        self.saw_refusal = False
        self.usage: Any = None
        self.final: Outcome | None = None  # a Responses stream's final event, classified
        self.filters: list[Filter] = []  # categories a content filter gave (Azure, Gemini)
        # The answer's id and model, read once from the first chunk with choices ("": none).
        self.response_id: str | None = None
        self.response_model: str | None = None

    def chunk(self, item: Any) -> None:
        """Take one chunk (an SDK object or a decoded JSON dict); odd shapes are ignored."""
        if self.kind == "responses":
            self._event(item)
            return
        if type(item) is dict:
            self._decoded(item)
            return
        # Plain reads: this runs for every streamed chunk. An accessor that raises makes the
        # chunk's watcher count a telemetry error and skip the chunk.
        choices = getattr(item, "choices", None)
        if choices and isinstance(choices, list):  # a gateway's odd JSON is data, not an error
            if self.response_id is None:
                self._identity(getattr(item, "id", None), getattr(item, "model", None))
            for choice in choices:
                if not self.saw_content:  # once content arrived, deltas decide nothing more
                    self._delta(choice)
                reason = getattr(choice, "finish_reason", None)
                if reason is not None and len(self.finish_reasons) < _MAX_REASONS:
                    self._finished(choice, reason)
        else:  # Azure's first chunk: the prompt's filter results, and no choices
            self._prompt(getattr(item, "prompt_filter_results", None))
        usage = getattr(item, "usage", None)
        if usage is not None:
            self.usage = usage

    # The dict twin of `chunk` (decoded JSON): the same reads through `_read`, kept apart so
    # the SDK's chunks pay for no type check per field.
    def _decoded(self, item: dict[str, Any]) -> None:
        choices = item.get("choices")
        if choices and isinstance(choices, list):
            if self.response_id is None:
                self._identity(item.get("id"), item.get("model"))
            for choice in choices:
                if not self.saw_content:
                    self._delta(choice)
                reason = _read(choice, "finish_reason")
                if reason is not None and len(self.finish_reasons) < _MAX_REASONS:
                    self._finished(choice, reason)
        else:
            self._prompt(item.get("prompt_filter_results"))
        usage = item.get("usage")
        if usage is not None:
            self.usage = usage

    def _identity(self, response_id: Any, model: Any) -> None:
        self.response_id = response_id[:MAX_TEXT] if isinstance(response_id, str) else ""
        if isinstance(model, str) and model:
            self.response_model = model[:MAX_TEXT]

    def _finished(self, choice: Any, reason: Any) -> None:
        normalized = normalize_finish_reason(reason) or "other"
        self.finish_reasons.append(normalized)
        if normalized == "content_filter" and len(self.filters) < _MAX_REASONS:
            self.filters.extend(filters_of_choice(choice))

    def _prompt(self, results: Any) -> None:
        if results is not None and len(self.filters) < _MAX_REASONS:
            self.filters.extend(filters_of_prompt(results))

    def _first(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def _delta(self, choice: Any) -> None:
        delta = _read(choice, "delta")
        if delta is None:
            if _read(choice, "text"):  # legacy completions
                self.saw_content = True
                self._first()
            return
        if _read(delta, "content"):
            self.saw_content = True
            self._first()
        if _read(delta, "tool_calls") or _read(delta, "function_call"):
            self.saw_tools = True
            self._first()
        if _read(delta, "refusal"):
            self.saw_refusal = True
            self._first()

    def _event(self, event: Any) -> None:
        kind = _read(event, "type")
        if not isinstance(kind, str):
            return
        if kind.endswith(".delta"):
            self._first()
        elif kind in _FINAL_EVENTS:
            self.final = classify_result(_read(event, "response"), kind="responses")

    def outcome(self, exhausted: bool) -> Outcome:
        """The stream's outcome; `exhausted` when iteration ran out (not closed early).

        Running out without a finish reason means the server dropped the connection.
        """
        if self.kind == "responses":
            if self.final is not None:
                return self.final
            return Outcome(HARD, "connection") if exhausted else Outcome()
        reasons = tuple(self.finish_reasons)
        usage = extract_usage(self.usage)
        rid, model = self.response_id or None, self.response_model
        if not reasons:
            return Outcome(
                HARD if exhausted else NONE, "connection" if exhausted else None, usage=usage,
                response_id=rid, response_model=model,
            )  # fmt: skip
        found = [FAILING_FINISH_REASONS[r] for r in reasons if r in FAILING_FINISH_REASONS]
        if self.saw_refusal and not self.saw_content:
            found.append("refusal")
        if not (self.saw_content or self.saw_tools or self.saw_refusal) and "stop" in reasons:
            found.append("empty_content")
        failure = worst_soft_reason(found)
        return Outcome(
            SOFT if failure else NONE, failure, finish_reasons=reasons, usage=usage,
            filters=tuple(self.filters), response_id=rid, response_model=model,
        )  # fmt: skip
