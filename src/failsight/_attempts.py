"""Every attempt of an API call, the backoff before each retry, and the rate-limit headroom the
answers report (docs/reference.md#attempts-and-backoff, #rate-limit-headroom).

The engine's `Call` hands each HTTP attempt's end here (SDK-internal retries each are one, a
raw HTTP request is one); the account hands each retry's wait here. Nothing here raises: the
callers guard it. Header values that do not parse are counted in
`genai_telemetry_errors_total{stage="ratelimit_header"}`, once each, and otherwise ignored.

Headroom is read when it is scraped, not when it comes. The gauges hold the last value seen,
so of the answers a (provider, model) gets between two scrapes only the newest one that
carries rate-limit headers counts: a successful answer keeps its headers object
(`MetricSet.headroom_pending`, one entry per pair), and `flush_headroom` parses it at the
start of the next collection. Parsing six headers and setting six gauges costs about 80,000
instructions; a look for the headers and a reference kept, a few thousand. An error answer
is read at once (its `Retry-After` decides the backoff's label) and supersedes what was
kept. In multiprocess mode every answer is read at once: the process that serves /metrics
is not the one that got the answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from failsight import _spans
from failsight._capped import CHILD_CACHE_LIMIT
from failsight._guard import report
from failsight._metric_ops import setter
from failsight._ratelimit import Reading, carries, read_headers
from failsight._vocabulary import VOCABULARY

if TYPE_CHECKING:
    from failsight._metrics import MetricSet
    from failsight._taxonomy import Outcome

__all__ = ["ATTEMPT_OK", "PHASES", "backoff_label", "ended", "flush_headroom", "record_reading"]

_SPEC: Final = VOCABULARY["ratelimit"]
ATTEMPT_OK: Final[str] = _SPEC["attempt_ok"]
_ASKED: Final = _SPEC["retry_after_outcomes"]
_TOLERANCE: Final[float] = _SPEC["honoured_tolerance_seconds"]
PHASES: Final[tuple[str, str]] = (_SPEC["phases"]["attempts"], _SPEC["phases"]["backoff"])
_EVENT: Final[str] = VOCABULARY["spans"]["events"]["attempt"]
_NAMES: Final = VOCABULARY["spans"]["event_attributes"]
_STAGE: Final = "ratelimit_header"


class MalformedHeader(ValueError):
    """A rate-limit header whose value failsight could not read (counted, never raised)."""


def backoff_label(wait: float, asked: float | None) -> str:
    """The `retry_after` label of a backoff of `wait` seconds after a server asked `asked`.

    >>> backoff_label(1.0, None), backoff_label(2.0, 2.0), backoff_label(0.5, 2.0)
    ('absent', 'honoured', 'ignored')
    """
    if asked is None:
        return str(_ASKED["absent"])
    return str(_ASKED["honoured"] if wait + _TOLERANCE >= asked else _ASKED["ignored"])


def _set(metrics: MetricSet, gauge: int, key: tuple[str, str, str], value: float) -> None:
    """Set one headroom gauge (0 remaining, 1 limit, 2 reset) of one series. Its child is made
    only when a value comes: a series that never had one must not read 0."""
    slot = (gauge, key[0], key[1], key[2])
    found = metrics.headroom.get(slot)
    if found is None:
        metric = (metrics.ratelimit_remaining, metrics.ratelimit_limit, metrics.ratelimit_reset)
        found = setter(metric[gauge].child(key))
        if len(metrics.headroom) < CHILD_CACHE_LIMIT:
            metrics.headroom[slot] = found
    found(value)


def record_reading(metrics: MetricSet, provider: str, model: str, reading: Reading) -> None:
    """Set the headroom gauges of (provider, model) from one answer's reading; a 0 is a value."""
    for resource, limit, remaining, reset in reading.figures:
        key = (provider, model, resource)
        if remaining is not None:
            _set(metrics, 0, key, remaining)
        if limit is not None:
            _set(metrics, 1, key, limit)
        if reset is not None:
            _set(metrics, 2, key, reset)
    for name in reading.malformed:
        report(_STAGE, MalformedHeader(f"the value of the {name} header is not readable"))


def ended(
    call: Any, outcome: Outcome | None, status_code: int | None, headers: Any, wait: float | None
) -> float | None:
    """Count one attempt of `call` that ended with `outcome` (None: answered below 400), read
    its answer's rate-limit headers, and add an `attempt` span event unless it is the call's
    lone successful attempt. Returns the wait the answer asked for (Retry-After), if any."""
    status = ATTEMPT_OK if outcome is None else (outcome.reason or "exception")
    account = call.account
    if account is not None:
        account.children().add("attempt_count", status)
    else:  # an unscoped video poll: the call's own labels
        call.state.metrics.attempt_count.child((*call.labels, status)).inc()
    asked = outcome.retry_after if outcome is not None else None
    if headers is not None:
        metrics = call.state.metrics
        target = call.target
        if outcome is None and metrics.headroom_deferred:
            if carries(headers):  # an answer without them must not hide one with them
                metrics.headroom_pending[(target[0], target[1])] = (headers, time.time())
        else:
            reading = read_headers(headers)
            if reading is not None:
                metrics.headroom_pending.pop((target[0], target[1]), None)  # this one is newer
                record_reading(metrics, target[0], target[1], reading)
                if reading.retry_after is not None:
                    asked = reading.retry_after
    span = call.span
    if (outcome is not None or call.attempts > 1) and _spans.is_recording(span):
        event: dict[str, Any] = {_NAMES["attempt"]: call.attempts, _NAMES["status"]: status}
        if status_code is not None:
            event[_NAMES["status_code"]] = status_code
        if wait is not None:
            event[_NAMES["backoff"]] = wait
        if asked is not None:
            event[_NAMES["retry_after"]] = asked
        span.add_event(_EVENT, event)
    return asked


def flush_headroom(metrics: MetricSet) -> None:
    """Read the headers kept since the last collection into the headroom gauges (a reset given
    as a date counts from when its answer came). Runs before each collection; never raises."""
    pending = metrics.headroom_pending
    while pending:
        try:
            (provider, model), (headers, when) = pending.popitem()
        except KeyError:  # emptied by another collection meanwhile
            return
        try:
            reading = read_headers(headers, now=when)
            if reading is not None:
                record_reading(metrics, provider, model, reading)
        except Exception as exc:
            report("ratelimit_header", exc)
