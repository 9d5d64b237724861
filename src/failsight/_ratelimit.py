"""Rate-limit headers of an API answer: the budget left per resource, its size, when it resets,
and the wait a `Retry-After` asks for (docs/reference.md#rate-limit-headroom).

Pure: a headers object in (httpx/httpx2 `Headers`, a `requests` header dict, or any mapping),
a `Reading` out, nothing recorded. The header spellings and their precedence are the
vocabulary's (`ratelimit`). An answer without rate-limit headers costs one C-level pass over
its header names; a value that does not parse is left out and named in `Reading.malformed`.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Final, NamedTuple

from failsight._vocabulary import VOCABULARY

__all__ = ["Figures", "Reading", "carries", "parse_count", "parse_duration", "read_headers"]

_SPEC: Final = VOCABULARY["ratelimit"]
# resource -> tiers -> header sets (limit, remaining, reset header names)
_TIERS: Final[tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...]] = tuple(
    (resource, tuple((s["limit"], s["remaining"], s["reset"]) for s in tier))
    for resource, tiers in _SPEC["resources"].items()
    for tier in tiers
)
_RETRY_AFTER: Final[tuple[tuple[str, float], ...]] = tuple(_SPEC["retry_after"].items())
_NAMES: Final = frozenset(
    [name for _, sets in _TIERS for fields in sets for name in fields]
    + [name for name, _ in _RETRY_AFTER]
)
_BYTE_NAMES: Final = {name.encode("ascii"): name for name in _NAMES}
_BYTE_KEYS: Final = frozenset(_BYTE_NAMES)
_LOWER: Final = itemgetter(1)  # the lower-cased name in httpx's (raw, lower, value) triples

# Go durations as OpenAI sends them (`6m0s`, `1.5s`, `20ms`, `1h2m3.5s`).
_DURATION: Final = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}  # fmt: skip
_NUMBER: Final = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_MAX_VALUE: Final = 64  # characters of a value worth reading
_CACHED: Final = 256  # durations remembered (not dates: they depend on the time now)
_durations: dict[str, float] = {}


class Figures(NamedTuple):
    """One resource's figures as an answer reported them; None where not (or not readable)."""

    resource: str
    limit: int | None
    remaining: int | None
    reset: float | None  # seconds from the answer until the budget is full again


class Reading(NamedTuple):
    """What an answer's rate-limit headers say."""

    figures: tuple[Figures, ...]  # one per resource the answer reported
    retry_after: float | None  # seconds the server asked to wait, when it asked
    malformed: tuple[str, ...]  # names of the headers whose value did not parse


def parse_count(text: str) -> int | None:
    """A non-negative integer header value; None when it is not one.

    >>> parse_count("0"), parse_count("1200"), parse_count("-1"), parse_count("12k")
    (0, 1200, None, None)
    """
    try:
        count = int(text)  # one call: this runs on every answer that has the headers
    except ValueError:
        return None
    return count if count >= 0 else None


def parse_duration(text: str, now: float | None = None) -> float | None:
    """Seconds from `now` (default: the time now) that a header value names; None if malformed.

    Plain seconds (`30`, `1.5`), Go durations (`6m0s`, `20ms`, `1h2m3.5s`), an HTTP date, or
    an RFC 3339 timestamp (Anthropic's reset); a moment already past is 0.

    >>> parse_duration("6m0s"), parse_duration("20ms"), parse_duration("1h2m3.5s")
    (360.0, 0.02, 3723.5)
    >>> parse_duration("2024-01-01T00:01:00Z", now=1704067200.0)
    60.0
    """
    known = _durations.get(text)
    if known is not None:
        return known
    text = text.strip()
    if not text or len(text) > _MAX_VALUE:
        return None
    if _NUMBER.fullmatch(text) or _DURATION.fullmatch(text):
        seconds = float(text) if text[-1].isdigit() or text[-1] == "." else (
            sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        )  # fmt: skip
        if len(_durations) >= _CACHED:
            _durations.clear()
        _durations[text] = seconds  # providers repeat a handful of spellings
        return seconds
    moment = _timestamp(text)
    if moment is None:
        return None
    return max(0.0, moment - (time.time() if now is None else now))


