"""Validators for silent failures: HTTP 200 and output present, but wrong for the application.

A validator is any callable `(result) -> bool | None`; returning False or raising marks the
call `silent` with the validator's reason (its `__name__`, sanitised and bounded).

>>> from failsight.validators import one_of
>>> one_of("positive", "negative", "neutral")("Positive")
True
"""

from __future__ import annotations

import inspect
import json
import reprlib
from collections.abc import Callable, Iterable
from typing import Any, Final

from failsight._guard import raising, report
from failsight._redact import sanitize_reason

__all__ = ["Validator", "json_output", "min_words", "non_empty", "one_of", "output_text"]

Validator = Callable[[Any], "bool | None"]


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def output_text(result: Any) -> str | None:
    """The text a generation returned: a str, or the first choice/output of an API response.

    None for structured results (dicts and lists that are not API responses).
    """
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    if isinstance(result, (bytes, bytearray)):
        return bytes(result).decode("utf-8", errors="replace")
    try:
        choices = _field(result, "choices")
        if isinstance(choices, (list, tuple)):
            if not choices:
                return ""
            message = _field(choices[0], "message")
            text = _field(message, "content") if message is not None else _field(choices[0], "text")
            return text if isinstance(text, str) else ""
        text = _field(result, "output_text")
    except Exception:
        return None
    return text if isinstance(text, str) else None


class _Check:
    """A named built-in validator: the name is its failure reason."""

    __slots__ = ("__name__", "_check")

    def __init__(self, reason: str, check: Callable[[Any], bool]) -> None:
        self.__name__ = reason
        self._check = check

    def __call__(self, result: Any) -> bool:
        return self._check(result)

    def __repr__(self) -> str:
        return f"<failsight validator {self.__name__}>"


def non_empty() -> Validator:
    """Fails (`empty_output`) on empty or whitespace-only output."""

    def check(result: Any) -> bool:
        text = output_text(result)
        if text is None:
            return len(result) > 0 if hasattr(result, "__len__") else True
        return bool(text.strip())

    return _Check("empty_output", check)


def json_output(*, strip_fences: bool = False) -> Validator:
    """Fails (`invalid_json`) when the output is not JSON; `strip_fences` allows ```json fences."""

    def check(result: Any) -> bool:
        text = output_text(result)
        if text is None:
            return True  # already structured
        text = text.strip()
        if strip_fences and text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            json.loads(text)
        except (ValueError, RecursionError):  # nested past what Python can read
            return False
        return True

    return _Check("invalid_json", check)


def one_of(*labels: str, case_sensitive: bool = False) -> Validator:
    """Fails (`unexpected_label`) when the stripped output is not one of `labels`."""
    if len(labels) == 1 and isinstance(labels[0], (list, tuple, set, frozenset)):
        raise TypeError("one_of() takes the labels as arguments: one_of(*labels)")
    if not labels or not all(isinstance(label, str) for label in labels):
        raise TypeError("one_of() takes one or more str labels")
    if not isinstance(case_sensitive, bool):
        raise TypeError(f"one_of(case_sensitive=...) takes True or False, got {case_sensitive!r}")
    allowed = frozenset(labels if case_sensitive else (label.lower() for label in labels))

    def check(result: Any) -> bool:
        text = (output_text(result) or "").strip()
        return (text if case_sensitive else text.lower()) in allowed

    return _Check("unexpected_label", check)


def min_words(n: int) -> Validator:
    """Fails (`too_short`) when the output has fewer than `n` words."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"min_words(n) takes an int >= 1, got {n!r}")

    def check(result: Any) -> bool:
        return len((output_text(result) or "").split()) >= n

    return _Check("too_short", check)


# The factories, by the call a user most likely meant when passing one uncalled.
_FACTORY_CALLS: dict[Any, str] = {
    json_output: "json_output()",
    non_empty: "non_empty()",
    one_of: 'one_of("label", ...)',
    min_words: "min_words(n)",
}


def _check_validator(item: Any) -> None:
    """TypeError unless `item` can be called with one positional argument, the result."""
    try:
        meant = _FACTORY_CALLS.get(item)
    except TypeError:  # unhashable
        meant = None
    if meant is not None:
        raise TypeError(
            f"validate=: {item.__name__} is the factory, not a validator; did you mean {meant}?"
        )
    if not callable(item):
        raise TypeError(
            f"validate=: {reprlib.repr(item)} is not a validator (a validator is a callable "
            "(result) -> bool | None, e.g. json_output())"
        )
    try:
        signature = inspect.signature(item)
    except (TypeError, ValueError):  # some builtins have none: trust them
        return
    try:
        signature.bind(None)
    except TypeError:
        name = getattr(item, "__qualname__", None) or type(item).__name__
        raise TypeError(
            f"validate=: {name}{signature} cannot be a validator: a validator takes "
            "exactly one positional argument, the result (e.g. lambda result: bool(result))"
        ) from None


def prepare(validate: Iterable[Any] | Validator | None) -> tuple[tuple[str, Validator], ...]:
    """(reason, validator) pairs, checked at decoration time.

    >>> [reason for reason, _ in prepare([json_output(), non_empty()])]
    ['invalid_json', 'empty_output']
    """
    if validate is None:
        return ()
    if isinstance(validate, (str, bytes, bytearray)):
        raise TypeError(
            "validate= takes a validator or a list of validators, not a string "
            f"({reprlib.repr(validate)}); e.g. validate=json_output() or "
            "validate=[non_empty(), min_words(5)]"
        )
    if callable(validate):
        validate = (validate,)
    try:
        items = tuple(validate)
    except TypeError:
        raise TypeError(
            f"validate= takes a validator or a list of validators, got {reprlib.repr(validate)}"
        ) from None
    prepared = []
    for item in items:
        _check_validator(item)
        name = getattr(item, "__name__", None) or type(item).__name__
        prepared.append((sanitize_reason(str(name)), item))
    return tuple(prepared)


def run(validators: tuple[tuple[str, Validator], ...], result: Any) -> tuple[str, str] | None:
    """("silent", reason) of the first validator `result` fails, or None when all pass.

    A validator that raises fails the call too, and is counted as a telemetry error.

    >>> run(prepare([min_words(3)]), "three words here")
    >>> run(prepare([min_words(3)]), "short")
    ('silent', 'too_short')
    """
    for reason, validator in validators:
        try:
            ok = validator(result)
        except Exception as exc:
            report("validator", exc)
            if raising():
                raise
            return "silent", reason
        if ok is False:
            return "silent", reason
    return None


_MAX_COLLECTED: Final = 1 << 20  # characters of generator output kept for validators


class Collected:
    """What a decorated generator yielded, kept (bounded) for its validators.

    >>> collected = Collected()
    >>> collected.add("Hello, "); collected.add("world")
    >>> collected.joined()
    'Hello, world'
    """

    __slots__ = ("items", "size")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.size = 0

    def add(self, item: Any) -> None:
        if self.size < _MAX_COLLECTED:
            self.items.append(item)
            self.size += len(item) if isinstance(item, (str, bytes)) else 1

    def joined(self) -> Any:
        """Text chunks joined into one text (bytes into bytes); other items as a list."""
        items = self.items
        if all(isinstance(item, str) for item in items):
            return "".join(items)
        if all(isinstance(item, (bytes, bytearray)) for item in items):
            return b"".join(items)
        return items
