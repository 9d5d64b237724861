"""What judging declared tools and structured output costs a call, in instructions per call.

    python benchmarks/declared.py [--rounds 3] [--calls 100] [--modes sdk,failsight,unjudged]
                                  [--python PYTHON] [--instructions]

Three calls through the real openai SDK on an in-process mock transport (no sockets): a plain
chat call (nothing declared), a call declaring 3 tools whose answer makes one tool call, and
the same call streamed (the arguments in 8 deltas). `sdk` is the bare SDK; `failsight` the
patch with its full telemetry (pricing off, spans to a null exporter); `unjudged` the same with
`judge_declared=False`, so that `failsight - unjudged` is what the judgement itself costs.
Run it with another checkout's interpreter path on PYTHONPATH to compare before and after a
change. Each figure is the median over rounds of instructions per call under callgrind
(`--instructions`, the same on every run) or of CPU time per call. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import callgrind  # benchmarks/callgrind.py, beside this script

HERE = Path(__file__).resolve().parent
MESSAGES: Any = [{"role": "user", "content": "weather?"}]
PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": PARAMS}}
    for name in ("get_weather", "get_forecast", "get_alerts")
]
ARGUMENTS = '{"city": "Paris", "unit": "c"}'
KINDS = ("plain", "tools3", "tool_stream")


def _bodies() -> tuple[dict[str, Any], dict[str, Any], bytes]:
    from failsight.testing import completion_body

    plain = completion_body(content="The quick brown fox.")
    tools = completion_body(content=None, finish_reason="tool_calls")
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ARGUMENTS}}  # fmt: skip
    tools["choices"][0]["message"]["tool_calls"] = [call]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    first = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    parts = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
    step = -(-len(ARGUMENTS) // 8)
    for at in range(0, len(ARGUMENTS), step):
        piece = {"index": 0, "function": {"arguments": ARGUMENTS[at : at + step]}}
        parts.append(chunk({"tool_calls": [piece]}))
    parts.append(chunk({}, "tool_calls"))
    return plain, tools, b"".join(parts) + b"data: [DONE]\n\n"


def start(mode: str) -> tuple[Any, list[tuple[str, Callable[[], None]]]]:
    from failsight.testing import mock_openai_client

    plain, tools, stream = _bodies()

    def handler(request: Any) -> Any:
        content = request.content.replace(b" ", b"")
        if b'"stream":true' in content:
            return stream
        return tools if b'"tools"' in content else plain

    keep: Any = None
    if mode in ("failsight", "unjudged"):
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
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
        failsight.configure(
            registry=CollectorRegistry(), tracer_provider=provider, prices=False,
            judge_declared=mode == "failsight",
        )  # fmt: skip
        failsight.instrument_openai()
        del ReadableSpan
    client = mock_openai_client(handler, api_key="sk-bench")
    completions = client.chat.completions

    def call_plain() -> None:
        completions.create(model="m", messages=MESSAGES)

    def call_tools() -> None:
        completions.create(model="m", messages=MESSAGES, tools=TOOLS)

    def call_stream() -> None:
        for _ in completions.create(model="m", messages=MESSAGES, tools=TOOLS, stream=True):
            pass

    return keep, [("plain", call_plain), ("tools3", call_tools), ("tool_stream", call_stream)]


def child(args: argparse.Namespace) -> None:
    _keep, calls = start(args.mode)
    callgrind.run_rounds(args, calls, lambda kind: args.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--modes", default="sdk,failsight,unjudged")
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
        print(f"  {mode:10} " + "  ".join(f"{figures[k] * scale:>12,.0f}" for k in KINDS))
    if "sdk" in results and "failsight" in results:
        added = [(results["failsight"][k] - results["sdk"][k]) * scale for k in KINDS]
        print("  added      " + "  ".join(f"{value:>12,.0f}" for value in added))
    if "unjudged" in results and "failsight" in results:
        judged = [(results["failsight"][k] - results["unjudged"][k]) * scale for k in KINDS]
        print("  judging    " + "  ".join(f"{value:>12,.0f}" for value in judged))


if __name__ == "__main__":
    main()
