"""An answer judged against what its request declared (`_declared`), recorded on its call.

`declare` keeps on the call what the request declares (when judging is on for it); `judged`
turns a usable answer's outcome into the silent reason the judgement found, counting each tool
call judged in `genai_tool_calls_total{tool, outcome}` and putting the judgement on the CLIENT
span; `judged_error` does the same for an error the SDK's `parse()` helpers raised while
reading such an answer, so that `create` and `parse` end alike.

Span attributes. The GenAI semantic conventions name a tool (`gen_ai.tool.name`,
`gen_ai.tool.call.id`) on the span of its execution (`execute_tool`), one tool per span; the
CLIENT span of an inference may return many calls, and naming one there would read as that
tool being executed. So the CLIENT span carries failsight's own counts instead:
`failsight.tool_calls.count` (calls judged), `failsight.tool_calls.failed`, and
`failsight.tool_calls.failed_tool`, the name of the first failing call as the model wrote it
(masked and cut like other text taken from an answer), next to `failsight.failure_reason`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from failsight import _spans
from failsight._classify import classify_result
from failsight._declared import (
    NOT_JSON,
    OK,
    OUTPUT_MISMATCH,
    OUTPUT_NOT_JSON,
    STRICT_VIOLATION,
    TOOL_CALL_REASONS,
    Declared,
    Judgement,
    declared_of,
    judge,
)
from failsight._guard import report
from failsight._redact import mask_secrets
from failsight._taxonomy import SILENT, Outcome, field

if TYPE_CHECKING:
    from failsight._engine import Call

__all__ = ["declare", "explained_by_judgement", "judged", "judged_error"]

_KINDS: Final = frozenset({"chat", "responses"})
_STAGE: Final = "schema"
# What `parse()` raising on a declared answer looks like before it is judged.
_PARSE_ERRORS: Final = frozenset({"exception", "invalid_response"})
# Errors of `parse()` this module turned into a silent failure: the request's reason is the
# judgement's, not the exception's. Held weakly where the type allows; pydantic's
# ValidationError does not, so the newest few of those are held (the caller holds them anyway
# until its scope ends).
_judged_errors: weakref.WeakSet[BaseException] = weakref.WeakSet()
_judged_strong: dict[int, BaseException] = {}
_STRONG_LIMIT: Final = 16


def _remember(exc: BaseException) -> None:
    try:
        _judged_errors.add(exc)
    except TypeError:  # not weakly referenceable
        while len(_judged_strong) >= _STRONG_LIMIT:
            del _judged_strong[next(iter(_judged_strong))]
        _judged_strong[id(exc)] = exc


def enabled(call: Call) -> bool:
    """Judging is on for `call`: its scope's `judge_declared`, else the settings'."""
    account = call.account
    option = account.judge_declared if account is not None else None
    return call.state.settings.judge_declared if option is None else option


def declare(call: Call, request: Mapping[str, Any]) -> None:
    """Keep on `call` what `request` declares, when the call's kind is judged and judging is on.

    >>> declare  # doctest: +ELLIPSIS
    <function declare at ...>
    """
    kind = call.op.kind
    if kind in _KINDS and enabled(call):
        call.declared = declared_of(request, kind)


def _record(call: Call, judgement: Judgement) -> None:
    for error in judgement.errors:
        report(_STAGE, error)  # counted and logged; a hostile schema is no bug to raise
    if not judgement.calls:
        return
    account = call.account
    labels = account.labels() if account is not None else call.labels
    metric = call.state.metrics.tool_calls
    failed = 0
    for tool, outcome in judgement.calls:
        metric.child((*labels, tool, outcome)).inc()
        failed += outcome != OK
    if _spans.is_recording(call.span):
        values = call.values
        values[_spans.TOOL_CALLS] = len(judgement.calls)
        values[_spans.TOOL_CALLS_FAILED] = failed
        if judgement.failed_tool is not None:
            values[_spans.FAILED_TOOL] = mask_secrets(judgement.failed_tool)


def judged(call: Call, outcome: Outcome, answer: Any) -> Outcome:
    """`outcome` of `answer`, or its silent failure when it breaks what the request declared.

    Only a usable answer (no failure yet) of a call that declared something is judged.
    """
    declared: Declared | None = call.declared
    if declared is None or outcome.failed:
        return outcome
    judgement = judge(declared, answer, call.op.kind)
    _record(call, judgement)
    if judgement.reason is None:
        return outcome
    return outcome._replace(failure_class=SILENT, reason=judgement.reason)


def judged_error(call: Call, exc: BaseException, outcome: Outcome) -> Outcome:
    """The outcome of an error the SDK's `parse()` raised on a declared answer: the answer's
    judgement when it is found in the traceback (with its usage), else the reason the error
    itself gives (pydantic's ValidationError, a strict tool's JSONDecodeError); otherwise
    `outcome` unchanged. Only an error classified as a broken answer (`exception`,
    `invalid_response`) of a call that declared something is looked at."""
    declared = call.declared
    if declared is None or outcome.reason not in _PARSE_ERRORS:
        return outcome
    seen = None
    answer = answer_in_traceback(exc)
    if answer is not None:
        seen = judged(call, classify_result(answer, kind=call.op.kind), answer)
        if seen.failure_class == SILENT:
            _remember(exc)
            return seen
    # The SDK found what the judgement did not (a pydantic validator is stricter than the
    # schema; no jsonschema): its error names the reason, the answer gives the usage.
    reason = parse_error_reason(exc, declared)
    if reason is None:
        return outcome
    _remember(exc)
    return (seen or outcome)._replace(failure_class=SILENT, reason=reason, error_type=None)


def explained_by_judgement(exc: BaseException) -> bool:
    """`exc` is an error `judged_error` turned into the silent failure of its call."""
    return _judged_strong.get(id(exc)) is exc or exc in _judged_errors


# ---------------------------------------------------------------------- parse() errors


def parse_error_reason(exc: BaseException, declared: Declared) -> str | None:
    """The silent reason of an error the SDK's `parse()` helpers raise while reading an answer
    whose raw form is not at hand: pydantic's ValidationError (a type `json_invalid` means
    not JSON) for structured output or a pydantic function tool, JSONDecodeError for a strict
    tool's arguments. None for anything else.

    >>> d = declared_of({"response_format": {"type": "json_object"}}, "chat")
    >>> parse_error_reason(ValueError("boom"), d) is None
    True
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ValidationError" in names and callable(getattr(exc, "errors", None)):
        try:
            kinds = {field(error, "type") for error in exc.errors()[:16]}  # type: ignore[attr-defined]
        except Exception:
            return None
        not_json = kinds == {"json_invalid"}
        if declared.output is not None:
            return OUTPUT_NOT_JSON if not_json else OUTPUT_MISMATCH
        if declared.tools:
            return TOOL_CALL_REASONS[NOT_JSON if not_json else STRICT_VIOLATION]
    elif "JSONDecodeError" in names and declared.tools:
        return TOOL_CALL_REASONS[NOT_JSON]
    return None


def answer_in_traceback(exc: BaseException) -> Any:
    """The raw answer an SDK `parse()` helper was reading when it raised `exc`, found in the
    locals of the openai package's frames (`chat_completion`, `raw_completion`, `response`),
    at most 64 frames deep; None when there is none.

    >>> answer_in_traceback(ValueError()) is None
    True
    """
    tb = exc.__traceback__
    for _ in range(64):
        if tb is None:
            return None
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith("openai"):
            local = frame.f_locals
            for key in ("chat_completion", "raw_completion", "response"):
                value = local.get(key)
                if field(value, "choices") is not None or field(value, "output") is not None:
                    return value
        tb = tb.tb_next
    return None
