"""Work that must not run where it was found: finalisers queue it, safe points run it.

A finaliser (`weakref.finalize`, a generator closed by the garbage collector) can run at any
allocation, including inside a lock that failsight or prometheus_client holds on the same
thread. So it never records: it queues the recording here, and the queue is drained at safe
points (the start of the next call or scope, and every scrape of the registry). Appending to
a `deque` takes no lock that Python code can hold. Imports nothing from failsight.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["defer", "drain", "in_gc", "pending"]

_MAX_PENDING: Final = 100_000  # past this, the oldest queued work is dropped (and counted)

_queue: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque(
    maxlen=_MAX_PENDING
)
_gc_thread: int | None = None  # the thread running a garbage collection now


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_thread
    _gc_thread = threading.get_ident() if phase == "start" else None


gc.callbacks.append(_on_gc)


def in_gc() -> bool:
    """True when called from a finaliser the garbage collector is running on this thread."""
    return _gc_thread is not None and _gc_thread == threading.get_ident()


def defer(func: Callable[..., Any], *args: Any) -> None:
    """Queue `func(*args)` for the next safe point."""
    _queue.append((func, args))


def pending() -> int:
    return len(_queue)


def drain() -> None:
    """Run queued work (each item guarded by its own function). Never raises."""
    while True:
        try:
            func, args = _queue.popleft()
        except IndexError:
            return
        with contextlib.suppress(Exception):  # queued work guards itself; this is the last line
            func(*args)
