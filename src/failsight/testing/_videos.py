"""Video jobs: the scenario chosen at create time decides how the job progresses per poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._payloads import JSON, new_id, now

# The status a job ends in, per scenario; `video_stuck` has none.
TERMINAL_STATUS: Final = {
    "ok": "completed",
    "video_ok": "completed",
    "video_task_not_exist": "completed",
    "video_succeed": "succeed",
    "video_succeeded": "succeeded",
    "video_failed": "failed",
    "video_cancelled": "cancelled",
}
SUCCESS_STATUSES: Final = frozenset({"completed", "succeed", "succeeded"})


@dataclass
class VideoJob:
    """One fake video generation job; ``advance()`` is one poll."""

    scenario: str
    model: str
    prompt: str
    seconds: str
    size: str
    polls_to_finish: int
    remixed_from_video_id: str | None = None
    id: str = ""
    created_at: int = 0
    polls: int = 0
    completed_at: int | None = None
    # `video_task_not_exist` answers its first poll with a 404 before the job "exists".
    missing_on_first_poll: bool = False

    def __post_init__(self) -> None:
        self.id = self.id or new_id("video_")
        self.created_at = self.created_at or now()
        self.polls_to_finish = max(1, self.polls_to_finish)
        self.missing_on_first_poll = self.scenario == "video_task_not_exist"

    def advance(self) -> None:
        """Move one status step forward (no-op once terminal or when stuck)."""
        if self.scenario == "video_stuck" or self.polls >= self.polls_to_finish:
            return
        self.polls += 1
        if self.polls >= self.polls_to_finish:
            self.completed_at = now()

    @property
    def status(self) -> str:
        if self.scenario == "video_stuck" or self.polls == 0:
            return "queued"
        if self.polls < self.polls_to_finish:
            return "in_progress"
        return TERMINAL_STATUS.get(self.scenario, "completed")

    @property
    def progress(self) -> int:
        status = self.status
        if status in SUCCESS_STATUSES:
            return 100
        if status == "queued":
            return 0
        # Failed and cancelled jobs stop where the previous step left them.
        steps = self.polls if status == "in_progress" else self.polls - 1
        return steps * 100 // self.polls_to_finish

    def to_json(self, origin: str) -> JSON:
        body: JSON = {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": None,
            "prompt": self.prompt,
            "remixed_from_video_id": self.remixed_from_video_id,
            "seconds": self.seconds,
            "size": self.size,
            "error": None,
        }
        if self.status in SUCCESS_STATUSES:
            # Gateways such as CometAPI return the file URL in `output`.
            body["output"] = [f"{origin}/v1/videos/{self.id}/content"]
        return body
