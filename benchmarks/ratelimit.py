"""What reading rate-limit headers costs a call, in instructions per call.

    python benchmarks/ratelimit.py [--rounds 3] [--calls 100] [--modes sdk,failsight]
                                   [--python PYTHON] [--instructions]

Four calls through the real openai SDK on an in-process mock transport (no sockets): a plain
chat call and a 20-chunk stream, each answered without rate-limit headers and then with
OpenAI's six (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, Go-duration resets).
`sdk` is the bare SDK; `failsight` the patch with its full telemetry (pricing off, spans to a
null exporter). The `headers` line is what the six headers add to a failsight call over the
same call without them: parsing them and setting six gauges. Each figure is the median over
rounds of instructions per call under callgrind (`--instructions`, the same on every run) or
of CPU time per call. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import callgrind  # benchmarks/callgrind.py, beside this script

MESSAGES: Any = [{"role": "user", "content": "hi"}]
KINDS = ("plain", "plain_headers", "stream", "stream_headers")
HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-limit-tokens": "160000",
    "x-ratelimit-remaining-tokens": "159980",
    "x-ratelimit-reset-tokens": "6m0s",
}


def start(mode: str) -> tuple[Any, list[tuple[str, Callable[[], None]]]]:
    import openai
    import openai._base_client as base

    from failsight.testing import completion_body, stream_body

    http = getattr(base, "httpx2", None) or base.httpx
    plain, stream = (
        json.dumps(completion_body(content="The quick brown fox.")).encode(),
        stream_body(chunks=20),
    )

    def respond(request: Any) -> Any:
        headers = dict(HEADERS) if b"headers" in request.url.raw_path else {}
        if b'"stream":true' in request.content.replace(b" ", b""):
            return http.Response(
                200, content=stream, headers={**headers, "content-type": "text/event-stream"}
            )
        return http.Response(
            200, content=plain, headers={**headers, "content-type": "application/json"}
        )

    keep: Any = None
    if mode == "failsight":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from prometheus_client import CollectorRegistry

        import failsight

        class Null(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        keep = provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Null(), max_queue_size=65536))
        failsight.configure(registry=CollectorRegistry(), tracer_provider=provider, prices=False)
        failsight.instrument_openai()
    clients = {
        path: openai.OpenAI(
            api_key="sk-bench", base_url=f"http://mock.local/{path}", max_retries=0,
            http_client=openai.DefaultHttpxClient(transport=http.MockTransport(respond)),
        )
        for path in ("plain", "headers")
    }  # fmt: skip

    def plain_call(client: Any) -> Callable[[], None]:
        return lambda: client.chat.completions.create(model="m", messages=MESSAGES) and None

    def stream_call(client: Any) -> Callable[[], None]:
        def call() -> None:
            for _ in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                pass

        return call

    return keep, [
        ("plain", plain_call(clients["plain"])),
        ("plain_headers", plain_call(clients["headers"])),
        ("stream", stream_call(clients["plain"])),
        ("stream_headers", stream_call(clients["headers"])),
    ]


def child(args: argparse.Namespace) -> None:
    _keep, calls = start(args.mode)
    streams = max(args.calls // 4, 1)  # a 20-chunk stream costs about four plain calls
    callgrind.run_rounds(args, calls, lambda kind: args.calls if kind[:5] == "plain" else streams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--modes", default="sdk,failsight")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    callgrind.add_arguments(parser)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    results = {mode: callgrind.measure(__file__, mode, args) for mode in args.modes.split(",")}
    unit = "instructions" if args.instructions else "µs"
    scale = 1.0 if args.instructions else 1e6
    print(f"per call ({unit}): " + ", ".join(KINDS))
    for mode, figures in results.items():
        print(f"  {mode:10} " + "  ".join(f"{figures[k] * scale:>14,.0f}" for k in KINDS))
    if "sdk" in results and "failsight" in results:
        added = {k: (results["failsight"][k] - results["sdk"][k]) * scale for k in KINDS}
        print("  added      " + "  ".join(f"{added[k]:>14,.0f}" for k in KINDS))
        print(f"  headers    plain {added['plain_headers'] - added['plain']:,.0f}, "
              f"stream {added['stream_headers'] - added['stream']:,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
