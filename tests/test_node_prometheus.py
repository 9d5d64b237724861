"""The dashboards and rules, run against real Prometheus scraping the Node.js package.

The Node workload (js/tools/workload.mjs) runs every conformance case against the fault
server and serves its /metrics; Prometheus scrapes it with the shipped rule files loaded.
The plan is the cases themselves: the totals Prometheus stored must equal the sum of the
deltas the cases declare, and every dashboard query and recording rule must answer.
Skips when Node.js, the built js/ package or Prometheus is missing (fails under CI).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from failsight.testing import FaultServer
from prom_harness import RULE_FILES, PrometheusServer, all_dashboard_queries
from test_conformance import CASES, CONFORMANCE, expected_series
from test_node_parity import JS, _need_node

pytestmark = [pytest.mark.needs_node, pytest.mark.needs_prometheus, pytest.mark.e2e]

# Counters whose totals the cases declare exactly.
COUNTED = (
    "genai_requests_total", "genai_failures_total", "genai_retries_total", "genai_tokens_total",
    "genai_finish_reasons_total", "genai_wasted_tokens_total", "genai_content_filter_total",
    "genai_video_jobs_total",
)  # fmt: skip
# The Node package prices nothing: the queries over spend answer on the Python run only
# (tests/test_e2e_prometheus.py), and these are left out here.
UNPRICED = ("genai_cost_usd_total", "genai_wasted_cost_usd_total", "genai:cost_usd",
            "genai:wasted_cost_usd", "genai:wasted_cost_ratio")  # fmt: skip
# What answers only while traffic goes on: the workload ends before the first scrape, so its
# counters never move. The SLO panels read ratios under their minimum-traffic guard and the
# headroom ratio is under its "called in the last 5 minutes" filter; the live-panel test
# (tests/test_dashboards_live.py) and the Python run (tests/test_e2e_prometheus.py, which
# calls again after the first scrape) run them with traffic.
NEEDS_LIVE_TRAFFIC = ("slo:", "genai:ratelimit_headroom_ratio")

Key = tuple[str, tuple[tuple[str, str], ...]]


def plan_totals() -> dict[Key, float]:
    totals: dict[Key, float] = {}
    for case in CASES:
        for key, value in expected_series(case).items():
            if key[0] in COUNTED:
                totals[key] = totals.get(key, 0) + value
    return totals


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    node = _need_node()
    settings = CONFORMANCE["server"]
    with FaultServer(
        retry_after_ms=settings["retry_after_ms"],
        slow_seconds=settings["slow_seconds"],
        video_polls_to_finish=settings["video_polls_to_finish"],
    ) as fault:
        proc = subprocess.Popen(
            [node, "tools/workload.mjs", fault.base_url], cwd=JS, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://"), proc.stderr.read() if proc.stderr else url
            target = url.split("//", 1)[1].split("/", 1)[0]
            with PrometheusServer([target], RULE_FILES) as server:
                requests = sum(v for k, v in plan_totals().items() if k[0] == COUNTED[0])
                server.wait_for(
                    "sum(genai_requests_total)",
                    lambda r: bool(r) and float(r[0]["value"][1]) == requests,
                    timeout=30,
                )
                server.wait_for(  # scraped three times: rates over the data exist
                    "sum(count_over_time(genai_requests_total[1m]))",
                    lambda r: (
                        bool(r)
                        and float(r[0]["value"][1]) >= 3 * len(server.query("genai_requests_total"))
                    ),
                    timeout=30,
                )
                yield server
        finally:
            proc.communicate(input="", timeout=30)


def stored(prom: PrometheusServer, name: str) -> dict[Key, float]:
    found: dict[Key, float] = {}
    for sample in prom.query(name):
        labels = {
            k: v for k, v in sample["metric"].items() if k not in ("__name__", "job", "instance")
        }
        value = float(sample["value"][1])
        if value:
            found[(name, tuple(sorted(labels.items())))] = value
    return found


@pytest.mark.parametrize("name", COUNTED)
def test_stored_totals_equal_the_plan(prom: PrometheusServer, name: str) -> None:
    expected = {k: v for k, v in plan_totals().items() if k[0] == name}
    assert expected, f"the cases declare no {name}"
    assert stored(prom, name) == expected


def test_every_dashboard_query_answers(prom: PrometheusServer) -> None:
    queries = [(where, expr) for where, expr in all_dashboard_queries()
               if not any(name in expr for name in UNPRICED + NEEDS_LIVE_TRAFFIC)]  # fmt: skip
    assert len(queries) > 40
    empty = [where for where, expr in queries if not prom.query(expr)]
    assert empty == []


def test_every_recording_rule_answers(prom: PrometheusServer) -> None:
    records: list[str] = [
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
        and not any(name in rule["record"] for name in (*UNPRICED, NEEDS_LIVE_TRAFFIC[1]))
    ]
    assert len(records) > 10
    missing: list[Any] = []
    for record in records:
        try:
            prom.wait_for(record, bool, timeout=20)
        except TimeoutError as exc:  # collected: one message names every silent rule
            missing.append((record, str(exc)[:80]))
    assert missing == []
