"""The price book: a model with no price is told about once and stays cheap, memory stays
bounded, and a price that would make the cost counters +Inf or NaN is refused."""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest

import failsight
from conftest import Telemetry
from failsight import _prices
from failsight._prices import PriceBook, Rate, check_prices
from failsight._taxonomy import Usage
from failsight.testing import USAGE, FaultServer

MESSAGES = [{"role": "user", "content": "hi"}]
PRICE = {"input": 2.0, "output": 8.0}
USE = Usage(10, 10, None, None)


class Counting:
    """A user's price function that prices only `priced`, counting its look-ups."""

    def __init__(self, priced: frozenset[str] = frozenset()) -> None:
        self.priced = priced
        self.look_ups = 0

    def __call__(self, provider: str, model: str) -> Any:
        self.look_ups += 1
        return PRICE if model in self.priced else None


def book_with(prices: Any) -> tuple[PriceBook, list[tuple[str, str]]]:
    told: list[tuple[str, str]] = []
    return PriceBook(prices, None, lambda p, m: told.append((p, m))), told


# ---------------------------------------------------------------------- unknown models


def test_more_unknown_models_than_the_cache_holds_are_each_told_about_once() -> None:
    prices = Counting()
    book, told = book_with(prices)
    n = _prices._CACHE_LIMIT + _prices._UNKNOWN_LIMIT // 2  # more than either cache holds
    for _ in range(3):  # models rotate: each leaves the caches and comes back
        for i in range(n):
            assert book.cost("p", f"m{i}", USE) is None
    assert len(told) == n  # once each, on the first pass only
    assert len(set(told)) == n
    assert len(book._unknown) <= _prices._UNKNOWN_LIMIT
    assert len(book._cache) <= _prices._CACHE_LIMIT


def test_an_unknown_model_is_looked_up_once_per_ttl_not_per_call() -> None:
    prices = Counting()
    book, told = book_with(prices)
    for _ in range(1000):
        book.cost("p", "no-price", USE)
    assert prices.look_ups == 1 and told == [("p", "no-price")]


def test_the_most_recent_unknown_models_stay_cheap_while_others_rotate() -> None:
    prices = Counting()
    book, _ = book_with(prices)
    n = _prices._UNKNOWN_LIMIT + 1000
    for i in range(n):
        book.cost("p", f"m{i}", USE)
    before = prices.look_ups
    for i in range(n - _prices._UNKNOWN_LIMIT, n):  # the last ones seen: still remembered
        book.cost("p", f"m{i}", USE)
    assert prices.look_ups == before


def test_telling_stops_at_its_limit_and_never_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prices, "_REPORTED_LIMIT", 100)
    book, told = book_with(Counting())
    for _ in range(2):
        for i in range(250):
            book.cost("p", f"m{i}", USE)
    assert len(told) == 100 == len(set(told))
    assert len(book._reported) == 100  # memory bounded: hashes, at most the limit


def test_a_model_that_loses_its_price_is_told_about_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(_prices, "_clock", lambda: clock[0])
    prices = Counting(frozenset({"m"}))
    book, told = book_with(prices)
    assert book.cost("p", "m", USE) is not None
    prices.priced = frozenset()  # e.g. a table updated at run time
    for hour in range(1, 4):  # looked up again after each TTL
        clock[0] = hour * (_prices._TTL + 1)
        assert book.cost("p", "m", USE) is None
    assert told == [("p", "m")]
    prices.priced = frozenset({"m"})  # priced again: picked up at the next look-up
    clock[0] = 5 * (_prices._TTL + 1)
    assert book.cost("p", "m", USE) == pytest.approx(10 * 2e-6 + 10 * 8e-6)
    assert "m" not in {model for _, model in book._unknown}


