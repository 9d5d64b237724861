"""What a response's usage cost: a rate per (provider, model), looked up once, then arithmetic.

Rates come from the user's `configure(prices=...)` first, then from the `genai-prices` table
(the `prices` extra, maintained by Pydantic). A table price is turned into per-token rates
once per (provider, model) by pricing one token of each kind with `genai_prices` itself, so
the table decides how cached input and reasoning output are priced, and a per-request fee is
kept as such. Tiered prices (e.g. above 200k input tokens) hold only below their first tier:
a call past it is priced by `genai_prices` in full (rare, and exact). Rates are looked up
again after `_TTL` seconds, so a price that changes on a date, or a table updated at run
time (`genai_prices.UpdatePrices`), is picked up.

A model with no price records no cost; the caller is told once per (provider, model) (see
`PriceBook` for how that holds with bounded memory). A price is a finite number from 0 to
`MAX_PRICE` dollars per million tokens, and a call's cost a finite number from 0 to
`MAX_CALL_COST` dollars: a cost outside that range (a broken price, a table gone wrong, an
overflow) is refused and counted as a `price` telemetry error, never added to a counter that
would stay +Inf or NaN for good.
"""

from __future__ import annotations

import contextlib
import decimal
import math
import numbers
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from failsight._guard import report, swallow
from failsight._taxonomy import Usage

__all__ = ["MAX_CALL_COST", "MAX_PRICE", "PRICE_KEYS", "PriceBook", "Rate", "check_prices"]

# Keys of a user's price: US dollars per million tokens (as price pages give them).
PRICE_KEYS: Final = ("input", "output", "cached_input", "reasoning")
_TTL: Final = 3600.0
_CACHE_LIMIT: Final = 4096  # priced pairs kept
_UNKNOWN_LIMIT: Final = 4096  # unpriced pairs kept (so that a look-up is not re-run per call)
_REPORTED_LIMIT: Final = 16384  # unpriced pairs told about, each once
_PER_TOKEN: Final = 1e-6  # per million → per token
_clock = time.monotonic  # a module global, so that tests can move the clock
# A dollar a token: 25,000 times the dearest text model's price; above, a price is a typo.
MAX_PRICE: Final = 1e6
# A billion dollars for one call is a broken price, not a bill (and keeps the sum finite).
MAX_CALL_COST: Final = 1e9


class Rate(NamedTuple):
    """US dollars per token of each kind, a fee per request, and the input size it holds to."""

    input: float
    output: float
    cached_input: float
    reasoning: float
    per_request: float = 0.0
    max_input: int | None = None  # above it, `exact` prices the call (tiered prices)
    exact: Callable[[Usage], float | None] | None = None

    def cost(self, usage: Usage) -> float | None:
        tokens_in, tokens_out, reasoning, cached = usage
        limit = self.max_input
        if limit is not None and tokens_in is not None and tokens_in > limit:
            return self.exact(usage) if self.exact is not None else None
        cost = self.per_request
        if tokens_in is not None:
            cached_in = min(cached or 0, tokens_in)
            cost += (tokens_in - cached_in) * self.input + cached_in * self.cached_input
        if tokens_out is not None:
            thought = min(reasoning or 0, tokens_out)
            cost += (tokens_out - thought) * self.output + thought * self.reasoning
        return cost


def _user_rate(name: str, price: Any) -> Rate:
    """A user's price mapping as a Rate; raises naming the bad entry."""
    if not isinstance(price, Mapping):
        raise TypeError(
            f"failsight.configure: prices[{name!r}] must be a mapping of "
            f"{', '.join(PRICE_KEYS)} to US dollars per million tokens, got {type(price).__name__}"
        )
    unknown = sorted(str(key) for key in price if key not in PRICE_KEYS)
    if unknown:
        raise ValueError(
            f"failsight.configure: prices[{name!r}] has unknown keys {unknown}; "
            f"use {', '.join(PRICE_KEYS)} (US dollars per million tokens)"
        )
    values: dict[str, float] = {}
    for key in PRICE_KEYS:
        value = price.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
            raise TypeError(
                f"failsight.configure: prices[{name!r}][{key!r}] must be a number, got {value!r}"
            )
        try:
            number = float(value)
        except (OverflowError, ValueError):  # an int too large for a float, say
            number = math.inf
        if not (math.isfinite(number) and 0 <= number <= MAX_PRICE):
            raise ValueError(
                f"failsight.configure: prices[{name!r}][{key!r}] must be a finite number "
                f">= 0 and <= {MAX_PRICE:g} (US dollars per million tokens), got {value!r:.40}"
            )
        values[key] = number * _PER_TOKEN
    if "input" not in values and "output" not in values:
        raise ValueError(f"failsight.configure: prices[{name!r}] needs 'input' or 'output'")
    tokens_in = values.get("input", 0.0)
    tokens_out = values.get("output", 0.0)
    return Rate(
        tokens_in,
        tokens_out,
        values.get("cached_input", tokens_in),
        values.get("reasoning", tokens_out),
    )


