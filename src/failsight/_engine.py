"""The call engine both patches use: start, attach, record, finish.

A `Call` is one API call, made through the openai SDK or as a raw HTTP request: its CLIENT
span, its HTTP attempts (SDK retries) and the account it reports to (the enclosing traced
scope's, or its own unscoped one). `finish` runs once and ends, in `finally` blocks, the
account (counters, histograms, in-flight gauge) and then the span, whatever a recording step
raised: no path can leave a request uncounted or a gauge up.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from failsight import _attempts, _deferred, _spans
from failsight._account import Account, current_account
from failsight._classify import classify_exception
from failsight._config import State, get_state
from failsight._declared import Declared
from failsight._guard import guarded, swallow
from failsight._judged import judged_error
from failsight._operations import Operation
from failsight._redact import mask_remembered, mask_secrets
from failsight._taxonomy import NONE, SOFT, UNKNOWN, Outcome
from failsight._waste import Spent

__all__ = [
    "Call",
    "active_call",
    "expire_video_jobs",
    "fail",
    "retrying_scope_site",
    "send",
    "send_async",
    "start_call",
]

# The call being sent: the transport records its attempts, and raw HTTP defers to it.
active_call: Final[contextvars.ContextVar[Call | None]] = contextvars.ContextVar(
    "failsight_call", default=None
)

_RECORD: Final = guarded("call_record")
# Reasons of what the SDK's `parse()` helpers raise on an answer they cannot read.
_ATTEMPT: Final = guarded("attempt")


class Call:
    """One API call: its span, its attempts, and the account its outcome goes to."""

    __slots__ = (
        "_done", "account", "asked", "attempt_end", "attempt_open", "attempt_outcome",
        "attempts", "backoff", "declared", "first_token", "labels", "op", "own", "span", "spent",
        "start", "state", "target", "values", "wait",
    )  # fmt: skip

    def __init__(
        self,
        state: State,
        op: Operation,
        labels: tuple[str, str, str, str],
        account: Account | None,
        own: bool,
        span: Span,
        stream: bool,
        target: tuple[str, str] = (UNKNOWN, UNKNOWN),
    ) -> None:
        self.state = state
        self.target = target  # (provider, model) of the request: its rate limits' series
        self.op = op
        self.labels = labels  # (operation, provider, model, call_site) as the call started
        self.account = account  # None: an unscoped video poll (a job step, not a request)
        self.own = own  # the call is the logical request (no enclosing scope)
        self.spent: Spent | None = None  # the usage and cost its answer reported
        self.declared: Declared | None = None  # what its request declares (`_judged.declare`)
        self.span = span
        # Span attributes gathered during the call, set once at its end.
        self.values: dict[str, Any] = {
            _spans.OPENAI_API_TYPE: op.api_type,
            _spans.GEN_AI_REQUEST_STREAM: stream,
        }
        self.start = time.perf_counter()
        self.first_token: float | None = None
        self.attempts = 0
        self.attempt_outcome: Outcome | None = None
        self.attempt_end = 0.0
        self.attempt_open = False  # an attempt started and not yet answered
        self.wait: float | None = None  # the backoff before the current attempt
        self.backoff = 0.0  # all of them: the call's time not spent in attempts
        self.asked: float | None = None  # the wait the last answer asked for (Retry-After)
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    # ------------------------------------------------------------------ context

    def attach(self) -> tuple[Any, ...] | None:
        """Make the call current (its span, and its account when it owns one)."""
        try:
            call_token = active_call.set(self)
            ctx_token = otel_context.attach(trace.set_span_in_context(self.span))
            account_token = current_account.set(self.account) if self.own else None
            return call_token, ctx_token, account_token
        except Exception as exc:
            swallow("call_enter", exc)
            return None

    @staticmethod
    def detach(tokens: tuple[Any, ...] | None) -> None:
        if tokens is None:
            return
        try:
            call_token, ctx_token, account_token = tokens
            if account_token is not None:
                current_account.reset(account_token)
            otel_context.detach(ctx_token)
            active_call.reset(call_token)
        except Exception as exc:
            swallow("call_exit", exc)

    # ------------------------------------------------------------------ HTTP attempts

    def attempt_started(self, retry_count: int | None) -> None:
        """An HTTP attempt starts; after the first (or with a retry header) it is a retry."""
        with _ATTEMPT:
            self.attempts += 1
            self.attempt_open = True
            self.wait = None
            previous = self.attempt_outcome
            self.attempt_outcome = None
            if self.attempts > 1 or (retry_count is not None and retry_count > 0):
                reason = previous.reason if previous is not None and previous.reason else "unknown"
                status = previous.status_code if previous is not None else None
                wait = time.perf_counter() - self.attempt_end if self.attempt_end else None
                self.wait = wait
                self.backoff += wait or 0.0
                if self.account is not None:  # an error response: no usage to waste
                    self.account.record_retry(
                        reason, status_code=status, wait=wait, span=self.span, wasted=None,
                        retry_after=self.asked,
                    )  # fmt: skip

    def attempt_ended(
        self, outcome: Outcome | None, status_code: int | None = None, headers: Any = None
    ) -> None:
        """An HTTP attempt ended: answered (`outcome` None below 400, with the answer's status
        and headers) or not; counted, and its rate-limit headers read."""
        self.attempt_outcome = outcome
        self.attempt_end = time.perf_counter()
        self.attempt_open = False
        with _ATTEMPT:
            self.asked = _attempts.ended(self, outcome, status_code, headers, self.wait)

    # ------------------------------------------------------------------ recording

    def record(self, outcome: Outcome, result: Any = None) -> None:
        """Tokens, finish reasons, response attributes and video progress of an answer."""
        try:
            self._record(outcome, result)
        except Exception as exc:
            swallow("call_record", exc)

    def _record(self, outcome: Outcome, result: Any) -> None:
        account = self.account
        usage = outcome.usage
        cost = None
        if account is not None:
            if outcome.finish_reasons:
                account.count_finish_reasons(outcome.finish_reasons)
            if usage is not None:
                self.spent = spent = account.add_usage(usage)
                cost = spent.cost
        if outcome.video_status and outcome.response_id:
            if account is not None:
                account.track_video(outcome.response_id, outcome.video_status)
            else:
                self.state.video_jobs.update(outcome.response_id, outcome.video_status, self.labels)
        if not _spans.is_recording(self.span):
            return
        values = self.values
        # Written as the server sent them, but for a client key it may have echoed there.
        if outcome.response_model:
            values[_spans.GEN_AI_RESPONSE_MODEL] = mask_remembered(outcome.response_model)
        if outcome.response_id:
            values[_spans.GEN_AI_RESPONSE_ID] = mask_remembered(outcome.response_id)
        if outcome.finish_reasons:
            values[_spans.GEN_AI_FINISH_REASONS] = outcome.finish_reasons
        if usage is not None:
            for name, count in zip(_spans.USAGE_ATTRIBUTE_NAMES, usage, strict=True):
                if count is not None:
                    values[name] = count
        if cost is not None:
            values[_spans.COST_USD] = cost
        request_id = _request_id_of(result)
        if isinstance(request_id, str):
            values[_spans.REQUEST_ID] = mask_secrets(request_id)
        if outcome.video_status:
            values[_spans.VIDEO_STATUS] = outcome.video_status
        settings = self.state.settings
        if outcome.revised_prompt and settings.capture_content:
            limit = settings.max_content_length
            values[_spans.REVISED_PROMPT] = mask_secrets(outcome.revised_prompt, limit)

    def first_chunk(self, at: float) -> None:
        """A stream's first content arrived at perf_counter() `at`: time to first token."""
        ttft = at - self.start
        self.state.metrics.time_to_first_token.child(
            self.account.labels() if self.account is not None else self.labels
        ).observe(ttft)
        self.values[_spans.GEN_AI_TIME_TO_FIRST_CHUNK] = ttft

    # ------------------------------------------------------------------ the end

    def finish(self, outcome: Outcome, exc: BaseException | None = None) -> None:
        """End the call once: report to the account, settle an own request, end the span."""
        if self._done:
            return
        self._done = True
        failure_class = NONE if outcome.transient else outcome.failure_class
        reason = outcome.reason
        account = self.account
        try:
            if outcome.filters and account is not None:  # the one place they are counted
                account.count_filters(outcome.filters)
            if account is not None:  # the call's time, less its backoff, is attempt time
                account.root.timing[0] += time.perf_counter() - self.start - self.backoff
            if account is not None and (not self.op.is_poll or outcome.failure_class == SOFT):
                if isinstance(exc, asyncio.CancelledError):
                    account.call_cancelled(self.op.name)
                else:
                    account.call_finished(self.op.name, outcome, self.spent)
        except Exception as error:
            swallow("call_finish", error)
        finally:
            try:
                if self.own and account is not None:
                    failure_class, reason, _ = account.close(exc)
            finally:
                self._end_span(failure_class, reason, outcome, exc)

    def _end_span(
        self, failure_class: str, reason: str | None, outcome: Outcome, exc: BaseException | None
    ) -> None:
        if not _spans.is_recording(self.span):
            _spans.end_span(self.span, {})  # sampled out: nothing to set
            return
        values = self.values
        failed = failure_class != NONE
        try:
            values[_spans.FAILURE_CLASS] = failure_class
            account = self.account
            if account is not None:
                values[_spans.CALL_SITE] = account.call_site
                if self.own:
                    values[_spans.ATTEMPTS] = 1 + account.retries
                    values[_spans.RETRY_COUNT] = account.retries
                    if account.wasted_cost is not None:
                        values[_spans.WASTED_COST_USD] = account.wasted_cost
            if failed and reason is not None:
                values[_spans.FAILURE_REASON] = reason
                if outcome.reason == reason and outcome.error_type:
                    values[_spans.ERROR_TYPE] = outcome.error_type
                else:
                    values[_spans.ERROR_TYPE] = reason
            _spans.error_attributes(values, outcome)
        except Exception as error:
            swallow("call_finish", error)  # re-raised under a test suite: the span still ends
        finally:
            _spans.end_span(self.span, values, reason if failed else None, exc)


