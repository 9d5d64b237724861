"""Multi-process servers (gunicorn, uvicorn --workers): bookkeeping when a worker dies."""

from __future__ import annotations

import os

__all__ = ["mark_process_dead"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Forget a dead worker's live gauges (`genai_in_flight_requests`); call it from
    gunicorn's `child_exit` hook. Its counters and histograms stay in the totals.

    `path` defaults to `$PROMETHEUS_MULTIPROC_DIR`; without either it does nothing, so
    the same gunicorn config works in single-process mode.

    >>> # gunicorn.conf.py
    >>> def child_exit(server, worker):
    ...     mark_process_dead(worker.pid)
    """
    if path is None:
        path = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
