"""Every attempt, its backoff, and the rate-limit headroom the answers report, end to end: the
real openai SDK (and raw httpx/requests) over a socket against the fault server's rate-limit
scenarios (failsight._attempts, failsight._ratelimit)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import openai._base_client as base_client
import pytest
import requests

import failsight
from conftest import Telemetry
from failsight import RetryPolicy
from failsight.testing import FaultServer, RateLimit

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]
P = "127.0.0.1"


def gauge(t: Telemetry, figure: str, model: str, resource: str) -> float | None:
    """A headroom gauge's value, None when its series does not exist."""
    for metric in t.registry.collect():
        for sample in metric.samples:
            labels = {"provider": P, "model": model, "resource": resource}
            if sample.name == f"genai_ratelimit_{figure}" and sample.labels == labels:
                return float(sample.value)
    return None


@pytest.fixture
def budget_server() -> Iterator[FaultServer]:
    # The budget starts spent: 429, 429 (two refusals), then a new window of 1220 tokens.
    limit = RateLimit(requests=100, tokens=1220, refusals=2, retry_after_ms=20, start_empty=True)
    with FaultServer(rate_limit=limit) as srv:
        yield srv


def test_429_429_200_headroom_retries_backoff_and_one_request(
    budget_server: FaultServer, instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's must-show: the gauge reads 0 at each backoff, then 1200; two retries; two
    backoff samples; one logical request with one duration."""
    model = "gpt-4o-mini@ratelimited"
    seen: list[float | None] = []

    def sleep(seconds: float) -> None:  # the SDK's backoff: read the gauge, then wait
        seen.append(gauge(instrumented, "remaining", model, "tokens"))
        time.sleep(seconds)

    monkeypatch.setattr(
        base_client, "time", types.SimpleNamespace(**{**vars(time), "sleep": sleep})
    )
    client = openai.OpenAI(base_url=budget_server.base_url, api_key="sk-test", max_retries=2)
    client.chat.completions.create(model=model, messages=MESSAGES)

    assert [r.retry_count for r in budget_server.requests] == [0, 1, 2]
    assert seen == [0.0, 0.0]  # a 0 is a value
    assert gauge(instrumented, "remaining", model, "tokens") == 1200.0
    assert gauge(instrumented, "limit", model, "tokens") == 1220.0
    assert gauge(instrumented, "remaining", model, "requests") == 99.0
    assert gauge(instrumented, "reset_seconds", model, "tokens") == 360.0  # "6m0s"
    t = instrumented
    assert t.value("genai_retries_total", reason="rate_limited") == 2
    assert t.value("genai_attempts_total", status="rate_limited") == 2
    assert t.value("genai_attempts_total", status="ok") == 1
    assert t.value("genai_retry_backoff_seconds_count", retry_after="honoured") == 2
    assert t.value("genai_retry_backoff_seconds_count") == 2
    backoff = t.value("genai_retry_backoff_seconds_sum")
    assert 0.04 <= backoff < 5  # the SDK slept the asked 20 ms twice
    assert t.value("genai_requests_total") == 1
    assert t.value("genai_request_duration_seconds_count") == 1
    assert t.value("genai_request_attempts_sum") == 3
    assert t.value("genai_request_phase_seconds_count", phase="backoff") == 1
    assert t.value("genai_request_phase_seconds_sum", phase="backoff") == pytest.approx(backoff)
    attempts_time = t.value("genai_request_phase_seconds_sum", phase="attempts")
    duration = t.value("genai_request_duration_seconds_sum")
    assert attempts_time > 0 and attempts_time + backoff <= duration
    span = t.span("chat gpt-4o-mini@ratelimited")
    events = [dict(e.attributes or {}) for e in span.events if e.name == "attempt"]
    assert [(e["attempt"], e["status"], e.get("status_code")) for e in events] == [
        (1, "rate_limited", 429), (2, "rate_limited", 429), (3, "ok", 200),
    ]  # fmt: skip
    assert [e.get("retry_after_seconds") for e in events] == [0.02, 0.02, None]
    assert "backoff_seconds" not in events[0] and events[1]["backoff_seconds"] >= 0.02
    retries = [dict(e.attributes or {}) for e in span.events if e.name == "retry"]
    assert [r["retry_after_seconds"] for r in retries] == [0.02, 0.02]


def test_countdown_across_calls_then_429_with_retry_after(instrumented: Telemetry) -> None:
    limit = RateLimit(requests=3, tokens=1000, refusals=1, retry_after_ms=1500)
    model = "gpt-4o-mini@ratelimited"
    with FaultServer(rate_limit=limit) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        left = []
        for _ in range(3):
            client.chat.completions.create(model=model, messages=MESSAGES)
            left.append(gauge(instrumented, "remaining", model, "requests"))
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=model, messages=MESSAGES)
        client.chat.completions.create(model=model, messages=MESSAGES)  # a new window
    assert left == [2.0, 1.0, 0.0]
    assert gauge(instrumented, "remaining", model, "requests") == 2.0
    assert gauge(instrumented, "remaining", model, "tokens") == 980.0
    t = instrumented
    assert t.value("genai_attempts_total", status="ok") == 4
    assert t.value("genai_attempts_total", status="rate_limited") == 1
    assert t.value("genai_retry_backoff_seconds_count") == 0  # no retry, no backoff
    span = next(s for s in t.spans() if s.status.status_code.name == "ERROR")
    (event,) = [dict(e.attributes or {}) for e in span.events if e.name == "attempt"]
    assert event == {"attempt": 1, "status": "rate_limited", "status_code": 429,
                     "retry_after_seconds": 1.5}  # fmt: skip


def test_headroom_is_read_when_scraped_the_newest_answer_wins(instrumented: Telemetry) -> None:
    """Between two scrapes, successful answers only keep their headers; the scrape reads the
    newest. An error answer is read at once and replaces what was kept."""
    from failsight._config import get_state

    limit = RateLimit(requests=4, tokens=1000, refusals=1, retry_after_ms=1500)
    model = "gpt-4o-mini@ratelimited"
    pending = get_state().metrics.headroom_pending
    with FaultServer(rate_limit=limit) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        for _ in range(3):  # remaining 3, 2, 1: nothing read yet
            client.chat.completions.create(model=model, messages=MESSAGES)
        assert list(pending) == [(P, model)]
        assert gauge(instrumented, "remaining", model, "requests") == 1.0  # the newest
        assert pending == {}  # the scrape read it
        client.chat.completions.create(model=model, messages=MESSAGES)  # remaining 0, kept
        assert (P, model) in pending
        with pytest.raises(openai.RateLimitError):  # read at once, replacing the kept one
            client.chat.completions.create(model=model, messages=MESSAGES)
        assert pending == {}
    assert gauge(instrumented, "remaining", model, "requests") == 0.0


def test_an_answer_without_headers_does_not_hide_a_kept_reading(
    server: FaultServer, instrumented: Telemetry
) -> None:
    """A successful answer with rate-limit headers, then one without, before any scrape: the
    scrape reads the first (the second says nothing about the budget)."""
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    headers = {"X-Failsight-Scenario": "ratelimit_low"}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gauge(instrumented, "remaining", "gpt-4o-mini", "requests") == 100.0
    assert gauge(instrumented, "limit", "gpt-4o-mini", "requests") == 5000.0


def test_a_lone_successful_attempt_has_no_event_and_no_headers_no_series(
    server: FaultServer, instrumented: Telemetry
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert instrumented.value("genai_attempts_total", status="ok") == 1
    assert instrumented.series("genai_ratelimit_remaining") == []
    span = instrumented.span("chat gpt-4o-mini")
    assert [e.name for e in span.events] == []
    assert instrumented.value("genai_request_phase_seconds_count", phase="attempts") == 1
    assert instrumented.value("genai_request_phase_seconds_sum", phase="backoff") == 0


def test_streams_and_raw_responses_read_headers(
    server: FaultServer, instrumented: Telemetry
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    model = "gpt-4o-mini@ratelimit_openai"
    for _ in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
        pass
    assert gauge(instrumented, "remaining", model, "tokens") == 159980.0
    assert gauge(instrumented, "reset_seconds", model, "tokens") == 3723.5  # "1h2m3.5s"
    assert gauge(instrumented, "reset_seconds", model, "requests") == 0.012  # "12ms"
    raw_model = "gpt-4o@ratelimit_openai"
    raw = client.chat.completions.with_raw_response.create(model=raw_model, messages=MESSAGES)
    raw.parse()
    assert gauge(instrumented, "limit", raw_model, "requests") == 5000.0
    assert instrumented.value("genai_attempts_total", status="ok") == 2


def test_anthropic_headers_through_a_gateway(server: FaultServer, instrumented: Telemetry) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    model = "claude@ratelimit_anthropic"
    client.chat.completions.create(model=model, messages=MESSAGES)
    assert gauge(instrumented, "remaining", model, "requests") == 0.0
    # input tokens 39000/40000, output 800/8000: the least left names the tokens resource
    assert gauge(instrumented, "remaining", model, "tokens") == 800.0
    assert gauge(instrumented, "limit", model, "tokens") == 8000.0
    reset = gauge(instrumented, "reset_seconds", model, "tokens")
    assert reset is not None and reset > 86400  # RFC 3339, in 2030


def test_malformed_headers_are_counted_once_each_and_ignored(
    server: FaultServer, instrumented: Telemetry
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    model = "gpt-4o-mini@ratelimit_malformed"
    result = client.chat.completions.create(model=model, messages=MESSAGES)
    assert result.choices[0].message.content  # the caller is unaffected
    stage = {"stage": "ratelimit_header"}
    assert instrumented.value("genai_telemetry_errors_total", **stage) == 3
    assert gauge(instrumented, "limit", model, "requests") == 60.0
    assert gauge(instrumented, "remaining", model, "requests") is None
    assert gauge(instrumented, "remaining", model, "tokens") is None


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_raw_http_reads_headers_and_counts_its_one_attempt(
    library: str, telemetry: Telemetry
) -> None:
    limit = RateLimit(requests=2, tokens=1000, refusals=1, retry_after_ms=300)
    body = {"model": "gpt-4o-mini@ratelimited", "messages": MESSAGES}
    failsight.instrument_http()
    try:
        with FaultServer(rate_limit=limit) as srv:
            url = f"{srv.base_url}/chat/completions"
            post = httpx.post if library == "httpx" else requests.post
            statuses = [post(url, json=body, timeout=10).status_code for _ in range(3)]
    finally:
        failsight.uninstrument_http()
    assert statuses == [200, 200, 429]
    model = "gpt-4o-mini@ratelimited"
    assert gauge(telemetry, "remaining", model, "requests") == 0.0
    assert gauge(telemetry, "remaining", model, "tokens") == 960.0
    assert telemetry.value("genai_attempts_total", status="ok") == 2
    assert telemetry.value("genai_attempts_total", status="rate_limited") == 1
    assert telemetry.value("genai_retries_total") == 0  # the caller retries, not failsight's view


def test_raw_http_without_an_answer_is_an_attempt(
    server: FaultServer, telemetry: Telemetry
) -> None:
    failsight.instrument_http()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.base_url}/chat/completions", timeout=0.2,
                       json={"model": "gpt-4o-mini@timeout", "messages": MESSAGES})  # fmt: skip
    finally:
        failsight.uninstrument_http()
    assert telemetry.value("genai_attempts_total", status="timeout") == 1


def test_retry_policy_backoff_honours_retry_after(
    server: FaultServer, instrumented: Telemetry
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    waits: list[float] = []
    model = "gpt-4o-mini@http_429_retry_after,http_500,ok"
    headers = {"X-Failsight-Key": f"policy-{time.time_ns()}"}

    @failsight.traced_generation(
        name="policy", retry=RetryPolicy(max_attempts=3, sleep=waits.append)
    )
    def ask() -> Any:
        return client.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)

    ask()
    t = instrumented
    # this server asks retry-after-ms 1 on its 429 and 500: the policy waited that, twice
    assert waits == [pytest.approx(0.001)] * 2
    assert t.value("genai_retry_backoff_seconds_count", retry_after="honoured") == 2
    assert t.value("genai_retry_backoff_seconds_count") == 2
    assert t.value("genai_retry_backoff_seconds_sum") == pytest.approx(sum(waits))
    assert t.value("genai_request_phase_seconds_sum", phase="backoff") == pytest.approx(sum(waits))
    assert t.value("genai_attempts_total", call_site="policy") == 3
    assert t.value("genai_attempts_total", status="ok") == 1
    assert t.value("genai_request_attempts_sum") == 3


CHILD = """
import sys
from prometheus_client import CollectorRegistry
from failsight._metrics import MetricSet
metrics = MetricSet(CollectorRegistry())
metrics.ratelimit_remaining.child(("openai", "gpt-4o", "tokens")).set(float(sys.argv[1]))
"""


def test_multiprocess_headroom_is_the_most_recent_reading(tmp_path: Path) -> None:
    """Workers share one account's budget: the newest reading of any worker is the truth
    (`min` would keep an idle worker's stale 0, `sum` would add budgets up)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for value in ("0", "1200"):  # a worker saw 0, then another worker saw 1200
        subprocess.run([sys.executable, "-c", CHILD, value], env=env, check=True, timeout=60)
    reader = (
        "from prometheus_client import CollectorRegistry, generate_latest\n"
        "from prometheus_client.multiprocess import MultiProcessCollector\n"
        "r = CollectorRegistry(); MultiProcessCollector(r); print(generate_latest(r).decode())"
    )
    done = subprocess.run([sys.executable, "-c", reader], env=env, check=True, timeout=60,
                          capture_output=True, text=True)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("genai_ratelimit_")]
    assert lines == [
        'genai_ratelimit_remaining{model="gpt-4o",provider="openai",resource="tokens"} 1200.0'
    ]
