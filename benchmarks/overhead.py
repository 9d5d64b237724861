"""What failsight adds to an openai chat call, next to the official OpenTelemetry instrumentations.

    python benchmarks/overhead.py [--rounds 15] [--calls 200] [--chunks 20] [--jobs N]
                                  [--modes failsight,openai-v2,...] [--instructions | --profile]

Every mode runs in a process of its own, on an in-process mock transport (no sockets), so the
figures are the instrumentation's own cost and no mode's patches or caches touch another's.
Each process sets up its mode, warms up, then measures `--rounds` rounds of `--calls` plain
calls and `--calls`/4 streamed calls of `--chunks` and of 5 chunks; start-up and warm-up lie
outside what is measured. Spans go to a BatchSpanProcessor feeding a null exporter. Modes:

- sdk:          the bare openai SDK, the baseline every other figure is added to;
- floor:        a minimal wrapt wrapper on `Completions.create` recording one span, three
                counters and one histogram, and nothing else;
- contract:     a hand-written wrapper doing only what docs/reference.md asks of this call (the
                span's attributes, the metrics), with nothing to spare (plain calls only);
- openai-v2:    `opentelemetry-instrumentation-openai-v2`, the official instrumentation;
- genai-openai: `opentelemetry-instrumentation-genai-openai`, its successor;
- failsight:    `failsight.instrument_openai()` with its full telemetry;
- failsight-scoped: the same, with one `@failsight.traced_generation` scope around the call;
- failsight-cost: `failsight` with pricing on (`genai_cost_usd_total`, from the genai-prices
                table of the `prices` extra); the other failsight modes run without it, as
                an install without the extra does;

and each but sdk again with `-off`: a TracerProvider with the ALWAYS_OFF sampler, spans
sampled out (metrics still recorded). The official instrumentations get an SDK MeterProvider
(an in-memory reader, never collected) for their metrics, as failsight has its Prometheus
registry. They live in venvs of their own, `.venv-bench-openai-v2` and
`.venv-bench-genai-openai` (`make bench-venvs`: the pins are in
`benchmarks/requirements-*.txt`, openai and OpenTelemetry as in `.venv`); without one, its
modes are skipped and the report says so.

By default each figure is the median over rounds of process CPU time per call
(`time.process_time`, so the span export thread is included); modes run one after another.
On a shared or virtual machine those times wander by tens of percent between runs.
`--instructions` runs the same rounds under valgrind's callgrind and counts instructions per
call, which are the same on every run (the `--jobs` processes run side by side; a few
minutes). `--profile` runs each mode once more under callgrind with Python function names
(`pyprofile.py`) and prints the functions that cost most per call, counted from the outer
call's entry to its exit with the SDK's own work left out. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import callgrind  # benchmarks/callgrind.py, beside this script
import openai
import wrapt
from openai.resources.chat.completions import Completions
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import failsight
from failsight.testing import completion_body, mock_openai_client, stream_body

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MESSAGES: Any = [{"role": "user", "content": "hi"}]
GAP = "gap"  # a segment between measured ones, counted apart and left out
SHORT_STREAM = 5  # chunks of the short stream; per-chunk cost is the slope between the two

# The SDK's own work, left out of the profiles: the unpatched `create` (taken before any mode
# patches it) and the stream's iteration.
SDK_CODE = (
    Completions.__dict__["create"].__code__,
    openai.Stream.__iter__.__code__,
    openai.Stream.__next__.__code__,
)


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
        self._original = Completions.__dict__["create"]
        wrapt.wrap_function_wrapper(Completions, "create", self.wrapper)

    def off(self) -> None:
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
    """The least docs/reference.md (metrics, spans) asks of a successful, non-streamed chat call.

    Written by hand for this one call, trusting the response's shape: the span with the
    GenAI and failsight attributes it names (start attributes at start), the span made
    current during the call, the in-flight gauge, `genai_requests_total`, attempts, duration
    with its `trace_id` exemplar, two token counters and one finish reason. No classifier,
    no guards, no retries, not even the label cap it asks for: a lower bound for any
    implementation of the contract. Plain calls only.
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


