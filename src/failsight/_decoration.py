"""What `@traced_generation` checks when it decorates: its options and what it is given.

Misuse fails here, where it is written, with the fix in the message; nothing is checked per
call. Imports only the operation table and the vocabulary.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping
from typing import Any, Final

from failsight._operations import OPERATIONS
from failsight._vocabulary import VOCABULARY

__all__ = ["KNOWN_OPERATIONS", "check_decorated", "check_options"]

# The `operation` labels the patches record; a scope may name another (the contract allows
# any), but a near miss of one of these would split its series from the patches'.
KNOWN_OPERATIONS: Final = tuple(sorted({op.name for op in OPERATIONS.values()}))
# API and SDK names that are not the label the patches give the same calls.
_ALIASES: Final[Mapping[str, str]] = VOCABULARY["operation_aliases"]
_OPERATION_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_TYPO_CUTOFF: Final = 0.85  # "chatt", "embedding", "text_completions"; not "image_edit"


def check_operation(operation: str) -> None:
    """Refuse an `operation=` that is not snake_case, or that misspells a known one.

    >>> check_operation("execute_tool")  # free-form, in the labels' own spelling
    >>> check_operation("chatt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: traced_generation(operation='chatt'): did you mean 'chat'? ...
    """
    if operation in KNOWN_OPERATIONS:
        return
    known = ", ".join(KNOWN_OPERATIONS)
    if not _OPERATION_RE.match(operation):
        raise ValueError(
            f"traced_generation(operation={operation!r:.80}) must be snake_case (a-z, 0-9 and "
            f"_, at most 64 characters), as the operations the patches record: {known}"
        )
    meant = _ALIASES.get(operation)
    if meant is None:
        close = difflib.get_close_matches(operation, KNOWN_OPERATIONS, n=1, cutoff=_TYPO_CUTOFF)
        meant = close[0] if close else None
    if meant is not None:
        raise ValueError(
            f"traced_generation(operation={operation!r}): did you mean {meant!r}? The "
            f"patches record {known}; a scope's operation= joins their series only when "
            "spelled the same (another snake_case name is used as given)"
        )


def check_options(name: Any, operation: Any, model: Any, judge_declared: Any = None) -> None:
    """`name`, `operation` and `model` are None or non-empty strings (`operation` checked);
    `judge_declared` is None or a bool."""
    for option, value in (("name", name), ("operation", operation), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"traced_generation({option}=...) takes a non-empty str, got {value!r}")
    if judge_declared is not None and not isinstance(judge_declared, bool):
        raise TypeError(
            "traced_generation(judge_declared=...) takes True, False or None (as "
            f"configure(judge_declared=...) says), got {judge_declared!r:.80}"
        )
    if operation is not None:
        check_operation(operation)


def check_decorated(fn: Any) -> None:
    """A function (sync, async, generator, async generator) or a callable object; not a
    class, a method wrapper in the wrong order, or an option given by position."""
    if isinstance(fn, str):
        raise TypeError(
            f"traced_generation takes its options by keyword: "
            f"@traced_generation(name={fn!r:.80}), not @traced_generation({fn!r:.80})"
        )
    if isinstance(fn, (staticmethod, classmethod)):
        kind = type(fn).__name__
        raise TypeError(
            f"traced_generation decorates the function inside @{kind}: put @{kind} above "
            f"@traced_generation (got {kind} of {getattr(fn.__func__, '__qualname__', '?')})"
        )
    if inspect.isclass(fn):
        # Wrapped, a class would turn into a function: no isinstance, no subclassing.
        raise TypeError(
            f"traced_generation decorates functions, not classes: decorate the method of "
            f"{fn.__qualname__} that calls the API"
        )
    if not callable(fn):
        raise TypeError(f"traced_generation decorates functions, got {fn!r:.80}")
