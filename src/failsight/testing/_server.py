"""The fault-injection server: an aiohttp app on loopback, run in a background thread.

Here: the lifecycle, the route table, and per request the scenario choice, the request log
and the hard faults. What each route answers is in `_handlers` and `_video_routes`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from . import _handlers as handlers
from . import _payloads as payloads
from ._handlers import Call, error_response
from ._ratelimits import HEADERS_KEY, RATE_LIMITED, RateLimit, RateLimitBudget
from ._scenarios import (
    PARAMETERISED,
    RATELIMIT_SCENARIOS,
    SCENARIOS,
    USAGE,
    RouteKind,
    ScenarioError,
    applicable_scenarios,
    applies,
    http_error,
    is_hard,
    is_scenario,
    parse_scenario_list,
    pick_from_mix,
    pick_from_sequence,
    split_model,
    validate_mix,
)
from ._video_routes import VideoRoutes

__all__ = [
    "KEY_HEADER",
    "MODELS",
    "POLL_AFTER_HEADER",
    "SCENARIO_HEADER",
    "FaultServer",
    "RecordedRequest",
]

SCENARIO_HEADER: Final = "X-Failsight-Scenario"
KEY_HEADER: Final = "X-Failsight-Key"
RETRY_COUNT_HEADER: Final = "x-stainless-retry-count"
POLL_AFTER_HEADER: Final = "openai-poll-after-ms"
MODELS: Final = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "dall-e-3", "sora-2")
_DEFAULT_MODEL: Final[Mapping[RouteKind, str]] = types.MappingProxyType(
    {
        "chat": "gpt-4o-mini",
        "responses": "gpt-4o-mini",
        "completions": "gpt-3.5-turbo-instruct",
        "embeddings": "text-embedding-3-small",
        "images": "dall-e-2",
        "videos": "sora-2",
        "video_get": "sora-2",
        "models": "gpt-4o-mini",
    }
)
_TEXT_KINDS: Final = frozenset({"chat", "completions", "responses"})
# Long enough for a handler to notice cancellation, short enough that stop() feels instant.
_SHUTDOWN_TIMEOUT: Final = 0.1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it.

    ``scenario`` is the scenario applied (``None`` for usage errors and file downloads);
    ``retry_count`` is the ``x-stainless-retry-count`` header as an int, ``None`` when absent.
    """

    method: str
    path: str
    scenario: str | None
    retry_count: int | None
    model: str | None
    stream: bool


