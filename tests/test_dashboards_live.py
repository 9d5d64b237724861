"""Every panel of the shipped dashboards shows data, queried the way Grafana queries it.

One real Prometheus runs the shipped deploy/prometheus.yml (only its scrape target, rule
paths and scrape interval changed) with the shipped recording and alert rules, and scrapes
`failsight demo --forever` with a compressed incident schedule, in a subprocess. From the
first scrape on, each panel target of each dashboard is evaluated as Grafana would send it:

- template variables at "All", i.e. the variable's `allValue` (a regex);
- `$__interval` from the dashboard's default time range and the panel's width in pixels
  (Grafana's `roundInterval`, at least the scrape interval), `$__rate_interval` =
  max(`$__interval` + scrape interval, 4 x scrape interval), `$__range` the time range;
- instant queries where the target asks for them, range queries over the whole time range
  (step `$__interval`) otherwise.

A target "shows data" when some series has a finite value: NaN is an empty panel in Grafana.
Then each incident of the schedule is checked at its call site, and Ctrl-C ends the demo.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from failsight.demo import INCIDENTS
from prom_harness import (
    RULES_DIR,
    PrometheusServer,
    PromQLError,
    iter_panels,
    load_dashboards,
    sample_value,
)

pytestmark = [pytest.mark.needs_prometheus, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "deploy" / "prometheus.yml"
DEMO_JOB = "failsight-demo"
SCRAPE_S = 2  # the scrape interval here, and so Grafana's datasource "scrape interval"
RATE = 25  # demo requests per second: an incident's call site sees ~13 requests or more
EVERY_S, LENGTH_S = 13, 10  # incident slots: the five incidents end 65 s into the run
GRID_PX = 1872  # a dashboard 1920 px wide, less Grafana's page padding: 24 columns
INSTANT_PANELS = {"stat", "bargauge", "table", "gauge", "piechart"}


# --------------------------------------------------------------------------------------
# Grafana's arithmetic


def round_interval(ms: float) -> float:
    """Grafana's `rangeutil.roundInterval` (milliseconds), up to the day."""
    steps = [
        (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
        (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
        (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
        (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
        (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
        (32400000, 21600000), (86400000, 43200000),
    ]  # fmt: skip
    if ms < 10:
        return 1
    return next((rounded for below, rounded in steps if ms < below), 86400000)


def parse_duration(text: str) -> float:
    """`'6h'` -> 21600.0; Grafana's time-range units."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text)
    assert match, text
    return int(match[1]) * units[match[2]]


def seconds_text(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"


VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    """`expr` with each `$name`, `${name}` and `[[name]]` replaced by `values[name]`."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        assert name in values, f"unknown variable ${name} in {expr!r}"
        return values[name]

    return VARIABLE.sub(value, expr)


@dataclass(frozen=True)
class GrafanaQuery:
    where: str
    expr: str  # variables substituted
    instant: bool
    step_s: float


def time_range_s(dashboard: dict[str, Any]) -> float:
    time_range = dashboard["time"]
    assert time_range["to"] == "now", time_range
    return parse_duration(time_range["from"].removeprefix("now-"))


def grafana_queries(
    dashboard: dict[str, Any], range_s: float | None = None, scrape_s: float = SCRAPE_S
) -> list[GrafanaQuery]:
    """Each panel target of `dashboard`, as Grafana would run it with every variable at All,
    over the dashboard's default time range (or `range_s` seconds)."""
    range_s = range_s or time_range_s(dashboard)
    default_scrape = f"{scrape_s:g}s"
    all_values = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable.get("includeAll") and variable.get("allValue"), variable["name"]
            all_values[variable["name"]] = variable["allValue"]
    queries = []
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        width_px = panel.get("maxDataPoints") or panel["gridPos"]["w"] / 24 * GRID_PX
        for target in panel["targets"]:
            scrape_s = parse_duration(
                target.get("interval") or panel.get("interval") or default_scrape
            )
            interval_s = max(round_interval(range_s * 1000 / width_px) / 1000, scrape_s)
            rate_s = max(interval_s + scrape_s, 4 * scrape_s)
            builtins = {
                "__rate_interval": seconds_text(rate_s),
                "__interval": seconds_text(interval_s),
                "__interval_ms": str(int(interval_s * 1000)),
                "__range": seconds_text(range_s),
                "__range_s": str(int(range_s)),
                "__range_ms": str(int(range_s * 1000)),
            }
            expr = substitute(target["expr"], {**all_values, **builtins})
            instant = target.get("instant", panel["type"] in INSTANT_PANELS) and not target.get(
                "range", False
            )
            where = f"{dashboard['uid']}: {panel['title']} [{target['refId']}]"
            queries.append(GrafanaQuery(where, expr, bool(instant), interval_s))
    return queries


def test_grafana_arithmetic_matches_grafana() -> None:
    """Grafana's arithmetic on the overview's panels, over the default 6 h range."""
    assert round_interval(21600 * 1000 / 936) == 20000  # a half-width panel: 20 s
    assert round_interval(21600 * 1000 / 624) == 30000  # a third: 30 s
    assert round_interval(21600 * 1000 / 468) == 60000  # a quarter: 1 m
    assert parse_duration("6h") == 21600 and seconds_text(62) == "62s"
    overview = load_dashboards()["failsight-overview.json"]
    by_title = {q.where.split(": ", 1)[1]: q for q in grafana_queries(overview)}
    requests = by_title["Request rate by class [A]"]
    assert not requests.instant and requests.step_s == 20
    assert f"[{20 + SCRAPE_S}s]" in requests.expr and "$" not in requests.expr
    assert by_title["Hard failures [A]"].instant
    assert 'job=~".*"' in requests.expr


# --------------------------------------------------------------------------------------
# The stack: the continuous demo and the shipped Prometheus configuration


def shipped_config(demo_target: str, scrape_s: float = SCRAPE_S) -> dict[str, Any]:
    """deploy/prometheus.yml with only the demo's scrape target, the rule paths and the
    scrape interval changed."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"]["scrape_interval"] = f"{scrape_s:g}s"
    config["global"]["scrape_timeout"] = f"{scrape_s:g}s"
    rules = config["rule_files"]
    assert rules == [
        "rules/failsight-recording.yml", "rules/failsight-alerts.yml", "rules/failsight-slo.yml"
    ], rules  # fmt: skip
    config["rule_files"] = [str(RULES_DIR / Path(path).name) for path in rules]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == DEMO_JOB]
    assert job["static_configs"] == [{"targets": ["host.docker.internal:9464"]}]
    job["static_configs"] = [{"targets": [demo_target]}]
    return config  # type: ignore[no-any-return]


class ShippedPrometheus(PrometheusServer):
    def __init__(self, demo_target: str, scrape_s: float = SCRAPE_S) -> None:
        super().__init__(startup_timeout=60)
        self.demo_target = demo_target
        self.scrape_s = scrape_s

    def config(self) -> dict[str, Any]:
        return shipped_config(self.demo_target, self.scrape_s)

    def query_at(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self._api("query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        return self._api("query_range", params)

    def _api(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        body = urllib.parse.urlencode(params).encode()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}", body, timeout=30) as reply:
                data = json.load(reply)["data"]
        except urllib.error.HTTPError as exc:
            raise PromQLError(f"{params['query']!r}: {json.load(exc).get('error')}") from None
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])


class Demo:
    """`failsight demo --forever` in a subprocess; its stdout lines as they come."""

    def __init__(
        self, rate: float = RATE, every_s: float = EVERY_S, length_s: float = LENGTH_S
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "failsight", "demo", "--forever", "--port", "0",
             "--rate", f"{rate:g}", "--incident-every", f"{every_s:g}",
             "--incident-length", f"{length_s:g}", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            assert self.process.poll() is None, self.output()
            time.sleep(0.1)
        raise TimeoutError(f"no line matching {pattern!r}:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it; the exit status and what it printed."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=10)  # stdout is the reader's alone
        assert self.process.stderr is not None
        return self.process.returncode, self.output() + self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@dataclass
class Stack:
    prom: ShippedPrometheus
    demo: Demo
    started: float  # wall clock when the demo's run began
    first_scrape: float  # wall clock of Prometheus's first scrape of the demo


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    demo = Demo()
    try:
        target = demo.wait_for(r"/metrics on http://(127\.0\.0\.1:\d+)/metrics", 60)[1]
        started = time.time()
        with ShippedPrometheus(target) as prom:
            up = prom.wait_for(f'timestamp(up{{job="{DEMO_JOB}"}} == 1)', bool, timeout=30)
            yield Stack(prom, demo, started, sample_value(up))
    finally:
        demo.kill()


def has_data(result: list[dict[str, Any]]) -> bool:
    values = [s["value"][1] for s in result if "value" in s]
    values += [v for s in result for _, v in s.get("values", [])]
    return any(math.isfinite(float(value)) for value in values)


def run_query(prom: ShippedPrometheus, query: GrafanaQuery, now: float) -> list[Any]:
    if query.instant:
        return prom.query_at(query.expr, now)
    range_s = time_range_s(load_dashboards()[f"{query.where.split(':')[0]}.json"])
    # Grafana aligns the range to the step.
    start = (now - range_s) // query.step_s * query.step_s
    end = now // query.step_s * query.step_s
    return prom.query_range(query.expr, start, end, query.step_s)


def test_every_panel_target_shows_data(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """What a user sees in the first minute. Each target must show data within five scrape
    intervals and two rule evaluations (the first may come before the second scrape) after
    Prometheus's first scrape of the demo, plus one step of the panel: Grafana rounds a range
    query's end down to a multiple of its step, so a point appears only at the next one."""
    evaluation_s = parse_duration(yaml.safe_load(SHIPPED_CONFIG.read_text())["global"][
        "evaluation_interval"])  # fmt: skip
    queries = [q for d in load_dashboards().values() for q in grafana_queries(d)]
    assert len(queries) >= 60
    longest_step = max(q.step_s for q in queries if not q.instant)
    deadline = stack.first_scrape + 5 * SCRAPE_S + 2 * evaluation_s + longest_step
    waiting = list(queries)
    failed: list[str] = []
    shown: dict[str, float] = {}  # target -> seconds after the first scrape
    while True:
        now = time.time()
        still = []
        for query in waiting:
            try:
                result = run_query(stack.prom, query, now)
            except PromQLError as exc:
                failed.append(f"{query.where}: {exc}")
                continue
            if has_data(result):
                shown[query.where] = now - stack.first_scrape
            else:
                still.append(query)
        waiting = still
        if failed or not waiting or now > deadline:
            break
        time.sleep(1)
    last = sorted(shown.items(), key=lambda item: -item[1])[:3]
    with capsys.disabled():
        print(
            f"\n{len(queries)} panel targets checked, {len(shown)} with data, within "
            f"{deadline - stack.first_scrape:.0f} s of Prometheus's first scrape of the demo; "
            f"last: " + "; ".join(f"{where} at {after:.0f} s" for where, after in last)
        )
    assert not failed, "\n".join(failed)
    empty = [f"{query.where}: {query.expr}" for query in waiting]
    assert not empty, f"{len(empty)} of {len(queries)} panel targets show no data:\n" + "\n".join(
        empty
    )


def test_the_requests_stat_shows_the_current_rate(stack: Stack) -> None:
    """The headline stat is the demo's rate, not the rate averaged over six hours of which
    one minute had data."""
    overview = load_dashboards()["failsight-overview.json"]
    (query,) = [q for q in grafana_queries(overview) if q.where.endswith("Requests / s [A]")]
    # Until Prometheus holds a whole window of data, a rate over it reads low.
    window = int(re.findall(r"\[(\d+)s\]", query.expr)[0])
    time.sleep(max(0.0, stack.first_scrape + window + SCRAPE_S - time.time()))
    now = time.time()
    value = sample_value(stack.prom.query_at(query.expr, now))
    # What the demo achieved on this machine (it aims at RATE), from the raw counter.
    total = "sum(genai_requests_total)"
    achieved = (
        sample_value(stack.prom.query_at(total, now))
        - sample_value(stack.prom.query_at(total, now - window))
    ) / window
    assert achieved > 1, achieved
    assert achieved / 2 < value < achieved * 1.5, (value, achieved)


# Per incident: the counters of its alert's first condition, and the threshold.
INCIDENT_COUNTERS = {
    "GenAISilentFailures": (('genai_failures_total{failure_class="silent", ',), 0.05),
    "GenAIContentFilterSpike": (('genai_failures_total{reason="content_filter", ',), 0.05),
    "GenAIRateLimitSurge": (
        (
            'genai_retries_total{reason="rate_limited", ',
            'genai_failures_total{reason="rate_limited", ',
        ),
        0.1,
    ),
    "GenAITruncationSpike": (('genai_failures_total{reason="length", ',), 0.05),
}
# The headroom alert reads gauges, not counters: below 10% at each scrape of the incident.
HEADROOM_ALERT, HEADROOM_THRESHOLD = "GenAIRateLimitHeadroomLow", 0.1


def test_each_incident_crosses_its_alert_threshold_at_its_call_site(stack: Stack) -> None:
    """Over each incident's own window, from the scraped counters at its start and end.
    (Its alert fires only after its `for:`, and a spike alert only once the last day's
    baseline holds more than the last 5 minutes: tests/test_demo_continuous.py checks that
    the shipped schedule gives them both.)"""
    prom, demo = stack.prom, stack.demo
    demo.wait_for(rf"incident over: {re.escape(INCIDENTS[-1].title)}", 120)
    scraped = time.time()
    prom.wait_for(f'timestamp(up{{job="{DEMO_JOB}"}}) > {scraped}', bool, timeout=30)

    def count(selectors: tuple[str, ...], at: float) -> float:
        expr = " + ".join(f"(sum({s}) or vector(0))" for s in selectors)
        return sample_value(prom.query_at(expr, at))

    for incident in INCIDENTS:
        title = re.escape(incident.title)
        over = demo.wait_for(rf"\[(\d\d):(\d\d):(\d\d)\] incident over: {title}", 5)
        # The demo's clock shows whole seconds: the window may start up to 1 s early.
        end = stack.started + int(over[1]) * 3600 + int(over[2]) * 60 + int(over[3]) + 1
        start = end - LENGTH_S - 1
        if incident.alert == HEADROOM_ALERT:
            # `remaining / limit` of the model's requests budget as each scrape read it, a
            # second apart: plenty before the incident; from its first answer read on, below
            # the threshold to its last scrape (`end - 2`: the clock shows whole seconds).
            where = f'model="{incident.model}", resource="requests"'
            left = f"genai_ratelimit_remaining{{{where}}} / genai_ratelimit_limit{{{where}}}"
            read = [sample_value(prom.query_at(left, start + k)) for k in range(LENGTH_S)]
            assert read[0] > 0.5 and read[-1] < HEADROOM_THRESHOLD, f"{incident.title}: {read}"
            low = next(k for k, value in enumerate(read) if value < HEADROOM_THRESHOLD)
            assert max(read[low:]) < HEADROOM_THRESHOLD, f"{incident.title}: {read}"
            continue
        selectors, threshold = INCIDENT_COUNTERS[incident.alert]
        where = f'call_site="{incident.call_site}", model="{incident.model}"'
        failing = [s + where + "}" for s in selectors]
        requests = (f"genai_requests_total{{{where}}}",)
        value = (count(tuple(failing), end) - count(tuple(failing), start)) / (
            count(requests, end) - count(requests, start)
        )
        assert value > threshold, f"{incident.title}: {value:.3f} over {start:.0f}..{end:.0f}"
    # The silent-failure alert has no baseline: it goes pending at once (and would fire
    # after its 15 minutes).
    seen = prom.query('max_over_time(ALERTS{alertname="GenAISilentFailures"}[5m])')
    assert "extract_json" in [s["metric"]["call_site"] for s in seen], seen


def test_ctrl_c_stops_the_demo_with_the_summary_table(stack: Stack) -> None:
    status, output = stack.demo.interrupt()
    assert status == 0, output
    ran = re.search(r"Ran (\d+) logical requests in ([\d.]+) s\.", output)
    assert ran, output
    assert f"Logical requests: {ran[1]}" in output and "Traceback" not in output
    seconds = float(ran[2])
    assert int(ran[1]) > seconds > 1, ran[0]  # more than 1 request a second, whatever the load
