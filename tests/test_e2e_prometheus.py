"""End to end: the demo workload through the real SDK, /metrics scraped by real Prometheus.

The plan declares what each step should record; the totals Prometheus stored must equal
the plan's, per failure class and reason, and every dashboard and rule query must answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

import failsight
from failsight import _config
from failsight.demo import STEADY_MIX, Workload, expected_totals, run_workload
from failsight.testing import USAGE, FaultServer, RateLimit
from prom_harness import PrometheusServer, all_dashboard_queries

pytestmark = [pytest.mark.needs_prometheus, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "dashboards" / "rules").glob("*.yml"))
# The continuous demo's request answered from the fault server's rate-limit budget.
(RATELIMITED,) = [(step, scenario) for _, step, scenario in STEADY_MIX if scenario == "ratelimited"]
RATELIMITED_CALLS = 3


class Run:
    def __init__(self, prom: PrometheusServer, plan: list[Any]) -> None:
        self.prom = prom
        self.plan = plan
        self.expected = expected_totals(plan)

    def value(self, expr: str) -> float:
        result = self.prom.query(expr)
        return sum(float(sample["value"][1]) for sample in result)

    def by(self, expr: str, *labels: str) -> dict[Any, float]:
        out: dict[Any, float] = {}
        for sample in self.prom.query(expr):
            key = tuple(sample["metric"].get(label, "") for label in labels)
            out[key if len(key) > 1 else key[0]] = float(sample["value"][1])
        return out


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    registry = CollectorRegistry()
    provider = TracerProvider()
    failsight.configure(registry=registry, tracer_provider=provider)
    server, _ = failsight.start_metrics_server(port=0, registry=registry)
    target = f"127.0.0.1:{server.server_address[1]}"
    failsight.instrument_openai()
    try:
        with (
            FaultServer(retry_after_ms=1, slow_seconds=1.0) as fault,
            PrometheusServer([target], RULE_FILES) as prom,
        ):
            plan = run_workload(fault.base_url, rounds=2, async_count=30)
            scraped(prom, len(plan))
            # The plan's answers carry no rate-limit headers: a few of the continuous demo's
            # `ratelimited` requests, once Prometheus has scraped, give the headroom gauges
            # and the attempts that keep their reading current (the headroom rule).
            workload = Workload(fault.base_url)
            try:
                for _ in range(RATELIMITED_CALLS):
                    workload.run(*RATELIMITED)
            finally:
                workload.close()
            plan += [RATELIMITED] * RATELIMITED_CALLS
            scraped(prom, len(plan))
            # Scraped at least twice after the workload ended: rates over the data exist.
            prom.wait_for(
                "sum(count_over_time(genai_requests_total[1m]))",
                lambda r: (
                    bool(r)
                    and float(r[0]["value"][1]) >= 3 * len(prom.query("genai_requests_total"))
                ),
                timeout=30,
            )
            yield Run(prom, plan)
    finally:
        failsight.uninstrument_openai()
        server.shutdown()
        provider.shutdown()
        _config._state = None


def scraped(prom: PrometheusServer, total: int) -> None:
    """Wait until Prometheus has scraped `total` logical requests."""
    prom.wait_for(
        "sum(genai_requests_total)",
        lambda r: bool(r) and float(r[0]["value"][1]) == total,
        timeout=30,
    )


def test_requests_by_class_match_the_plan(run: Run) -> None:
    stored = run.by("sum by (failure_class) (genai_requests_total)", "failure_class")
    assert stored == {cls: float(n) for cls, n in run.expected["requests"].items()}


def test_failures_by_reason_match_the_plan(run: Run) -> None:
    stored = run.by(
        "sum by (failure_class, reason) (genai_failures_total)", "failure_class", "reason"
    )
    assert stored == {key: float(n) for key, n in run.expected["failures"].items()}


def test_retries_and_attempts_match_the_plan(run: Run) -> None:
    stored = run.by("sum by (reason) (genai_retries_total)", "reason")
    assert stored == {reason: float(n) for reason, n in run.expected["retries"].items()}
    retries = sum(run.expected["retries"].values())
    assert run.value("sum(genai_request_attempts_sum)") == len(run.plan) + retries
    assert run.value("sum(genai_request_attempts_count)") == len(run.plan)


def test_video_jobs_match_the_plan(run: Run) -> None:
    stored = run.by("sum by (status) (genai_video_jobs_total)", "status")
    assert stored == {status: float(n) for status, n in run.expected["videos"].items()}


def test_every_dashboard_query_returns_series(run: Run) -> None:
    # The "Error budget" panels read the SLO rules, which answer above their minimum-traffic
    # guard only; the finite plan ends before the first scrape, so its counters never move.
    # tests/test_dashboards.py runs those panels against a live workload.
    queries = all_dashboard_queries()
    budget = [where for where, expr in queries if "slo:" in expr]
    assert budget, "the Error budget panels read the SLO rules"
    empty = [where for where, expr in queries if "slo:" not in expr and not run.prom.query(expr)]
    assert empty == []


def test_recording_rules_produce_series(run: Run) -> None:
    import yaml

    records = [
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        # The SLO rules answer above their minimum-traffic guard only (10 requests per 5 minutes
        # per call site over each window), which a short plan is under: tests/test_slo.py.
        if "record" in rule and not rule["record"].startswith("slo:")
    ]
    assert records
    for record in records:
        run.prom.wait_for(record, bool, timeout=20)


def test_wasted_tokens_match_the_plan(run: Run) -> None:
    """Each wasted answer of the plan reported the fault server's USAGE."""
    from failsight.testing import USAGE

    for token_type, per_answer in (("input", USAGE["prompt_tokens"]),
                                   ("output", USAGE["completion_tokens"])):  # fmt: skip
        selector = f'genai_wasted_tokens_total{{token_type="{token_type}"}}'
        stored = run.by(f"sum by (failure_class, reason) ({selector})", "failure_class", "reason")
        assert stored == {key: float(n * per_answer) for key, n in run.expected["wasted"].items()}


