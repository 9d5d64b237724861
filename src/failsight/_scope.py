"""Traced scopes: `@traced_generation`, `current_generation()` and the logical-request account.

A `Generation` is one traced scope. The outermost one is the logical request: it counts
`genai_requests_total`, failures, attempts and duration exactly once. Inner scopes and
patched SDK calls contribute tokens, finish reasons, retries and failures to it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any, Final, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from failsight import _spans as attrs
from failsight._classify import (
    HARD,
    NONE,
    SILENT,
    SOFT,
    TOKEN_TYPES,
    Outcome,
    Usage,
    classify_exception,
    normalize_finish_reason,
    normalize_video_status,
)
from failsight._config import State, get_state
from failsight._guard import report_internal_error
from failsight._redact import sanitize_reason
from failsight._metrics import LabelChildren
from failsight._retry import RetryPolicy
from failsight.validators import Validator, prepare

__all__ = ["Generation", "current_generation", "traced_generation"]

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Generation | None] = contextvars.ContextVar(
    "failsight_generation", default=None
)

UNKNOWN: Final = "unknown"
_MAX_FINISH_REASONS: Final = 64  # per span attribute
_MAX_COLLECTED: Final = 1 << 20  # characters of generator output kept for validators
_VIDEO_FAILURE: Final = {"failed": "video_failed", "cancelled": "video_cancelled"}
_FAILURE_CLASSES: Final = frozenset({HARD, SOFT, SILENT})


def current_generation() -> Generation | None:
    """The innermost traced scope running now, or None.

    >>> @traced_generation(name="image")
    ... def make_image():
    ...     current_generation().mark_failure("soft", "image_filtered")
    """
    return _current.get()


def _is_generic(exc: BaseException, outcome: Outcome) -> bool:
    """Exceptions that a failure recorded inside the scope explains better (SPEC §2).

    The seed article raises ValueError after a content_filter and a bare TimeoutError after a
    video stuck in queue: the recorded soft failure is the real reason.
    """
    return outcome.reason == "exception" or type(exc) is TimeoutError


class Generation:
    """The handle of one traced scope, for code that talks HTTP itself.

    Every method is safe to call at any time: telemetry errors are counted, never raised.
    """

    __slots__ = (
        "__weakref__",
        "_children",
        "_children_version",
        "_client_span",
        "_closed",
        "_exemplar",
        "_failure",
        "_finish_reasons",
        "_in_flight",
        "_inner",
        "_labels_version",
        "_parent",
        "_root",
        "_span",
        "_start",
        "_state",
        "_usage",
        "_video_keys",
        "_waited",
        "call_site",
        "model",
        "operation",
        "provider",
        "retries",
    )

    def __init__(
        self,
        state: State,
        call_site: str,
        *,
        operation: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        parent: Generation | None = None,
        span: Span | None = None,
        count: bool = True,
        client_span: bool = False,
    ) -> None:
        self._state = state
        self._parent = parent
        self._root: Generation = parent._root if parent is not None else self
        self.call_site = call_site
        self.operation = operation or UNKNOWN
        self.model = model or UNKNOWN
        self.provider = provider or UNKNOWN
        self.retries = 0
        self._span = span
        self._client_span = client_span  # the span is an SDK call's: it has the call's details
        self._exemplar: dict[str, str] | None = attrs.exemplar_of(span)
        self._failure: tuple[str, str] | None = None  # marked by the user; sticky
        self._inner: tuple[str, str, str] | None = None  # (operation, class, reason) of last call
        self._finish_reasons: list[str] = []
        self._usage: dict[str, int] = {}
        self._video_keys: list[Any] = []
        self._closed = False
        self._waited = 0.0
        self._start = time.perf_counter()
        self._in_flight: Any = None
        # The metric children of the labels at `_children_version`; kept on the root only.
        self._children: LabelChildren | None = None
        self._children_version = -1
        self._labels_version = 0
        if parent is None and count:
            self._in_flight = self.metric_children().of("in_flight")
            self._in_flight.inc()

    # ------------------------------------------------------------------ labels

    def labels(self) -> tuple[str, str, str, str]:
        """(operation, provider, model, call_site) of the logical request."""
        root = self._root
        return (root.operation, root.provider, root.model, root.call_site)

    def metric_children(self) -> LabelChildren:
        """The metric children of the current labels, looked up once per label change.

        Writers bump the root's `_labels_version` after changing a label; the version is read
        before the labels, so children cached while a label changed are never reused.
        """
        root = self._root
        version = root._labels_version
        children = root._children
        if (
            children is None
            or root._children_version != version
            or children.epoch != self._state.metrics.children_epoch  # the cap changed
        ):
            children = self._state.metrics.children(self.labels())
            root._children, root._children_version = children, version
        return children

    def note_call(self, operation: str, provider: str, model: str) -> None:
        """Fill unknown labels from an API call made inside the scope (first call wins)."""
        root = self._root
        filled = UNKNOWN in (root.operation, root.provider, root.model)
        for gen in (self, root):
            if gen.operation == UNKNOWN:
                gen.operation = operation
            if gen.provider == UNKNOWN:
                gen.provider = provider
            if gen.model == UNKNOWN:
                gen.model = model
        if filled:
            root._labels_version += 1

    # ------------------------------------------------------------------ public handle

    def set_model(self, model: str) -> None:
        """Set the model label (e.g. after reading it from a raw request body)."""
        try:
            if isinstance(model, str) and model:
                root = self._root
                self.model = model
                if root.model == UNKNOWN:
                    root.model = model
                root._labels_version += 1
        except Exception:
            report_internal_error("set_model")

    def record_finish_reason(self, finish_reason: str) -> None:
        """Count one returned choice's finish reason; `content_filter`/`length` fail the scope."""
        try:
            reason = normalize_finish_reason(finish_reason) or "other"
            self.count_finish_reasons((reason,))
            if reason in ("content_filter", "length"):
                self._failure = (SOFT, reason)
        except Exception:
            report_internal_error("record_finish_reason")

    def count_finish_reasons(self, reasons: Iterable[str]) -> None:
        """Count normalised finish reasons without judging the scope (the patch judges calls)."""
        children = self.metric_children()
        for reason in reasons:
            children.of("finish_reasons", reason).inc()
            gen: Generation | None = self
            while gen is not None:
                if len(gen._finish_reasons) < _MAX_FINISH_REASONS:
                    gen._finish_reasons.append(reason)
                gen = gen._parent

    def record_usage(
        self,
        input: int | None = None,
        output: int | None = None,
        reasoning: int | None = None,
        cached_input: int | None = None,
    ) -> None:
        """Count tokens reported by one API response."""
        try:
            counts = [
                count
                if isinstance(count, int) and not isinstance(count, bool) and count >= 0
                else None
                for count in (input, output, reasoning, cached_input)
            ]
        except Exception:
            report_internal_error("record_usage")
            return
        self.add_usage(Usage(*counts))

    def add_usage(self, usage: Usage) -> None:
        """Count a response's usage, whose counts are non-negative ints or None (the classifier's
        `extract_usage` makes them so)."""
        try:
            children = self.metric_children()
            otel = self._state.otel_tokens
            for token_type, count in zip(TOKEN_TYPES, usage, strict=True):
                if count is None:
                    continue
                children.of("tokens", token_type).inc(count)
                gen: Generation | None = self
                while gen is not None:
                    gen._usage[token_type] = gen._usage.get(token_type, 0) + count
                    gen = gen._parent
                if otel is not None and token_type in ("input", "output"):
                    labels = self.labels()
                    otel.record(
                        count,
                        {
                            attrs.GEN_AI_OPERATION: labels[0],
                            attrs.GEN_AI_PROVIDER: labels[1],
                            attrs.GEN_AI_REQUEST_MODEL: labels[2],
                            attrs.GEN_AI_TOKEN_TYPE: token_type,
                        },
                    )
        except Exception:
            report_internal_error("record_usage")

    def record_retry(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        wait: float | None = None,
        span: Span | None = None,
    ) -> None:
        """Count one retry of the logical request, with the reason of the attempt that failed.

        The `retry` event goes on `span` (an SDK call's span) or else on the scope's span.
        """
        try:
            reason = sanitize_reason(str(reason))
            root = self._root
            root.retries += 1
            self._state.metrics.retries.child((*self.labels(), reason)).inc()
            event: dict[str, Any] = {"attempt": root.retries + 1, "reason": reason}
            if status_code is not None:
                event["status_code"] = status_code
            if wait is not None:
                event["wait_seconds"] = float(wait)
            span = span or self._span
            if span is not None and span.is_recording():
                span.add_event("retry", event)
        except Exception:
            report_internal_error("record_retry")

    def record_video_status(self, status: str, *, job_id: str | None = None) -> None:
        """Advance this scope's video job (or the job `job_id`); a failed end fails the scope."""
        try:
            normalized = normalize_video_status(status)
            if normalized is None:
                return
            key: Any = job_id if job_id is not None else ("scope", id(self._root))
            self.track_video(key, normalized)
            failure = _VIDEO_FAILURE.get(normalized)
            if failure is not None:
                self._failure = (SOFT, failure)
        except Exception:
            report_internal_error("record_video_status")

    def track_video(self, key: Any, status: str) -> str | None:
        """Advance video job `key` with a normalised status; remembered so that a scope that
        ends in an exception while its job is still open ends the job `timed_out`."""
        root = self._root
        if key not in root._video_keys and len(root._video_keys) < _MAX_FINISH_REASONS:
            root._video_keys.append(key)
        return self._state.video_jobs.update(key, status, self.labels())

    def mark_failure(self, failure_class: str, reason: str) -> None:
        """Mark the scope failed: `failure_class` is "hard", "soft" or "silent"."""
        try:
            if failure_class not in _FAILURE_CLASSES:
                raise ValueError(f"failure_class must be hard, soft or silent: {failure_class!r}")
            self._failure = (failure_class, sanitize_reason(str(reason)))
        except Exception:
            report_internal_error("mark_failure")

    # ------------------------------------------------------------------ patch hooks

    def call_started(self, operation: str) -> None:
        """A new API call begins: after a failed call of the same operation it is a retry."""
        inner = self._inner
        if inner is not None and inner[0] == operation:
            self._inner = None
            self.record_retry(inner[2])

    def call_finished(self, operation: str, outcome: Outcome) -> None:
        """An API call inside the scope ended with `outcome` (tokens etc. recorded separately)."""
        if outcome.failed and not outcome.transient:
            self._inner = (operation, outcome.failure_class, outcome.reason or "exception")
        elif self._inner is not None and self._inner[0] == operation:
            self._inner = None

    # ------------------------------------------------------------------ lifecycle

    def enter(self) -> tuple[contextvars.Token[Generation | None], object | None]:
        span = self._span
        ctx_token = (
            otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        )
        return _current.set(self), ctx_token

    def exit(self, tokens: tuple[contextvars.Token[Generation | None], object | None]) -> None:
        gen_token, ctx_token = tokens
        _current.reset(gen_token)
        if ctx_token is not None:
            otel_context.detach(ctx_token)  # type: ignore[arg-type]

    def _resolve(
        self, exc: BaseException | None, validation: tuple[str, str] | None
    ) -> tuple[str, str | None, Outcome | None]:
        outcome = classify_exception(exc) if exc is not None else None
        if outcome is not None and not _is_generic(exc, outcome):  # type: ignore[arg-type]
            return outcome.failure_class, outcome.reason, outcome
        if self._failure is not None:
            return self._failure[0], self._failure[1], outcome
        if self._inner is not None:
            return self._inner[1], self._inner[2], outcome
        if outcome is not None:
            return outcome.failure_class, outcome.reason, outcome
        if validation is not None:
            return validation[0], validation[1], None
        return NONE, None, None

    def finish(
        self,
        exc: BaseException | None = None,
        *,
        result: Any = None,
        validators: tuple[tuple[str, Validator], ...] = (),
        validate: bool = False,
        span_attributes: dict[str, Any] | None = None,
    ) -> None:
        """End the scope once: resolve its outcome, record metrics, end its span.

        `span_attributes` are set on the span with the scope's own, in one call.
        """
        if self._closed:
            return
        self._closed = True
        validation = None
        if validate and validators:
            validation = _run_validators(validators, result)
        if exc is not None and self._parent is None:
            for key in self._video_keys:
                if self._state.video_jobs.end(key):
                    self._failure = (SOFT, "video_timeout")
        failure_class, reason, outcome = self._resolve(exc, validation)
        duration = time.perf_counter() - self._start
        if self._parent is not None:
            if failure_class != NONE and reason is not None:
                self._parent._failure = (failure_class, reason)
        else:
            self._count(failure_class, reason, duration)
        self._end_span(failure_class, reason, outcome, exc, span_attributes)

    def _count(self, failure_class: str, reason: str | None, duration: float) -> None:
        children = self.metric_children()
        exemplar = self._exemplar
        children.of("requests", failure_class).inc(exemplar=exemplar)
        if failure_class != NONE:
            failures = self._state.metrics.failures
            values = (*self.labels(), failure_class, reason or "exception")
            failures.child(values).inc(exemplar=exemplar)
        children.of("attempts").observe(1 + self.retries)
        children.of("duration", failure_class).observe(duration, exemplar=exemplar)
        if self._in_flight is not None:
            self._in_flight.dec()
        otel = self._state.otel_duration
        if otel is not None:
            labels = self.labels()
            point = {
                attrs.GEN_AI_OPERATION: labels[0],
                attrs.GEN_AI_PROVIDER: labels[1],
                attrs.GEN_AI_REQUEST_MODEL: labels[2],
            }
            if failure_class != NONE:
                point[attrs.ERROR_TYPE] = reason or "exception"
            otel.record(duration, point)

    def _end_span(
        self,
        failure_class: str,
        reason: str | None,
        outcome: Outcome | None,
        exc: BaseException | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        span = self._span
        if span is None:
            return
        if span.is_recording():
            root = self._root
            values: dict[str, Any] = extra if extra is not None else {}
            values[attrs.FAILURE_CLASS] = failure_class
            values[attrs.ATTEMPTS] = 1 + root.retries
            values[attrs.RETRY_COUNT] = root.retries
            values[attrs.CALL_SITE] = self.call_site
            if reason is not None:
                values[attrs.FAILURE_REASON] = reason
            if not self._client_span:  # an SDK call's span has these from the call itself
                if self._finish_reasons:
                    values[attrs.GEN_AI_FINISH_REASONS] = tuple(self._finish_reasons)
                for token_type, count in self._usage.items():
                    values[attrs.USAGE_ATTRIBUTES[token_type]] = count
                if self.model != UNKNOWN:
                    values[attrs.GEN_AI_REQUEST_MODEL] = self.model
                if self.operation != UNKNOWN:
                    values[attrs.GEN_AI_OPERATION] = self.operation
            if outcome is not None:
                attrs.error_attributes(values, outcome)
            if failure_class != NONE:
                if outcome is not None and outcome.reason == reason and outcome.error_type:
                    values[attrs.ERROR_TYPE] = outcome.error_type
                else:
                    values[attrs.ERROR_TYPE] = reason or "exception"
                span.set_status(Status(StatusCode.ERROR, reason))
            span.set_attributes(values)
            if exc is not None:
                attrs.add_exception_event(span, exc)
        span.end()


def _run_validators(
    validators: tuple[tuple[str, Validator], ...], result: Any
) -> tuple[str, str] | None:
    for reason, validator in validators:
        try:
            ok = validator(result)
        except Exception:
            # A raising validator fails the call and is counted as a telemetry error.
            with contextlib.suppress(Exception):  # re-raised only under the test suite
                report_internal_error("validator")
            return SILENT, reason
        if ok is False:
            return SILENT, reason
    return None


# ---------------------------------------------------------------------- the decorator


def _open(
    call_site: str, operation: str | None, model: str | None, kind: SpanKind = SpanKind.INTERNAL
) -> Generation | None:
    try:
        state = get_state()
        parent = _current.get()
        span = state.tracer.start_span(call_site, kind=kind)
        gen = Generation(
            state, call_site, operation=operation, model=model, parent=parent, span=span
        )
        if parent is not None:
            parent.note_call(gen.operation, gen.provider, gen.model)
        return gen
    except Exception:
        report_internal_error("scope_start")
        return None


def _guard(stage: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception:
        report_internal_error(stage)
        return None


def _retry_wait(
    gen: Generation, policy: RetryPolicy | None, attempt: int, exc: BaseException
) -> float | None:
    """The wait before re-running after `exc`, recording the retry; None to give up."""
    if policy is None:
        return None
    outcome = classify_exception(exc)
    # With an injected (fake) sleep no real time passes: the deadline counts planned waits.
    elapsed = max(time.perf_counter() - gen._start, gen._waited)
    wait = policy.wait_before_next(attempt, outcome, elapsed)
    if wait is not None:
        gen._waited += wait
        gen._inner = None  # the re-run's own calls are not retries of this attempt's calls
        gen.record_retry(outcome.reason or "exception", status_code=outcome.status_code, wait=wait)
    return wait


def _join(items: list[Any]) -> Any:
    if all(isinstance(item, str) for item in items):
        return "".join(items)
    if all(isinstance(item, (bytes, bytearray)) for item in items):
        return b"".join(items)
    return items


# Steps shared by the four wrappers; each is guarded, so none can reach the caller.


def _leave(gen: Generation, tokens: Any) -> None:
    if tokens is not None:
        _guard("scope_exit", gen.exit, tokens)


def _attempt_failed(
    gen: Generation, tokens: Any, policy: RetryPolicy | None, attempt: int, exc: BaseException
) -> float | None:
    """Leave the attempt; the wait before re-running, or None after finishing the scope."""
    _leave(gen, tokens)
    wait: float | None = _guard("retry", _retry_wait, gen, policy, attempt, exc)
    if wait is None:
        _guard("scope_finish", gen.finish, exc)
    return wait


def _succeeded(gen: Generation, tokens: Any, result: Any, validators: Any, validate: bool) -> None:
    _leave(gen, tokens)
    _guard("scope_finish", gen.finish, result=result, validators=validators, validate=validate)


def _failed(gen: Generation, tokens: Any, exc: BaseException) -> None:
    _leave(gen, tokens)
    _guard("scope_finish", gen.finish, exc)


class _Collector:
    """Generator output kept for validators, bounded."""

    __slots__ = ("items", "size")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.size = 0

    def add(self, item: Any) -> None:
        if self.size < _MAX_COLLECTED:
            self.items.append(item)
            self.size += len(item) if isinstance(item, (str, bytes)) else 1


def _wrap_sync(
    fn: Callable[..., Any], site: str, operation: str | None, model: str | None,
    validators: tuple[tuple[str, Validator], ...], policy: RetryPolicy | None,
) -> Callable[..., Any]:  # fmt: skip
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = _open(site, operation, model)
        if gen is None:
            return fn(*args, **kwargs)
        attempt = 0
        while True:
            tokens = _guard("scope_enter", gen.enter)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                wait = _attempt_failed(gen, tokens, policy, attempt, exc)
                if wait is None:
                    raise
                attempt += 1
                try:
                    policy.sleep(wait)  # type: ignore[union-attr]
                except BaseException:
                    _guard("scope_finish", gen.finish, exc)
                    raise
                continue
            _succeeded(gen, tokens, result, validators, True)
            return result

    return wrapper


def _wrap_async(
    fn: Callable[..., Any], site: str, operation: str | None, model: str | None,
    validators: tuple[tuple[str, Validator], ...], policy: RetryPolicy | None,
) -> Callable[..., Any]:  # fmt: skip
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = _open(site, operation, model)
        if gen is None:
            return await fn(*args, **kwargs)
        attempt = 0
        while True:
            tokens = _guard("scope_enter", gen.enter)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                wait = _attempt_failed(gen, tokens, policy, attempt, exc)
                if wait is None:
                    raise
                attempt += 1
                try:
                    await policy.async_sleep(wait)  # type: ignore[union-attr]
                except BaseException:
                    _guard("scope_finish", gen.finish, exc)
                    raise
                continue
            _succeeded(gen, tokens, result, validators, True)
            return result

    return wrapper


def _wrap_generator(
    fn: Callable[..., Any], site: str, operation: str | None, model: str | None,
    validators: tuple[tuple[str, Validator], ...],
) -> Callable[..., Any]:  # fmt: skip
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner = fn(*args, **kwargs)
        gen = _open(site, operation, model)
        if gen is None:
            return (yield from inner)
        collected = _Collector() if validators else None
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            tokens = _guard("scope_enter", gen.enter)
            try:
                item = inner.throw(thrown) if thrown is not None else inner.send(sent)
            except StopIteration as stop:
                result = _join(collected.items) if collected is not None else None
                _succeeded(gen, tokens, result, validators, collected is not None)
                return stop.value
            except BaseException as exc:
                _failed(gen, tokens, exc)
                raise
            _leave(gen, tokens)
            if collected is not None:
                collected.add(item)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                tokens = _guard("scope_enter", gen.enter)
                try:
                    inner.close()  # the generator's own cleanup runs inside its scope
                finally:
                    _succeeded(gen, tokens, None, (), False)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


def _wrap_async_generator(
    fn: Callable[..., Any], site: str, operation: str | None, model: str | None,
    validators: tuple[tuple[str, Validator], ...],
) -> Callable[..., Any]:  # fmt: skip
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner = fn(*args, **kwargs)
        gen = _open(site, operation, model)
        if gen is None:
            async for item in inner:
                yield item
            return
        collected = _Collector() if validators else None
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            tokens = _guard("scope_enter", gen.enter)
            try:
                if thrown is not None:
                    item = await inner.athrow(thrown)
                else:
                    item = await inner.asend(sent)
            except StopAsyncIteration:
                result = _join(collected.items) if collected is not None else None
                _succeeded(gen, tokens, result, validators, collected is not None)
                return
            except BaseException as exc:
                _failed(gen, tokens, exc)
                raise
            _leave(gen, tokens)
            if collected is not None:
                collected.add(item)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                tokens = _guard("scope_enter", gen.enter)
                try:
                    await inner.aclose()
                finally:
                    _succeeded(gen, tokens, None, (), False)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


@overload
def traced_generation(func: F, /) -> F: ...


@overload
def traced_generation(
    func: None = None,
    /,
    *,
    name: str | None = None,
    operation: str | None = None,
    model: str | None = None,
    validate: Iterable[Validator] | Validator | None = (),
    retry: int | RetryPolicy | None = None,
) -> Callable[[F], F]: ...


def traced_generation(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    operation: str | None = None,
    model: str | None = None,
    validate: Iterable[Validator] | Validator | None = (),
    retry: int | RetryPolicy | None = None,
) -> Any:
    """Trace a call site that generates with an OpenAI-compatible API.

    Works on sync and async functions, generators and async generators, bare or with
    options. The return value and exceptions pass through unchanged.

    >>> from failsight.validators import json_output
    >>> @traced_generation(name="extract", validate=[json_output()], retry=3)
    ... def extract(text: str) -> str:
    ...     return '{"ok": true}'
    >>> extract("hello")
    '{"ok": true}'
    """
    for option, value in (("name", name), ("operation", operation), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"traced_generation({option}=...) takes a non-empty str, got {value!r}")
    validators = prepare(validate)
    policy = RetryPolicy.coerce(retry)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"traced_generation decorates functions, got {fn!r}")
        site = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            if policy is not None:
                raise TypeError(
                    f"traced_generation(retry=...) cannot re-run generator {site}: items "
                    "already yielded cannot be taken back; retry inside it instead"
                )
            if inspect.isasyncgenfunction(fn):
                wrapper = _wrap_async_generator(fn, site, operation, model, validators)
            else:
                wrapper = _wrap_generator(fn, site, operation, model, validators)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _wrap_async(fn, site, operation, model, validators, policy)
        else:
            wrapper = _wrap_sync(fn, site, operation, model, validators, policy)
        return functools.wraps(fn)(wrapper)  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
