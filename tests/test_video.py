"""The video job tracker: one end per job, bounded memory, deadlines."""

from __future__ import annotations

from failsight._video import VideoJobs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(max_open: int = 3, timeout: float = 100.0) -> tuple[VideoJobs, list, Clock]:
    ended: list[tuple[tuple[str, ...], str, float]] = []
    clock = Clock()
    jobs = VideoJobs(
        lambda labels, status, seconds: ended.append((labels, status, seconds)),
        max_open=max_open,
        timeout=timeout,
        clock=clock,
    )
    return jobs, ended, clock


def test_job_ends_once_with_duration() -> None:
    jobs, ended, clock = make()
    assert jobs.update("v1", "queued", ("video_generation",)) is None
    clock.now = 12.5
    assert jobs.update("v1", "in_progress", ("video_generation",)) is None
    clock.now = 30.0
    assert jobs.update("v1", "succeeded", ("video_generation",)) == "succeeded"
    assert ended == [(("video_generation",), "succeeded", 30.0)]
    assert len(jobs) == 0


def test_oldest_evicted_as_timed_out() -> None:
    jobs, ended, clock = make(max_open=2)
    for i in range(5):
        clock.now = float(i)
        jobs.update(f"v{i}", "queued", (f"m{i}",))
    assert len(jobs) == 2
    assert [(labels[0], status) for labels, status, _ in ended] == [
        ("m0", "timed_out"),
        ("m1", "timed_out"),
        ("m2", "timed_out"),
    ]


def test_deadline_expires_on_next_update_and_on_expire() -> None:
    jobs, ended, clock = make(timeout=10)
    jobs.update("old", "queued", ("a",))
    clock.now = 11
    jobs.update("new", "queued", ("b",))
    assert ended == [(("a",), "timed_out", 11)]
    clock.now = 30
    assert jobs.expire() == 1
    assert ended[-1] == (("b",), "timed_out", 19)
    assert len(jobs) == 0


def test_end_for_a_job_given_up_on() -> None:
    jobs, ended, _ = make()
    jobs.update("v", "queued", ("a",))
    assert jobs.end("v") is True
    assert jobs.end("v") is False
    assert [status for _, status, _ in ended] == ["timed_out"]


def test_a_finished_job_polled_again_is_not_counted_twice() -> None:
    jobs, ended, _ = make()
    jobs.update("v", "queued", ("a",))
    assert jobs.update("v", "failed", ("a",)) == "failed"
    assert jobs.update("v", "failed", ("a",)) is None
    jobs.update("w", "queued", ("a",))
    jobs.end("w")
    assert jobs.update("w", "succeeded", ("a",)) is None  # late end of a job given up on
    assert [status for _, status, _ in ended] == ["failed", "timed_out"]
