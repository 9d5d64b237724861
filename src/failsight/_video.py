"""Video jobs from create to their end: bounded memory, deadline, exactly one end each."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final

__all__ = ["VideoJobs"]

TIMED_OUT: Final = "timed_out"
_ENDS: Final = frozenset({"succeeded", "failed", "cancelled"})

# on_end(labels, status, duration_seconds)
EndCallback = Callable[[tuple[str, ...], str, float], None]


class VideoJobs:
    """Open video jobs keyed by id; the oldest are ended `timed_out` when over the cap.

    >>> ended = []
    >>> jobs = VideoJobs(lambda labels, status, seconds: ended.append(status), max_open=10)
    >>> jobs.update("video_1", "queued", ("video_generation",))
    >>> jobs.update("video_1", "succeeded", ("video_generation",))
    'succeeded'
    >>> ended
    ['succeeded']
    """

    def __init__(
        self,
        on_end: EndCallback,
        *,
        max_open: int = 1000,
        timeout: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_end = on_end
        self.max_open = max_open
        self.timeout = timeout
        self._clock = clock
        self._open: OrderedDict[Hashable, tuple[float, tuple[str, ...]]] = OrderedDict()
        # Recently ended ids: a finished job polled again is not a second end.
        self._ended: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def update(self, job_id: Hashable, status: str | None, labels: tuple[str, ...]) -> str | None:
        """Note a job's (normalised) status; returns the end status when this update ended it."""
        now = self._clock()
        ended: list[tuple[tuple[str, ...], str, float]] = []
        result = None
        with self._lock:
            self._expire(now, ended)
            entry = self._open.get(job_id)
            if entry is None and job_id in self._ended:
                pass
            elif status in _ENDS:
                started, labels = entry if entry is not None else (now, labels)
                if entry is not None:
                    del self._open[job_id]
                self._remember(job_id)
                ended.append((labels, status, now - started))
                result = status
            elif entry is None:
                self._open[job_id] = (now, labels)
                while len(self._open) > self.max_open:
                    old_id, (started, old_labels) = self._open.popitem(last=False)
                    self._remember(old_id)
                    ended.append((old_labels, TIMED_OUT, now - started))
        for labels_, status_, seconds in ended:
            self._on_end(labels_, status_, seconds)
        return result

    def end(self, job_id: Hashable, status: str = TIMED_OUT) -> bool:
        """End an open job now (e.g. the caller gave up waiting); False when it was not open."""
        now = self._clock()
        with self._lock:
            entry = self._open.pop(job_id, None)
            if entry is not None:
                self._remember(job_id)
        if entry is None:
            return False
        self._on_end(entry[1], status, now - entry[0])
        return True

    def is_open(self, job_id: Hashable) -> bool:
        return job_id in self._open

    def expire(self) -> int:
        """End every job older than the timeout as `timed_out`; returns how many."""
        ended: list[tuple[tuple[str, ...], str, float]] = []
        with self._lock:
            self._expire(self._clock(), ended)
        for labels, status, seconds in ended:
            self._on_end(labels, status, seconds)
        return len(ended)

    def _expire(self, now: float, ended: list[tuple[tuple[str, ...], str, float]]) -> None:
        while self._open:
            job_id, (started, labels) = next(iter(self._open.items()))
            if now - started < self.timeout:
                break
            del self._open[job_id]
            self._remember(job_id)
            ended.append((labels, TIMED_OUT, now - started))

    def _remember(self, job_id: Hashable) -> None:
        self._ended[job_id] = None
        if len(self._ended) > self.max_open:
            self._ended.popitem(last=False)