def stream_call(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass


# ---------------------------------------------------------------------- the modes


@dataclass(frozen=True)
class Official:
    """An official OpenTelemetry instrumentation, in a venv of its own."""

    package: str  # the distribution on PyPI
    module: str  # where its `OpenAIInstrumentor` is
    venv: str  # beside the checkout, made by `make bench-venvs`

    @property
    def python(self) -> Path:
        return ROOT / self.venv / "bin" / "python"


OFFICIAL = {
    # Pins (benchmarks/requirements-openai-v2.txt): 2.4b0, the newest release, imports
    # `opentelemetry.util.genai.instruments`, which util-genai 1.2b0 and later no longer
    # have: it needs util-genai 1.1b0, with which it works on openai 3.x.
    "openai-v2": Official(
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry.instrumentation.openai_v2",
        ".venv-bench-openai-v2",
    ),
    # Pins (benchmarks/requirements-genai-openai.txt): 1.3b0, the newest release, with
    # util-genai 1.3b0, the first it accepts; it cannot share a venv with openai-v2 2.4b0.
    "genai-openai": Official(
        "opentelemetry-instrumentation-genai-openai",
        "opentelemetry.instrumentation.genai.openai",
        ".venv-bench-genai-openai",
    ),
}

KINDS = (
    "sdk", "floor", "contract", "openai-v2", "genai-openai", "failsight", "failsight-scoped",
    "failsight-cost",
)  # fmt: skip
# Every mode but the baseline, recorded and then sampled out (ALWAYS_OFF): the table's rows.
MODES = ["sdk", *KINDS[1:], *(f"{kind}-off" for kind in KINDS[1:])]


def kind_of(mode: str) -> tuple[str, bool]:
    """(kind, sampled out) of a mode name."""
    return (mode[:-4], True) if mode.endswith("-off") else (mode, False)


def python_for(mode: str) -> Path | str:
    official = OFFICIAL.get(kind_of(mode)[0])
    return official.python if official else sys.executable


def streams(mode: str) -> bool:
    return kind_of(mode)[0] != "contract"


def start(mode: str, chunks: int) -> tuple[TracerProvider, list[tuple[str, Callable[[], None]]]]:
    """Switch `mode` on in this process: (its provider, [(kind of call, call)])."""
    kind, sampled_out = kind_of(mode)
    provider = TracerProvider(sampler=ALWAYS_OFF) if sampled_out else TracerProvider()
    # Exported in batches of 512 or every 5 s (the queue never fills, so every mode pays its
    # export in full); an export lands in whichever round runs then: medians absorb it.
    provider.add_span_processor(
        BatchSpanProcessor(NullExporter(), max_queue_size=65536, schedule_delay_millis=5000)
    )
    plain, stream = plain_call, stream_call
    if kind == "floor":
        Floor(provider).on()
    elif kind == "contract":
        ContractFloor(provider).on()
    elif kind in OFFICIAL:
        import importlib

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        instrumentor = importlib.import_module(OFFICIAL[kind].module).OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider, meter_provider=meters)
    elif kind in ("failsight", "failsight-scoped", "failsight-cost"):
        failsight.configure(
            registry=CollectorRegistry(), tracer_provider=provider,
            prices=None if kind == "failsight-cost" else False,
        )  # fmt: skip
        failsight.instrument_openai()
        if kind == "failsight-scoped":
            plain = failsight.traced_generation(plain_call)
            stream = failsight.traced_generation(stream_call)
    elif kind != "sdk":
        raise SystemExit(f"unknown mode {mode!r}")
    client, short = make_client(chunks), make_client(SHORT_STREAM)
    calls: list[tuple[str, Callable[[], None]]] = [("call", lambda: plain(client))]
    if streams(mode):
        calls += [("stream", lambda: stream(client)), ("short", lambda: stream(short))]
    return provider, calls


