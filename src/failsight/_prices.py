"""What a response's usage cost: a rate per (provider, model), looked up once, then arithmetic.

Rates come from the user's `configure(prices=...)` first, then from the `genai-prices` table
(the `prices` extra, maintained by Pydantic). A table price is turned into per-token rates
once per (provider, model) by pricing one token of each kind with `genai_prices` itself, so
the table decides how cached input and reasoning output are priced, and a per-request fee is
kept as such. Tiered prices (e.g. above 200k input tokens) hold only below their first tier:
a call past it is priced by `genai_prices` in full (rare, and exact). Rates are looked up
again after `_TTL` seconds, so a price that changes on a date, or a table updated at run
time (`genai_prices.UpdatePrices`), is picked up.

A model with no price records no cost; the caller is told once per (provider, model).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from failsight._guard import swallow
from failsight._taxonomy import Usage

__all__ = ["PRICE_KEYS", "PriceBook", "Rate", "check_prices"]

# Keys of a user's price: US dollars per million tokens (as price pages give them).
PRICE_KEYS: Final = ("input", "output", "cached_input", "reasoning")
_TTL: Final = 3600.0
_CACHE_LIMIT: Final = 4096
_PER_TOKEN: Final = 1e-6  # per million → per token


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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"failsight.configure: prices[{name!r}][{key!r}] must be a number, got {value!r}"
            )
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"failsight.configure: prices[{name!r}][{key!r}] must be a finite number "
                f">= 0, got {value!r}"
            )
        values[key] = float(value) * _PER_TOKEN
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

        return Rate(
            tokens_in, tokens_out, cached, reasoning, fee,
            max_input=min(tiers) if tiers else None, exact=exact,
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
    """Rates per (provider, model): the user's, else the table's; `cost` is the hot path."""

    __slots__ = ("_cache", "_on_unknown", "_table", "_user")

    def __init__(
        self,
        user: Any,
        table: _Table | None,
        on_unknown: Callable[[str, str], None],
    ) -> None:
        self._user = user  # {key: Rate}, a callable, or None
        self._table = table
        self._on_unknown = on_unknown
        self._cache: dict[tuple[str, str], tuple[Rate | None, float]] = {}

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """US dollars of `usage`, or None when the model has no price."""
        key = (provider, model)
        found = self._cache.get(key)
        if found is None or found[1] < time.monotonic():
            found = self._look_up(key)
        rate = found[0]
        return rate.cost(usage) if rate is not None else None

    def _look_up(self, key: tuple[str, str]) -> tuple[Rate | None, float]:
        provider, model = key
        try:
            rate = self._rate(provider, model)
        except Exception as exc:  # a user's callable, or a table that changed its API
            swallow("price", exc)
            rate = None
        cache = self._cache
        known = key in cache
        entry = (rate, time.monotonic() + _TTL)
        if not known and len(cache) >= _CACHE_LIMIT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread
                del cache[next(iter(cache))]  # the oldest pair goes: memory stays bounded
        cache[key] = entry
        if rate is None and not known:
            self._on_unknown(provider, model)
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
