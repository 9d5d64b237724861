"""The /v1/videos routes and the job store behind them: create, remix, poll, download."""

from __future__ import annotations

import threading
from collections.abc import Callable

from aiohttp import web

from . import _payloads as payloads
from ._handlers import Call, error_response, origin, text_field
from ._videos import VideoJob

# record(request, scenario, model, stream): the server's request log.
Record = Callable[[web.Request, str | None, str | None, bool], None]


class VideoRoutes:
    """Video jobs by id, and the routes that create, poll and download them.

    ``polls_to_finish`` is read when a job is created, so the server's setting applies live.
    """

    def __init__(self, record: Record, polls_to_finish: Callable[[], int]) -> None:
        self._record = record
        self._polls_to_finish = polls_to_finish
        self._lock = threading.Lock()
        self._jobs: dict[str, VideoJob] = {}

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()

    def _new_job(self, call: Call, *, remixed_from: VideoJob | None = None) -> VideoJob:
        body = call.body
        source = remixed_from
        job = VideoJob(
            # After `timeout` the job runs as ok; only video scenarios shape a job.
            scenario=call.scenario if call.scenario.startswith("video_") else "ok",
            model=source.model if source else call.model,
            prompt=text_field(body, "prompt", ""),
            seconds=source.seconds if source else text_field(body, "seconds", "4"),
            size=source.size if source else text_field(body, "size", "720x1280"),
            polls_to_finish=self._polls_to_finish(),
            remixed_from_video_id=source.id if source else None,
        )
        with self._lock:
            self._jobs[job.id] = job
        return job

    async def create(self, call: Call) -> web.StreamResponse:
        job = self._new_job(call)
        return web.json_response(job.to_json(origin(call.request)))

    async def remix(self, call: Call) -> web.StreamResponse:
        with self._lock:
            source = self._jobs.get(call.request.match_info["video_id"])
        if source is None:
            return _video_not_found(call.request)
        job = self._new_job(call, remixed_from=source)
        return web.json_response(job.to_json(origin(call.request)))

    async def get(self, call: Call) -> web.StreamResponse:
        request = call.request
        with self._lock:
            job = self._jobs.get(request.match_info["video_id"])
            missing = job is not None and job.missing_on_first_poll
            if job is not None:
                if missing:
                    job.missing_on_first_poll = False
                else:
                    job.advance()
                body = job.to_json(origin(request))
        self._record(request, job.scenario if job else None, job.model if job else None, False)
        if job is None:
            return _video_not_found(request)
        if missing:
            # Some gateways answer the first poll before the task is registered.
            return error_response(
                404, "task_not_exist", "invalid_request_error", None, "task_not_exist"
            )
        return web.json_response(body)

    async def content(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None, None, False)
        with self._lock:
            job = self._jobs.get(request.match_info["video_id"])
        if job is None:
            return _video_not_found(request)
        return web.Response(body=payloads.VIDEO_BYTES, content_type="video/mp4")


def _video_not_found(request: web.Request) -> web.Response:
    return error_response(
        404,
        f"Video with id '{request.match_info['video_id']}' not found.",
        "invalid_request_error",
        None,
        "video_not_found",
    )
