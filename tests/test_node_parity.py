"""The Node.js package and the Python package emit the same series.

Both run the conformance cases as one workload against the same fault server; both `/metrics`
are scraped and compared: series names, labels and values (time-dependent histograms by their
counts and bucket boundaries). The Node output also passes `promtool check metrics`.
Skips when Node.js or the built js/ package is missing (fails under CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import failsight
from failsight import _config
from failsight.testing import FaultServer
from test_conformance import CASES, CONFORMANCE, run_case

pytestmark = [pytest.mark.needs_node, pytest.mark.needs_prometheus, pytest.mark.e2e]

JS = Path(__file__).resolve().parent.parent / "js"
_TIMED = ("genai_request_duration_seconds", "genai_time_to_first_token_seconds",
          "genai_video_job_duration_seconds", "genai_retry_backoff_seconds",
          "genai_request_phase_seconds", "genai_ratelimit_reset_seconds")  # fmt: skip


def _need_node() -> str:
    node = shutil.which("node")
    built = (JS / "dist" / "index.js").exists() and (JS / "node_modules").exists()
    if node is None or not built:
        if os.environ.get("CI"):
            pytest.fail("node and a built js/ package are needed (make js-test builds it)")
        pytest.skip("node or the built js/ package is missing (make js-test)")
    return node


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by name and sorted labels; time-dependent values reduced to what is comparable."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if not name.startswith("genai_") or name.endswith("_created"):
                continue
            labels = dict(sample.labels)
            if "le" in labels:
                labels["le"] = repr(float(labels["le"]))  # 1 and 1.0 are one boundary
            value = sample.value
            if name.startswith(_TIMED) and not name.endswith("_count"):
                value = 0.0  # durations differ between runs: only the series must exist
            found[(name, tuple(sorted(labels.items())))] = value
    return found


def _python_metrics(base_url: str) -> str:
    registry = CollectorRegistry()
    failsight.configure(registry=registry, prices=False)  # the Node package prices nothing
    failsight.instrument_openai()
    try:
        for case in CASES:
            run_case(case, base_url)
        server, _thread = failsight.start_metrics_server(port=0, registry=registry)
        try:
            port = server.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                return str(resp.read().decode())
        finally:
            server.shutdown()
    finally:
        failsight.uninstrument_openai()
        _config._state = None


def _node_metrics(node: str, base_url: str) -> str:
    proc = subprocess.Popen(
        [node, "tools/workload.mjs", base_url],
        cwd=JS, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), proc.stderr.read() if proc.stderr else url
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    finally:
        proc.communicate(input="", timeout=30)


@pytest.fixture(scope="module")
def scraped() -> dict[str, Any]:
    node = _need_node()
    settings = CONFORMANCE["server"]
    with FaultServer(
        retry_after_ms=settings["retry_after_ms"],
        slow_seconds=settings["slow_seconds"],
        video_polls_to_finish=settings["video_polls_to_finish"],
    ) as srv:
        python_text = _python_metrics(srv.base_url)
        node_text = _node_metrics(node, srv.base_url)
    return {"python": python_text, "node": node_text}


def test_same_series_names_labels_and_values(scraped: dict[str, Any]) -> None:
    python, node = series(scraped["python"]), series(scraped["node"])
    assert len(python) > 100
    only_python = sorted(set(python) - set(node))
    only_node = sorted(set(node) - set(python))
    assert not only_python and not only_node, (only_python[:10], only_node[:10])
    differ = {k: (python[k], node[k]) for k in python if python[k] != node[k]}
    assert not differ, differ


def test_node_labels_in_the_contract_order(scraped: dict[str, Any]) -> None:
    """operation, provider, model, call_site first, then the metric's own (Python declares the
    same order; its exposition may list them sorted, which Prometheus treats alike)."""
    own = {
        "genai_requests_total": ["failure_class"],
        "genai_failures_total": ["failure_class", "reason"],
        "genai_finish_reasons_total": ["finish_reason"],
        "genai_retries_total": ["reason"],
        "genai_tokens_total": ["token_type"],
        "genai_video_jobs_total": ["status"],
    }
    seen = set()
    for line in scraped["node"].splitlines():
        if not line.startswith("genai_") or "{" not in line or line.startswith("genai_telemetry"):
            continue
        name = line.split("{", 1)[0]
        keys = [part.split("=", 1)[0] for part in line.split("{", 1)[1].split("} ")[0].split('",')]
        keys = [k for k in keys if k != "le"]
        if name.startswith("genai_ratelimit_"):  # per provider and model, not per call site
            assert keys == ["provider", "model", "resource"], line
            seen.add(name)
            continue
        assert keys[:4] == ["operation", "provider", "model", "call_site"], line
        if name in own:
            assert keys[4:] == own[name], line
        seen.add(name)
    assert set(own) | {"genai_ratelimit_remaining", "genai_ratelimit_limit"} <= seen


def test_promtool_check_metrics_is_clean_on_node_output(scraped: dict[str, Any]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make prometheus)")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=scraped["node"], capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
