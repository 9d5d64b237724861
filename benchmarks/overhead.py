"""CPU added per call by failsight's openai patch, against the unpatched SDK and two floors.

    python benchmarks/overhead.py [--rounds 15] [--calls 200] [--chunks 50] [--instructions]

Everything runs in one process on an in-process mock transport (no sockets), so the
figures are the instrumentation's own cost. Four modes alternate round by round:

- off:       the unpatched openai SDK;
- floor:     a minimal wrapt wrapper on `Completions.create` recording one span, three
             counters and one histogram, and nothing else;
- contract:  a hand-written wrapper doing only what SPEC §2 and §3 ask of this call (the
             span's attributes, the metrics), with nothing to spare: the least any
             implementation of the contract costs;
- failsight: `failsight.instrument_openai()` with its full telemetry.

Each figure is the median over rounds of process CPU time per call (`time.process_time`,
so the span export thread is included). On a shared or virtual machine those times wander
by tens of percent between runs; `--instructions` instead runs the same rounds under
valgrind's callgrind and reports instructions per call, which are the same on every run
(a few minutes: valgrind runs Python about fifty times slower). Nothing here is asserted;
it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import callgrind  # benchmarks/callgrind.py, beside this script
import openai
import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import failsight
from failsight.testing import completion_body, mock_openai_client, stream_body

MESSAGES: Any = [{"role": "user", "content": "hi"}]


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def make_client(chunks: int) -> openai.OpenAI:
    stream = stream_body(chunks=chunks)
    plain = completion_body(content="The quick brown fox.")

    def handler(request: Any) -> Any:
        return stream if b'"stream":true' in request.content.replace(b" ", b"") else plain

    client: openai.OpenAI = mock_openai_client(handler, api_key="sk-bench")
    return client


class _Wrapper:
    """A wrapt wrapper on `Completions.create`, switched on and off like the patch."""

    def __init__(self) -> None:
        self._original: Any = None

    def wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        raise NotImplementedError

    def on(self) -> None:
        from openai.resources.chat.completions import Completions

        self._original = Completions.__dict__["create"]
        wrapt.wrap_function_wrapper(Completions, "create", self.wrapper)

    def off(self) -> None:
        from openai.resources.chat.completions import Completions

        Completions.create = self._original


class Floor(_Wrapper):
    """One span, three counters and one histogram per call: the least any telemetry costs."""

    def __init__(self, provider: TracerProvider) -> None:
        super().__init__()
        registry = CollectorRegistry()
        self.tracer = provider.get_tracer("floor")
        labels = ("operation", "provider", "model", "call_site")
        self.requests = Counter("floor_requests", "", labels, registry=registry)
        self.failures = Counter("floor_failures", "", labels, registry=registry)
        self.tokens = Counter("floor_tokens", "", labels, registry=registry)
        self.duration = Histogram("floor_duration_seconds", "", labels, registry=registry)

    def wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        start = time.perf_counter()
        with self.tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT):
            result = wrapped(*args, **kwargs)
        labels = ("chat", "bench.local", kwargs.get("model", "unknown"), "unscoped")
        self.requests.labels(*labels).inc()
        self.failures.labels(*labels)
        self.tokens.labels(*labels).inc(20)
        self.duration.labels(*labels).observe(time.perf_counter() - start)
        return result


class ContractFloor(_Wrapper):
    """The least that SPEC §2 and §3 ask of a successful, non-streamed chat call.

    Written by hand for this one call, trusting the response's shape: the span with the
    GenAI and failsight attributes the SPEC names (start attributes at start), the span made
    current during the call, the in-flight gauge, `genai_requests_total`, attempts, duration
    with its `trace_id` exemplar, two token counters and one finish reason. No classifier,
    no guards, no retries, not even the label cap SPEC §2 asks for: a lower bound for any
    implementation of the contract.
    Plain calls only: the streamed figures compare failsight with the floor.
    """

    def __init__(self, provider: TracerProvider) -> None:
        super().__init__()
        registry = CollectorRegistry()
        self.tracer = provider.get_tracer("contract")
        common = ("operation", "provider", "model", "call_site")
        self.requests = Counter("c_requests", "", (*common, "failure_class"), registry=registry)
        self.finish = Counter("c_finish_reasons", "", (*common, "finish_reason"), registry=registry)
        self.tokens = Counter("c_tokens", "", (*common, "token_type"), registry=registry)
        self.attempts = Histogram("c_request_attempts", "", common, registry=registry)
        self.duration = Histogram(
            "c_request_duration_seconds", "", (*common, "failure_class"), registry=registry
        )
        self.in_flight = Gauge("c_in_flight_requests", "", common, registry=registry)
        self._children: dict[str, tuple[Any, ...]] = {}

    def children(self, model: str) -> tuple[Any, ...]:
        """The metric children of one model, looked up once (as any real implementation would)."""
        children = self._children.get(model)
        if children is None:
            labels = ("chat", "bench.local", model, "unscoped")
            children = self._children[model] = (
                self.in_flight.labels(*labels),
                self.finish.labels(*labels, "stop"),
                self.tokens.labels(*labels, "input"),
                self.tokens.labels(*labels, "output"),
                self.requests.labels(*labels, "none"),
                self.attempts.labels(*labels),
                self.duration.labels(*labels, "none"),
            )
        return children

    def wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        start = time.perf_counter()
        model = kwargs["model"]
        in_flight, finish, input_tokens, output_tokens, requests, attempts, duration = (
            self.children(model)
        )
        span = self.tracer.start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "bench.local",
                "gen_ai.request.model": model,
                "server.address": "bench.local",
                "server.port": 80,
            },
        )
        in_flight.inc()
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = wrapped(*args, **kwargs)
        finally:
            otel_context.detach(token)
        finish_reason = result.choices[0].finish_reason  # "stop" here: its child is cached
        usage = result.usage
        finish.inc()
        input_tokens.inc(usage.prompt_tokens)
        output_tokens.inc(usage.completion_tokens)
        span.set_attributes(
            {
                "openai.api.type": "chat_completions",
                "gen_ai.request.stream": False,
                "gen_ai.response.model": result.model,
                "gen_ai.response.id": result.id,
                "gen_ai.response.finish_reasons": (finish_reason,),
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "failsight.failure_class": "none",
                "failsight.attempts": 1,
                "failsight.retry_count": 0,
                "failsight.call_site": "unscoped",
            }
        )
        span.end()
        exemplar = {"trace_id": format(span.get_span_context().trace_id, "032x")}
        requests.inc()
        attempts.observe(1)
        duration.observe(time.perf_counter() - start, exemplar)
        in_flight.dec()
        return result


def plain_call(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


SHORT_STREAM = 5  # chunks of the short stream; per-chunk cost is the slope between the two


def stream_call(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass


class Bench:
    """The clients, the modes and the wrappers alone, shared by the timed and counted runs."""

    def __init__(self, chunks: int) -> None:
        self.provider = TracerProvider()
        # Exported in batches of 512 or every 5 s (the queue never fills, so every mode pays its
        # export in full); an export lands in whichever segment runs then: medians absorb it.
        self.provider.add_span_processor(
            BatchSpanProcessor(NullExporter(), max_queue_size=65536, schedule_delay_millis=5000)
        )
        failsight.configure(registry=CollectorRegistry(), tracer_provider=self.provider)
        floor, contract = Floor(self.provider), ContractFloor(self.provider)
        self.client = make_client(chunks)
        self.short = make_client(SHORT_STREAM)
        self.modes: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
            "off": (lambda: None, lambda: None),
            "floor": (floor.on, floor.off),
            "contract": (contract.on, contract.off),
            "failsight": (failsight.instrument_openai, failsight.uninstrument_openai),
        }
        self.wrappers = self._wrappers_alone(floor, contract)

    def _wrappers_alone(
        self, floor: Floor, contract: ContractFloor
    ) -> dict[str, Callable[[], Any]]:
        """Each wrapper called on a ready-made response: no SDK, no transport, no noise.

        Per chunk: a stream proxy over parsed chunks against bare iteration (the floor does no
        work per chunk), 1000 chunks a call.
        """
        from openai._models import construct_type
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        from failsight import _sdk_patch
        from failsight._operations import OPERATIONS
        from failsight._stream_judge import StreamJudge
        from failsight._streams import CallWatcher, StreamProxy, Watcher

        class JudgedOnly(CallWatcher):
            """Judges every chunk; its end (per call, not per chunk) is left out."""

            def __init__(self) -> None:
                Watcher.__init__(self)
                self.judge = StreamJudge("chat")
                self._chunk_to = self.judge.chunk  # as a CallWatcher without content capture

            def on_end(self, exhausted: bool, exc: BaseException | None) -> None:
                pass

            def on_ended(self) -> None:
                pass

        completion = construct_type(type_=ChatCompletion, value=completion_body())
        resource = self.client.chat.completions
        ours = _sdk_patch._sync_wrapper(OPERATIONS["chat"])
        kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES}

        def ready(**_: Any) -> Any:
            return completion

        chunk = construct_type(
            type_=ChatCompletionChunk,
            value={
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}],
            },
        )
        chunks = [chunk] * 1000

        def proxied() -> None:
            for _ in StreamProxy(iter(chunks), JudgedOnly()):
                pass

        def bare() -> None:
            for _ in iter(chunks):
                pass

        return {
            "floor": lambda: floor.wrapper(ready, resource, (), kwargs),
            "contract": lambda: contract.wrapper(ready, resource, (), kwargs),
            "failsight": lambda: ours(ready, resource, (), kwargs),
            "proxy": proxied,
            "bare": bare,
        }

    def rounds(self, rounds: int) -> Iterator[tuple[str, int]]:
        """(mode, round) with the mode switched on: the order rotates so none always runs first."""
        order = list(self.modes.items())
        for round_number in range(rounds):
            shift = round_number % len(order)
            for mode, (on, off) in order[shift:] + order[:shift]:
                on()
                try:
                    yield mode, round_number
                finally:
                    off()

    def runs(self, calls: int) -> list[tuple[str, Callable[[], None], int]]:
        """(kind, call, count) measured per mode and round; the contract floor streams not."""
        streams = max(calls // 4, 1)
        return [
            ("call", lambda: plain_call(self.client), calls),
            ("stream", lambda: stream_call(self.client), streams),
            ("short", lambda: stream_call(self.short), streams),
        ]

    def warm_up(self) -> None:
        for mode, (on, off) in self.modes.items():
            on()
            for kind, call, _ in self.runs(20):
                if kind == "call" or mode != "contract":
                    for _ in range(5):
                        call()
            off()
        for wrapper in self.wrappers.values():
            for _ in range(20):
                wrapper()


def timed(n: int, call: Callable[[], Any]) -> float:
    """CPU seconds per call over `n` calls (the collector paused: its pauses are noise here)."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(n):
            call()
        return (time.process_time() - start) / n
    finally:
        gc.enable()


