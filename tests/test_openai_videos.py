"""Video jobs through the openai SDK's videos resource (openai 2.x and newer)."""

from __future__ import annotations

import contextlib

import openai
import pytest

import failsight
from conftest import Telemetry
from failsight import traced_generation
from failsight.testing import FaultServer
from openai_calls import (
    VIDEO_CASES,
    headers,
    run_case,
    sync_client,
)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "scenario", "failure_class", "reason"), VIDEO_CASES)
async def test_video_endpoint(
    instrumented: Telemetry,
    server: FaultServer,
    mode: str,
    name: str,
    scenario: str,
    failure_class: str,
    reason: str | None,
) -> None:
    await run_case(instrumented, server, mode, name, scenario, failure_class, reason)
    if name == "videos_create_and_poll" and scenario.startswith("video_"):
        status = {"video_ok": "succeeded", "video_succeed": "succeeded"}.get(
            scenario, scenario.removeprefix("video_")
        )
        assert instrumented.value("genai_video_jobs_total", status=status) == 1


def test_video_jobs_tracked_across_retrieve(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    video = client.videos.create(model="sora-2", prompt="x", extra_headers=headers("video_succeed"))
    assert instrumented.value("genai_requests_total") == 1
    status = video.status
    while status not in ("succeed", "completed", "failed"):
        status = client.videos.retrieve(video.id).status
    client.videos.retrieve(video.id)  # polled again after the end: not a second end
    assert status == "succeed"
    assert instrumented.value("genai_requests_total") == 1  # polls are not logical requests
    assert instrumented.value("genai_video_jobs_total", status="succeeded") == 1
    assert instrumented.value("genai_video_job_duration_seconds_count") == 1


def test_video_task_not_exist_is_transient(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)

    @traced_generation(name="video")
    def make_video() -> str:
        video = client.videos.create(
            model="sora-2", prompt="x", extra_headers=headers("video_task_not_exist")
        )
        status = video.status
        while status not in ("completed", "failed"):
            try:
                status = client.videos.retrieve(video.id).status
            except openai.NotFoundError as exc:
                assert exc.code == "task_not_exist"
        return status

    assert make_video() == "completed"
    assert instrumented.value("genai_requests_total", failure_class="none", call_site="video") == 1
    assert instrumented.value("genai_video_jobs_total", status="succeeded") == 1


def test_video_failing_inside_a_scope(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)

    @traced_generation(name="video")
    def make_video() -> str:
        video = client.videos.create(
            model="sora-2", prompt="x", extra_headers=headers("video_failed")
        )
        while video.status not in ("completed", "failed"):
            video = client.videos.retrieve(video.id)
        return video.status

    assert make_video() == "failed"
    assert instrumented.value("genai_failures_total", reason="video_failed", call_site="video") == 1
    assert instrumented.value("genai_video_jobs_total", status="failed") == 1


def test_video_stuck_times_out_via_bounded_tracker(
    instrumented: Telemetry, server: FaultServer
) -> None:
    failsight.configure(
        registry=instrumented.registry, tracer_provider=instrumented.provider, max_open_video_jobs=2
    )
    client = sync_client(server)
    for _ in range(3):
        client.videos.create(model="sora-2", prompt="x", extra_headers=headers("video_stuck"))
    assert instrumented.value("genai_video_jobs_total", status="timed_out") == 1


def test_video_poll_helper_ends_the_job(instrumented: Telemetry, server: FaultServer) -> None:
    client = sync_client(server)
    video = client.videos.create(model="sora-2", prompt="x", extra_headers=headers("video_ok"))
    final = client.videos.poll(video.id)
    assert final.status == "completed"
    assert instrumented.value("genai_requests_total") == 1
    assert instrumented.value("genai_video_jobs_total", status="succeeded") == 1


@pytest.mark.parametrize("scenario", ["video_ok", "http_429"])
def test_video_remix(instrumented: Telemetry, server: FaultServer, scenario: str) -> None:
    client = sync_client(server)
    video = client.videos.create(model="sora-2", prompt="x", extra_headers=headers("video_ok"))
    with contextlib.suppress(openai.RateLimitError):
        client.videos.remix(video.id, prompt="again", extra_headers=headers(scenario))
    assert instrumented.value("genai_requests_total", operation="video_generation") == 2
    expected = 1 if scenario == "http_429" else 0
    assert instrumented.value("genai_failures_total", reason="rate_limited") == expected