def test_wasted_spend_matches_the_plan(run: Run) -> None:
    """Priced by genai-prices (the `prices` extra): the wasted spend is the plan's wasted
    answers at the table's price of their model, and part of the spend."""
    genai_prices = pytest.importorskip("genai_prices")
    from failsight.testing import USAGE

    usage = genai_prices.Usage(
        input_tokens=USAGE["prompt_tokens"], output_tokens=USAGE["completion_tokens"],
        cache_read_tokens=USAGE["cached_tokens"], output_reasoning_tokens=USAGE["reasoning_tokens"],
    )  # fmt: skip
    expected = sum(
        n * float(genai_prices.calc_price(usage, model).total_price)
        for model, n in run.expected["wasted_models"].items()
    )
    assert expected > 0
    assert run.value("sum(genai_wasted_cost_usd_total)") == pytest.approx(expected, rel=1e-9)
    assert run.value("sum(genai_cost_usd_total)") > run.value("sum(genai_wasted_cost_usd_total)")


def test_content_filter_categories_match_the_plan(run: Run) -> None:
    stored = run.by(
        "sum by (category, stage, severity) (genai_content_filter_total)",
        "category", "stage", "severity",
    )  # fmt: skip
    rounds = sum(1 for step, scenario in run.plan if scenario == "azure_prompt_filter")
    assert rounds > 0
    assert stored == {
        ("violence", "completion", "high"): rounds,
        ("safety", "completion", "unknown"): rounds,
        ("hate", "prompt", "medium"): rounds,
        ("jailbreak", "prompt", "unknown"): rounds,
    }


def test_attempts_backoff_and_phases_match_the_plan(run: Run) -> None:
    """Each HTTP 429 of the plan is an attempt with status rate_limited, each retry has one
    backoff observation, and each logical request one observation per phase."""
    retries = sum(run.expected["retries"].values())
    refused = (
        run.expected["retries"]["rate_limited"] + run.expected["failures"][("hard", "rate_limited")]
    )
    assert run.value('sum(genai_attempts_total{status="rate_limited"})') == refused
    assert run.value("sum(genai_retry_backoff_seconds_count)") == retries
    phases = run.by("sum by (phase) (genai_request_phase_seconds_count)", "phase")
    assert phases == {"attempts": len(run.plan), "backoff": len(run.plan)}


def test_rate_limit_gauges_read_the_fault_servers_budget(run: Run) -> None:
    """After the `ratelimited` requests, the gauges hold what the last answer said: the
    default budget less what they spent, and its size; the headroom rule divides them."""
    budget = RateLimit()
    spent = {"requests": RATELIMITED_CALLS, "tokens": RATELIMITED_CALLS * USAGE["total_tokens"]}
    size = {"requests": budget.requests, "tokens": budget.tokens}
    left = run.by("genai_ratelimit_remaining", "resource")
    assert left == {resource: size[resource] - spent[resource] for resource in size}
    assert run.by("genai_ratelimit_limit", "resource") == size
    headroom = run.prom.wait_for("genai:ratelimit_headroom_ratio:last5m", bool, timeout=20)
    ratios = {s["metric"]["resource"]: float(s["value"][1]) for s in headroom}
    assert ratios == pytest.approx({r: left[r] / size[r] for r in size})
