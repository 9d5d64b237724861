"""`@traced_generation`: a traced scope around a call site, in four shapes.

A scope opens an INTERNAL span and an account (`_account.Account`); the outermost scope's
account is the logical request. Each step is guarded, and when even opening fails the
wrapped function runs through the very same loop with no scope, so the caller sees exactly
what it would see undecorated (values sent into generators, exceptions thrown into them,
`close()`/`aclose()`).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import Any, Final, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from failsight import _deferred, _spans
from failsight._account import Account, current_account
from failsight._classify import classify_exception
from failsight._config import get_state
from failsight._decoration import check_decorated, check_options
from failsight._guard import guarded, swallow
from failsight._retry import RetryPolicy
from failsight._taxonomy import NONE, UNKNOWN
from failsight.validators import Collected, Validator, prepare, run

__all__ = ["traced_generation"]

F = TypeVar("F", bound=Callable[..., Any])
Validators = tuple[tuple[str, Validator], ...]

_START: Final = guarded("scope_start")
_RETRY: Final = guarded("retry")


class _Scope:
    """One run of a traced scope: its span and its account."""

    __slots__ = ("account", "span")

    def __init__(self, account: Account, span: Span) -> None:
        self.account = account
        self.span = span

    def enter(self) -> tuple[Any, Any] | None:
        try:
            token = current_account.set(self.account)
            return token, otel_context.attach(trace.set_span_in_context(self.span))
        except Exception as exc:
            swallow("scope_enter", exc)
            return None

    @staticmethod
    def exit(tokens: tuple[Any, Any] | None) -> None:
        if tokens is not None:
            try:
                current_account.reset(tokens[0])
                otel_context.detach(tokens[1])
            except Exception as exc:
                swallow("scope_exit", exc)

    def finish(
        self, exc: BaseException | None, result: Any = None, validators: Validators = ()
    ) -> None:
        """End once: validate, close the account (counts), then end the span, in `finally`s."""
        account = self.account
        if account.closed:
            return
        validation = None
        verdict: tuple[str, str | None, Any] = (NONE, None, None)
        try:
            if exc is None and validators:
                validation = run(validators, result)
        finally:
            try:
                verdict = account.close(exc, validation)
            finally:
                self._end_span(*verdict, exc)

    def _end_span(
        self, failure_class: str, reason: str | None, outcome: Any, exc: BaseException | None
    ) -> None:
        account = self.account
        values: dict[str, Any] = {}
        failed = failure_class != NONE
        if not _spans.is_recording(self.span):  # sampled out: nothing to set
            _spans.end_span(self.span, values)
            return
        try:
            root_retries = account.root.retries
            values[_spans.FAILURE_CLASS] = failure_class
            values[_spans.ATTEMPTS] = 1 + root_retries
            values[_spans.RETRY_COUNT] = root_retries
            values[_spans.CALL_SITE] = account.call_site
            if failed and reason is not None:
                values[_spans.FAILURE_REASON] = reason
            if account.finish_reasons:
                values[_spans.GEN_AI_FINISH_REASONS] = tuple(account.finish_reasons)
            share = account.share  # usage and cost of the scope, nested scopes included
            for token_type, count in dict(share.usage).items():  # a copy: threads may add
                values[_spans.USAGE_ATTRIBUTES[token_type]] = count
            if share.cost is not None:
                values[_spans.COST_USD] = share.cost
                if account.is_root and share.wasted_cost is not None:
                    values[_spans.WASTED_COST_USD] = share.wasted_cost
            if account.model != UNKNOWN:
                values[_spans.GEN_AI_REQUEST_MODEL] = account.model
            if account.operation != UNKNOWN:
                values[_spans.GEN_AI_OPERATION] = account.operation
            if outcome is not None:
                _spans.error_attributes(values, outcome)
            if failed:
                if outcome is not None and outcome.reason == reason and outcome.error_type:
                    values[_spans.ERROR_TYPE] = outcome.error_type
                else:
                    values[_spans.ERROR_TYPE] = reason or "exception"
        except Exception as error:
            swallow("scope_finish", error)  # re-raised under a test suite: the span still ends
        finally:
            _spans.end_span(self.span, values, (reason or "exception") if failed else None, exc)


def _open(
    site: str, operation: str | None, model: str | None, retrying: bool = False,
    judge_declared: bool | None = None,
) -> _Scope | None:  # fmt: skip
    if _deferred.pending():
        _deferred.drain()  # a safe point: abandoned streams and generators finish here
    try:
        parent = current_account.get()
        # A request runs under the settings it started with, whatever configure() does meanwhile.
        state = parent.state if parent is not None else get_state()
        span = _spans.start_span(state.tracer, site, SpanKind.INTERNAL)
        account = Account(state, site, operation=operation, model=model, parent=parent, span=span)
        account.retrying = retrying
        inherited = parent.judge_declared if parent is not None else None
        account.judge_declared = inherited if judge_declared is None else judge_declared
        if parent is not None:
            with _START:  # a failure here loses a label, never the scope
                parent.note_call(account.operation, account.provider, account.model)
        return _Scope(account, span)
    except Exception as exc:
        swallow("scope_start", exc)
        return None


# Steps shared by the four wrappers; each is guarded, and each accepts "no scope".


def _enter(scope: _Scope | None) -> Any:
    return scope.enter() if scope is not None else None


def _leave(scope: _Scope | None, tokens: Any) -> None:
    if scope is not None and tokens is not None:
        scope.exit(tokens)


def _end(
    scope: _Scope | None, exc: BaseException | None, result: Any = None, validators: Validators = ()
) -> None:
    if scope is not None:
        try:
            scope.finish(exc, result, validators)
        except Exception as error:
            swallow("scope_finish", error)


def _close_generator(scope: _Scope | None, collecting: bool) -> None:
    """A generator closed early: not a failure. Closed by the garbage collector, the
    recording is queued instead (a finaliser never records: it may run inside a lock)."""
    if scope is None:
        return
    if collecting:
        _deferred.defer(_end, scope, None)
    else:
        _end(scope, None)


def _retry_wait(
    scope: _Scope | None, policy: RetryPolicy | None, attempt: int, exc: BaseException,
    started: float,
) -> float | None:  # fmt: skip
    """The wait before re-running after `exc`, recording the retry; None to give up."""
    if policy is None or scope is None:
        return None
    with _RETRY:
        account = scope.account
        outcome = classify_exception(exc)
        # With an injected (fake) sleep no real time passes: the deadline counts planned waits.
        elapsed = max(time.perf_counter() - started, account.waited)
        wait = policy.wait_before_next(attempt, outcome, elapsed)
        if wait is not None:
            account.waited += wait
            account.record_retry(  # the attempt's usage is wasted, its failures forgotten
                outcome.reason or "exception", status_code=outcome.status_code, wait=wait,
                failure_class=outcome.failure_class, rerun=True, retry_after=outcome.retry_after,
            )  # fmt: skip
        return wait
    return None


def _wrap_sync(
    fn: Callable[..., Any],
    site: str,
    operation: str | None,
    model: str | None,
    validators: Validators,
    policy: RetryPolicy | None,
    declared: bool | None = None,
) -> Callable[..., Any]:
    retrying = policy is not None and policy.max_attempts > 1

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = _open(site, operation, model, retrying, declared)
        started = time.perf_counter()
        attempt = 0
        while True:
            tokens = _enter(scope)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _leave(scope, tokens)
                wait = _retry_wait(scope, policy, attempt, exc, started)
                if wait is None:
                    _end(scope, exc)
                    raise
                attempt += 1
                try:
                    policy.sleep(wait)  # type: ignore[union-attr]
                except BaseException:
                    _end(scope, exc)
                    raise
                continue
            _leave(scope, tokens)
            _end(scope, None, result, validators)
            return result

    return wrapper


# The async twin of _wrap_sync: the same loop with `await` (one cannot serve both).
def _wrap_async(
    fn: Callable[..., Any],
    site: str,
    operation: str | None,
    model: str | None,
    validators: Validators,
    policy: RetryPolicy | None,
    declared: bool | None = None,
) -> Callable[..., Any]:
    retrying = policy is not None and policy.max_attempts > 1

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = _open(site, operation, model, retrying, declared)
        started = time.perf_counter()
        attempt = 0
        while True:
            tokens = _enter(scope)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                _leave(scope, tokens)
                wait = _retry_wait(scope, policy, attempt, exc, started)
                if wait is None:
                    _end(scope, exc)
                    raise
                attempt += 1
                try:
                    await policy.async_sleep(wait)  # type: ignore[union-attr]
                except BaseException:
                    _end(scope, exc)
                    raise
                continue
            _leave(scope, tokens)
            _end(scope, None, result, validators)
            return result

    return wrapper


def _wrap_generator(
    fn: Callable[..., Any],
    site: str,
    operation: str | None,
    model: str | None,
    validators: Validators,
    declared: bool | None = None,
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner = fn(*args, **kwargs)
        scope = _open(site, operation, model, False, declared)
        collected = Collected() if validators and scope is not None else None
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            tokens = _enter(scope)
            try:
                item = inner.throw(thrown) if thrown is not None else inner.send(sent)
            except StopIteration as stop:
                _leave(scope, tokens)
                result = collected.joined() if collected is not None else None
                _end(scope, None, result, validators if collected is not None else ())
                return stop.value
            except BaseException as exc:
                _leave(scope, tokens)
                _end(scope, exc)
                raise
            _leave(scope, tokens)
            if collected is not None:
                collected.add(item)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                # Closed by the garbage collector: no context variable is touched (the
                # collection may have started inside a ContextVar.set of this thread).
                collecting = _deferred.in_gc()
                tokens = None if collecting else _enter(scope)
                try:
                    inner.close()  # the generator's own cleanup runs inside its scope
                finally:
                    _leave(scope, tokens)
                    _close_generator(scope, collecting)
                raise
            except BaseException as exc:
                thrown = exc

    return wrapper


# The async twin of _wrap_generator: asend/athrow/aclose instead of send/throw/close.
def _wrap_async_generator(
    fn: Callable[..., Any],
    site: str,
    operation: str | None,
    model: str | None,
    validators: Validators,
    declared: bool | None = None,
) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner = fn(*args, **kwargs)
        scope = _open(site, operation, model, False, declared)
        collected = Collected() if validators and scope is not None else None
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            tokens = _enter(scope)
            try:
                if thrown is not None:
                    item = await inner.athrow(thrown)
                else:
                    item = await inner.asend(sent)
            except StopAsyncIteration:
                _leave(scope, tokens)
                result = collected.joined() if collected is not None else None
                _end(scope, None, result, validators if collected is not None else ())
                return
            except BaseException as exc:
                _leave(scope, tokens)
                _end(scope, exc)
                raise
            _leave(scope, tokens)
            if collected is not None:
                collected.add(item)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                collecting = _deferred.in_gc()
                tokens = None if collecting else _enter(scope)
                try:
                    await inner.aclose()
                finally:
                    _leave(scope, tokens)
                    _close_generator(scope, collecting)
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
    judge_declared: bool | None = None,
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
    judge_declared: bool | None = None,
) -> Any:
    """Trace a call site that generates with an OpenAI-compatible API.

    Works on sync and async functions, generators and async generators, bare or with
    options. The return value and exceptions pass through unchanged. `judge_declared`
    (None: as `configure(judge_declared=...)` says) turns on or off, for the calls made
    inside, the judging of tool calls and structured output against what each request
    declares (tools, tool_choice, response_format); the innermost scope that says decides.

    >>> from failsight.validators import json_output
    >>> @traced_generation(name="extract", validate=[json_output()], retry=3)
    ... def extract(text: str) -> str:
    ...     return '{"ok": true}'
    >>> extract("hello")
    '{"ok": true}'
    """
    check_options(name, operation, model, judge_declared)
    validators = prepare(validate)
    policy = RetryPolicy.coerce(retry)

    def decorate(fn: F) -> F:
        check_decorated(fn)
        site = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            if policy is not None:
                raise TypeError(
                    f"traced_generation(retry=...) cannot re-run generator {site}: items "
                    "already yielded cannot be taken back; retry inside it instead"
                )
            if inspect.isasyncgenfunction(fn):
                wrapper = _wrap_async_generator(
                    fn, site, operation, model, validators, judge_declared
                )
            else:
                wrapper = _wrap_generator(fn, site, operation, model, validators, judge_declared)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _wrap_async(fn, site, operation, model, validators, policy, judge_declared)
        else:
            wrapper = _wrap_sync(fn, site, operation, model, validators, policy, judge_declared)
        return functools.wraps(fn)(wrapper)  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
