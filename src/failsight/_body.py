"""Raw HTTP response bodies, observed as the caller reads them.

`Decoder` undoes Content-Encoding and frames server-sent events; `BodyWatcher` (a stream
`Watcher`) judges what the decoder yields: SSE events of text routes through the stream
judge, any other body kept up to a bound and classified at its end. Nothing is read ahead
of the caller or buffered beyond the bounds.
"""

from __future__ import annotations

import json
import types
import zlib
from collections.abc import Callable
from typing import Any, Final

from failsight._classify import classify_result
from failsight._declared import StreamAnswer
from failsight._engine import Call, fail
from failsight._guard import guarded, swallow
from failsight._judged import declare, judged
from failsight._stream_judge import StreamJudge
from failsight._streams import Watcher
from failsight._taxonomy import HARD, SOFT, VIDEO_TERMINAL, Outcome

__all__ = [
    "BodyWatcher", "Decoder", "Unsupported", "declare_body", "judge_content", "make_decoder",
]  # fmt: skip

_MAX_BODY: Final = 1 << 20  # streamed non-SSE body kept to classify at its end
_MAX_LINE: Final = 1 << 20  # one SSE line; longer and the stream is no longer observed
_SSE_KINDS: Final = frozenset({"chat", "text_completion", "responses"})
_CLEANUP: Final = guarded("http")


class Unsupported(Exception):
    """A content encoding the decoder cannot undo: the body is left unobserved."""


def make_decoder(headers: Any) -> Any:
    """A zlib decompressor for the response's Content-Encoding, None for identity."""
    encoding = headers.get("content-encoding")
    if not encoding:
        return None
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise Unsupported(encoding)