def _alias(price: Any) -> bool:
    """A model name to price as (a deployment named after its own fashion, say)."""
    return isinstance(price, str) and bool(price)


def check_prices(prices: Any) -> Any:
    """`configure(prices=...)` checked: None, False, a callable, or a mapping of model (or
    (provider, model)) to a price mapping or to the name of a model to price as; returned
    as {key: Rate or name}."""
    if prices is None or prices is False:
        return prices
    if prices is True:
        return None
    if callable(prices) and not isinstance(prices, Mapping):
        return prices
    if not isinstance(prices, Mapping):
        raise TypeError(
            "failsight.configure: prices must be a mapping of model to prices, a callable "
            f"(provider, model) -> prices or None, None or False, got {type(prices).__name__}"
        )
    rates: dict[Any, Rate | str] = {}
    for key, price in prices.items():
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            rates[key] = price if _alias(price) else _user_rate("/".join(key), price)
        elif isinstance(key, str) and key:
            rates[key] = price if _alias(price) else _user_rate(key, price)
        else:
            raise TypeError(
                "failsight.configure: prices keys are model names or (provider, model) "
                f"pairs, got {key!r:.60}"
            )
    return rates


# The provider label (docs/reference.md#labels) → genai-prices provider ids.
_PROVIDER_IDS: Final = {"openai": "openai", "azure.ai.openai": "azure"}


class _Table:
    """genai-prices, imported once; None when the extra is not installed."""

    def __init__(self) -> None:
        import genai_prices
        from genai_prices import data_snapshot

        self._calc = genai_prices.calc_price
        self._usage = genai_prices.Usage
        self._snapshot = data_snapshot.get_snapshot

    def _where(self, provider: str) -> str | None:
        known = _PROVIDER_IDS.get(provider)
        if known is not None:
            return known
        if provider and provider not in ("unknown", "other") and "." in provider:
            try:
                return str(self._snapshot().find_provider(None, None, f"https://{provider}/").id)
            except LookupError:
                pass
        return None  # genai-prices guesses the provider from the model name

    def price(self, usage: Usage, model: str, where: str | None) -> float:
        tokens_in, tokens_out, reasoning, cached = usage
        counts = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cache_read_tokens": cached,
            "output_reasoning_tokens": reasoning,
        }
        made = self._usage(**{key: value for key, value in counts.items() if value})
        return float(self._calc(made, model, provider_id=where).total_price)

    def rate(self, provider: str, model: str) -> Rate | None:
        where = self._where(provider)
        try:
            _provider, info = self._snapshot().find_provider_model(model, None, where, None)
        except LookupError:
            return None
        price = self.price
        fee = price(Usage(None, None, None, None), model, where)
        tokens_in = price(Usage(1, None, None, None), model, where) - fee
        tokens_out = price(Usage(None, 1, None, None), model, where) - fee
        cached = price(Usage(1, None, None, 1), model, where) - fee
        reasoning = price(Usage(None, 1, 1, None), model, where) - fee
        tiers = [
            tier.start
            for value in vars(info.get_prices(_now())).values()
            for tier in getattr(value, "tiers", ())
        ]

        def exact(usage: Usage) -> float | None:
            return price(usage, model, where)

        # A difference of two prices can round below 0: a rate never does.
        return Rate(
            max(tokens_in, 0.0), max(tokens_out, 0.0), max(cached, 0.0), max(reasoning, 0.0),
            fee, max_input=min(tiers) if tiers else None, exact=exact,
        )  # fmt: skip


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def load_table() -> _Table | None:
    try:
        return _Table()
    except ImportError:
        return None


