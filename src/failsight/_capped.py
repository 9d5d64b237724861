"""Labelled metrics whose label values, and so whose series, are bounded; and a collector
hook that runs before a registry's samples are read."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from failsight._taxonomy import OTHER, REASONS

__all__ = [
    "CHILD_CACHE_LIMIT",
    "DEFAULT_MAX_SERIES",
    "MAX_LABEL_LENGTH",
    "BeforeCollect",
    "CappedMetric",
]

# Past this many distinct raw label tuples a metric stops caching children (still correct).
CHILD_CACHE_LIMIT: Final = 4096
# Characters kept of a common label's value: a model name is the caller's string, of any size.
MAX_LABEL_LENGTH: Final = 128
# Distinct (operation, provider, model, call_site) tuples a metric keeps series for, by default
# (docs/production.md, "Cardinality and memory", has the arithmetic).
DEFAULT_MAX_SERIES: Final = 1000


def _label_value(value: str) -> str:
    """`value` cut to MAX_LABEL_LENGTH, lone surrogates replaced (one would fail every scrape)."""
    if not isinstance(value, str):
        return value
    value = value[:MAX_LABEL_LENGTH]
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


class CappedMetric:
    """A labelled metric whose label values are bounded, so its series count is too.

    - Each common label keeps at most `cap` distinct values; later values are reported as
      `other`.
    - The free-form `reason` label (at `reason_index`, if the metric has one) keeps at most
      `cap` distinct values outside the closed vocabulary `REASONS`; later ones are `other`.
    - At most `max_series` distinct common-label tuples get series of their own; later
      tuples are reported with every common label `other` (the overflow series, whatever
      its own labels), and `on_overflow` is called once per such look-up.

    Children are cached per raw label tuple. No failsight lock is held while
    `metric.labels()` runs: it allocates, so it can run the garbage collector, and a
    finaliser may come back here on the same thread.
    """

    __slots__ = (
        "_cache", "_cap", "_epoch", "_lock", "_max_series", "_n_capped", "_on_overflow",
        "_overflow", "_reason_index", "_reasons", "_seen", "_series", "metric", "name",
    )  # fmt: skip

    def __init__(
        self,
        metric: Any,
        n_capped: int,
        cap: int,
        *,
        reason_index: int | None = None,
        max_series: int = DEFAULT_MAX_SERIES,
        on_overflow: Callable[[CappedMetric], None] | None = None,
        name: str = "",
    ) -> None:
        self.metric = metric
        self.name = name or str(getattr(metric, "_name", ""))
        self._n_capped = n_capped
        self._cap = cap
        self._reason_index = reason_index
        self._max_series = max_series
        self._on_overflow = on_overflow
        self._overflow = (OTHER,) * n_capped
        self._seen: list[set[str]] = [set() for _ in range(n_capped)]
        self._reasons: set[str] = set()  # reasons outside the vocabulary that got their own
        self._series: set[tuple[str, ...]] = set()  # common-label tuples with their own series
        self._cache: dict[tuple[str, ...], Any] = {}
        self._epoch = 0  # bumped when the limits change: children decided before are not cached
        self._lock = threading.Lock()

    def set_cap(self, cap: int) -> None:
        self.set_limits(cap, self._max_series)

    def set_limits(self, cap: int, max_series: int) -> None:
        """New label cap and series budget; values already admitted keep their series."""
        with self._lock:
            self._cap = cap
            self._max_series = max_series
            self._cache.clear()
            self._epoch += 1

    def child(self, values: tuple[str, ...]) -> Any:
        """The metric child for raw label values (common labels first, then the metric's own)."""
        child = self._cache.get(values)
        if child is not None:
            return child
        return self._new_child(values)

    def _new_child(self, values: tuple[str, ...]) -> Any:
        n = self._n_capped
        # Everything that allocates happens outside the lock; inside, only set look-ups.
        common = tuple([_label_value(value) for value in values[:n]])
        own = values[n:]
        at = self._reason_index
        reason = _label_value(values[at]) if at is not None and at < len(values) else None
        with self._lock:
            epoch = self._epoch
            cap = self._cap
            to_other = 0  # bit i: common label i is past its cap
            for i in range(n):
                seen = self._seen[i]
                value = common[i]
                if value not in seen:
                    if len(seen) >= cap:
                        to_other |= 1 << i
                    else:
                        seen.add(value)
            reason_to_other = False
            if reason is not None and reason not in REASONS and reason not in self._reasons:
                if len(self._reasons) >= cap:
                    reason_to_other = True
                else:
                    self._reasons.add(reason)
        if to_other:
            common = tuple(
                [OTHER if to_other >> i & 1 else value for i, value in enumerate(common)]
            )
        if reason is not None and at is not None:
            j = at - n
            own = (*own[:j], OTHER if reason_to_other else reason, *own[j + 1 :])
        with self._lock:
            series = self._series
            admitted = common == self._overflow or common in series
            if not admitted and len(series) < self._max_series:
                series.add(common)
                admitted = True
        if not admitted:
            common = self._overflow
        child = self.metric.labels(*common, *own)
        with self._lock:
            if self._epoch == epoch and len(self._cache) < CHILD_CACHE_LIMIT:
                self._cache[values] = child
        if not admitted and self._on_overflow is not None:
            self._on_overflow(self)
        return child


class BeforeCollect:
    """A collector with no metrics of its own whose `collect()` first calls `hook`.

    Registered before a metric set's metrics, so the hook (e.g. running deferred recordings)
    runs before their samples are read. It never raises into a scrape.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> registry.register(BeforeCollect(lambda: None))
    >>> list(registry.collect())
    []
    """

    __slots__ = ("hook",)

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook = hook

    def describe(self) -> list[Metric]:
        return []  # no names: it can clash with nothing

    def collect(self) -> Iterator[Metric]:
        with contextlib.suppress(Exception):  # a scrape must not fail for a hook
            self.hook()
        return iter(())
