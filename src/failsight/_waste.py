"""Wasted usage: the rule, and counting it exactly once.

The rule (README "Wasted tokens and spend"): tokens are wasted when they bought nothing the
caller kept.

- A logical request that ends failed (hard, soft or silent) wastes all its usage not wasted
  already, with the request's failure class and reason.
- A call retried inside a scope (the same operation called again after it failed) wastes
  that call's usage, with its class and reason, even when the request then succeeds.
- A scope re-run by its retry policy, or a retry recorded with `record_retry`, wastes the
  usage reported in that scope (its nested scopes included) since it began or since its
  previous retry, with the retry's reason; never what an enclosing scope reported.
- An SDK-internal retry re-sends a request that got an error response, which reports no
  usage: nothing is wasted by it.

How it stays exact. Each traced scope, and each unscoped call, has a `Share` of its logical
request: the usage and cost reported in it and its nested scopes, and the part of them
wasted; what is not wasted yet is the difference. A scope's retry wastes its share's
difference and marks its nested shares still open (generators, threads) wasted whole; a
request's end wastes its root's difference; a retried call wastes its `Spent`, the answer's
own usage, unless a retry of its scope (or of an enclosing one) wasted it first: each share
counts those retries in its epoch, and a `Spent` holds only under the epoch it was reported
in, while its scope is open. Every amount is also bounded, share by share up to the root,
by what is not wasted yet: a request never wastes more than it reported, whatever the order
of events. One lock per logical request (its root share's) makes each step atomic, as
`asyncio.to_thread` and thread pools carry a scope into other threads.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

from failsight._taxonomy import HARD, HARD_REASONS, SILENT, SOFT, SOFT_REASONS, TOKEN_TYPES, Usage

if TYPE_CHECKING:
    from failsight._metrics import LabelChildren, MetricSet

__all__ = ["SCOPE", "Share", "Spent", "class_of_reason", "waste"]

SCOPE: Final = "scope"  # waste what the scope reported since it began or its previous retry

_ROUNDING: Final = 1e-9  # a cost left below this part of the request's is rounding, not usage
Taken = tuple[dict[str, int], "float | None"]  # tokens by type, and cost, just wasted


def class_of_reason(reason: str) -> str:
    """The failure class a reason belongs to (docs/reference.md#reasons); a validator's own name
    is silent.

    >>> class_of_reason("rate_limited"), class_of_reason("length"), class_of_reason("mine")
    ('hard', 'soft', 'silent')
    """
    if reason in HARD_REASONS or reason == "unknown":  # "unknown": an SDK retry's lost reason
        return HARD
    if reason in SOFT_REASONS:
        return SOFT
    return SILENT


class Spent:
    """What one API response reported (usage, cost), wasted if its call is retried.

    >>> class Metrics:  # what `add` counts in, left out here
    ...     def add(self, *args): pass
    >>> share, usage = Share(), Usage(10, 2)
    >>> spent = Spent(usage, None, share, share.add(usage, None, Metrics()))
    >>> share.take(spent), share.take(spent)  # wasted once
    (({'input': 10, 'output': 2}, None), ({}, None))
    """

    __slots__ = ("cost", "epoch", "share", "usage")

    def __init__(self, usage: Usage, cost: float | None, share: Share, epoch: int) -> None:
        self.usage = usage
        self.cost = cost
        self.share: Share | None = share  # None once wasted
        self.epoch = epoch


class Share:
    """A scope's share of its logical request: usage and cost reported in it (nested scopes
    included), and the part of them wasted. Shares of one request share one lock.

    >>> class Metrics:  # what `add` counts in, left out here
    ...     def add(self, *args): pass
    >>> outer = Share()
    >>> _ = outer.add(Usage(5), None, Metrics())
    >>> inner = Share(outer)
    >>> _ = inner.add(Usage(4), None, Metrics())
    >>> inner.take_all(), outer.take_all()  # the inner retry keeps the outer's 5
    (({'input': 4}, None), ({'input': 5}, None))
    """

    __slots__ = ("_closed", "_epoch", "_open", "cost", "lock", "parent", "usage", "wasted",
                 "wasted_cost")  # fmt: skip

    def __init__(self, parent: Share | None = None) -> None:
        self.parent = parent
        self.usage: dict[str, int] = {}
        self.cost: float | None = None
        self.wasted: dict[str, int] = {}
        self.wasted_cost: float | None = None  # None until some priced usage is wasted
        self._epoch = 0  # retries that wasted all of this share (see `Spent`)
        self._open: list[Share] | None = None  # nested shares not closed yet
        self._closed = False
        if parent is None:
            self.lock = threading.Lock()
        else:
            self.lock = parent.lock
            with self.lock:
                if parent._open is None:
                    parent._open = []
                parent._open.append(self)

    def add(self, usage: Usage, cost: float | None, children: LabelChildren) -> int:
        """Count a response's usage (and cost): in the request's metric `children`, here and in
        every enclosing share; returns the epoch it was counted in (see `Spent`)."""
        lock = self.lock
        lock.acquire()  # not `with`: twice the instructions, on the path every answer takes
        try:
            for token_type, count in zip(TOKEN_TYPES, usage, strict=True):
                if count is None:
                    continue
                children.add("tokens", token_type, count)  # first: a share never counts more
                share: Share | None = self
                while share is not None:
                    counts = share.usage
                    counts[token_type] = counts.get(token_type, 0) + count
                    share = share.parent
            if cost is not None:
                children.add("cost", None, cost)
                share = self
                while share is not None:
                    share.cost = cost if share.cost is None else share.cost + cost
                    share = share.parent
            return self._epoch
        finally:
            lock.release()

    def take(self, spent: Spent) -> Taken:
        """Waste what `spent` reported, unless it was wasted already (or its scope ended)."""
        with self.lock:
            share = spent.share
            if share is None or share._epoch != spent.epoch or share._closed:
                return {}, None
            spent.share = None
            counts = {t: n for t, n in zip(TOKEN_TYPES, spent.usage, strict=True) if n}
            return share._charge(counts, spent.cost)

    def take_all(self) -> Taken:
        """Waste all this share has not wasted: since it began, or since its previous retry.
        Nested shares still open are wasted whole; a closed share takes nothing."""
        with self.lock:
            if self._closed:
                return {}, None
            wasted = self.wasted
            counts = {t: n - wasted.get(t, 0) for t, n in self.usage.items()}
            cost = None if self.cost is None else self.cost - (self.wasted_cost or 0.0)
            taken = self._charge(counts, cost)
            self._epoch += 1
            self._settle(self._open)
            return taken

    def close(self) -> None:
        """The scope ended: its calls are no longer retried inside it, nor is it."""
        parent = self.parent
        if parent is None:
            self._closed = True  # one store: the request ended, no other share to update
            return
        with self.lock:
            self._closed = True
            if parent._open is not None and self in parent._open:
                parent._open.remove(self)

    def _charge(self, counts: dict[str, int], cost: float | None) -> Taken:
        # Bounded by what every share up to the root has not wasted (the lock is held).
        chain = []
        share: Share | None = self
        while share is not None:
            chain.append(share)
            for token_type, count in counts.items():
                left = share.usage.get(token_type, 0) - share.wasted.get(token_type, 0)
                counts[token_type] = min(count, left)
            if cost is not None:
                cost = min(cost, (share.cost or 0.0) - (share.wasted_cost or 0.0))
            share = share.parent
        counts = {t: n for t, n in counts.items() if n > 0}
        if cost is not None and cost <= _ROUNDING * (chain[-1].cost or 0.0):
            cost = None  # nothing, or what float sums leave over
        for share in chain:
            for token_type, count in counts.items():
                share.wasted[token_type] = share.wasted.get(token_type, 0) + count
            if cost is not None:
                share.wasted_cost = cost + (share.wasted_cost or 0.0)
        return counts, cost

    @staticmethod
    def _settle(shares: list[Share] | None) -> None:
        for share in shares or ():
            share.wasted = dict(share.usage)
            share.wasted_cost = share.cost
            share._epoch += 1
            share._settle(share._open)


def waste(
    metrics: MetricSet,
    labels: tuple[str, ...],
    taken: Taken,
    failure_class: str,
    reason: str,
) -> None:
    """Count `taken` (tokens by type, cost) as wasted under `labels`."""
    counts, cost = taken
    for token_type, count in counts.items():
        if count > 0:
            metrics.wasted_tokens.child((*labels, token_type, failure_class, reason)).inc(count)
    if cost is not None and cost > 0:
        metrics.wasted_cost.child((*labels, failure_class, reason)).inc(cost)