def test_unknown_models_through_the_sdk_are_counted_once(
    telemetry: Telemetry, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: rotating models past the caches' size, over a socket."""
    monkeypatch.setattr(_prices, "_CACHE_LIMIT", 4)
    monkeypatch.setattr(_prices, "_UNKNOWN_LIMIT", 4)
    failsight.configure(registry=telemetry.registry, prices=Counting())
    failsight.instrument_openai()
    try:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        for _ in range(2):
            for i in range(10):
                sdk.chat.completions.create(model=f"private-{i}@ok", messages=MESSAGES)
    finally:
        failsight.uninstrument_openai()
    assert telemetry.value("genai_telemetry_errors_total", stage="price_unknown") == 10
    assert telemetry.value("genai_requests_total") == 20


# ---------------------------------------------------------------------- refused prices


@pytest.mark.parametrize(
    "value",
    [1e308, math.inf, -math.inf, math.nan, -1.0, pytest.param(10**400, id="int_past_float"), 2e6],
)
def test_a_price_out_of_range_fails_at_configuration(telemetry: Telemetry, value: Any) -> None:
    with pytest.raises(ValueError, match=r"prices\['m'\]\['input'\] must be a finite number"):
        failsight.configure(registry=telemetry.registry, prices={"m": {"input": value}})
    with pytest.raises(ValueError, match="US dollars per million tokens"):
        check_prices({("p", "m"): {"output": value}})


def test_prices_of_other_number_types_are_accepted() -> None:
    from decimal import Decimal
    from fractions import Fraction

    rates = check_prices({"m": {"input": Decimal("2.5"), "output": Fraction(1, 2)}})
    assert rates["m"].input == pytest.approx(2.5e-6)
    assert rates["m"].output == pytest.approx(0.5e-6)


@pytest.mark.parametrize("cost", [math.inf, math.nan, -1.0, 1e10])
def test_a_cost_out_of_range_is_refused_and_counted(
    telemetry: Telemetry, server: FaultServer, cost: float
) -> None:
    """A price function or a table that goes wrong at run time: the call's cost is refused,
    counted as a `price` error, and the cost counters stay finite."""
    failsight.configure(registry=telemetry.registry, prices={"good@content_filter": PRICE})
    book = failsight._config.get_state().prices
    assert book is not None
    # What no configuration check lets in (a table's rate, gone wrong), put in directly.
    book._user = {
        "bad@content_filter": Rate(0.0, 0.0, 0.0, 0.0, per_request=cost),
        "good@content_filter": Rate(1e-6, 1e-6, 1e-6, 1e-6),
    }
    failsight.instrument_openai()
    try:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        for model in ("bad@content_filter", "good@content_filter", "bad@content_filter"):
            sdk.chat.completions.create(model=model, messages=MESSAGES)
    finally:
        failsight.uninstrument_openai()
    assert telemetry.value("genai_telemetry_errors_total", stage="price") == 2
    good = (USAGE["prompt_tokens"] + USAGE["completion_tokens"]) * 1e-6
    total = telemetry.value("genai_cost_usd_total")
    assert math.isfinite(total) and total == pytest.approx(good)
    wasted = telemetry.value("genai_wasted_cost_usd_total")
    assert math.isfinite(wasted) and wasted == pytest.approx(good)
    # The usage itself is still counted: only the cost is refused.
    assert telemetry.value("genai_tokens_total", model="bad@content_filter") > 0


def test_a_huge_user_price_per_call_cannot_make_the_counter_infinite(
    telemetry: Telemetry, swallow_internal_errors: None
) -> None:
    """The example of the bug: 1e308 $/1M tokens. Refused at configuration; and a price
    function answering it is refused at look-up (a `price` error), never priced."""
    with pytest.raises(ValueError):
        check_prices({"m": {"input": 1e308}})
    failsight.configure(registry=telemetry.registry, prices=lambda p, m: {"input": 1e308})
    book = failsight._config.get_state().prices
    assert book is not None
    for _ in range(3):
        assert book.cost("p", "m", Usage(10**6, 0, None, None)) is None
    assert telemetry.value("genai_telemetry_errors_total", stage="price") == 1  # once per TTL
