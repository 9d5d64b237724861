"""The continuous demo: a steady, jittered request rate, with incidents on a schedule.

Requests leave at `rate` per second on average (each gap drawn between half and one and a
half times the mean), so Prometheus scrapes moving counters and every rate() panel has
data; slow requests (video jobs poll) run on worker threads so they do not slow the pace.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

from ._plan import Step
from ._schedule import INCIDENTS, Incident, Schedule, pick
from ._workload import Workload

__all__ = ["describe_schedule", "run_continuous"]

WORKERS = 8  # requests under way at once, at most; the pace waits for a free one
FORGET_EVERY = 1000  # requests between two trims of the fault server's request log


def clock_text(seconds: float) -> str:
    """`3725` -> `'01:02:05'`.

    >>> clock_text(3725)
    '01:02:05'
    """
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def describe_schedule(schedule: Schedule | None) -> str:
    """One line on when incidents come, for the demo's header.

    >>> describe_schedule(None)
    'no incidents'
    """
    if schedule is None:
        return "no incidents"
    kinds = ", ".join(incident.title for incident in INCIDENTS)
    first = schedule.every - schedule.length
    return (
        f"incidents every {schedule.every:g} s, each lasting {schedule.length:g} s, the first "
        f"at {first:g} s, in turn: {kinds}"
    )


def _announce(out: TextIO, elapsed: float, incident: Incident, starts: bool) -> None:
    where = f"{incident.call_site} ({incident.model})"
    if starts:
        line = (
            f"incident starts: {incident.title} at call site {where}, {incident.share:.0%} of "
            f"its requests; alert {incident.alert}"
        )
    else:
        line = f"incident over: {incident.title} at call site {where}"
    out.write(f"[{clock_text(elapsed)}] {line}\n")
    out.flush()


class _AsyncRunner:
    """An event loop on a thread of its own, for the AsyncOpenAI steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo-async")
        self.thread.daemon = True  # never keeps a Ctrl-C'd process alive
        self.thread.start()

    def submit(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self, workload: Workload) -> None:
        self.submit(workload.async_client.close()).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def run_continuous(
    base_url: str,
    *,
    rate: float,
    duration: float | None,
    schedule: Schedule | None,
    out: TextIO,
    status_every: float | None = 60.0,
    forget: Callable[[], None] | None = None,
    rng: random.Random | None = None,
) -> Counter[tuple[Step, str]]:
    """Send the mix at `rate` requests per second for `duration` seconds (None: until
    Ctrl-C), with `schedule`'s incidents; returns how many times each (step, scenario) ran.

    Ctrl-C ends the run as the end of `duration` does: the requests under way finish. A
    line every `status_every` seconds says how many requests left; `forget` is called now
    and then to drop what the fault server logged.

    >>> run_continuous(url, rate=4, duration=9, schedule=None, out=sys.stdout)  # doctest: +SKIP
    """
    rng = rng or random.Random()
    workload = Workload(base_url)
    runner = _AsyncRunner()
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="demo-request")
    free = threading.BoundedSemaphore(WORKERS)
    ran: Counter[tuple[Step, str]] = Counter()
    current: Incident | None = None
    start = time.monotonic()
    due = start
    next_status = status_every
    try:
        while True:
            elapsed = time.monotonic() - start
            if duration is not None and elapsed >= duration:
                break
            incident = schedule.active(elapsed) if schedule is not None else None
            if incident is not current:
                if current is not None:
                    _announce(out, elapsed, current, starts=False)
                if incident is not None:
                    _announce(out, elapsed, incident, starts=True)
                current = incident
            step, scenario = pick(rng, incident)
            free.acquire()
            future: Future[Any] = (
                runner.submit(workload.run_async(scenario))
                if step.is_async
                else pool.submit(workload.run, step, scenario)
            )
            future.add_done_callback(lambda _: free.release())
            ran[(step, scenario)] += 1
            total = ran.total()
            if forget is not None and total % FORGET_EVERY == 0:
                forget()
            if next_status is not None and status_every is not None and elapsed >= next_status:
                out.write(f"[{clock_text(elapsed)}] {total} requests so far\n")
                out.flush()
                next_status += status_every
            due += rng.uniform(0.5, 1.5) / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -1.0:
                due = time.monotonic()  # fell behind (a slow machine): no burst to catch up
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the run; the summary follows
    finally:
        pool.shutdown(wait=True)
        for _ in range(WORKERS):  # every async request has released its worker: all done
            free.acquire(timeout=10)
        runner.close(workload)
        workload.close()
    if current is not None:
        _announce(out, time.monotonic() - start, current, starts=False)
    return ran
