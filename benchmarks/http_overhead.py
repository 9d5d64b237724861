"""CPU added per request by `failsight.instrument_http()`, on requests and httpx.

    python benchmarks/http_overhead.py [--rounds 15] [--calls 300] [--instructions] [--json]

Everything runs in one process without sockets: httpx on `httpx.MockTransport`, requests on
an adapter stub that answers at once, so the figures are the patch's own cost. Two requests
per library: a non-matching one (`GET /v1/models`, which must pass through after one string
check) and a matching one (`POST /v1/chat/completions`, recorded in full: span, metrics,
classifier on the body). "off" and "on" alternate round by round; each figure is the median
over rounds of process CPU time per call (`time.process_time`, so the span export thread is
included), or with `--instructions` of instructions per call counted by valgrind's callgrind
(the same on every run; see `callgrind.py`). Nothing here is asserted; it prints figures
(`--json`: the medians per call by request and mode, for `overhead.py`).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import callgrind  # benchmarks/callgrind.py, beside this script
import httpx
import requests
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from requests.structures import CaseInsensitiveDict

import failsight
from failsight import _routes
from failsight.testing import completion_body

BASE = "http://bench.local/v1"
CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = json.dumps(completion_body(content="The quick brown fox.")).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}).encode()


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def body_for(path: str) -> bytes:
    return COMPLETION if path.endswith("/chat/completions") else MODELS


class StubAdapter(requests.adapters.BaseAdapter):
    """A requests transport that answers from memory, like `httpx.MockTransport`."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = body_for(request.url)
        response.headers = CaseInsensitiveDict({"content-type": "application/json"})
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def make_clients() -> dict[str, Callable[[], Any]]:
    session = requests.Session()
    session.mount("http://bench.local/", StubAdapter())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=body_for(request.url.path), headers={"content-type": "application/json"}
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return {
        "requests  GET /v1/models          ": lambda: session.get(f"{BASE}/models"),
        "requests  POST /v1/chat/completions": lambda: session.post(
            f"{BASE}/chat/completions", json=CHAT_BODY
        ),
        "httpx     GET /v1/models          ": lambda: client.get(f"{BASE}/models"),
        "httpx     POST /v1/chat/completions": lambda: client.post(
            f"{BASE}/chat/completions", json=CHAT_BODY
        ),
    }


def measure(call: Callable[[], Any], n: int) -> float:
    """CPU seconds per call over `n` calls."""
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) / n


MODES: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
    "off": (lambda: None, lambda: None),
    "on": (failsight.instrument_http, failsight.uninstrument_http),
}


def rotated(round_number: int) -> list[tuple[str, tuple[Callable[[], None], Callable[[], None]]]]:
    """The modes in this round's order: "on" runs first every other round."""
    order = list(MODES.items())
    return order[round_number % 2 :] + order[: round_number % 2]


def setup() -> tuple[TracerProvider, dict[str, Callable[[], Any]]]:
    provider = TracerProvider()
    # Exported in batches of 512 or every 5 s (the queue never fills: "on" pays its export in
    # full); an export lands in whichever segment runs then: medians absorb it.
    provider.add_span_processor(
        BatchSpanProcessor(NullExporter(), max_queue_size=65536, schedule_delay_millis=5000)
    )
    failsight.configure(registry=CollectorRegistry(), tracer_provider=provider)
    workloads = make_clients()
    for on, off in MODES.values():  # warm-up
        on()
        for call in workloads.values():
            measure(call, 50)
        off()
    return provider, workloads


def run(rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """Medians over rounds of CPU seconds per call, by workload and mode."""
    provider, workloads = setup()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in workloads}
    for round_number in range(rounds):
        for mode, (on, off) in rotated(round_number):
            on()
            try:
                for name, call in workloads.items():
                    samples[name].setdefault(mode, []).append(measure(call, calls))
            finally:
                off()
    provider.shutdown()
    return {
        name: {mode: statistics.median(values) for mode, values in by_mode.items()}
        for name, by_mode in samples.items()
    }


GAP = "gap"  # a segment between measured ones (patching on or off), left out


def count_segments(rounds: int, calls: int) -> None:
    """The child under valgrind (`callgrind.count`): the same rounds, one segment each."""
    provider, workloads = setup()
    gc.collect()
    gc.disable()
    for round_number in range(rounds):
        for mode, (on, off) in rotated(round_number):
            callgrind.mark(f"{GAP}/{mode}/{round_number}")  # patching on and off: not counted
            on()
            try:
                for index, call in enumerate(workloads.values()):
                    callgrind.mark(f"{index}/{mode}/{round_number}")
                    for _ in range(calls):
                        call()
            finally:
                callgrind.mark(f"{GAP}/{mode}/{round_number}")
                off()
    callgrind.done()
    provider.shutdown()


def run_counted(rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """Medians over rounds of instructions per call, by workload and mode."""
    names = list(make_clients())
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for label, instructions in callgrind.count(
        __file__, [f"--rounds={rounds}", f"--calls={calls}"]
    ):
        index, mode, _ = label.split("/")
        if index != GAP:
            samples[names[int(index)]].setdefault(mode, []).append(instructions / calls)
    return {
        name: {mode: statistics.median(values) for mode, values in by_mode.items()}
        for name, by_mode in samples.items()
    }


def route_check_cost() -> float:
    """Seconds for the string check a non-matching path gets (the whole added work but the
    wrapper call itself)."""
    table = _routes.build_table(None)
    number = 200_000
    return timeit.timeit(lambda: table.candidates("/v1/models"), number=number) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    callgrind.add_arguments(parser)
    args = parser.parse_args()
    if args.segments:
        count_segments(args.rounds, args.calls)
        return
    if args.instructions:
        result, what, scale, unit = run_counted(args.rounds, args.calls), "instructions", 1.0, ""
    else:
        result, what, scale, unit = run(args.rounds, args.calls), "process CPU time", 1e6, "us"
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"requests {requests.__version__}, httpx {httpx.__version__}; {args.rounds} rounds x "
        f"{args.calls} calls; medians of {what} per call"
    )
    print(f"  {'request':<38}{'off':>12}{'on':>12}{'added':>12}")
    for name, figures in result.items():
        added = figures["on"] - figures["off"]
        print(
            f"  {name:<38}{figures['off'] * scale:10.1f}{unit:2}{figures['on'] * scale:10.1f}"
            f"{unit:2}{added * scale:+10.1f}{unit:2}  ({added / figures['off']:+.1%})"
        )
    if not args.instructions:
        print(f"  route check on a non-matching path: {route_check_cost() * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
