"""/metrics over real sockets: text and OpenMetrics, TLS, WSGI/ASGI apps, multiprocess mode."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import failsight
from conftest import Telemetry, api_error
from failsight.validators import json_output
from prom_harness import require_binary

pytestmark = pytest.mark.e2e


def workload() -> None:
    """A few calls of every class, so the exposition has every metric with samples."""

    @failsight.traced_generation(name="extract", validate=[json_output()], model="gpt-4o-mini")
    def extract(text: str) -> str:
        handle = failsight.current_generation()
        assert handle is not None
        handle.record_usage(input=12, output=3)
        handle.record_finish_reason("stop")
        if text == "429":
            handle.record_retry("rate_limited", status_code=429)
            raise api_error(429)
        return text

    for text in ('{"a": 1}', "not json", "429"):
        with contextlib.suppress(Exception):
            extract(text)

    @failsight.traced_generation(name="video", operation="video_generation")
    def video() -> None:
        handle = failsight.current_generation()
        assert handle is not None
        handle.record_video_status("queued")
        handle.record_video_status("succeed")

    video()


def scrape(url: str, accept: str | None = None, context: ssl.SSLContext | None = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return str(response.read().decode())


def test_metrics_server_text_passes_promtool(telemetry: Telemetry, tmp_path: Path) -> None:
    workload()
    server, _thread = failsight.start_metrics_server(port=0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        text = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
    for name in (
        "genai_requests_total",
        "genai_failures_total",
        "genai_finish_reasons_total",
        "genai_retries_total",
        "genai_request_attempts_bucket",
        "genai_tokens_total",
        "genai_request_duration_seconds_bucket",
        "genai_video_jobs_total",
        "genai_video_job_duration_seconds_bucket",
        "genai_in_flight_requests",
    ):
        assert f"\n{name}{{" in text, name
    assert 'reason="invalid_json"' in text and 'reason="rate_limited"' in text
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_openmetrics_has_exemplars(telemetry: Telemetry) -> None:
    workload()
    server, _ = failsight.start_metrics_server(port=0)
    try:
        port = server.server_address[1]
        text = scrape(f"http://127.0.0.1:{port}/metrics", "application/openmetrics-text")
    finally:
        server.shutdown()
    assert text.rstrip().endswith("# EOF")
    trace_ids = {format(span.context.trace_id, "032x") for span in telemetry.spans()}
    exemplar_lines = [line for line in text.splitlines() if "# {trace_id=" in line]
    assert any(line.startswith("genai_request_duration_seconds_bucket") for line in exemplar_lines)
    for line in exemplar_lines:
        assert line.split('trace_id="')[1][:32] in trace_ids


def test_busy_port_is_one_line_naming_address_and_port(telemetry: Telemetry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as caught:
            failsight.start_metrics_server(port=port)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "\n" not in message, message
    assert caught.value.errno == errno.EADDRINUSE
    # Raised by failsight itself, not from deep inside socketserver, and nothing chained.
    assert len(traceback.extract_tb(caught.value.__traceback__)) <= 2
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"port": -1}, ValueError, r"0\.\.65535"),
        ({"port": 70000}, ValueError, r"0\.\.65535"),
        ({"port": "http"}, TypeError, "port must be an int"),
        ({"port": 9464.0}, TypeError, "port must be an int"),
        ({"port": "9464"}, TypeError, r"got str '9464'; int\('9464'\) if it is read from"),
        ({"certfile": "x"}, ValueError, "certfile and keyfile"),
        ({"client_cafile": "ca.pem"}, ValueError, "client_cafile need TLS"),
        ({"client_capath": "/etc/ssl"}, ValueError, "client_capath need TLS"),
        ({"client_auth_required": True}, ValueError, "client_auth_required need TLS"),
        (
            {"certfile": "c.pem", "keyfile": "k.pem", "client_auth_required": True},
            ValueError,
            "client_auth_required=True needs client_cafile",
        ),
        ({"registry": "x"}, TypeError, "registry must be a prometheus_client CollectorRegistry"),
        ({"addr": 127001}, TypeError, "addr"),
    ],
)
def test_bad_server_arguments(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        failsight.start_metrics_server(**{"port": 0, **kwargs})


def test_unreadable_tls_files_fail_before_binding(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(OSError, match="certfile="):
        failsight.start_metrics_server(port=0, certfile=missing, keyfile=missing)


@pytest.mark.parametrize("make", [failsight.make_asgi_app, failsight.make_wsgi_app])
def test_apps_reject_what_is_not_a_registry(make: Any) -> None:
    with pytest.raises(TypeError, match="registry must be a prometheus_client CollectorRegistry"):
        make("x")


def test_port_is_an_int_not_a_string_of_digits() -> None:
    """A port read from the environment and not converted is refused before binding."""
    with pytest.raises(TypeError, match="port must be an int"):
        failsight.start_metrics_server(port="0")


def test_tls(telemetry: Telemetry, tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    workload()
    server, _ = failsight.start_metrics_server(port=0, certfile=str(cert), keyfile=str(key))
    try:
        port = server.server_address[1]
        context = ssl.create_default_context(cafile=str(cert))
        assert "genai_requests_total" in scrape(f"https://127.0.0.1:{port}/metrics", None, context)
        with pytest.raises(OSError):
            scrape(f"https://127.0.0.1:{port}/metrics", None, ssl.create_default_context())
    finally:
        server.shutdown()


def test_wsgi_app(telemetry: Telemetry) -> None:
    from wsgiref.util import setup_testing_defaults

    workload()
    app = failsight.make_wsgi_app()
    environ: dict[str, Any] = {"PATH_INFO": "/metrics"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers: status.append(s)))
    assert status == ["200 OK"]
    assert b'genai_requests_total{call_site="extract"' in body


def test_asgi_app(telemetry: Telemetry) -> None:
    workload()
    app = failsight.make_asgi_app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert b"genai_failures_total" in b"".join(m.get("body", b"") for m in sent[1:])


CHILD = textwrap.dedent(
    """
    import sys
    import failsight

    @failsight.traced_generation(name="worker")
    def work(i):
        if i % 2:
            failsight.current_generation().mark_failure("soft", "content_filter")
        return i

    for i in range(int(sys.argv[1])):
        work(i)
    """
)


def test_multiprocess_mode_aggregates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers write to PROMETHEUS_MULTIPROC_DIR; one scrape shows the sum of every worker."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("10", "6"):
        subprocess.run([sys.executable, "-c", CHILD, count], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from prometheus_client import generate_latest

    text = generate_latest(failsight.exposition.metrics_registry()).decode()
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("genai_requests_total")
    }
    by_class = {key.split('failure_class="')[1].split('"')[0]: v for key, v in lines.items()}
    assert by_class == {"none": 8.0, "soft": 8.0}
    in_flight = [line for line in text.splitlines() if line.startswith("genai_in_flight_requests")]
    assert in_flight and all(line.endswith(" 0.0") for line in in_flight)
