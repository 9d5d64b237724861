"""Wrong arguments fail where they are written, with a message that says what to write instead."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import failsight
from failsight import RetryPolicy
from failsight.validators import json_output, min_words, non_empty, one_of, prepare

# ------------------------------------------------------------------ validate=


@pytest.mark.parametrize(
    ("validate", "message"),
    [
        (json_output, r"did you mean json_output\(\)\?"),
        ([json_output], r"did you mean json_output\(\)\?"),
        ([non_empty], r"did you mean non_empty\(\)\?"),
        ([min_words], r"did you mean min_words\(n\)\?"),
        ((one_of,), r"did you mean one_of\("),
        ([lambda: True], "exactly one positional argument"),
        ([lambda result, other: True], "exactly one positional argument"),
        ([non_empty(), lambda *, result: True], "exactly one positional argument"),
        ("json", "takes a validator or a list of validators, not a string"),
        (b"json", "takes a validator or a list of validators, not a string"),
        (["json"], "'json' is not a validator"),
        (3, "takes a validator or a list of validators"),
    ],
)
def test_bad_validators_fail_at_decoration_time(validate: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        prepare(validate)
    with pytest.raises(TypeError, match=message):
        failsight.traced_generation(validate=validate)(lambda: "x")


def _two(result: Any, strict: bool = False) -> bool:
    return bool(result)


class _CallableCheck:
    def __call__(self, result: Any) -> bool:
        return True


@pytest.mark.parametrize(
    "validate",
    [
        json_output(),
        [non_empty(), min_words(3), one_of("a", "b")],
        lambda result: True,
        [_two, _CallableCheck(), functools.partial(_two, strict=True)],
        [bool, len, str.strip],  # builtins, with or without a signature
        (check for check in [non_empty()]),
        None,
        (),
    ],
)
def test_good_validators_are_accepted(validate: Any) -> None:
    prepare(validate)
    failsight.traced_generation(validate=validate)(lambda: "x")


# ------------------------------------------------------------------ retry=


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"retry_on": "timeout"}, TypeError, r"not a string: retry_on=\{'timeout'\}"),
        ({"retry_on": 5}, TypeError, "set of reasons"),
        ({"retry_on": {"bad_request"}}, ValueError, "not retryable reasons; choose from"),
        ({"max_attempts": 10**9}, ValueError, r"max_attempts must be in 1\.\.100,"),
        ({"max_attempts": 0}, ValueError, r"max_attempts must be in 1\.\.100,"),
        ({"max_attempts": 2.0}, TypeError, r"max_attempts must be an int in 1\.\.100"),
        ({"deadline": float("inf")}, ValueError, r"deadline must be seconds in \(0, 86400\]"),
        ({"deadline": float("nan")}, ValueError, r"deadline must be seconds in \(0, 86400\]"),
        ({"deadline": 10**7}, ValueError, r"deadline must be seconds in \(0, 86400\]"),
        ({"deadline": 0}, ValueError, "deadline"),
        ({"sleep": 1}, TypeError, "sleep must be callable"),
    ],
)
def test_bad_retry_policies(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RetryPolicy(**options)


def test_retry_count_is_bounded_at_decoration_time() -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        failsight.traced_generation(retry=10**9)(lambda: "x")


def test_good_retry_policies() -> None:
    policy = RetryPolicy(max_attempts=100, deadline=86400, retry_on=["timeout", "connection"])  # type: ignore[arg-type]
    assert policy.retry_on == frozenset({"timeout", "connection"})
    assert RetryPolicy(deadline=None).deadline is None