def run_timed(rounds: int, calls: int, chunks: int) -> dict[str, dict[str, float]]:
    """Medians over rounds of CPU seconds per call: `call`, `stream`, `short`, `alone`."""
    bench = Bench(chunks)
    bench.warm_up()
    samples: dict[str, dict[str, list[float]]] = {}
    for mode, _ in bench.rounds(rounds):
        for kind, call, n in bench.runs(calls):
            if kind == "call" or mode != "contract":
                samples.setdefault(kind, {}).setdefault(mode, []).append(timed(n, call))
    alone: dict[str, list[float]] = {name: [] for name in bench.wrappers}
    for _ in range(rounds):
        for name, wrapper in bench.wrappers.items():
            alone[name].append(timed(calls if name not in ("proxy", "bare") else 5, wrapper))
    bench.provider.shutdown()
    result = {
        kind: {mode: statistics.median(values) for mode, values in by_mode.items()}
        for kind, by_mode in samples.items()
    }
    result["alone"] = {name: statistics.median(values) for name, values in alone.items()}
    return result


# ---------------------------------------------------------------------- instruction counts


def count_segments(rounds: int, calls: int, chunks: int) -> None:
    """The child under valgrind (`callgrind.count`): the same rounds, one segment each."""
    bench = Bench(chunks)
    bench.warm_up()
    gc.collect()
    gc.disable()
    for mode, round_number in bench.rounds(rounds):
        for kind, call, n in bench.runs(calls):
            if kind != "call" and mode == "contract":
                continue
            callgrind.mark(f"{kind}/{mode}/{round_number}/{n}")
            for _ in range(n):
                call()
    for name, wrapper in bench.wrappers.items():
        n = 5 if name in ("proxy", "bare") else calls
        callgrind.mark(f"alone/{name}/0/{n}")
        for _ in range(n):
            wrapper()
    callgrind.done()
    gc.enable()
    bench.provider.shutdown()


