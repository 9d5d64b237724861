"""End to end through a real OpenTelemetry Collector running the shipped otel-collector.yaml.

`failsight demo` exports its spans over OTLP/HTTP to `bin/otelcol-failsight` (built by
`make collector` from deploy/collector/); the collector's `span_metrics` connector turns them
into metrics that its Prometheus exporter serves; the real Prometheus of the e2e harness
scrapes the demo's /metrics, the collector's exporter and the collector's own telemetry.

The collector runs the shipped file with test-only overrides generated here (loopback ports,
and a local OTLP/HTTP sink in the place of the Tempo exporter, so the test counts the traces).
Span metrics by span, kind, status and every configured dimension must equal the spans the
sink received; those must equal what failsight emits for the same plan (an in-process run
of the plan with an in-memory exporter), one root span per plan step with the step's
operation, failure class and reason; nothing is dropped or refused on the way.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import failsight
from failsight import _config
from failsight.demo import expected_totals, run_workload
from failsight.testing import FaultServer
from prom_harness import REPO, PrometheusServer, _free_port, _in_ci, all_dashboard_queries

pytestmark = [pytest.mark.needs_go, pytest.mark.needs_prometheus, pytest.mark.e2e]

COLLECTOR_CONFIG = REPO / "otel-collector.yaml"
COLLECTOR_SOURCES = REPO / "deploy" / "collector"
COLLECTOR_BINARY = REPO / "bin" / "otelcol-failsight"

ROUNDS = 1
ASYNC_REQUESTS = 6
SINK = "otlp_http/sink"

# The dimensions of every span metric, as Prometheus labels: span name, kind and status
# (the connector's own), then the configured ones, read from the shipped config.
SPAN_LABELS = ("span_name", "span_kind", "status_code")


def require_collector() -> Path:
    """`bin/otelcol-failsight`, built from the current deploy/collector/; else skip (fail in CI)."""
    problem = ""
    if not COLLECTOR_BINARY.exists():
        problem = f"{COLLECTOR_BINARY.relative_to(REPO)} is missing"
    else:
        built = COLLECTOR_BINARY.stat().st_mtime
        stale = [
            path.name
            for path in COLLECTOR_SOURCES.iterdir()
            if path.is_file() and path.stat().st_mtime > built
        ]
        if stale:
            problem = f"{COLLECTOR_BINARY.relative_to(REPO)} is older than {', '.join(stale)}"
    if not problem:
        return COLLECTOR_BINARY
    reason = f"{problem}: run `make collector` (needs Go)"
    if _in_ci():
        pytest.fail(f"{reason}; CI is set, so this test must run", pytrace=False)
    pytest.skip(reason)


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def label_of(attribute: str) -> str:
    """The Prometheus label of a span attribute (`failsight.failure_class` ->
    `failsight_failure_class`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


# The attributes span_metrics keys spans by (with their defaults), as the dashboards, the
# README and tests/test_collector_config.py name them: fixed here, not read from the config,
# so a renamed or mis-keyed dimension in otel-collector.yaml fails the comparison.
DIMENSIONS: dict[str, str | None] = {
    "gen_ai.operation.name": None,
    "gen_ai.provider.name": None,
    "gen_ai.request.model": None,
    "failsight.failure_class": "none",
    "failsight.failure_reason": None,
}


def test_config(ports: dict[str, int], sink_url: str) -> dict[str, Any]:
    """The shipped config with loopback ports, and the sink in place of the tracing backend."""
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"127.0.0.1:{ports['grpc']}"
    protocols["http"]["endpoint"] = f"127.0.0.1:{ports['http']}"
    config["exporters"]["prometheus"]["endpoint"] = f"127.0.0.1:{ports['prometheus']}"
    traces = config["service"]["pipelines"]["traces"]["exporters"]
    (backend,) = [e for e in traces if component_type(e) == "otlp_grpc"]
    del config["exporters"][backend]
    config["exporters"][SINK] = {"endpoint": sink_url}
    traces[traces.index(backend)] = SINK
    # The collector's own metrics on a free port (not the default 8888).
    config["service"]["telemetry"] = {
        "metrics": {
            "readers": [
                {
                    "pull": {
                        "exporter": {
                            "prometheus": {"host": "127.0.0.1", "port": ports["telemetry"]}
                        }
                    }
                }
            ]
        }
    }
    return config


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


# --------------------------------------------------------------------------- the trace sink


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    return None if kind is None else getattr(value, kind)


@dataclass
class Sink:
    """The OTLP/HTTP endpoint the collector's traces pipeline exports to."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _sink_handler(sink: Sink) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = ExportTraceServiceRequest.FromString(body)
            with sink.lock:
                sink.spans.extend(
                    span
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


# --------------------------------------------------------------------------- span keys

KINDS = {Span.SPAN_KIND_CLIENT: "SPAN_KIND_CLIENT", Span.SPAN_KIND_INTERNAL: "SPAN_KIND_INTERNAL"}
STATUSES = {
    Status.STATUS_CODE_UNSET: "STATUS_CODE_UNSET",
    Status.STATUS_CODE_OK: "STATUS_CODE_OK",
    Status.STATUS_CODE_ERROR: "STATUS_CODE_ERROR",
}


def span_key(name: str, kind: str, status: str, attributes: dict[str, Any]) -> tuple[str, ...]:
    """What span_metrics keys a span by, as its Prometheus labels would read (missing = "")."""
    dims = tuple(
        str(attributes.get(attr, default if default is not None else ""))
        for attr, default in DIMENSIONS.items()
    )
    return (name, kind, status, *dims)


def sink_key(span: Span) -> tuple[str, ...]:
    attributes = {kv.key: value_of(kv.value) for kv in span.attributes}
    return span_key(
        span.name,
        KINDS.get(span.kind, str(span.kind)),
        STATUSES[span.status.code],
        attributes,
    )


def reference_run() -> tuple[list[Any], list[Any]]:
    """The plan, and the spans failsight emits for it: the demo's workload run in this
    process with an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    failsight.configure(registry=CollectorRegistry(), tracer_provider=provider)
    failsight.instrument_openai()
    try:
        # As run_demo starts it.
        with FaultServer(retry_after_ms=1, slow_seconds=1.0, video_polls_to_finish=2) as fault:
            plan = run_workload(fault.base_url, ROUNDS, ASYNC_REQUESTS)
    finally:
        failsight.uninstrument_openai()
        provider.shutdown()
        _config._state = None
    return plan, list(exporter.get_finished_spans())


def reference_key(span: Any) -> tuple[str, ...]:
    return span_key(
        span.name,
        f"SPAN_KIND_{span.kind.name}",
        f"STATUS_CODE_{span.status.status_code.name}",
        dict(span.attributes or {}),
    )


# --------------------------------------------------------------------------- the run


class Prometheus(PrometheusServer):
    """The harness's Prometheus with one job per target, named as in deploy/prometheus.yml."""

    def __init__(self, jobs: dict[str, str]) -> None:
        super().__init__(list(jobs.values()))
        self.jobs = jobs

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["scrape_configs"] = [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in self.jobs.items()
        ]
        return config


@dataclass
class Run:
    prom: Prometheus
    plan: list[Any]
    reference: list[Any]
    sink: Sink
    collector: subprocess.Popen[bytes]
    demo: subprocess.Popen[str]
    log_path: Path

    @property
    def spans(self) -> list[Span]:
        return self.sink.received()

    def shutdown(self) -> str:
        """Stop the demo, then the collector (SIGINT, as Ctrl-C); the collector's log."""
        _stop(self.demo)
        _stop(self.collector)
        return self.log_path.read_text()

    def by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for sample in self.prom.query(expr):
            key = tuple(sample["metric"].get(label, "") for label in labels)
            out[key] = out.get(key, 0.0) + float(sample["value"][1])
        return out

    def value(self, expr: str) -> float:
        return sum(float(s["value"][1]) for s in self.prom.query(expr))


METRIC_LABELS = (*SPAN_LABELS, *(label_of(attr) for attr in DIMENSIONS))
CALLS = "traces_span_metrics_calls_total"
DURATION_COUNT = "traces_span_metrics_duration_seconds_count"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the collector exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the collector did not start:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    binary = require_collector()
    started = time.monotonic()
    plan, reference = reference_run()
    workdir = Path(tempfile.mkdtemp(prefix="failsight-collector-"))
    sink = Sink()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _sink_handler(sink))
    server.daemon_threads = True
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True).start()
    ports = {name: _free_port() for name in ("grpc", "http", "prometheus", "telemetry")}
    config_path = workdir / "otel-collector.yaml"
    config_path.write_text(yaml.safe_dump(test_config(ports, sink.url), sort_keys=False))
    log_path = workdir / "collector.log"
    demo: subprocess.Popen[str] | None = None
    with log_path.open("wb") as log:
        collector = subprocess.Popen(
            [str(binary), "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_listening(ports["prometheus"], collector, log_path)
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['http']}"}
        env.pop("FAILSIGHT_RAISE_INTERNAL_ERRORS", None)  # the demo as a user runs it
        demo = subprocess.Popen(
            [sys.executable, "-m", "failsight", "demo", "--port", "0", "--rounds", str(ROUNDS),
             "--async-requests", str(ASYNC_REQUESTS), "--no-progress", "--keep-serving"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env,
        )  # fmt: skip
        assert demo.stdout is not None
        output = []
        for line in demo.stdout:
            output.append(line)
            if line.startswith("Serving /metrics on "):
                break
        match = re.search(r"/metrics on http://[\d.]+:(\d+)/metrics", "".join(output))
        assert match and demo.poll() is None, "".join(output)
        jobs = {
            "failsight-demo": f"127.0.0.1:{match.group(1)}",
            "otel-collector": f"127.0.0.1:{ports['prometheus']}",
            "otel-collector-telemetry": f"127.0.0.1:{ports['telemetry']}",
        }
        with Prometheus(jobs) as prom:
            # The batch processor's timeout, then the connector's flush interval, then a scrape.
            # Past the timeouts the tests say what is missing.
            with contextlib.suppress(TimeoutError):
                prom.wait_for(
                    f"sum({CALLS})",
                    lambda r: bool(r) and float(r[0]["value"][1]) >= len(reference),
                    timeout=60,
                )
                prom.wait_for(
                    "sum(genai_requests_total)",
                    lambda r: bool(r) and float(r[0]["value"][1]) >= len(plan),
                    timeout=30,
                )
            # Two more scrapes of everything: the telemetry and the last flush are in.
            time.sleep(2)
            print(f"\ncollector e2e: ready after {time.monotonic() - started:.1f} s")
            yield Run(prom, plan, reference, sink, collector, demo, log_path)
    finally:
        if demo is not None:
            _stop(demo)
        _stop(collector)
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- traces


def test_every_span_reaches_the_trace_exporter(run: Run) -> None:
    """The sink got exactly the spans failsight emits for the plan: none dropped, none renamed."""
    received = Counter(sink_key(span) for span in run.spans)
    assert received == Counter(reference_key(span) for span in run.reference)
    assert len({span.span_id for span in run.spans}) == len(run.spans)


def test_one_client_span_per_sdk_call_and_one_internal_span_per_scope(run: Run) -> None:
    kinds = Counter(KINDS.get(span.kind, str(span.kind)) for span in run.spans)
    scoped = [step for step, _ in run.plan if step.call_site != "unscoped"]
    client = [s for s in run.reference if s.kind.name == "CLIENT"]
    assert kinds == {"SPAN_KIND_CLIENT": len(client), "SPAN_KIND_INTERNAL": len(scoped)}
    internal = Counter(span.name for span in run.spans if span.kind == Span.SPAN_KIND_INTERNAL)
    assert internal == Counter(step.call_site for step in scoped)


def test_root_spans_match_the_plan(run: Run) -> None:
    """One root span per plan step, with the step's operation, failure class and reason."""
    roots = Counter()
    for span in run.spans:
        if not span.parent_span_id:
            attributes = {kv.key: value_of(kv.value) for kv in span.attributes}
            roots[
                (
                    attributes["gen_ai.operation.name"],
                    attributes["failsight.failure_class"],
                    attributes.get("failsight.failure_reason"),
                )
            ] += 1
    assert roots == Counter((s.operation, s.failure_class, s.reason) for s, _ in run.plan)
    # Every other span's parent arrived too.
    ids = {span.span_id for span in run.spans}
    assert all(span.parent_span_id in ids for span in run.spans if span.parent_span_id)


def test_nothing_is_refused_or_fails_in_the_collector(run: Run) -> None:
    """The collector's own counters: every span accepted, and sent by both trace exporters."""

    def telemetry(name: str) -> str:  # counters with or without the `_total` suffix
        return f'{{__name__=~"otelcol_{name}(_total)?", job="otel-collector-telemetry"}}'

    total = len(run.reference)
    assert run.value(f"sum({telemetry('receiver_accepted_spans')})") == total
    assert run.value(f"sum({telemetry('receiver_refused_spans')})") == 0
    assert run.value(f"sum({telemetry('receiver_failed_spans')})") == 0
    assert run.by(telemetry("exporter_sent_spans"), "exporter") == {
        (SINK,): total,
        ("debug",): total,
    }
    assert run.value(f"sum({telemetry('exporter_send_failed_spans')})") == 0
    assert run.value(f"sum({telemetry('processor_refused_spans')})") == 0


# --------------------------------------------------------------------------- span metrics


def test_span_metrics_count_every_span_by_every_dimension(run: Run) -> None:
    """calls_total by span, kind, status and each configured dimension equals the spans."""
    expected = Counter(sink_key(span) for span in run.spans)
    stored = run.by(f'{CALLS}{{job="otel-collector"}}', *METRIC_LABELS)
    assert stored == {key: float(n) for key, n in expected.items()}
    durations = run.by(f'{DURATION_COUNT}{{job="otel-collector"}}', *METRIC_LABELS)
    assert durations == stored


def test_span_metrics_match_the_plan(run: Run) -> None:
    """Per operation, failure class and reason: scopes (INTERNAL) as the plan's scoped steps,
    all spans as failsight emits them for the plan."""
    labels = ("gen_ai_operation_name", "failsight_failure_class", "failsight_failure_reason")
    scopes = run.by(f'{CALLS}{{job="otel-collector", span_kind="SPAN_KIND_INTERNAL"}}', *labels)
    scoped = Counter(
        (s.operation, s.failure_class, s.reason or "")
        for s, _ in run.plan
        if s.call_site != "unscoped"
    )
    assert scopes == {key: float(n) for key, n in scoped.items()}
    errors = run.value(f'sum({CALLS}{{job="otel-collector", status_code="STATUS_CODE_ERROR"}})')
    assert errors == sum(1 for s in run.reference if s.status.status_code.name == "ERROR")
    by_class = run.by(f'sum by (failsight_failure_class) ({CALLS}{{job="otel-collector"}})',
                      "failsight_failure_class")  # fmt: skip
    assert by_class == {
        (cls,): float(n)
        for cls, n in Counter(
            s.attributes["failsight.failure_class"] for s in run.reference
        ).items()
    }


def test_failsight_metrics_are_scraped_beside_the_collector(run: Run) -> None:
    stored = run.by('sum by (failure_class) (genai_requests_total{job="failsight-demo"})',
                    "failure_class")  # fmt: skip
    expected = expected_totals(run.plan)["requests"]
    assert stored == {(cls,): float(n) for cls, n in expected.items()}


def test_dashboard_panels_on_collector_metrics_answer(run: Run) -> None:
    """Every dashboard query that reads a metric the collector exports returns series."""
    names = {
        sample["metric"]["__name__"]
        for sample in run.prom.query('group by (__name__) ({job="otel-collector"})')
    }
    assert CALLS in names and DURATION_COUNT in names
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b")
    reading = [(where, expr) for where, expr in all_dashboard_queries() if pattern.search(expr)]
    empty = [where for where, expr in reading if not run.prom.query(expr)]
    assert empty == []


# --------------------------------------------------------------------------- logs (last: it stops)


def test_collector_logs_no_warning_from_start_to_shutdown(run: Run) -> None:
    log = run.shutdown()
    assert "Everything is ready" in log and "Shutdown complete." in log, log
    assert run.collector.returncode == 0, log
    noisy = [
        line
        for line in log.splitlines()
        if re.search(r"\t(warn|error|fatal|panic)\t", line) or "deprecated" in line.lower()
    ]
    assert noisy == []