def _request_id_of(result: Any) -> Any:
    """The SDK's `_request_id` of a parsed response, read without pydantic's slow path."""
    for store in (getattr(result, "__dict__", None), getattr(result, "__pydantic_private__", None)):
        if isinstance(store, dict):
            value = store.get("_request_id")
            if value is not None:
                return value
    return None


def retrying_scope_site() -> str | None:
    """The call site of the enclosing traced scope when it retries (`retry=`), else None.

    >>> retrying_scope_site() is None  # outside any scope
    True
    """
    parent = current_account.get()
    if parent is not None and parent.root.retrying:
        return parent.root.call_site
    return None


def expire_video_jobs() -> None:
    """End the video jobs past their deadline (the next tracked call notices them, not only
    their own poll).

    >>> expire_video_jobs()  # no job: nothing to do
    """
    jobs = get_state().video_jobs
    if len(jobs):
        jobs.expire()


def start_call(
    op: Operation,
    model: str,
    provider: str,
    address: str | None,
    port: int | None,
    stream: bool,
) -> Call | None:
    """Start a call from what is known of it; None when even that failed (pass through)."""
    if _deferred.pending():
        _deferred.drain()  # a safe point: abandoned streams finish here
    try:
        return _start(op, model or UNKNOWN, provider, address, port, stream)
    except Exception as exc:
        swallow("call_start", exc)
        return None


