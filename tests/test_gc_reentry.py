"""The GC re-entry soak: finalisers of abandoned work must never deadlock a recording thread.

A traced generator (or an SDK stream) dropped in a reference cycle is finished by the garbage
collector, which runs whenever an allocation crosses its threshold — for instance while the
same thread is inside failsight, holding a lock to create a new label series. A finaliser that
records under that lock waits for itself forever.

The loop churns through models (new label series: locks taken, objects allocated), leaves
advanced generators and SDK streams in cycles, and calls a decorated function, with collections
made frequent. It runs in a subprocess under a timeout, so a deadlock fails the test instead of
hanging the suite. At the end every logical request must be counted exactly once, none left in
flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ITERATIONS = 100_000  # two traced scopes each: 200 000 logical requests, plus the streams
STREAM_EVERY = 25  # an abandoned SDK stream every 25th iteration: 4 000 of them
TIMEOUT_SECONDS = 300  # a deadlock fails here; the soak itself takes about 20 s of CPU

SOAK = textwrap.dedent(
    """
    import gc
    import json
    import sys

    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    import failsight
    from failsight import current_generation, traced_generation
    from failsight.testing import mock_openai_client, stream_body

    iterations, stream_every = int(sys.argv[1]), int(sys.argv[2])

    registry = CollectorRegistry()
    failsight.configure(registry=registry, tracer_provider=TracerProvider())
    failsight.instrument_openai()
    client = mock_openai_client(lambda request: stream_body(chunks=3))
    messages = [{"role": "user", "content": "hi"}]


    class Holder:
        pass


    @traced_generation(name="soak_generator", operation="chat")
    def generate(i):
        current_generation().set_model(f"m{i % 500}")
        yield "first"
        yield "second"


    @traced_generation(name="soak_call", operation="chat")
    def call(i):
        current_generation().set_model(f"m{i % 500}")
        return i


    gc.set_threshold(25, 2, 2)
    logical = 0
    for i in range(iterations):
        g = generate(i)
        next(g)
        holder = Holder()
        holder.self = holder
        holder.gen = g
        del g, holder
        logical += 1

        if i % stream_every == 0:
            s = client.chat.completions.create(model=f"m{i % 500}", messages=messages, stream=True)
            next(iter(s))
            holder = Holder()
            holder.self = holder
            holder.stream = s
            del s, holder
            logical += 1

        assert call(i) == i
        logical += 1

    gc.set_threshold(700, 10, 10)
    gc.collect()
    gc.collect()

    totals = {}
    for metric in registry.collect():  # one scrape
        for sample in metric.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    print(json.dumps({
        "logical": logical,
        "requests": totals.get("genai_requests_total", 0.0),
        "in_flight": totals.get("genai_in_flight_requests", 0.0),
        "telemetry_errors": totals.get("genai_telemetry_errors_total", 0.0),
    }))
    """
)


def test_finalisers_never_deadlock_and_count_every_request_once(tmp_path: Path) -> None:
    script = tmp_path / "soak.py"
    script.write_text(SOAK)
    env = dict(os.environ)
    env.pop("FAILSIGHT_RAISE_INTERNAL_ERRORS", None)  # production: internal errors are counted
    try:
        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", str(script), str(ITERATIONS), str(STREAM_EVERY)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            env=env,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(
            f"the soak did not finish in {TIMEOUT_SECONDS} s: a finaliser run by the garbage "
            f"collector deadlocked on a lock its own thread held\n{expired.stderr!r}"
        ) from None
    if done.returncode < 0:  # killed by a signal: -11 is a segmentation fault
        raise AssertionError(
            f"the soak crashed with signal {-done.returncode} (e.g. a finaliser run by the "
            f"garbage collector re-entered a context-variable set or reset in progress)\n"
            f"{done.stderr[-4000:]}"
        )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = ITERATIONS * 2 + len(range(0, ITERATIONS, STREAM_EVERY))
    assert result["logical"] == expected
    assert result["in_flight"] == 0, result
    assert result["requests"] == expected, result
    assert result["telemetry_errors"] == 0, (result, done.stderr[-4000:])
