"""One HTTP request of the doctor, and what came back: status, headers, body, timing.

Every request is bounded three ways, so that no endpoint can hold the run: one deadline for
the whole exchange (the per-request timeout, or what is left of the run's deadline if that
is shorter), checked between reads (a drip of one byte a second never trips a read timeout);
a cap on the body, decompressed; and a worker thread that the caller stops waiting for at
that deadline. A request so ends at its deadline, plus 0.25 s at most (2.25 s when a whole
body is still being parsed). What the server sent is masked (`KeyMask`) as it arrives, before
any other text processing.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._secret import KeyMask, shown

__all__ = ["KINDS", "MAX_BODY", "Deadline", "Prober", "Reply", "error_fields"]

MAX_BODY: Final = 8 << 20  # bytes of a (decompressed) body: far above any API answer
_TEXT: Final = 2000  # characters of the body kept as text (for findings)
_HEADER: Final = 512  # characters of a header value kept
_GRACE_S: Final = 0.25  # past a request's deadline, the caller stops waiting for its worker
_PARSE_S: Final = 2.0  # more, when its body is all read and only being parsed
# No answer at all ("not_sent": the run's deadline had passed), or an answer cut short
# ("slow_body", "too_large"; "protocol" also when the body broke off): `status` says which.
KINDS: Final = ("connect", "tls", "timeout", "deadline", "protocol", "not_sent", "slow_body",
                "too_large")  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, or why there was none (``status is None``, ``error_kind`` set).

    An answer whose body did not arrive whole keeps its ``status`` and has ``error_kind``
    set too (``slow_body``, ``too_large``, ``protocol``); ``body`` is then None.
    """

    method: str
    url: str
    status: int | None
    probe: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    text: str = ""
    seconds: float = 0.0
    error_kind: str | None = None  # one of KINDS
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error_kind is None

    def json_dict(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


def error_fields(reply: Reply) -> tuple[str, str]:
    """The OpenAI error body's ``(code, message)``; empty strings when absent. A redirect
    is ``("redirect", "to <Location>")``. Both are printable and bounded."""
    status = reply.status or 0
    if 300 <= status < 400:
        return "redirect", f"to {shown(reply.headers.get('location', '(no Location)'), 160)}"
    error = reply.json_dict().get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        message = error.get("message") or ""
        return shown(code, 60), shown(" ".join(str(message).split()), 160)
    if isinstance(error, str):
        return "", shown(" ".join(error.split()), 160)
    return "", shown(" ".join(reply.text.split()), 160)


class Deadline:
    """The whole run's deadline, on a monotonic clock.

    >>> Deadline(60.0).left() <= 60.0
    True
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds

    def left(self) -> float:
        return self._ends - time.monotonic()


class _Unsupported(Exception):
    """A content encoding the doctor does not decode (it asks for gzip or deflate only)."""


def _decoder(encoding: str | None) -> Callable[[bytes, int], bytes]:
    """(chunk, room) -> at most `room` decoded bytes of it: a small gzip stays small here."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return lambda chunk, room: chunk[:room]
    if name in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif name == "deflate":
        inflate = zlib.decompressobj()
    else:
        raise _Unsupported(name)
    return lambda chunk, room: inflate.decompress(chunk, room)


class Prober:
    """Sends the doctor's requests with ``Authorization: Bearer <key>`` (or ``key_header``).

    ``headers`` adds headers per probe name (the fault server's scenario header in tests
    and in ``--against-fault-server``); ``transport`` replaces httpx's network transport;
    ``deadline`` bounds the whole run, ``timeout`` each request, ``max_body`` each body.
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, Mapping[str, str]] | None = None,
        transport: Any = None,
        key_header: str = "Authorization",
        deadline: Deadline | None = None,
        max_body: int = MAX_BODY,
        mask: KeyMask | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        # Azure OpenAI's API keys go in `api-key`; everyone else's as `Authorization: Bearer`.
        self.auth = (
            {"Authorization": f"Bearer {key}"}
            if key_header.lower() == "authorization"
            else {key_header: key}
        )
        self.extra_headers = headers or {}
        self._timeout = timeout
        self._deadline = deadline
        self.max_body = max_body
        self._mask = mask if mask is not None else KeyMask([key])
        self.client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self.sent: list[Reply] = []

    def close(self) -> None:
        self.client.close()

    def left(self) -> float:
        """Seconds left of the run's deadline (infinite without one)."""
        return self._deadline.left() if self._deadline is not None else math.inf

    def request(
        self, probe: str, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> Reply:
        url = f"{self.base_url}{path}"
        left = self.left()
        if left <= 0:
            total = self._deadline.seconds if self._deadline is not None else 0.0
            said = f"not sent: the doctor's {total:g} s deadline had passed"
            reply = Reply(method, url, None, probe, error_kind="not_sent", error=said)
        else:
            reply = self._bounded(probe, method, url, payload, min(self._timeout, left), left)
        self.sent.append(reply)
        return reply

    def _bounded(self, probe: str, method: str, url: str, payload: Any, budget: float,
                 left: float) -> Reply:  # fmt: skip
        """The exchange in a worker (in this context: a traced scope sees it), waited for
        until its deadline and no longer; a worker's exception is raised here."""
        kind = "deadline" if left <= self._timeout else "timeout"
        exchange = _Exchange(self, probe, method, url, payload, budget, kind)
        worker = threading.Thread(
            target=contextvars.copy_context().run,
            args=(exchange.run,),
            name=f"failsight-doctor-{probe}",
            daemon=True,  # one stuck past its deadline (a resolver) cannot hold the exit
        )
        worker.start()
        worker.join(budget + _GRACE_S)
        if exchange.read and not exchange.outcome:
            worker.join(_PARSE_S)  # all read: only the parsing is left, bounded by the cap
        if not exchange.outcome:
            return exchange.late()
        if isinstance(exchange.outcome[0], BaseException):
            raise exchange.outcome[0]
        return exchange.outcome[0]

    def reply(self, exchange: _Exchange, response: Any, data: bytes, cut: str | None,
              why: str) -> Reply:  # fmt: skip
        """What `response` said, masked, its body parsed unless `cut`."""
        text = _decoded(data, response.headers.get("content-type"))
        body = None
        if cut is None and text.strip():
            try:
                body = json.loads(text)
                # Nested past what later code can walk: not an answer the doctor reads.
                body = None if _deeper_than(body, 64) else self._mask.value(body)
            except (ValueError, RecursionError):  # not JSON; or nested past the parser's reach
                body = None
        headers = {k.lower(): self._mask.text(v, _HEADER) for k, v in response.headers.items()}
        return Reply(exchange.method, exchange.url, response.status_code, exchange.probe,
                     headers, body, self._mask.text(text, _TEXT),
                     time.perf_counter() - exchange.started, cut, why)  # fmt: skip

    def reason(self, exc: BaseException) -> str:
        # Masked before the whitespace is collapsed: a key with a tab is still found whole.
        said = self._mask.text(str(exc), limit=400)
        return shown(" ".join(said.split()), 160) or type(exc).__name__


class _Exchange:
    """One request and its body read, in a worker thread; what the caller can say of it
    when it gives up waiting (`late`)."""

    def __init__(self, prober: Prober, probe: str, method: str, url: str, payload: Any,
                 budget: float, kind: str) -> None:  # fmt: skip
        self.prober, self.probe, self.method, self.url = prober, probe, method, url
        self.payload, self.budget, self.kind = payload, budget, kind
        self.started = time.perf_counter()
        self.stop = threading.Event()
        self.response: Any = None  # set once the status line and headers are in
        self.size = 0  # body bytes read so far
        self.read = False  # the body is read (or cut): only parsing is left
        self.outcome: list[Reply | BaseException] = []

    def run(self) -> None:
        try:
            self.outcome.append(self._exchange())
        except BaseException as exc:  # handed to the caller's thread: a bug surfaces there
            self.outcome.append(exc)

    def late(self) -> Reply:
        """The reply when the worker is still at it past the deadline: it is told to stop,
        and its socket shut, which wakes a read blocked on it."""
        self.stop.set()
        response = self.response
        if response is None:
            return self._no_answer(self.kind, f"no answer within {self.budget:.1f} s")
        stream = getattr(response, "extensions", {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self.read:  # all in, but still being parsed and masked: a body of a million parts
            why = f"HTTP {response.status_code}, but its body ({self.size} bytes) was too " \
                  f"large to check in time"  # fmt: skip
            return self.prober.reply(self, response, b"", "too_large", why)
        return self.prober.reply(self, response, b"", "slow_body", self._slow())

    def _slow(self) -> str:
        limit = "the doctor's deadline" if self.kind == "deadline" else "the request timeout"
        return f"HTTP {self.response.status_code}, but its body was still arriving after " \
               f"{self.budget:.1f} s ({limit}; {self.size} bytes read)"  # fmt: skip

    def _no_answer(self, kind: str, error: str) -> Reply:
        return Reply(self.method, self.url, None, self.probe, error_kind=kind, error=error,
                     seconds=time.perf_counter() - self.started)  # fmt: skip

    def _exchange(self) -> Reply:
        import httpx

        prober = self.prober
        headers = {**prober.auth, "Accept-Encoding": "gzip, deflate",
                   **prober.extra_headers.get(self.probe, {})}  # fmt: skip
        try:
            request = prober.client.build_request(
                self.method, self.url, json=self.payload, headers=headers, timeout=self.budget
            )
            response = prober.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return self._no_answer(self.kind, prober.reason(exc))
        except httpx.ConnectError as exc:
            return self._no_answer(_connect_kind(exc), prober.reason(exc))
        except (httpx.HTTPError, ValueError) as exc:  # protocol errors, an illegal header
            return self._no_answer("protocol", prober.reason(exc))
        self.response = response
        try:
            data, cut, why = self._read(response)
        finally:
            self.read = True
            response.close()
        return prober.reply(self, response, data, cut, self._slow() if cut == "slow_body" else why)

    def _read(self, response: Any) -> tuple[bytes, str | None, str]:
        """The body, decoded, until its end, the deadline or the cap: (data, cut kind, why)."""
        import httpx

        status, cap, ends = response.status_code, self.prober.max_body, self.started + self.budget
        if response.is_stream_consumed:  # an in-memory transport has read (and decoded) it
            chunks, decode = iter([response.content]), _decoder(None)
        else:
            try:
                decode = _decoder(response.headers.get("content-encoding"))
            except _Unsupported as exc:
                return b"", "protocol", f"HTTP {status} in a content-encoding not asked " \
                                        f"for: {shown(exc, 40)}"  # fmt: skip
            chunks = response.iter_raw()
        parts: list[bytes] = []
        try:
            for chunk in chunks:
                data = decode(chunk, cap - self.size + 1)
                self.size += len(data)
                parts.append(data)
                if self.size > cap:
                    return (
                        b"".join(parts)[:cap],
                        "too_large",
                        (
                            f"HTTP {status}, but its body passed {cap / (1 << 20):g} MiB "
                            "(decompressed): the doctor stopped reading"
                        ),
                    )
                if self.stop.is_set() or time.perf_counter() >= ends:
                    return b"".join(parts), "slow_body", ""
        except httpx.TimeoutException:
            return b"".join(parts), "slow_body", ""
        except (httpx.HTTPError, zlib.error, OSError) as exc:  # OSError: `late` shut it
            if self.stop.is_set():
                return b"".join(parts), "slow_body", ""
            return b"".join(parts), "protocol", f"HTTP {status}, but its body broke off: " \
                                                f"{self.prober.reason(exc)}"  # fmt: skip
        return b"".join(parts), None, ""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than `limit` (walked without recursion)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [item for v in level if isinstance(v, (dict, list))
                 for item in (v.values() if isinstance(v, dict) else v)]  # fmt: skip
        if not level:
            return False
    return any(isinstance(v, (dict, list)) for v in level)


def _decoded(data: bytes, content_type: str | None) -> str:
    charset = "utf-8"
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip("\"' ")
    try:
        return data.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def _connect_kind(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE" in str(seen).upper():
            return "tls"
        seen = seen.__cause__ or seen.__context__
    return "connect"
