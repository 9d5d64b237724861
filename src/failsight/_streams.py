"""Streams: one lifecycle base, the SDK stream proxies and the stream judge's call watcher.

A `Watcher` owns the lifecycle of one observed stream: chunks, then exactly one end (run
out, error, close, context-manager exit, or abandonment). Subclasses own the telemetry
(`on_chunk`, `on_end`). Abandonment is seen by a finaliser, which never records: it queues
the end for the next safe point (`_deferred`). The proxies are transparent wrapt proxies of
the SDK's `Stream`/`AsyncStream` that show each chunk to a watcher.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

import wrapt

from failsight import _deferred
from failsight._content import OUTPUT, StreamText
from failsight._declared import StreamAnswer
from failsight._engine import Call, fail
from failsight._guard import guarded, swallow
from failsight._judged import judged
from failsight._spans import is_recording
from failsight._stream_judge import StreamJudge
from failsight._taxonomy import Outcome

__all__ = ["AsyncStreamProxy", "CallWatcher", "StreamProxy", "Watcher", "watch"]

_END: Final = guarded("stream_end")

if TYPE_CHECKING:
    _ProxyBase = wrapt.ObjectProxy[Any]
else:  # wrapt 1.x proxies are not generic at run time
    _ProxyBase = wrapt.ObjectProxy


class Watcher:
    """Chunks of one stream, then exactly one end; subclasses record."""

    __slots__ = ("_chunk_to", "_once")

    def __init__(self) -> None:
        self._once = [True]  # popped by the one end that runs: list.pop is atomic
        # Where chunks go when not to `on_chunk`: a subclass's judge, bound once (one call
        # less per chunk, and no reference cycle through a bound method of self).
        self._chunk_to: Any = None

    @property
    def ended(self) -> bool:
        return not self._once

    def chunk(self, item: Any) -> None:
        if self._once:
            try:
                take = self._chunk_to
                if take is None:
                    self.on_chunk(item)
                else:
                    take(item)
            except Exception as exc:
                swallow("stream_chunk", exc)

    def end(self, exhausted: bool = False, exc: BaseException | None = None) -> None:
        """End once: `exhausted` when the iteration ran out, `exc` when it raised."""
        try:
            self._once.pop()
        except IndexError:
            return
        try:
            with _END:
                self.on_end(exhausted, exc)
        finally:
            self.on_ended()

    def abandoned(self) -> None:
        """Called by a finaliser: the end is queued, never recorded here."""
        if self._once:
            _deferred.defer(self.end)

    # ------------------------------------------------------------------ for subclasses

    def on_chunk(self, item: Any) -> None:
        """One chunk as the caller got it."""

    def on_end(self, exhausted: bool, exc: BaseException | None) -> None:
        """Record the end (may raise: `on_ended` runs anyway)."""

    def on_ended(self) -> None:
        """Runs after `on_end` whatever it raised: finish what must be finished."""


class CallWatcher(Watcher):
    """A streamed answer of one call, judged by the stream judge; finishes the call."""

    __slots__ = ("answer", "call", "judge", "text")

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.call = call
        self.judge = StreamJudge(call.op.kind)
        settings = call.state.settings
        self.text: StreamText | None = None
        declared = call.declared
        # The answer put back together, when its request declared what it should be.
        self.answer = StreamAnswer(call.op.kind, declared.output is not None) if declared else None
        if settings.capture_content and is_recording(call.span):
            self.text = StreamText(settings.max_content_length)  # the assembled output
        elif self.answer is None:
            self._chunk_to = self.judge.chunk

    def on_chunk(self, item: Any) -> None:
        self.judge.chunk(item)
        if self.answer is not None:
            self.answer.chunk(item)
        if self.text is not None:
            self.text.chunk(self.call.op.kind, item)

    def on_end(self, exhausted: bool, exc: BaseException | None) -> None:
        call = self.call
        first = self.judge.first_token
        if first is not None:
            call.first_chunk(first)
        if exc is not None:
            fail(call, exc, self.judge.outcome(exhausted=False))  # what it reported still counts
            return
        outcome = self.judge.outcome(exhausted)
        if self.answer is not None and (outcome.finish_reasons or self.answer.final is not None):
            outcome = judged(call, outcome, self.answer.answer())  # whole: it has its end
        call.record(outcome)
        if self.text is not None:
            call.values[OUTPUT] = self.text.output_messages(outcome.finish_reasons)
        call.finish(outcome)

    def on_ended(self) -> None:
        self.call.finish(Outcome())  # only when on_end could not: finish runs once


class StreamProxy(_ProxyBase):
    """A transparent proxy of an SDK `Stream` that shows each chunk to a watcher."""

    def __init__(self, wrapped: Any, watcher: Watcher) -> None:
        super().__init__(wrapped)
        self._self_watcher = watcher

    def __iter__(self) -> Iterator[Any]:
        """The chunks, as the SDK's own `__iter__` gives them (a generator, like the SDK's).

        `for chunk in stream` runs here: the generator keeps the watcher and its judge in
        locals, so a chunk costs no attribute look-up on the proxy (each one goes through
        wrapt's attribute hook). Leaving the loop early (`break`) ends nothing: the stream
        ends as the SDK's does, on `close()`, the context manager's exit or abandonment.
        """
        watcher = self._self_watcher
        take = watcher._chunk_to
        once = watcher._once
        chunks = iter(self.__wrapped__)
        while True:
            try:
                item = next(chunks)
            except StopIteration:
                watcher.end(exhausted=True)
                return
            except BaseException as exc:
                watcher.end(exc=exc)
                raise
            if take is not None and once:
                try:
                    take(item)
                except Exception as exc:
                    swallow("stream_chunk", exc)
            else:
                watcher.chunk(item)
            yield item

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_watcher.end(exhausted=True)
            raise
        except BaseException as exc:
            self._self_watcher.end(exc=exc)
            raise
        watcher = self._self_watcher
        take = watcher._chunk_to
        if take is not None and watcher._once:  # the per-chunk path, one call shorter
            try:
                take(item)
            except Exception as exc:
                swallow("stream_chunk", exc)
        else:
            watcher.chunk(item)
        return item

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_watcher.end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_watcher.end()


# The async twin of StreamProxy: __anext__/__aexit__/close are awaited, so no code is shared.
class AsyncStreamProxy(_ProxyBase):
    """A transparent proxy of an SDK `AsyncStream` that shows each chunk to a watcher."""

    def __init__(self, wrapped: Any, watcher: Watcher) -> None:
        super().__init__(wrapped)
        self._self_watcher = watcher

    async def __aiter__(self) -> AsyncIterator[Any]:
        """The chunks, as the SDK's own `__aiter__` gives them (see `StreamProxy.__iter__`)."""
        watcher = self._self_watcher
        take = watcher._chunk_to
        once = watcher._once
        chunks = self.__wrapped__.__aiter__()
        while True:
            try:
                item = await chunks.__anext__()
            except StopAsyncIteration:
                watcher.end(exhausted=True)
                return
            except BaseException as exc:
                watcher.end(exc=exc)
                raise
            if take is not None and once:
                try:
                    take(item)
                except Exception as exc:
                    swallow("stream_chunk", exc)
            else:
                watcher.chunk(item)
            yield item

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_watcher.end(exhausted=True)
            raise
        except BaseException as exc:
            self._self_watcher.end(exc=exc)
            raise
        watcher = self._self_watcher
        take = watcher._chunk_to
        if take is not None and watcher._once:  # the per-chunk path, one call shorter
            try:
                take(item)
            except Exception as exc:
                swallow("stream_chunk", exc)
        else:
            watcher.chunk(item)
        return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_watcher.end()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_watcher.end()


def watch(call: Call, stream: Any, is_async: bool) -> Any:
    """`stream` (an SDK Stream/AsyncStream) proxied so that it finishes `call` at its end."""
    watcher = CallWatcher(call)
    proxy: Any = AsyncStreamProxy(stream, watcher) if is_async else StreamProxy(stream, watcher)
    weakref.finalize(proxy, watcher.abandoned)
    return proxy
