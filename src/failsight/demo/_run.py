"""`run_demo`: start the fault server and /metrics, run the workload, print the report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from failsight import _config
from failsight._sdk_patch import instrument_openai, uninstrument_openai

from ._continuous import describe_schedule, run_continuous
from ._report import progress_bar, render_table, span_summary
from ._schedule import Schedule
from ._workload import run_workload


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def run_demo(
    *,
    rounds: int = 4,
    async_count: int = 60,
    port: int = 9464,
    addr: str = "127.0.0.1",
    keep_serving: bool = False,
    progress: bool = True,
    out: TextIO = sys.stdout,
    continuous: bool = False,
    duration: float | None = None,
    rate: float = 4.0,
    schedule: Schedule | None = None,
) -> int:
    """Start the fault server and /metrics, run the workload, print the table.

    The finite run is the plan (`rounds`, then `async_count` concurrent requests); with
    `continuous`, the steady mix at `rate` requests per second with `schedule`'s incidents,
    for `duration` seconds (None: until Ctrl-C). Returns the exit status: 2, with one line
    on stderr, when /metrics cannot be served.

    >>> run_demo(port=0, continuous=True, duration=60, schedule=Schedule(30, 20))  # doctest: +SKIP
    0
    """
    from opentelemetry.sdk.trace import TracerProvider

    from failsight.exposition import _metrics_url, start_metrics_server
    from failsight.testing import FaultServer, RateLimit

    # Bound first, before anything is configured or started: a taken port (another demo
    # started at the same moment, say) is the one line, never a traceback.
    try:
        server, _ = start_metrics_server(port=port, addr=addr)
    except OSError as exc:
        print(
            f"failsight: error: {exc.strerror if exc.errno is not None else exc}", file=sys.stderr
        )
        return 2
    metrics_url = _metrics_url(server)
    provider = TracerProvider()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    summary: Callable[[], str] | None = None
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        processor, summary = span_summary()
        provider.add_span_processor(processor)
    registry = _config.get_state().settings.registry
    _config.configure(registry=registry, tracer_provider=provider)
    instrument_openai()
    # The continuous mix's `ratelimited` requests (~6 a minute at the default rate) spend a
    # budget of 30: headroom falls to 0 over ~5 minutes, two 429s, then a new window.
    budget = RateLimit(requests=30, tokens=600, refusals=2, retry_after_ms=200, reset="5m0s")
    fault = FaultServer(
        retry_after_ms=1, slow_seconds=1.0, video_polls_to_finish=2, rate_limit=budget
    ).start()
    try:
        out.write(f"failsight demo: fault server {fault.base_url}\n")
        out.write(f"failsight demo: /metrics on {metrics_url}\n")
        started = time.perf_counter()
        if continuous:
            until = "until Ctrl-C" if duration is None else f"for {duration:g} s"
            out.write(f"failsight demo: about {rate:g} requests/s {until}; Ctrl-C ends the run\n")
            out.write(f"failsight demo: {describe_schedule(schedule)}\n")
            out.flush()
            ran = run_continuous(
                fault.base_url, rate=rate, duration=duration, schedule=schedule, out=out,
                status_every=60.0 if progress else None, forget=fault.requests.clear,
            )  # fmt: skip
            count = ran.total()
        else:
            # Only a terminal gets the redrawn bar: `\r` frames would litter a log or a pipe.
            bar = progress_bar(sys.stderr) if progress and _is_terminal(sys.stderr) else None
            count = len(run_workload(fault.base_url, rounds, async_count, bar))
        elapsed = time.perf_counter() - started
        provider.force_flush()
        out.write(f"\nRan {count} logical requests in {elapsed:.1f} s.\n\n")
        out.write(render_table(registry))
        if summary is not None:
            out.write("\nSpans (set OTEL_EXPORTER_OTLP_ENDPOINT to export them):\n")
            out.write(summary() + "\n")
        else:
            out.write(f"\nSpans exported over OTLP to {endpoint}\n")
        out.flush()
        if keep_serving:
            out.write(f"\nServing /metrics on {metrics_url}; Ctrl-C stops.\n")
            out.flush()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fault.stop()
        uninstrument_openai()
        provider.shutdown()
        server.shutdown()
        server.server_close()  # the port is free again when run_demo returns
    return 0