class FaultServer:
    """An OpenAI-compatible HTTP server on loopback that fails on purpose.

    Pick the failure per request with the ``X-Failsight-Scenario`` header or a model
    named ``<model>@<scenario>[,<scenario>…]``; see ``SCENARIOS`` and ``PARAMETERISED``.

    Example::

        import openai
        from failsight.testing import FaultServer

        with FaultServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
            resp = client.chat.completions.create(
                model="gpt-4o-mini@content_filter", messages=[{"role": "user", "content": "hi"}]
            )
            assert resp.choices[0].finish_reason == "content_filter"
            assert server.requests[0].scenario == "content_filter"
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_scenario: str = "ok",
        mix: Mapping[str, float] | None = None,
        seed: int | None = None,
        slow_seconds: float = 5.0,
        retry_after_ms: int | None = None,
        retry_after_seconds: int = 1,
        video_polls_to_finish: int = 2,
        poll_after_ms: int = 1,
        stream_chunk_delay: float = 0.0,
        access_log: bool = False,
        rate_limit: RateLimit | None = None,
    ) -> None:
        if not is_scenario(default_scenario):
            raise ValueError(
                f"unknown default_scenario {default_scenario!r}; "
                f"valid: {[*sorted(SCENARIOS), *PARAMETERISED]}"
            )
        self.host = host
        self.port = port
        self.default_scenario = default_scenario
        self.mix = validate_mix(mix) if mix is not None else None
        self.seed = seed
        self.slow_seconds = slow_seconds
        self.retry_after_ms = retry_after_ms
        self.retry_after_seconds = retry_after_seconds
        self.video_polls_to_finish = video_polls_to_finish
        self.poll_after_ms = poll_after_ms
        self.stream_chunk_delay = stream_chunk_delay
        self.access_log = access_log
        self.rate_limit = rate_limit or RateLimit()
        self._budget = RateLimitBudget(self.rate_limit)
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._key_counts: dict[str, int] = {}
        self._videos = VideoRoutes(self._record, lambda: self.video_polls_to_finish)
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- public surface --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}/v1``, for ``openai.OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> FaultServer:
        """Listen in a daemon thread; return once bound. A busy port raises ``OSError``."""
        with self._lifecycle:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            errors: list[BaseException] = []
            thread = threading.Thread(
                target=self._serve,
                args=(loop, ready, errors),
                name=f"failsight-fault-server-{self._requested_port}",
                daemon=True,
            )
            thread.start()
            ready.wait()
            if errors:
                thread.join()
                raise errors[0]
            self._thread, self._loop = thread, loop
        return self

    def stop(self) -> None:
        """Stop serving; in-flight handlers (e.g. a sleeping ``timeout``) are cancelled."""
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            self._thread = self._loop = None
            if thread is None or loop is None:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def reset(self) -> None:
        """Forget recorded requests, ``X-Failsight-Key`` counters and video jobs; reseed the mix."""
        with self._lock:
            self.requests.clear()
            self._key_counts.clear()
            self._videos.clear()
            self._budget = RateLimitBudget(self.rate_limit)
            self._rng = random.Random(self.seed)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"FaultServer({self.url!r}, {state})"

    # --- lifecycle (runs in the server thread) ---------------------------------------------

    def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            self._build_app(),
            access_log=logging.getLogger("aiohttp.access") if self.access_log else None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self._requested_port)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:
            errors.append(exc)
            _close_loop(loop, runner)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            _close_loop(loop, runner)

    def _build_app(self) -> web.Application:
        # Image edits and video references are uploads; allow more than aiohttp's 1 MiB.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.on_response_prepare.append(self._add_common_headers)
        api = self._api_route
        videos = self._videos
        app.router.add_post("/v1/chat/completions", api("chat", handlers.chat))
        app.router.add_post("/v1/completions", api("completions", handlers.completions))
        app.router.add_post("/v1/responses", api("responses", handlers.responses))
        app.router.add_post("/v1/embeddings", api("embeddings", handlers.embeddings))
        app.router.add_post("/v1/images/generations", api("images", handlers.images))
        app.router.add_post("/v1/images/edits", api("images", handlers.images))
        app.router.add_post("/v1/images/variations", api("images", handlers.images))
        app.router.add_post("/v1/videos", api("videos", videos.create))
        app.router.add_get("/v1/videos/{video_id}", api("video_get", videos.get))
        app.router.add_post("/v1/videos/{video_id}/remix", api("videos", videos.remix))
        app.router.add_get("/v1/videos/{video_id}/content", videos.content)
        app.router.add_get("/v1/images/content/{name}", self._image_content)
        app.router.add_get("/v1/models", api("models", self._models))
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # --- request plumbing ------------------------------------------------------------------

    async def _add_common_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", payloads.new_id("req_"))
        response.headers.update(request.get(HEADERS_KEY, {}))
        if request.path.startswith("/v1/videos"):
            # Lets `client.videos.poll()` poll as fast as the test wants.
            response.headers[POLL_AFTER_HEADER] = str(self.poll_after_ms)

    def _api_route(
        self, kind: RouteKind, render: Callable[[Call], Awaitable[web.StreamResponse]]
    ) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle_api(request, kind, render)

        return handle

    async def _handle_api(
        self,
        request: web.Request,
        kind: RouteKind,
        render: Callable[[Call], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            body = await handlers.read_body(request)
        except handlers.BadRequest as exc:
            self._record(request, None, None, stream=False)
            return error_response(400, str(exc), "invalid_request_error", exc.param, exc.code)
        raw_model = body.get("model")
        model, model_list = split_model(raw_model if isinstance(raw_model, str) else None)
        stream = body.get("stream") is True
        try:
            chosen = self._choose(request, kind, model_list)
        except ScenarioError as exc:
            self._record(request, None, model, stream)
            return error_response(400, str(exc), "invalid_request_error", exc.param, exc.code)
        if chosen is None and kind == "video_get":
            # Polls follow the job's scenario; the renderer records them.
            return await render(Call(request, body, model or "", "ok", stream))
        scenario = chosen or "ok"
        self._record(request, scenario, model, stream)
        model = model or _DEFAULT_MODEL[kind]
        if scenario in RATELIMIT_SCENARIOS:  # headers added as the answer is prepared
            refused, request[HEADERS_KEY] = self._budget.answer(scenario, USAGE)
            if refused:
                return error_response(429, *RATE_LIMITED, request[HEADERS_KEY])
            scenario = "ok"
        if is_hard(scenario):
            faulted = await self._apply_hard_fault(request, kind, scenario, stream, model)
            if faulted is not None:
                return faulted
            scenario = "ok"  # `timeout` answers normally once it has slept
        return await render(Call(request, body, model, scenario, stream, self.stream_chunk_delay))

    def _choose(self, request: web.Request, kind: RouteKind, model_list: str | None) -> str | None:
        """Pick the scenario: header, then ``model@…``, then mix, then the default."""
        index = self._sequence_index(request)
        header = request.headers.get(SCENARIO_HEADER)
        if header is not None:
            text, param = header, SCENARIO_HEADER
        elif model_list is not None:
            text, param = model_list, "model"
        elif kind == "video_get":
            return None
        else:
            with self._lock:
                if self.mix is not None:
                    return pick_from_mix(self.mix, kind, self._rng)
            return self.default_scenario if applies(self.default_scenario, kind) else "ok"
        name = pick_from_sequence(parse_scenario_list(text, param=param), index)
        if kind == "video_get" and not is_hard(name):
            return None
        if not applies(name, kind):
            raise ScenarioError(
                f"failsight fault server: scenario {name!r} does not apply to "
                f"{request.method} {request.path}. Applicable here: "
                f"{', '.join(sorted(applicable_scenarios(kind)))}.",
                param=param,
                code="scenario_not_applicable",
            )
        return name

    def _sequence_index(self, request: web.Request) -> int:
        key = request.headers.get(KEY_HEADER)
        if key is not None:
            with self._lock:
                index = self._key_counts.get(key, 0)
                self._key_counts[key] = index + 1
            return index
        return _retry_count(request) or 0

    def _record(
        self, request: web.Request, scenario: str | None, model: str | None, stream: bool
    ) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            scenario=scenario,
            retry_count=_retry_count(request),
            model=model,
            stream=stream,
        )
        with self._lock:
            self.requests.append(entry)

    async def _apply_hard_fault(
        self, request: web.Request, kind: RouteKind, scenario: str, stream: bool, model: str
    ) -> web.StreamResponse | None:
        """Answer a hard scenario, or return None to let the route answer (after ``timeout``)."""
        error = http_error(scenario)
        if error is not None:
            headers: dict[str, str] = {}
            if scenario == "http_429_retry_after":
                headers["Retry-After"] = str(self.retry_after_seconds)
            if self.retry_after_ms is not None and (error.status == 429 or error.status >= 500):
                headers["retry-after-ms"] = str(self.retry_after_ms)
            return error_response(
                error.status, error.message, error.type, error.param, error.code, headers,
                error.inner,
            )  # fmt: skip
        if scenario == "timeout":
            await asyncio.sleep(self.slow_seconds)
            return None
        if scenario == "drop_mid_stream" and stream and kind in _TEXT_KINDS:
            return await handlers.drop_mid_stream(
                request, kind, model, delay=self.stream_chunk_delay
            )
        usage_drop = scenario in ("drop_after_usage", "drop_mid_stream_usage")
        if usage_drop and stream and kind in _TEXT_KINDS:
            return await handlers.drop_after_usage(
                request, kind, model, mid_stream=scenario == "drop_mid_stream_usage",
                delay=self.stream_chunk_delay,
            )  # fmt: skip
        if scenario in ("drop", "drop_mid_stream", "drop_after_usage", "drop_mid_stream_usage"):
            return handlers.drop_connection(request)
        # invalid_json: a 200 whose body cannot be decoded.
        if stream and kind in _TEXT_KINDS:
            events = [(None, '{"choices": [')]
            return await handlers.sse(request, events, done=False, delay=self.stream_chunk_delay)
        return web.Response(status=200, body=b'{"choices": [', content_type="application/json")

    # --- answered here: image files, the model list, unknown URLs -------------------------

    async def _image_content(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None, None, stream=False)
        return web.Response(body=payloads.PNG_BYTES, content_type="image/png")

    async def _models(self, call: Call) -> web.StreamResponse:
        return web.json_response(payloads.models(MODELS))

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None, None, stream=False)
        return error_response(
            404,
            f"failsight fault server: no route for {request.method} {request.path}.",
            "invalid_request_error",
            None,
            "unknown_url",
        )


# --- helpers ---------------------------------------------------------------------------------


def _close_loop(loop: asyncio.AbstractEventLoop, runner: web.AppRunner) -> None:
    """Shut the site down, cancel whatever handlers are left, close the loop."""
    try:
        loop.run_until_complete(runner.cleanup())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _retry_count(request: web.Request) -> int | None:
    value = request.headers.get(RETRY_COUNT_HEADER)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