def _timestamp(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp or an HTTP date; None if neither."""
    if text[:4].isdigit():
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    try:
        parsed = email.utils.parsedate_tz(text)
        return float(email.utils.mktime_tz(parsed)) if parsed is not None else None
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def carries(headers: Any) -> bool:
    """Whether `headers` holds a rate-limit header (one C-level pass over httpx's names).

    >>> carries({"x-ratelimit-remaining-tokens": "0"}), carries({"content-type": "json"})
    (True, False)
    """
    triples = getattr(headers, "_list", None)
    if type(triples) is list:
        return not _BYTE_KEYS.isdisjoint(map(_LOWER, triples))
    store = getattr(headers, "_store", None)
    if type(store) is dict:
        return not _NAMES.isdisjoint(store)
    if not isinstance(headers, Mapping):
        return False
    return any(str(k).lower() in _NAMES for k in headers)


def _present(headers: Any) -> dict[str, str] | None:
    """The rate-limit headers of `headers` (lower-cased name -> value), None when it has none."""
    triples = getattr(headers, "_list", None)  # httpx, httpx2: (raw, lower, value) bytes
    if type(triples) is list:
        if _BYTE_KEYS.isdisjoint(map(_LOWER, triples)):
            return None
        return {
            _BYTE_NAMES[lower]: value.decode("latin-1")
            for _, lower, value in triples
            if lower in _BYTE_KEYS
        }
    store = getattr(headers, "_store", None)  # requests: lower-cased name -> (name, value)
    if type(store) is dict:
        if _NAMES.isdisjoint(store):
            return None
        return {name: store[name][1] for name in _NAMES if name in store}
    if not isinstance(headers, Mapping):
        return None
    found = {str(k).lower(): v for k, v in headers.items() if str(k).lower() in _NAMES}
    return found or None


def read_headers(headers: Any, now: float | None = None) -> Reading | None:
    """The rate-limit figures of an answer's headers; None when it carries none.

    Per resource, the first tier of header sets the answer carries gives its figures; within
    a tier (Anthropic's input and output tokens) the set with the least budget left wins.

    >>> reading = read_headers({"x-ratelimit-remaining-tokens": "0", "retry-after": "2"})
    >>> reading.figures, reading.retry_after
    ((Figures(resource='tokens', limit=None, remaining=0, reset=None),), 2.0)
    """
    found = _present(headers)
    if found is None:
        return None
    malformed: list[str] = []
    figures: list[Figures] = []
    done: set[str] = set()
    for resource, sets in _TIERS:
        if resource in done:
            continue
        best: Figures | None = None
        for limit_name, remaining_name, reset_name in sets:
            if limit_name not in found and remaining_name not in found and reset_name not in found:
                continue
            limit = _field(found, limit_name, malformed)
            remaining = _field(found, remaining_name, malformed)
            reset = _field(found, reset_name, malformed, now)
            candidate = Figures(resource, limit, remaining, reset)
            if best is None or _left(candidate) < _left(best):
                best = candidate
        if best is not None:
            done.add(resource)
            if best[1:] != (None, None, None):
                figures.append(best)
    retry_after = None
    for name, unit in _RETRY_AFTER:
        if name in found:
            wait = _field(found, name, malformed, now)
            if wait is not None and retry_after is None:
                retry_after = wait * unit if _NUMBER.fullmatch(found[name].strip()) else wait
    return Reading(tuple(figures), retry_after, tuple(malformed))


def _field(found: dict[str, str], name: str, malformed: list[str], now: Any = False) -> Any:
    """A count (`now` False), else a duration, of header `name`; None if absent or malformed."""
    text = found.get(name)
    if text is None:
        return None
    value = parse_count(text) if now is False else parse_duration(text, now)
    if value is None or value == math.inf:
        malformed.append(name)
        return None
    return value


def _left(figures: Figures) -> float:
    """The share of the budget left (the remaining count when the limit is unknown)."""
    _, limit, remaining, _ = figures
    if remaining is None:
        return math.inf
    return remaining / limit if limit else float(remaining)
