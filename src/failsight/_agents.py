"""How an agent framework ends a failed run, as a bounded reason instead of `exception`.

openai-agents raises `MaxTurnsExceeded` when the loop runs out of turns, `ModelBehaviorError`
when the model answers what the framework cannot use, and a tripwire exception when an input or
output guardrail fires. Inside a traced scope these end the logical request: they are recognised
by class name anywhere in the MRO (vocabulary.json `exceptions.python.agents`), so the framework
is never imported, and a subclass an application derives is recognised too.
"""

from __future__ import annotations

from failsight._classify import classify_exception
from failsight._taxonomy import (
    AGENT_EXCEPTIONS,
    HARD,
    HARD_REASONS,
    SILENT,
    SOFT,
    SOFT_REASONS,
    Outcome,
)

__all__ = ["agent_outcome", "classify_scope_exception"]


def agent_outcome(exc: BaseException) -> Outcome | None:
    """The outcome of an agent framework's end-of-run exception; None for any other exception.

    The most derived class named in the table decides.

    >>> class MaxTurnsExceeded(Exception): ...
    >>> agent_outcome(MaxTurnsExceeded("10 turns")).reason
    'agent_max_turns'
    """
    try:
        for cls in type(exc).__mro__:
            reason = AGENT_EXCEPTIONS.get(cls.__name__)
            if reason is not None:
                return Outcome(_class_of(reason), reason, error_type=_qualified_name(exc))
    except Exception:  # a hostile class (a __name__ that raises) is an ordinary exception
        return None
    return None


def classify_scope_exception(exc: BaseException) -> Outcome:
    """`classify_exception`, except that an agent framework's end of a run has its own reason.

    >>> class InputGuardrailTripwireTriggered(Exception): ...
    >>> classify_scope_exception(InputGuardrailTripwireTriggered()).failure_class
    'soft'
    >>> classify_scope_exception(TimeoutError()).reason
    'timeout'
    """
    found = agent_outcome(exc)
    return classify_exception(exc) if found is None else found


def _class_of(reason: str) -> str:
    if reason in HARD_REASONS:
        return HARD
    return SOFT if reason in SOFT_REASONS else SILENT


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    return cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"