def region(call: Callable[[], None]) -> None:
    """The outer call of a profiled run: callgrind counts from here (`pyprofile`)."""
    call()


def child(args: argparse.Namespace) -> None:
    """One mode in this process: timed (JSON out), or counted under callgrind (`--segments`)."""
    _provider, calls = start(args.mode, args.chunks)  # kept: its processor exports
    frames = None
    if args.pyframes:  # profiled: every Python function through a named trampoline
        import pyprofile

        frames = pyprofile.load(args.pyframes)
        frames.mark(region.__code__, "region")
        for code in SDK_CODE:
            frames.mark(code, "sdk")
        frames.enable()
    for _, call in calls:  # warm-up
        for _ in range(5):
            call()
    # The cyclic collector is off inside a segment, as `timeit` has it, and runs between
    # segments (uncounted): where its passes happen to fall otherwise swings a segment by
    # tens of thousands of instructions a call, enough to make the per-chunk slope say
    # thousands where a mode adds nothing per chunk. What start-up and warm-up left is frozen.
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {}
    if frames is not None:
        for kind, call in calls:
            if kind != "short":
                n = args.calls if kind == "call" else max(args.calls // 4, 1)
                callgrind.mark(f"{kind}/0/{n}")
                for _ in range(n):
                    region(call)
        print(json.dumps([pyprofile.describe(code) for code in frames.names()]))
    else:
        for round_number in range(args.rounds):
            for kind, call in calls:
                n = args.calls if kind == "call" else max(args.calls // 4, 1)
                if args.segments:
                    callgrind.mark(f"{GAP}/{round_number}/1")  # the collection: not counted
                gc.collect()
                gc.disable()
                if args.segments:
                    callgrind.mark(f"{kind}/{round_number}/{n}")
                    for _ in range(n):
                        call()
                else:
                    start_time = time.process_time()
                    for _ in range(n):
                        call()
                    times.setdefault(kind, []).append((time.process_time() - start_time) / n)
                gc.enable()
    if args.segments:
        callgrind.done()
    else:
        print(json.dumps(times))
    sys.stdout.flush()
    os._exit(0)  # no teardown: under callgrind it would cost seconds, and nothing needs it


# ---------------------------------------------------------------------- running the modes

PROBE = """
import importlib, importlib.metadata as md, json, sys
found = {"python": sys.version.split()[0]}
for name in ("openai", "opentelemetry-sdk", "opentelemetry-util-genai", *sys.argv[1:2]):
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
if len(sys.argv) > 2:
    importlib.import_module(sys.argv[2])
print(json.dumps(found))
"""


def probe_key(mode: str) -> str:
    kind, _ = kind_of(mode)
    return kind if kind in OFFICIAL else "ours"


def probe(mode: str) -> tuple[dict[str, str] | None, str]:
    """(versions, "") of the interpreter that runs `mode`, or (None, why it cannot run)."""
    kind, _ = kind_of(mode)
    official = OFFICIAL.get(kind)
    extra = [official.package, official.module] if official else []
    python = python_for(mode)
    if not Path(python).exists():
        assert official is not None
        return None, f"no {official.venv} (make bench-venvs)"
    done = subprocess.run(
        [str(python), "-c", PROBE, *extra], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{official.package if official else kind} does not import: {last}"
    return json.loads(done.stdout), ""


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per-call figures of one mode by kind of call, one per round."""
    python = str(python_for(mode))
    child_args = [
        f"--mode={mode}", f"--rounds={args.rounds}", f"--calls={args.calls}",
        f"--chunks={args.chunks}",
    ]  # fmt: skip
    started = time.monotonic()
    figures: dict[str, list[float]] = {}
    if args.instructions:
        for label, instructions in callgrind.count(__file__, child_args, python=python):
            kind, _, n = label.split("/")
            if kind != GAP:
                figures.setdefault(kind, []).append(instructions / int(n))
    else:
        done = subprocess.run(
            [python, __file__, *child_args],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {mode}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return figures


def run_http(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """`http_overhead.py`'s figures (per call, off and on by request), in the same unit."""
    command = [sys.executable, str(HERE / "http_overhead.py"), "--json",
               f"--rounds={args.rounds}", f"--calls={args.calls}"]  # fmt: skip
    if args.instructions:
        command.append("--instructions")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def in_parallel(jobs: int, work: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each callable's result by name, `jobs` at a time (its exception, raised, if any fails)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {name: pool.submit(call) for name, call in work.items()}
        return {name: future.result() for name, future in futures.items()}


# ---------------------------------------------------------------------- the report


def label_of(mode: str, versions: dict[str, dict[str, str]]) -> str:
    kind, _ = kind_of(mode)
    if kind in OFFICIAL:
        found = versions.get(mode, {})
        package = OFFICIAL[kind].package
        return (
            f"`{package}` {found.get(package, '?')}"
            f" (util-genai {found.get('opentelemetry-util-genai', '?')})"
        )
    return {
        "sdk": "the bare SDK, nothing added",
        "floor": "bare span + 3 counters + 1 histogram (floor)",
        "contract": "the contract by hand, no classifier or guards (contract floor)",
        "failsight": "failsight",
        "failsight-scoped": "failsight inside `@traced_generation`",
        "failsight-cost": "failsight, usage priced (genai-prices)",
    }[kind]


class Report:
    def __init__(self, medians: dict[str, dict[str, float]], chunks: int, unit: str) -> None:
        self.medians = medians
        self.chunks = chunks
        self.instructions = unit == "instructions"
        base = medians["sdk"]
        self.added = {
            mode: {kind: value - base[kind] for kind, value in by_kind.items()}
            for mode, by_kind in medians.items()
        }

    def show(self, value: float, per_chunk: bool = False) -> str:
        if self.instructions:
            step = 100 if per_chunk else 1000
            return f"{round(value / step) * step:,.0f}"
        return f"{value * 1e6:.2f} µs" if per_chunk else f"{value * 1e6:.1f} µs"

    def per_chunk(self, mode: str) -> float:
        """The slope of a mode's streamed-call cost over chunk count, less the bare SDK's."""
        added = self.added[mode]
        return (added["stream"] - added["short"]) / (self.chunks - SHORT_STREAM)

    def cell(self, mode: str, kind: str) -> str:
        value = self.added.get(mode, {}).get(kind)
        if value is None:
            return "—"
        text = self.show(value)
        base, sampled_out = kind_of(mode)
        suffix = "-off" if sampled_out else ""
        notes = []
        if base == "failsight":
            for official in OFFICIAL:
                theirs = self.added.get(official + suffix, {}).get(kind)
                if theirs:
                    notes.append(f"{value / theirs:.2f}× {official}")
        elif base in ("failsight-scoped", "failsight-cost"):
            unscoped = self.added.get("failsight" + suffix, {}).get(kind)
            if unscoped:
                over = "unscoped" if base == "failsight-scoped" else "unpriced"
                notes.append(f"{value / unscoped - 1:+.0%} over {over}")
        return f"{text} ({', '.join(notes)})" if notes else text

    def table(self, versions: dict[str, dict[str, str]]) -> list[str]:
        lines = [
            f"| mode | plain call | {self.chunks}-chunk stream | per chunk |",
            "|---|---|---|---|",
        ]
        for sampled_out in (False, True):
            group = "spans sampled out (ALWAYS_OFF)" if sampled_out else "spans recorded"
            lines.append(f"| **{group}** | | | |")
            for mode in self.medians:
                kind, off = kind_of(mode)
                if kind == "sdk" or off != sampled_out:
                    continue
                chunk = self.show(self.per_chunk(mode), True) if streams(mode) else "—"
                lines.append(
                    f"| {label_of(mode, versions)} | {self.cell(mode, 'call')}"
                    f" | {self.cell(mode, 'stream')} | {chunk} |"
                )
        return lines


def report(
    medians: dict[str, dict[str, float]],
    http: dict[str, dict[str, float]] | None,
    versions: dict[str, dict[str, str]],
    skipped: dict[str, str],
    args: argparse.Namespace,
) -> None:
    unit = "instructions" if args.instructions else "time"
    result = Report(medians, args.chunks, unit)
    ours = versions.get("sdk", {})
    what = "instructions (callgrind)" if args.instructions else "process CPU time"
    print(
        f"openai {ours.get('openai')}, opentelemetry-sdk {ours.get('opentelemetry-sdk')},"
        f" Python {ours.get('python')}; mock transport; each mode in its own process."
    )
    print(
        f"Added per call to the bare SDK call: medians over {args.rounds} rounds of {what}"
        f" per call ({args.calls} plain calls, {max(args.calls // 4, 1)} streamed calls of"
        f" {args.chunks} and of {SHORT_STREAM} chunks a round)."
    )
    sdk = medians["sdk"]
    print(
        f"The bare SDK call: {result.show(sdk['call'])} plain,"
        f" {result.show(sdk['stream'])} streamed ({args.chunks} chunks)."
    )
    print()
    for line in result.table(versions):
        print(line)
    print()
    print(
        f"per chunk: the slope between the {args.chunks}- and {SHORT_STREAM}-chunk streams,"
        " less the bare SDK's; ratios against the official instrumentation of the same"
        " group (recorded or sampled out)."
    )
    if http is not None:
        non_ai = [
            f"{name.split()[0]} {result.show(figures['on'] - figures['off'])}"
            for name, figures in http.items()
            if "/v1/models" in name
        ]
        print(f"instrument_http on a non-AI request (GET /v1/models): {', '.join(non_ai)} added.")
    for mode, why in skipped.items():
        print(f"skipped {mode}: {why}")
    for mode, found in versions.items():
        for name in ("python", "openai", "opentelemetry-sdk"):
            if found.get(name) != ours.get(name):
                print(f"note: {mode} runs {name} {found.get(name)}, the others {ours.get(name)}")


def chosen_modes(args: argparse.Namespace) -> list[str]:
    if not args.modes:
        return MODES
    wanted = args.modes.split(",")
    unknown = [mode for mode in wanted if mode not in MODES]
    if unknown:
        raise SystemExit(f"unknown modes {unknown}: choose from {', '.join(MODES)}")
    return ["sdk", *(mode for mode in MODES if mode in wanted and mode != "sdk")]


def available(modes: Sequence[str], jobs: int) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """(versions of each mode that can run, why each other one cannot)."""
    first: dict[str, str] = {}  # one probe for each interpreter and instrumentation
    for mode in modes:
        first.setdefault(probe_key(mode), mode)
    found = in_parallel(jobs, {key: lambda mode=mode: probe(mode) for key, mode in first.items()})
    probed = {mode: found[probe_key(mode)] for mode in modes}
    versions = {mode: found for mode, (found, _) in probed.items() if found is not None}
    skipped = {mode: why for mode, (found, why) in probed.items() if found is None}
    if "sdk" in skipped:
        raise SystemExit(f"the bare SDK mode cannot run: {skipped['sdk']}")
    return versions, skipped


def compare(args: argparse.Namespace) -> None:
    versions, skipped = available(chosen_modes(args), args.jobs)
    work: dict[str, Callable[[], Any]] = {
        mode: lambda mode=mode: run_mode(mode, args) for mode in versions
    }
    if not args.modes:
        work["http"] = lambda: run_http(args)
    results = in_parallel(args.jobs, work)
    http = results.pop("http", None)
    medians = {
        mode: {kind: statistics.median(values) for kind, values in figures.items()}
        for mode, figures in results.items()
    }
    report(medians, http, versions, skipped, args)


# ---------------------------------------------------------------------- profiles


HARNESS = ("start.<locals>.<lambda> ", "plain_call ", "stream_call ")  # not the mode's own


def profile_mode(
    mode: str, args: argparse.Namespace, pyframes: str
) -> dict[str, tuple[float, list[tuple[float, str]]]]:
    """Where one mode's instructions go: by kind of call, (per call, [(per call, function)])."""
    import pyprofile

    child_args = [f"--mode={mode}", f"--calls={args.calls}", f"--chunks={args.chunks}",
                  f"--pyframes={pyframes}"]  # fmt: skip
    toggles = ["--collect-atstart=no", "--toggle-collect=bench_region",
               "--toggle-collect=bench_sdk"]  # fmt: skip
    started = time.monotonic()
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        segments, stdout = callgrind.run(
            __file__, child_args, folder, python=str(python_for(mode)), valgrind_args=toggles
        )
        names = json.loads(stdout.strip().splitlines()[-2])
        for label, dump in segments:
            kind, _, n = label.split("/")
            total, rows = pyprofile.inclusive(dump, names)
            ours = [(count / int(n), name) for count, name in rows if not name.startswith(HARNESS)]
            result[kind] = (total / int(n), ours)
    print(f"  {mode}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def profile(args: argparse.Namespace) -> None:
    versions, skipped = available(chosen_modes(args), args.jobs)
    built = {}  # the extension, built once by each interpreter
    for python in {str(python_for(mode)) for mode in versions}:
        done = subprocess.run(
            [python, "-c", "import pyprofile; print(pyprofile.build())"],
            cwd=HERE, capture_output=True, text=True, check=True,
        )  # fmt: skip
        built[python] = done.stdout.strip()
    results = in_parallel(
        args.jobs,
        {
            mode: lambda mode=mode: profile_mode(mode, args, built[str(python_for(mode))])
            for mode in versions
        },
    )
    streamed = max(args.calls // 4, 1)
    print(
        f"Where the instructions go, per call ({args.calls} plain calls, {streamed} streamed"
        f" calls of {args.chunks} chunks): callgrind counts from the outer call's entry to its"
        " exit, paused in the SDK's own `create` and stream iteration; the bare SDK's count is"
        " the harness's own (its loop, freeing the SDK's objects). Below, the top"
        f" {args.top} Python functions of the mode by inclusive count (the C functions they"
        " call count in them). Python calls are not inlined while profiling, so counts run"
        " a little above the table's."
    )
    bare = results["sdk"]
    for mode, by_kind in results.items():
        if mode == "sdk":
            continue
        _, sampled_out = kind_of(mode)
        state = "spans sampled out" if sampled_out else "spans recorded"
        print(f"\n== {mode}: {label_of(mode, versions)}, {state}")
        for kind, (total, rows) in by_kind.items():
            what = "plain call" if kind == "call" else f"{args.chunks}-chunk stream"
            print(f"  {what}: {total - bare[kind][0]:,.0f} instructions a call above the bare SDK")
            for count, name in rows[: args.top]:
                print(f"    {count:>10,.0f}  {name}")
    for mode, why in skipped.items():
        print(f"skipped {mode}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20)  # the long stream; > SHORT_STREAM
    parser.add_argument("--modes", help=f"a comma-separated subset of {', '.join(MODES)}")
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="modes run side by side (default: one per CPU when counting, else 1)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="print where each mode's instructions go (callgrind, Python function names)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=15, help="functions in each profile")
    callgrind.add_arguments(parser)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # the child: one mode
    parser.add_argument("--pyframes", help=argparse.SUPPRESS)  # the child: profiled
    args = parser.parse_args()
    if args.chunks <= SHORT_STREAM:
        parser.error(f"--chunks must be more than {SHORT_STREAM}")
    if args.mode:
        child(args)
        return
    if args.jobs is None:
        args.jobs = (os.cpu_count() or 1) if args.instructions or args.profile else 1
    if args.profile:
        profile(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
