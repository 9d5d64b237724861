"""The account of a logical request: labels, metric children, usage, reasons, retries, video
jobs, and counting it exactly once.

An `Account` belongs to one traced scope or to one unscoped API call. The outermost one (the
root) is the logical request: it holds the in-flight gauge and counts `genai_requests_total`,
failures, attempts and duration once, in `close`. Inner accounts (nested scopes) pass their
failure up. Accounts own no span: whoever opened a span ends it (the scope or the call), with
the account's verdict. Every step is guarded, and `close` releases the in-flight gauge in a
`finally`, so a broken step can lose detail but never a count or leave the gauge up.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from failsight import _spans
from failsight._agents import classify_scope_exception
from failsight._attempts import PHASES, backoff_label
from failsight._guard import guarded, swallow
from failsight._judged import explained_by_judgement
from failsight._metrics import LabelChildren
from failsight._redact import sanitize_reason
from failsight._taxonomy import (
    HARD,
    NON_RETRYABLE_CLIENT_ERRORS,
    NONE,
    SILENT,
    SOFT,
    TOKEN_TYPES,
    UNKNOWN,
    VIDEO_FAILURE_REASONS,
    Outcome,
    Usage,
)
from failsight._vocabulary import VOCABULARY
from failsight._waste import SCOPE, Share, Spent, class_of_reason, waste

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from failsight._config import State

__all__ = ["Account", "current_account"]

_MAX_KEPT: Final = 64  # finish reasons and video jobs kept per account

# The innermost traced scope's account (set by scopes, and by an unscoped call while it runs).
current_account: Final[contextvars.ContextVar[Account | None]] = contextvars.ContextVar(
    "failsight_account", default=None
)

_ACCOUNT: Final = guarded("account")
_RETRY: Final = guarded("record_retry")
_PRICE: Final = guarded("price")
_RETRY_AFTER: Final = VOCABULARY["spans"]["event_attributes"]["retry_after"]


def _explained_by_recorded(exc: BaseException, outcome: Outcome) -> bool:
    """Exceptions that a failure recorded inside the scope explains better.

    Code commonly raises ValueError after a content_filter, and a bare TimeoutError after a
    video stuck in its queue: the recorded soft failure is the real reason then
    (docs/reference.md#the-reason-of-a-request). So is an exception saying the answer was
    wrong (a silent outcome: an agent framework's ModelBehaviorError): a judgement recorded on
    that answer names what was wrong.
    """
    silent = outcome.failure_class == SILENT or explained_by_judgement(exc)  # parse()'s too
    return outcome.reason == "exception" or type(exc) is TimeoutError or silent


class Account:
    """What one scope or unscoped call knows of its logical request."""

    __slots__ = (
        "_children", "_children_version", "_closed", "_in_flight", "_labels_version", "_parent",
        "_root", "_start", "_verdict", "call_site", "exemplar", "failure", "finish_reasons",
        "handle", "inner", "judge_declared", "model", "operation", "provider", "retried",
        "retries", "retrying", "share", "span", "state", "timing", "video_keys", "waited",
    )  # fmt: skip

    def __init__(
        self,
        state: State,
        call_site: str,
        *,
        operation: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        parent: Account | None = None,
        span: Span | None = None,
    ) -> None:
        self.state = state
        self._parent = parent
        self._root: Account = parent._root if parent is not None else self
        self.call_site = call_site
        self.operation = operation or UNKNOWN
        self.model = model or UNKNOWN
        self.provider = provider or UNKNOWN
        self.retries = 0
        self.retrying = False  # the scope re-runs itself (`traced_generation(retry=...)`)
        self.judge_declared: bool | None = None  # the scope's `judge_declared=`, or inherited
        self.span = span  # where retry events go when no call span is given
        self.exemplar = _spans.exemplar_of(span)
        self.failure: tuple[str, str] | None = None  # marked by the user or a soft end; sticky
        # (operation, class, reason, what it spent) of the last call, when it failed
        self.inner: tuple[str, str, str, Spent | None] | None = None
        self.retried: tuple[str, str] | None = None  # a retried attempt's, until more happens
        self.finish_reasons: list[str] = []
        # Usage and cost reported in the scope, and what of them was wasted; its lock is the
        # request's, for what threads sharing the scope change.
        self.share: Share = Share(parent.share if parent is not None else None)
        self.video_keys: list[Any] = []
        self.waited = 0.0
        self.timing = [0.0, 0.0]  # seconds in API calls and in backoff, summed on the root
        self.handle: Any = None  # the user's `Generation`, made on first request
        self._closed = False
        self._verdict: tuple[str, str | None, Outcome | None] = (NONE, None, None)
        self._start = time.perf_counter()
        self._children: LabelChildren | None = None  # of the labels at `_children_version`
        self._children_version = -1
        self._labels_version = 0
        self._in_flight: Any = None
        if parent is None:
            try:
                in_flight = self.children().adder("in_flight")  # this child's, whatever follows
                in_flight(1)
                self._in_flight = in_flight  # only once incremented: close decrements it
            except Exception as exc:
                swallow("account", exc)

    @property
    def is_root(self) -> bool:
        return self._parent is None

    @property
    def root(self) -> Account:
        return self._root

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def wasted_cost(self) -> float | None:
        return self.share.wasted_cost

    # ------------------------------------------------------------------ labels

    def labels(self) -> tuple[str, str, str, str]:
        """(operation, provider, model, call_site) of the logical request."""
        root = self._root
        return (root.operation, root.provider, root.model, root.call_site)

    def children(self) -> LabelChildren:
        """The metric children of the current labels, looked up once per label change.

        Writers bump the root's `_labels_version` after changing a label; the version is read
        before the labels, so children cached while a label changed are never reused.
        """
        root = self._root
        version = root._labels_version
        children = root._children
        metrics = self.state.metrics
        if (
            children is None
            or root._children_version != version
            or children.epoch != metrics.children_epoch  # the cap changed
        ):
            children = metrics.children(self.labels())
            root._children, root._children_version = children, version
        return children

    def note_call(self, operation: str, provider: str, model: str) -> None:
        """Fill unknown labels from a call made inside the scope (the first call wins)."""
        root = self._root
        self.retried = None  # the retry is being made
        filled = UNKNOWN in (root.operation, root.provider, root.model)
        for account in (self, root):
            if account.operation == UNKNOWN:
                account.operation = operation
            if account.provider == UNKNOWN:
                account.provider = provider
            if account.model == UNKNOWN:
                account.model = model
        if filled:
            root._labels_version += 1

    def set_model(self, model: str) -> None:
        root = self._root
        self.model = model
        if root.model == UNKNOWN:
            root.model = model
        root._labels_version += 1

    # ------------------------------------------------------------------ what calls report

    def count_finish_reasons(self, reasons: tuple[str, ...] | list[str]) -> None:
        """Count normalised finish reasons (judging them is the caller's business)."""
        children = self.children()
        self.retried = None
        for reason in reasons:
            children.add("finish_reasons", reason)
            account: Account | None = self
            while account is not None:
                if len(account.finish_reasons) < _MAX_KEPT:
                    account.finish_reasons.append(reason)
                account = account._parent

    def add_usage(self, usage: Usage) -> Spent:
        """Count a response's usage (non-negative ints or None, as `extract_usage` makes them)
        and its cost when priced; returns what it spent (wasted if its call is retried)."""
        cost, epoch = self.record_usage(usage)
        return Spent(usage, cost, self.share, epoch)

    def record_usage(self, usage: Usage) -> tuple[float | None, int]:
        """`add_usage` of usage no retried call will waste (the scope's own code reports it):
        its cost when priced, and the epoch of the scope's share it was counted in."""
        self.retried = None
        children = self.children()
        cost = None
        prices = self.state.prices
        if prices is not None:
            root = self._root
            with _PRICE:  # a broken price loses the cost, nothing else
                cost = prices.cost(root.provider, root.model, usage)
        epoch = self.share.add(usage, cost, children)
        otel = self.state.otel_tokens
        if otel is not None:
            for token_type, count in zip(TOKEN_TYPES[:2], usage[:2], strict=True):
                if count is not None:
                    with _ACCOUNT:  # a broken meter loses this point, not the Prometheus counts
                        otel.record(count, {**_spans.otel_point(self.labels()),
                                            _spans.GEN_AI_TOKEN_TYPE: token_type})  # fmt: skip
        return cost, epoch

    def count_filters(self, filters: Iterable[tuple[str, str, str]]) -> None:
        """Count content-filter categories a provider reported (normalised by `_filters`)."""
        metric = self.state.metrics.content_filter
        labels = self.labels()
        for n, (category, stage, severity) in enumerate(filters):
            if n >= _MAX_KEPT:
                break
            metric.child((*labels, category, stage, severity)).inc()

    def waste(self, spent: Spent | str, failure_class: str, reason: str) -> None:
        """Count as wasted what one call `spent` (unless wasted already), or (SCOPE) all the
        scope has not wasted: what it reported since it began or since its previous retry."""
        share = self.share
        taken = share.take(spent) if isinstance(spent, Spent) else share.take_all()
        waste(self.state.metrics, self.labels(), taken, failure_class, reason)

    def record_retry(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        wait: float | None = None,
        span: Span | None = None,
        failure_class: str | None = None,
        wasted: Spent | str | None = SCOPE,
        rerun: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Count one retry, with the reason of the attempt that failed; a `retry` span event
        goes on `span` (an API call's) or else on the scope's span. `wasted` is what the
        retried attempt spent, wasted with `failure_class` (by default the reason's): a
        call's `Spent`, None (nothing), or SCOPE: the scope's attempt is retried, so all it
        reported since its previous retry, and its failures are the failed attempt's: they
        name the request only if nothing follows (unless it is a `rerun` by the policy).
        A `wait` is a backoff, observed with the `retry_after` the server had asked for."""
        reason = sanitize_reason(str(reason))
        root = self._root
        with self.share.lock:
            root.retries += 1
            attempt = root.retries + 1
            if wasted == SCOPE:  # a new attempt: the next call is this retry, not another
                inner = self.inner
                failed = None if rerun else self.failure or (inner[1:3] if inner else None)
                self.retried = failed or (None if rerun else self.retried)
                self.inner = self.failure = None
        self.state.metrics.retries.child((*self.labels(), reason)).inc()
        if wait is not None:
            with _ACCOUNT:
                self.children().observe("backoff", wait, backoff_label(wait, retry_after))
                root.timing[1] += wait
        if wasted is not None:
            with _ACCOUNT:
                self.waste(wasted, failure_class or class_of_reason(reason), reason)
        span = span or self.span
        if span is not None:
            with _RETRY:
                if span.is_recording():
                    event: dict[str, Any] = {"attempt": attempt, "reason": reason}
                    if status_code is not None:
                        event["status_code"] = status_code
                    if wait is not None:
                        event["wait_seconds"] = float(wait)
                    if retry_after is not None:
                        event[_RETRY_AFTER] = retry_after
                    span.add_event("retry", event)

    def track_video(self, key: Any, status: str) -> str | None:
        """Advance video job `key` with a normalised status. Remembered, so that a scope that
        ends in an exception while its job is still open ends the job `timed_out`."""
        root = self._root
        if key not in root.video_keys and len(root.video_keys) < _MAX_KEPT:
            root.video_keys.append(key)
        return self.state.video_jobs.update(key, status, self.labels())

    def record_video_status(self, status: str, job_id: str | None = None) -> None:
        """The scope's job (a user's raw HTTP polling) reached `status` (normalised)."""
        self.track_video(job_id if job_id is not None else ("scope", id(self._root)), status)
        failure = VIDEO_FAILURE_REASONS.get(status)
        if failure is not None:
            self.failure = (SOFT, failure)

    def mark_failure(self, failure_class: str, reason: str) -> None:
        self.failure = (failure_class, sanitize_reason(str(reason)))

    def call_started(self, operation: str) -> None:
        """A call begins: after a failed call of the same operation it is a retry, except after
        a client error the retry policy never retries (docs/reference.md#what-counts-as-a-retry)."""
        inner = self.inner
        if inner is None or inner[0] != operation:
            return
        with self.share.lock:  # threads sharing the scope: one of them retries the call
            if self.inner is not inner:
                return
            self.inner = None
        if inner[2] not in NON_RETRYABLE_CLIENT_ERRORS:
            self.record_retry(inner[2], failure_class=inner[1], wasted=inner[3])

    def call_finished(self, operation: str, outcome: Outcome, spent: Spent | None = None) -> None:
        """A call inside the scope ended with `outcome` (its tokens were counted already,
        `spent` is what it reported: wasted if it is retried)."""
        if outcome.failed and not outcome.transient:
            self.inner = (operation, outcome.failure_class, outcome.reason or "exception", spent)
        elif self.inner is not None and self.inner[0] == operation:
            self.inner = None

    def call_cancelled(self, operation: str) -> None:
        """A call cancelled by its caller (e.g. `asyncio.wait_for`): the scope decides."""
        if self.inner is not None and self.inner[0] == operation:
            self.inner = None

    # ------------------------------------------------------------------ the end

    def close(
        self, exc: BaseException | None = None, validation: tuple[str, str] | None = None
    ) -> tuple[str, str | None, Outcome | None]:
        """End the account once: (failure_class, reason, outcome of `exc`).

        The root counts the logical request; an inner account passes its failure up.
        """
        if self._closed:
            return self._verdict
        self._closed = True
        verdict: tuple[str, str | None, Outcome | None] = (
            (HARD, "exception", None) if exc is not None else (NONE, None, None)
        )
        try:
            verdict = self._resolve(exc, validation)
        except Exception as error:
            swallow("account", error)
        finally:
            self._verdict = verdict
            if self._parent is None:
                if verdict[0] != NONE:
                    with _ACCOUNT:
                        self.waste(SCOPE, verdict[0], verdict[1] or "exception")
                self._count(verdict[0], verdict[1])
                self.share.close()  # one store, for a request: nothing to guard
            else:
                with _ACCOUNT:
                    self.share.close()
                if verdict[0] != NONE and verdict[1] is not None:
                    self._parent.failure = (verdict[0], verdict[1])
        return verdict

    def _resolve(
        self, exc: BaseException | None, validation: tuple[str, str] | None
    ) -> tuple[str, str | None, Outcome | None]:
        if exc is not None and self._parent is None:
            for key in self.video_keys:
                if self.state.video_jobs.end(key):
                    self.failure = (SOFT, "video_timeout")
        outcome = classify_scope_exception(exc) if exc is not None else None
        if outcome is not None and not _explained_by_recorded(exc, outcome):  # type: ignore[arg-type]
            return outcome.failure_class, outcome.reason, outcome
        if self.failure is not None:
            return self.failure[0], self.failure[1], outcome
        if self.inner is not None:
            return self.inner[1], self.inner[2], outcome
        if self.retried is not None:  # a retry recorded, and nothing after it
            return self.retried[0], self.retried[1], outcome
        if outcome is not None:
            return outcome.failure_class, outcome.reason, outcome
        if validation is not None:
            return validation[0], validation[1], None
        return NONE, None, None

    def _count(self, failure_class: str, reason: str | None) -> None:
        # Each series on its own: a broken one loses itself, never the others or the gauge.
        duration = time.perf_counter() - self._start
        exemplar = self.exemplar
        try:
            children = self.children()
            try:
                if exemplar is None:
                    children.add("requests", failure_class)
                else:
                    children.add_exemplar("requests", failure_class, exemplar)
            except Exception as exc:
                swallow("account", exc)
            if failure_class != NONE:
                try:
                    values = (*self.labels(), failure_class, reason or "exception")
                    self.state.metrics.failures.child(values).inc(exemplar=exemplar)
                except Exception as exc:
                    swallow("account", exc)
            try:
                children.observe("attempts", 1 + self.retries)
                for phase, seconds in zip(PHASES, self.timing, strict=True):
                    children.observe("phases", seconds, phase)
            except Exception as exc:
                swallow("account", exc)
            try:
                if exemplar is None:
                    children.observe("duration", duration, failure_class)
                else:
                    children.observe_exemplar("duration", duration, failure_class, exemplar)
            except Exception as exc:
                swallow("account", exc)
            otel = self.state.otel_duration
            if otel is not None:
                with _ACCOUNT:
                    point = _spans.otel_point(self.labels())
                    if failure_class != NONE:
                        point[_spans.ERROR_TYPE] = reason or "exception"
                    otel.record(duration, point)
        finally:
            in_flight, self._in_flight = self._in_flight, None
            if in_flight is not None:
                try:
                    in_flight(-1)
                except Exception as exc:
                    swallow("account", exc)