class PriceBook:
    """Rates per (provider, model): the user's, else the table's; `cost` is the hot path.

    What is remembered, all of it bounded:

    - priced pairs, with their rate, up to `_CACHE_LIMIT` (the oldest makes room);
    - unpriced pairs, up to `_UNKNOWN_LIMIT` (the oldest makes room), so that a model with no
      price costs two dictionary look-ups per call, not a table search (a third of a
      millisecond) each time it comes back;
    - the unpriced pairs already told about (`on_unknown`), as hashes, up to
      `_REPORTED_LIMIT`, never forgotten: each pair is told about at most once per process,
      however often it leaves and re-enters the caches. Past the limit, new unpriced pairs
      are not told about (the count has made its point: many models have no price).

    Every entry is looked up again after `_TTL` seconds.

    >>> book = PriceBook({"m": Rate(1e-6, 2e-6, 1e-6, 2e-6)}, None, lambda p, m: None)
    >>> book.cost("openai", "m", Usage(1000, 500, None, None))
    0.002
    """

    __slots__ = ("_cache", "_on_unknown", "_reported", "_reported_lock", "_table", "_unknown",
                 "_user")  # fmt: skip

    def __init__(
        self,
        user: Any,
        table: _Table | None,
        on_unknown: Callable[[str, str], None],
    ) -> None:
        self._user = user  # {key: Rate}, a callable, or None
        self._table = table
        self._on_unknown = on_unknown
        self._cache: dict[tuple[str, str], tuple[Rate, float]] = {}
        self._unknown: dict[tuple[str, str], float] = {}  # pair → when to look it up again
        self._reported: set[int] = set()  # hash((provider, model)) of pairs told about
        self._reported_lock = threading.Lock()  # two threads missing at once tell once

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """US dollars of `usage`, or None when the model has no price (or a refused one)."""
        key = (provider, model)
        found = self._cache.get(key)
        if found is None or found[1] < _clock():
            until = self._unknown.get(key)
            if until is not None and until >= _clock():
                return None
            found = self._look_up(key)
            if found is None:
                return None
        cost = found[0].cost(usage)
        if cost is not None and not 0.0 <= cost <= MAX_CALL_COST:  # NaN too
            report("price", ValueError(
                f"failsight: refused a cost of {cost!r} US dollars for one call of "
                f"{provider}/{model} (a price is wrong): not counted"
            ))  # fmt: skip
            return None
        return cost

    def _look_up(self, key: tuple[str, str]) -> tuple[Rate, float] | None:
        provider, model = key
        try:
            rate = self._rate(provider, model)
        except Exception as exc:  # a user's callable, or a table that changed its API
            swallow("price", exc)
            rate = None
        expires = _clock() + _TTL
        if rate is None:
            self._cache.pop(key, None)
            _remember(self._unknown, key, expires, _UNKNOWN_LIMIT)
            reported = self._reported
            mark = hash(key)
            with self._reported_lock:
                tell = mark not in reported and len(reported) < _REPORTED_LIMIT
                if tell:
                    reported.add(mark)
            if tell:
                self._on_unknown(provider, model)
            return None
        self._unknown.pop(key, None)
        entry = (rate, expires)
        _remember(self._cache, key, entry, _CACHE_LIMIT)
        return entry

    def _rate(self, provider: str, model: str) -> Rate | None:
        user = self._user
        given: Any = None
        if isinstance(user, dict):
            given = user.get((provider, model)) or user.get(model)
        elif user is not None:
            given = user(provider, model)
            if given is not None and not _alias(given):
                given = _user_rate(model, given)
        if isinstance(given, Rate):
            return given
        if _alias(given):
            model = given  # priced as that model, from the table
        if self._table is None or model in ("unknown", "other"):
            return None
        return self._table.rate(provider, model)


def _remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """`cache[key] = value`, the oldest entry making room when `cache` is full."""
    if key not in cache and len(cache) >= limit:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread
            del cache[next(iter(cache))]
    cache[key] = value
