"""The usage of a logical request not yet known to be wasted, by the call that reported it.

The rule (README "Wasted tokens and spend"): tokens are wasted when they bought nothing the
caller kept.

- A logical request that ends failed (hard, soft or silent) wastes all its usage not wasted
  already, with the request's failure class and reason.
- A call retried inside a scope (the same operation called again after it failed) wastes
  that call's usage, with its class and reason, even when the request then succeeds.
- A scope re-run by its retry policy, or a retry recorded with `record_retry`, wastes the
  usage reported since the scope began or since its previous retry, with the retry's reason.
- An SDK-internal retry re-sends a request that got an error response, which reports no
  usage: nothing is wasted by it.

Each response's usage enters the ledger once and leaves it once, so the wasted tokens of a
series never pass its tokens (`genai_wasted_tokens_total` ≤ `genai_tokens_total`), and the
wasted cost never passes the cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from failsight._capped import HARD_REASONS, SOFT_REASONS
from failsight._taxonomy import HARD, SILENT, SOFT, TOKEN_TYPES, Usage

if TYPE_CHECKING:
    from failsight._metrics import LabelChildren, MetricSet

__all__ = ["ANY", "Ledger", "class_of_reason", "waste"]

ANY: Final = -1  # `take` every entry, whatever call reported it
_MAX_ENTRIES: Final = 32  # past it, the oldest entries fold together (their call is forgotten)


def class_of_reason(reason: str) -> str:
    """The failure class a reason belongs to (SPEC §2); a validator's own name is silent.

    >>> class_of_reason("rate_limited"), class_of_reason("length"), class_of_reason("mine")
    ('hard', 'soft', 'silent')
    """
    if reason in HARD_REASONS or reason == "unknown":  # "unknown": an SDK retry's lost reason
        return HARD
    if reason in SOFT_REASONS:
        return SOFT
    return SILENT


class Ledger:
    """Entries [call, children, input, output, reasoning, cached_input, cost]."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []

    def add(self, call: int, children: LabelChildren, usage: Usage, cost: float | None) -> None:
        entries = self.entries
        last = entries[-1] if entries else None
        if last is None or last[0] != call or last[1] is not children:
            if len(entries) >= _MAX_ENTRIES:
                self._fold()
            last = [call, children, 0, 0, 0, 0, None]
            entries.append(last)
        tokens_in, tokens_out, reasoning, cached = usage
        if tokens_in:
            last[2] += tokens_in
        if tokens_out:
            last[3] += tokens_out
        if reasoning:
            last[4] += reasoning
        if cached:
            last[5] += cached
        if cost is not None:
            last[6] = cost if last[6] is None else last[6] + cost

    def _fold(self) -> None:
        """Merge the oldest entry into a later one of the same labels; their calls are
        forgotten (a request of many calls then wastes them at its end only)."""
        entries = self.entries
        oldest = entries[0]
        for entry in entries[1:]:
            if entry[1] is oldest[1]:
                for i in range(2, 6):
                    entry[i] += oldest[i]
                if oldest[6] is not None:
                    entry[6] = oldest[6] if entry[6] is None else entry[6] + oldest[6]
                entry[0] = 0
                del entries[0]
                return

    def take(self, call: int) -> list[list[Any]]:
        """Remove and return the entries of `call` (ANY: all)."""
        entries = self.entries
        if not entries:
            return []
        if call == ANY:
            self.entries = []
            return entries
        taken = [entry for entry in entries if entry[0] == call]
        if taken:
            self.entries = [entry for entry in entries if entry[0] != call]
        return taken


def waste(metrics: MetricSet, entries: list[list[Any]], failure_class: str, reason: str) -> float:
    """Count `entries` as wasted with (failure_class, reason); the cost counted."""
    cost = 0.0
    for entry in entries:
        labels = entry[1].labels
        for i, token_type in enumerate(TOKEN_TYPES, start=2):
            count = entry[i]
            if count:
                metrics.wasted_tokens.child((*labels, token_type, failure_class, reason)).inc(count)
        if entry[6] is not None:
            metrics.wasted_cost.child((*labels, failure_class, reason)).inc(entry[6])
            cost += entry[6]
    return cost
