"""Shared fixtures: a fresh registry and span exporter per test, SDK error builders."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import failsight
from failsight import _config
from failsight.testing import FaultServer

# Telemetry bugs fail tests instead of hiding; fault-injection tests turn this off.
os.environ["FAILSIGHT_RAISE_INTERNAL_ERRORS"] = "1"

# --------------------------------------------------------------------------- markers
# `make check` runs `-m "not (e2e or needs_prometheus or needs_node or needs_go or clientlibs)"`:
# the unit tests, in this process, no sockets, no subprocesses. A test that uses one of these
# fixtures talks to a real server over loopback, so it is `e2e`; whole modules that need a
# binary carry `pytestmark` (needs_prometheus, needs_node, needs_go) themselves; `slow` marks
# the few unit tests that take many seconds (100,000-series cardinality runs).
E2E_FIXTURES = frozenset(
    {"server", "fault_server", "shared_server", "conformance_server", "receiver", "busy_port"}
)
PROMETHEUS_FIXTURES = frozenset({"live_prometheus"})
SLOW_MARKERS = ("e2e", "needs_prometheus", "needs_node", "needs_go", "clientlibs", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        if fixtures & PROMETHEUS_FIXTURES:
            item.add_marker(pytest.mark.needs_prometheus)


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `make check` (FAILSIGHT_UNIT_ONLY=1), a test outside the slow markers that opens an
    IP socket or starts a process fails, naming the marker it lacks: the fast loop stays fast
    and offline by construction, not by a list of files."""
    if not os.environ.get("FAILSIGHT_UNIT_ONLY"):
        return
    if any(request.node.get_closest_marker(name) for name in SLOW_MARKERS):
        return
    test = request.node.nodeid

    def refuse(what: str) -> None:
        raise AssertionError(f"{test}: {what} in a unit test; mark it e2e (or needs_*)")

    def guarded(original: Any, what: str) -> Any:
        def call(sock: socket.socket, *args: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                refuse(what)
            return original(sock, *args)

        return call

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, guarded(getattr(socket.socket, name), name))

    def no_process(*args: Any, **kwargs: Any) -> Any:
        refuse(f"subprocess {args[1] if len(args) > 1 else kwargs.get('args')!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)


@dataclass
class Telemetry:
    registry: CollectorRegistry
    exporter: InMemorySpanExporter
    provider: TracerProvider

    def value(self, name: str, **labels: str) -> float:
        """A sample's value summed over every series matching `labels` (0 when absent)."""
        total = 0.0
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name != name:
                    continue
                if all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def series(self, name: str) -> list[dict[str, str]]:
        return [
            dict(sample.labels)
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == name
        ]

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Pricing off: these tests are about the taxonomy, and their fault-server model names
    # have no price (tests/test_cost.py prices usage).
    failsight.configure(registry=registry, tracer_provider=provider, prices=False)
    yield Telemetry(registry, exporter, provider)
    provider.shutdown()
    _config._state = None


@pytest.fixture
def swallow_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production behaviour: internal errors are counted, never raised."""
    monkeypatch.delenv("FAILSIGHT_RAISE_INTERNAL_ERRORS", raising=False)


def sdk_httpx() -> Any:
    """The HTTP library the installed openai SDK runs on (httpx2 for 3.x, httpx before)."""
    import openai._base_client as base

    return getattr(base, "httpx2", None) or base.httpx


def api_error(
    status: int,
    *,
    code: str | None = None,
    param: str | None = None,
    message: str = "boom",
    headers: dict[str, str] | None = None,
) -> Exception:
    """A real openai SDK status error, as the client raises it for `status`."""

    http = sdk_httpx()
    request = http.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    response = http.Response(
        status,
        request=request,
        json={"error": body},
        headers={"x-request-id": "req_123", **(headers or {})},
    )
    return _error_client()._make_status_error(message, body=body, response=response)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1)
def _error_client() -> Any:
    import openai

    return openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:1/v1")


def connection_error(timeout: bool = False) -> Exception:
    import openai

    request = sdk_httpx().Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    if timeout:
        return openai.APITimeoutError(request=request)
    return openai.APIConnectionError(request=request)


@pytest.fixture(scope="session")
def server() -> Iterator[FaultServer]:
    with FaultServer(retry_after_ms=1, slow_seconds=1.0, video_polls_to_finish=2) as srv:
        yield srv


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Iterator[Telemetry]:
    failsight.instrument_openai()
    yield telemetry
    failsight.uninstrument_openai()