class Decoder:
    """Bytes as read → decompressed bytes, or SSE `data:` payloads when `sse`."""

    __slots__ = ("data", "pending", "sse", "zlib")

    def __init__(self, decompressor: Any, sse: bool) -> None:
        self.zlib = decompressor
        self.sse = sse
        self.pending = b""
        self.data: list[bytes] = []

    def feed(self, data: Any, emit: Callable[[bytes], None]) -> None:
        if isinstance(data, str):  # requests' iter_content(decode_unicode=True)
            data = data.encode("utf-8")
        if self.zlib is not None:
            data = self.zlib.decompress(data)
        if not self.sse:
            emit(bytes(data))
            return
        lines = (self.pending + data if self.pending else bytes(data)).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > _MAX_LINE:
            raise Unsupported("an SSE line past the bound")
        for line in lines:
            self._line(line, emit)

    def flush(self, emit: Callable[[bytes], None]) -> None:
        """The body ran out: what is buffered is complete."""
        if self.zlib is not None:
            tail = self.zlib.flush()
            if tail:
                self.feed_plain(tail, emit)
        if self.sse:
            if self.pending:
                self._line(self.pending, emit)
                self.pending = b""
            self._dispatch(emit)

    def feed_plain(self, data: bytes, emit: Callable[[bytes], None]) -> None:
        zlib_, self.zlib = self.zlib, None
        try:
            self.feed(data, emit)
        finally:
            self.zlib = zlib_

    def _line(self, line: bytes, emit: Callable[[bytes], None]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch(emit)
        elif line.startswith(b"data:"):
            value = line[5:]
            self.data.append(value[1:] if value.startswith(b" ") else value)

    def _dispatch(self, emit: Callable[[bytes], None]) -> None:
        if self.data:
            payload = self.data[0] if len(self.data) == 1 else b"\n".join(self.data)
            self.data = []
            if payload != b"[DONE]":
                emit(payload)


def _namespace(fields: dict[str, Any]) -> types.SimpleNamespace:
    return types.SimpleNamespace(**fields)


class BodyWatcher(Watcher):
    """One raw call's streamed body: events judged as they pass, or the body at its end."""

    __slots__ = ("answer", "call", "chunks", "cleanup", "decoder", "invalid", "job_id", "judge",
                 "lost", "size", "status")  # fmt: skip

    def __init__(
        self, call: Call, job_id: str | None, status: int, sse: bool, decompressor: Any
    ) -> None:
        super().__init__()
        self.call = call
        self.job_id = job_id
        self.status = status
        text_events = sse and call.op.kind in _SSE_KINDS
        self.judge = StreamJudge(call.op.kind) if text_events else None
        declared = call.declared if text_events else None
        # The streamed answer put back together, when its request declared what it should be.
        self.answer = StreamAnswer(call.op.kind, declared.output is not None) if declared else None
        # Other event streams (e.g. partial images) are not judged: their status is all we know.
        self.lost = sse and not text_events
        self.decoder = Decoder(decompressor, text_events)
        self.chunks: list[bytes] = []
        self.size = 0
        self.invalid: BaseException | None = None
        self.cleanup: Callable[[], None] | None = None

    def on_chunk(self, item: Any) -> None:
        if self.lost:
            return
        try:
            self.decoder.feed(item, self._take)
        except Unsupported:
            self.lost = True  # not a body we can follow; the caller's read is unaffected
        except Exception:
            self.lost = True
            raise

    def _take(self, payload: bytes) -> None:
        judge = self.judge
        if judge is None:
            self.size += len(payload)
            if self.size > _MAX_BODY:
                self.lost = True
                self.chunks = []
            else:
                self.chunks.append(payload)
            return
        try:
            item = json.loads(payload, object_hook=_namespace)
        except (ValueError, RecursionError) as exc:
            if self.invalid is None:
                self.invalid = exc.with_traceback(None)
            return
        judge.chunk(item)
        if self.answer is not None:
            self.answer.chunk(item)

    def on_end(self, exhausted: bool, exc: BaseException | None) -> None:
        call = self.call
        exhausted = exhausted and not self.lost
        if exhausted:
            try:
                self.decoder.flush(self._take)
            except Unsupported:
                self.lost = True
            exhausted = not self.lost
        judge = self.judge
        if judge is not None:
            if judge.first_token is not None:
                call.first_chunk(judge.first_token)
            if exc is None and self.invalid is not None:
                exc = self.invalid  # an undecodable event: hard `invalid_response`, as the SDK
            if exc is not None:
                fail(call, exc, judge.outcome(exhausted=False))  # what it reported still counts
                return
            outcome = judge.outcome(exhausted)
            answer = self.answer
            if answer is not None and (outcome.finish_reasons or answer.final is not None):
                outcome = judged(call, outcome, answer.answer())
            call.record(outcome)
            call.finish(outcome)
        elif exc is not None:
            fail(call, exc)
        elif exhausted:
            content, self.chunks = b"".join(self.chunks), []
            judge_content(call, self.job_id, self.status, content)
        else:
            # Closed before its end, or too large to keep: its status is all we know.
            call.finish(Outcome(status_code=self.status))

    def on_ended(self) -> None:
        try:
            self.call.finish(Outcome(status_code=self.status))  # only when on_end could not
        finally:
            cleanup, self.cleanup = self.cleanup, None
            if cleanup is not None:
                with _CLEANUP:
                    cleanup()


def judge_content(call: Call, job_id: str | None, status: int, content: bytes) -> None:
    """Judge a whole JSON body; a poll that finds its job past the deadline is `video_timeout`."""
    try:
        parsed = json.loads(content)
    except (ValueError, RecursionError):  # undecodable, or nested past what Python can read
        call.finish(Outcome(HARD, "invalid_response", status_code=status))
        return
    outcome = classify_result(parsed, kind=call.op.kind)
    if call.declared is not None:
        outcome = judged(call, outcome, parsed)
    key = None
    jobs = call.state.video_jobs
    if outcome.video_status is not None:
        if outcome.response_id is None and job_id:
            outcome = outcome._replace(response_id=job_id)
        key = outcome.response_id
    was_open = key is not None and jobs.is_open(key)
    call.record(outcome, parsed)
    if was_open and outcome.video_status not in VIDEO_TERMINAL and not jobs.is_open(key):
        # This poll's update ended the job `timed_out`: the job failed, as the scope should know.
        outcome = outcome._replace(failure_class=SOFT, reason="video_timeout")
    call.finish(outcome)


def declare_body(call: Call, fields: dict[str, Any]) -> None:
    """Keep on `call` what its decoded JSON request body declares (`_judged.declare`)."""
    try:
        declare(call, fields)
    except Exception as exc:
        swallow("http", exc)