def _start(
    op: Operation, model: str, provider: str, address: str | None, port: int | None, stream: bool
) -> Call:
    parent = current_account.get()
    # A call inside a request runs under the settings the request started with.
    state = parent.state if parent is not None else get_state()
    # Only the sampling-relevant attributes at start.
    start_values: dict[str, Any] = {
        _spans.GEN_AI_OPERATION: op.name,
        _spans.GEN_AI_PROVIDER: provider,
        _spans.GEN_AI_REQUEST_MODEL: model,
    }
    if address is not None:
        start_values[_spans.SERVER_ADDRESS] = address
    if port is not None:
        start_values[_spans.SERVER_PORT] = port
    span = _spans.start_span(state.tracer, f"{op.name} {model}", SpanKind.CLIENT, start_values)
    if parent is not None:
        try:  # a failure here loses a label or a retry, never the call
            parent.note_call(op.name, provider, model)
            if not op.is_poll:
                parent.call_started(op.name)
        except Exception as exc:
            swallow("call_start", exc)
        return Call(state, op, parent.labels(), parent, False, span, stream, (provider, model))
    labels = (op.name, provider, model, "unscoped")
    if op.is_poll:
        return Call(state, op, labels, None, False, span, stream, (provider, model))
    # The call is the logical request: its span gives the request's exemplar (trace_id).
    account = Account(
        state, "unscoped", operation=op.name, model=model, provider=provider, span=span
    )
    return Call(state, op, labels, account, True, span, stream, (provider, model))


def fail(call: Call, exc: BaseException, seen: Outcome | None = None) -> None:
    """The call raised `exc`: record what the error carries, then finish.

    `seen` is what a stream reported before it raised (its usage, finish reasons, filters):
    recorded too, since usage seen is usage counted (and wasted, as the call failed), however
    the stream ends. What the error carries adds only what `seen` lacks: nothing twice.
    """
    outcome = Outcome()
    try:
        with _RECORD:
            outcome = classify_exception(exc)
            if call.attempt_open:  # a raw HTTP request that got no answer
                call.attempt_ended(outcome)
            outcome = judged_error(call, exc, outcome)  # `parse()` ends as `create` would
            extra = outcome
            if seen is not None:
                call.record(seen)
                if seen.usage is not None or seen.finish_reasons:
                    extra = outcome._replace(
                        usage=None if seen.usage is not None else outcome.usage,
                        finish_reasons=() if seen.finish_reasons else outcome.finish_reasons,
                    )
                if seen.filters:  # counted once, at the finish
                    outcome = outcome._replace(filters=outcome.filters + seen.filters)
            if extra.usage is not None or extra.finish_reasons:
                call.record(extra)
    finally:
        call.finish(outcome, exc)


def send(call: Call, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """`wrapped(*args, **kwargs)` as `call`'s request: in its context, finished when it raises."""
    tokens = call.attach()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        Call.detach(tokens)
        fail(call, exc)
        raise
    Call.detach(tokens)
    return result


# The async twin of `send` (an await cannot be shared).
async def send_async(call: Call, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """`await wrapped(*args, **kwargs)` as `call`'s request (see `send`)."""
    tokens = call.attach()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        Call.detach(tokens)
        fail(call, exc)
        raise
    Call.detach(tokens)
    return result
