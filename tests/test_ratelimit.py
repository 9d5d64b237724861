"""Rate-limit headers read as providers send them (failsight._ratelimit, pure): tables of values,
every header container the patches meet, precedence between spellings, malformed values."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests.structures

from conftest import sdk_httpx
from failsight._ratelimit import Figures, parse_count, parse_duration, read_headers

NOW = 1_704_067_200.0  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30", 30.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("7ns", 7e-9),
        (" 2s ", 2.0),
        ("2024-01-01T00:01:00Z", 60.0),  # Anthropic's reset: RFC 3339
        ("2024-01-01T00:00:30.500000+00:00", 30.5),
        ("2024-01-01T00:00:10", 10.0),  # no offset: UTC
        ("2023-12-31T23:59:00Z", 0.0),  # already past
        ("Mon, 01 Jan 2024 00:00:45 GMT", 45.0),  # an HTTP date
    ],
)
def test_durations_as_providers_send_them(text: str, seconds: float) -> None:
    assert parse_duration(text, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "soon", "-1", "-5s", "1e3", "inf", "nan", "5 minutes", "1x", "s", "2024-13-45T00:00Z",
     "1" * 65],
)  # fmt: skip
def test_malformed_durations(text: str) -> None:
    assert parse_duration(text, now=NOW) is None


@pytest.mark.parametrize(
    ("text", "count"),
    [("0", 0), ("1200", 1200), (" 7 ", 7), ("-1", None), ("1.5", None), ("lots", None), ("", None),
     ("1e3", None), ("inf", None)],
)  # fmt: skip
def test_counts(text: str, count: int | None) -> None:
    assert parse_count(text) == count


OPENAI = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-limit-tokens": "160000",
    "X-RateLimit-Remaining-Tokens": "159980",  # any case
    "x-ratelimit-reset-tokens": "6m0s",
}
EXPECTED = (
    Figures("requests", 5000, 0, 0.012),
    Figures("tokens", 160000, 159980, 360.0),
)


def _containers(headers: dict[str, str]) -> list[Any]:
    """The header objects the patches hand over: httpx, httpx2, requests, a plain dict."""
    with_extra = {"content-type": "application/json", "x-request-id": "req_1", **headers}
    return [
        httpx.Headers(with_extra),
        sdk_httpx().Headers(with_extra),
        requests.structures.CaseInsensitiveDict(with_extra),
        with_extra,
    ]


@pytest.mark.parametrize("kind", ["httpx", "sdk_httpx", "requests", "dict"])
def test_every_container_gives_the_same_reading(kind: str) -> None:
    index = ["httpx", "sdk_httpx", "requests", "dict"].index(kind)
    reading = read_headers(_containers(OPENAI)[index], now=NOW)
    assert reading is not None
    assert reading.figures == EXPECTED  # the 0 is a value, not dropped
    assert reading.retry_after is None and reading.malformed == ()


@pytest.mark.parametrize("index", range(4))
def test_no_rate_limit_header_reads_nothing(index: int) -> None:
    assert read_headers(_containers({})[index]) is None


def test_not_headers_reads_nothing() -> None:
    assert read_headers(None) is None
    assert read_headers(object()) is None


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # milliseconds first
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),  # the readable one
        ({"retry-after": "Mon, 01 Jan 2024 00:00:20 GMT"}, 20.0),
        ({"retry-after": "0"}, 0.0),
    ],
)
def test_retry_after(headers: dict[str, str], wait: float) -> None:
    reading = read_headers(headers, now=NOW)
    assert reading is not None and reading.figures == ()
    assert reading.retry_after == pytest.approx(wait)


ANTHROPIC_RESET = "2024-01-01T00:01:00Z"


def _anthropic(kind: str, limit: int, remaining: int) -> dict[str, str]:
    prefix = f"anthropic-ratelimit-{kind}"
    return {f"{prefix}-limit": str(limit), f"{prefix}-remaining": str(remaining),
            f"{prefix}-reset": ANTHROPIC_RESET}  # fmt: skip


def test_anthropic_spellings_map_onto_requests_and_tokens() -> None:
    headers = {
        **_anthropic("requests", 50, 49), **_anthropic("tokens", 90000, 1000),
        **_anthropic("input-tokens", 80000, 500), **_anthropic("output-tokens", 10000, 500),
    }  # fmt: skip
    reading = read_headers(headers, now=NOW)
    assert reading is not None
    # the combined tokens headers (Anthropic's most restrictive limit) win over input/output
    assert reading.figures == (
        Figures("requests", 50, 49, 60.0),
        Figures("tokens", 90000, 1000, 60.0),
    )


def test_anthropic_input_and_output_only_take_the_least_left() -> None:
    headers = {**_anthropic("input-tokens", 40000, 39000), **_anthropic("output-tokens", 8000, 800)}
    reading = read_headers(headers, now=NOW)
    assert reading is not None
    assert reading.figures == (Figures("tokens", 8000, 800, 60.0),)  # 10% left beats 97.5%


def test_openai_spellings_win_over_anthropic() -> None:
    headers = {**_anthropic("tokens", 90000, 10), "x-ratelimit-remaining-tokens": "70"}
    reading = read_headers(headers, now=NOW)
    assert reading is not None and reading.figures == (Figures("tokens", None, 70, None),)


def test_malformed_values_are_named_and_left_out() -> None:
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "lots",
        "x-ratelimit-reset-requests": "soon",
        "x-ratelimit-remaining-tokens": "-5",
        "retry-after": "later",
    }
    reading = read_headers(headers, now=NOW)
    assert reading is not None
    assert reading.figures == (Figures("requests", 60, None, None),)
    assert sorted(reading.malformed) == [
        "retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
    ]  # fmt: skip
    assert reading.retry_after is None


def test_only_malformed_values_give_no_figures() -> None:
    reading = read_headers({"x-ratelimit-remaining-tokens": "n/a"})
    assert reading is not None and reading.figures == ()
    assert reading.malformed == ("x-ratelimit-remaining-tokens",)
