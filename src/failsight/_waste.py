"""Wasted usage: the rule, and counting it.

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

Nothing is kept per response: a request's account already sums its usage and cost, and its
root keeps what was wasted so far, so "not wasted already" is the difference, and a retried
call hands over what it reported. Each token is wasted at most once, so the wasted tokens
of a request never pass its tokens (`genai_wasted_tokens_total` ≤ `genai_tokens_total`),
nor its wasted cost its cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from failsight._capped import HARD_REASONS, SOFT_REASONS
from failsight._taxonomy import HARD, SILENT, SOFT, Usage

if TYPE_CHECKING:
    from failsight._metrics import MetricSet

__all__ = ["ANY", "Spent", "class_of_reason", "waste"]

ANY: Final = "any"  # waste all the usage of the request not wasted already


def class_of_reason(reason: str) -> str:
    """The class a reason belongs to (docs/reference.md#reasons); a validator's own is silent.

    >>> class_of_reason("rate_limited"), class_of_reason("length"), class_of_reason("mine")
    ('hard', 'soft', 'silent')
    """
    if reason in HARD_REASONS or reason == "unknown":  # "unknown": an SDK retry's lost reason
        return HARD
    if reason in SOFT_REASONS:
        return SOFT
    return SILENT


# What a wasted call reported: its usage and its cost (None: not priced).
Spent = tuple[Usage, "float | None"]


def waste(
    metrics: MetricSet,
    labels: tuple[str, ...],
    counts: dict[str, int],
    cost: float | None,
    failure_class: str,
    reason: str,
) -> None:
    """Count `counts` (token type → tokens) and `cost` as wasted under `labels`."""
    for token_type, count in counts.items():
        if count > 0:
            metrics.wasted_tokens.child((*labels, token_type, failure_class, reason)).inc(count)
    if cost is not None and cost > 0:
        metrics.wasted_cost.child((*labels, failure_class, reason)).inc(cost)
