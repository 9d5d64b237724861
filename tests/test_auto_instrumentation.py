"""`opentelemetry-instrument python app.py`: spans, OpenTelemetry metrics and `/metrics`.

The whole path in a subprocess, as a user runs it: the distro loads failsight's instrumentor
from its entry point, failsight records into the global MeterProvider the distro set up, and
serves `/metrics` on `FAILSIGHT_METRICS_PORT`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from failsight.testing import FaultServer

APP = textwrap.dedent(
    """
    import sys
    import urllib.request

    import openai

    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Failsight-Scenario": "content_filter"},
    )
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics").read().decode())
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _instrument_command() -> str:
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if found is None:
        assert not os.environ.get("CI"), "opentelemetry-distro is a test dependency"
        pytest.skip("opentelemetry-instrument is not installed (pip install opentelemetry-distro)")
    return found


def test_opentelemetry_instrument_gives_spans_metrics_and_prometheus(
    tmp_path: Path, server: FaultServer
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    port = _free_port()
    env = {
        **os.environ,
        "FAILSIGHT_METRICS_PORT": str(port),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",  # exported once, at shutdown
    }
    env.pop("FAILSIGHT_RAISE_INTERNAL_ERRORS", None)
    done = subprocess.run(
        [_instrument_command(), sys.executable, str(app), server.base_url, str(port)],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # /metrics, served by the instrumentor, counted the soft failure.
    exposition = out[: out.index("# EOF")] if "# EOF" in out else out.split("\n{", 1)[0]
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    labels = {
        "operation": "chat", "provider": "127.0.0.1", "model": "gpt-4o-mini",
        "call_site": "unscoped", "failure_class": "soft", "reason": "content_filter",
    }  # fmt: skip
    assert samples[("genai_failures_total", tuple(sorted(labels.items())))] == 1.0
    # The span, through the distro's tracer provider.
    assert '"failsight.failure_class": "soft"' in out
    # The semantic-convention metrics, through the distro's global MeterProvider.
    assert "gen_ai.client.operation.duration" in out
    assert "gen_ai.client.token.usage" in out
    assert "Requested component" not in done.stderr
    assert "failsight" not in done.stderr  # no warning from failsight itself