def run_counted(rounds: int, calls: int, chunks: int) -> dict[str, dict[str, float]]:
    """Medians over rounds of instructions per call, from the child run under callgrind."""
    args = [f"--rounds={rounds}", f"--calls={calls}", f"--chunks={chunks}"]
    samples: dict[str, dict[str, list[float]]] = {}
    for label, instructions in callgrind.count(__file__, args):
        kind, mode, _, n = label.split("/")
        samples.setdefault(kind, {}).setdefault(mode, []).append(instructions / int(n))
    return {
        kind: {mode: statistics.median(values) for mode, values in by_mode.items()}
        for kind, by_mode in samples.items()
    }


# ---------------------------------------------------------------------- report


def report(result: dict[str, dict[str, float]], chunks: int, unit: str) -> None:
    scale, fmt = (1e6, "{:9.1f} us") if unit == "time" else (1.0, "{:9.0f} instr")

    def show(value: float) -> str:
        return fmt.format(value * scale)

    call, stream, short, alone = result["call"], result["stream"], result["short"], result["alone"]
    added = {mode: call[mode] - call["off"] for mode in ("floor", "contract", "failsight")}
    print(f"  unpatched SDK call             {show(call['off'])}")
    print(f"  floor added per call           {show(added['floor'])}")
    print(
        f"  contract floor added per call  {show(added['contract'])}"
        f"   ({added['contract'] / added['floor']:.2f}x the floor)"
    )
    print(
        f"  failsight added per call       {show(added['failsight'])}"
        f"   ({added['failsight'] / added['floor']:.2f}x the floor, target <= 1.2x;"
        f" {added['failsight'] / added['contract']:.2f}x the contract floor)"
    )
    # Per chunk: the slope of streamed-call cost over chunk count, failsight's less the floor's.
    extra = chunks - SHORT_STREAM
    per_chunk = (
        (stream["failsight"] - short["failsight"]) - (stream["floor"] - short["floor"])
    ) / extra
    print(f"  streamed call ({chunks} chunks), unpatched {show(stream['off'])}")
    print(f"  failsight added per streamed call    {show(stream['failsight'] - stream['off'])}")
    target = "  (target <= 2 us)" if unit == "time" else ""
    print(f"  failsight beyond the floor per chunk {show(per_chunk)}{target}")
    print("  the wrappers alone, on a ready-made response (no SDK around them):")
    print(f"    floor per call               {show(alone['floor'])}")
    print(
        f"    contract floor per call      {show(alone['contract'])}"
        f"   ({alone['contract'] / alone['floor']:.2f}x the floor)"
    )
    print(
        f"    failsight per call           {show(alone['failsight'])}"
        f"   ({alone['failsight'] / alone['floor']:.2f}x the floor;"
        f" {alone['failsight'] / alone['contract']:.2f}x the contract floor)"
    )
    per_chunk_alone = (alone["proxy"] - alone["bare"]) / 1000
    print(f"    failsight per chunk          {show(per_chunk_alone)}  (the floor does nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=50)  # the long stream; > SHORT_STREAM
    callgrind.add_arguments(parser)
    args = parser.parse_args()
    if args.chunks <= SHORT_STREAM:
        parser.error(f"--chunks must be more than {SHORT_STREAM}")
    if args.segments:
        count_segments(args.rounds, args.calls, args.chunks)
        return
    unit = "instructions" if args.instructions else "time"
    run = run_counted if args.instructions else run_timed
    result = run(args.rounds, args.calls, args.chunks)
    what = "instructions (callgrind)" if args.instructions else "process CPU time"
    print(
        f"openai {openai.__version__}, {args.rounds} rounds x {args.calls} calls,"
        f" medians of {what} per call"
    )
    report(result, args.chunks, unit)


if __name__ == "__main__":
    main()
