"""The Grafana dashboards in dashboards/: JSON model, variables, layout, PromQL, metric names;
and the documentation that describes them (README.md, CONTRIBUTING.md, docs/*.md).

PromQL is checked by the real promtool (every expression becomes a recording rule) and run
against a real Prometheus scraping a registry that holds every failsight metric. The
documentation is checked for what a user cannot act on (references to files and tracker
items that do not ship), and its gunicorn setup is run as written.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

import failsight
from failsight import _config
from failsight._metrics import MetricSet
from failsight._vocabulary import VOCABULARY
from failsight.testing import DECLARED_SCENARIOS, SCENARIO_HEADER, FaultServer
from prom_harness import (
    DASHBOARDS_DIR,
    PROMQL_DATASOURCE,
    RULE_FILES,
    RULES_DIR,
    PrometheusServer,
    PromQLError,
    all_dashboard_queries,
    dashboard_expressions,
    iter_panels,
    load_dashboards,
    run_promtool,
    sample_value,
    serve_registry,
    substitute_variables,
)

# The recording and alert rules, and the SLO rules (Sloth's) that the "Error budget" rows read.
ALL_RULE_FILES = (*RULE_FILES, RULES_DIR / "failsight-slo.yml")

DASHBOARD_FILES = ("failsight-overview.json", "failsight-call-site.json")
VARIABLES = ("datasource", "job", "provider", "model", "operation", "call_site")
COMMON_FILTERS = ("job", "operation", "provider", "model", "call_site")
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
USER_DOCS = (README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md")))
TEMPO_UID = "failsight-tempo"


def library_metrics() -> dict[str, str]:
    """The library's own metric set as {exposed name: type}, read from a fresh registry."""
    registry = CollectorRegistry()
    MetricSet(registry)
    return {
        metric.name + ("_total" if metric.type == "counter" else ""): metric.type
        for metric in registry.collect()
    }


EXPECTED_METRICS = library_metrics()

DASHBOARDS = load_dashboards()


def panels_of(name: str) -> list[dict[str, Any]]:
    return list(iter_panels(DASHBOARDS[name]["panels"]))


def panel(name: str, title: str) -> dict[str, Any]:
    matches = [p for p in panels_of(name) if p.get("title") == title]
    assert len(matches) == 1, f"{name}: expected one panel titled {title!r}"
    return matches[0]


def load_rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def rule_expressions() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {rule.get('record') or rule.get('alert')}", rule["expr"])
        for path in ALL_RULE_FILES
        for rule in load_rules(path)
    ]


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


# --------------------------------------------------------------------------------------
# JSON model


def test_the_two_dashboards_exist() -> None:
    assert set(DASHBOARDS) == set(DASHBOARD_FILES)
    assert DASHBOARDS["failsight-overview.json"]["title"] == "Generation failures overview"
    assert DASHBOARDS["failsight-call-site.json"]["title"] == "Call-site drill-down"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_model_is_provisionable(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert "__inputs" not in dashboard and "__requires" not in dashboard
    assert "${DS_" not in json.dumps(dashboard), "import-time placeholders break provisioning"
    assert dashboard["schemaVersion"] >= 39
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and dashboard.get("description")
    assert "failsight" in dashboard["tags"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_ids_are_unique(name: str) -> None:
    ids = [p["id"] for p in panels_of(name)]
    assert len(ids) == len(set(ids)), sorted(ids)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_grid_layout_fits_24_columns_without_overlaps(name: str) -> None:
    rects = []
    for p in DASHBOARDS[name]["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] >= 1 and pos["h"] >= 1, p["title"]
        assert pos["x"] + pos["w"] <= 24, f"{p['title']} ends past column 24"
        rects.append((p["title"], pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"]))
    for i, (title_a, ax0, ay0, ax1, ay1) in enumerate(rects):
        for title_b, bx0, by0, bx1, by1 in rects[i + 1 :]:
            overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
            assert not overlap, f"{title_a!r} overlaps {title_b!r}"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_and_target_uses_the_datasource_variable(name: str) -> None:
    for p in panels_of(name):
        if p["type"] == "row":
            assert not p.get("targets"), p["title"]
            continue
        assert p.get("datasource") == PROMQL_DATASOURCE, p["title"]
        assert p.get("targets"), f"{p['title']} has no query"
        for target in p["targets"]:
            assert target.get("datasource") == PROMQL_DATASOURCE, (p["title"], target["refId"])
            assert target.get("expr"), (p["title"], target["refId"])
    for annotation in DASHBOARDS[name]["annotations"]["list"]:
        if annotation.get("target"):
            assert annotation["datasource"] == PROMQL_DATASOURCE
            assert annotation["target"]["expr"], annotation["name"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_template_variables(name: str) -> None:
    variables = DASHBOARDS[name]["templating"]["list"]
    assert [v["name"] for v in variables] == list(VARIABLES)
    datasource = variables[0]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for variable in variables[1:]:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == PROMQL_DATASOURCE, variable["name"]
        assert variable["multi"] is True and variable["includeAll"] is True, variable["name"]
        assert variable["allValue"] == ".*", variable["name"]
        query = variable_query(variable)
        match = re.fullmatch(r"label_values\((genai_\w+(?:\{.*\})?),\s*(\w+)\)", query)
        assert match, f"{variable['name']}: {query!r} is not label_values(<selector>, <label>)"
        assert match.group(2) == variable["name"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_template_variable_is_used(name: str) -> None:
    dashboard = DASHBOARDS[name]
    used_in = json.dumps(
        [[p.get("datasource"), p.get("targets", [])] for p in panels_of(name) if p["type"] != "row"]
        + [variable_query(v) for v in dashboard["templating"]["list"]]
    )
    for variable in VARIABLES:
        assert re.search(rf"\$(\{{)?{variable}\b", used_in), f"${variable} is never used"


# The rate-limit gauges, and the headroom recorded from them, carry no operation or call
# site (a budget is the account's): a filter on those would empty the panel.
HEADROOM_SERIES = re.compile(r"genai_ratelimit_\w+|genai:ratelimit_headroom\w*:\w+")
HEADROOM_FILTERS = ("job", "provider", "model")


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_query_is_filtered_by_the_variables(name: str) -> None:
    selector = re.compile(r"\b(genai[_:][\w:]*)\s*(\{[^}]*\})?")
    for p in panels_of(name):
        for target in p.get("targets", []):
            for metric, matchers in selector.findall(target["expr"]):
                wanted: tuple[str, ...] = COMMON_FILTERS
                if metric == "genai_telemetry_errors_total":
                    wanted = ("job",)
                if HEADROOM_SERIES.fullmatch(metric):
                    wanted = HEADROOM_FILTERS
                    # ... and none of the others, which would match no series once set.
                    assert "$operation" not in matchers and "$call_site" not in matchers, p["title"]
                for label in wanted:
                    assert f'{label}=~"${label}"' in (matchers or ""), (
                        f"{p['title']} [{target['refId']}]: {metric} is not filtered by ${label}"
                    )


# Grafana's unit ids used here, plus its custom `count:<unit>` (a count, scaled K/M/B, with
# the unit written after it) for what Grafana has no unit of its own for (tokens, jobs).
GRAFANA_UNITS = {"reqps", "percentunit", "s", "short", "currencyUSD"}


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_has_a_unit_and_a_description(name: str) -> None:
    """Rows hold no data; every other panel says what its numbers are and what they mean."""
    for p in panels_of(name):
        if p["type"] == "row":
            continue
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        assert unit in GRAFANA_UNITS or re.fullmatch(r"count:\S+", unit), f"{p['title']}: {unit!r}"
        description = p.get("description", "")
        assert len(description) >= 90, f"{p['title']}: description too short for a newcomer"
        assert description.rstrip().endswith((".", ")")), f"{p['title']}: unfinished description"
        assert not description.lower().startswith(p["title"].lower()), p["title"]


def test_units_match_what_the_queries_compute() -> None:
    """Ratios are shown as percentages, quantiles of durations in seconds, per-minute rates
    per minute."""
    for name in DASHBOARD_FILES:
        for p in panels_of(name):
            if p["type"] == "row":
                continue
            unit = p["fieldConfig"]["defaults"]["unit"]
            exprs = " ".join(t["expr"] for t in p["targets"])
            if "histogram_quantile" in exprs and "_seconds_bucket" in exprs:
                assert unit == "s", p["title"]
            what = p["title"] + " " + p["description"].split(".")[0]
            if re.search(r"\b(ratio|share)\b", what, re.IGNORECASE):
                assert unit == "percentunit", p["title"]
            if exprs.rstrip().endswith("* 60"):
                assert unit.endswith("/min"), p["title"]


def test_overview_descriptions_carry_the_failure_checklist() -> None:
    text = " ".join(p.get("description", "") for p in panels_of("failsight-overview.json"))
    for advice in (
        "raise max_tokens or shorten the prompt",  # length
        "rephrase",  # content_filter
        "back off",  # 429
        "check quota",
        "failsight.error.param",  # 400
        "inspect the prompt",  # empty_content
        "revised_prompt",  # image_filtered
        "try another model",  # video stuck in queued
        "log the full output when validation fails",  # silent
    ):
        assert advice in text, f"no panel description says {advice!r}"


# Each required view of the overview: a regex that some panel query must match.
OVERVIEW_QUERIES = {
    "request rate by class": r"sum by \(failure_class\) \(rate\(genai_requests_total\{",
    "failure ratio by class": r"failure_class!=\"none\".*group_left.*genai_requests_total",
    "failures by reason": r"sum by \(failure_class, reason\) \(rate\(genai_failures_total",
    "content_filter ratio": r"^genai:content_filter_ratio:rate5m\{",
    "finish_reason mix": r"sum by \(finish_reason\) \(rate\(genai_finish_reasons_total",
    "retries per request": r"genai_retries_total.*/.*genai_requests_total",
    "retry reasons": r"sum by \(reason\) \(rate\(genai_retries_total",
    "attempts distribution": r"genai_request_attempts_bucket",
    "latency p99 by model and class": (
        r"histogram_quantile\(0\.99, sum by \(le, model, failure_class\) "
        r"\(rate\(genai_request_duration_seconds_bucket"
    ),
    "time to first token": r"genai_time_to_first_token_seconds_bucket",
    "tokens by model and type": r"sum by \(model, token_type\) \(rate\(genai_tokens_total",
    "video outcomes": r"sum by \(status\) \(rate\(genai_video_jobs_total",
    "video duration": r"genai_video_job_duration_seconds_bucket",
    "image filtered ratio": r"reason=\"image_filtered\".*operation=\"image_generation\"",
    "in-flight requests": r"genai_in_flight_requests",
    "telemetry errors by stage": r"sum by \(stage\) \(rate\(genai_telemetry_errors_total",
    "spend over time": r"sum\(rate\(genai_cost_usd_total\{",
    "wasted spend by reason": (
        r"sum by \(failure_class, reason\) \(rate\(genai_wasted_cost_usd_total"
    ),
    "wasted share per call site": r"sum by \(call_site\) \(rate\(genai_wasted_tokens_total.*/",
    "filter categories": r"sum by \(category, stage, severity\) \(rate\(genai_content_filter_total",
    "tool-call failure ratio per tool": r"^genai:tool_call_failure_ratio:rate5m\{",
    "tool calls by tool and outcome": r"sum by \(tool, outcome\) \(rate\(genai_tool_calls_total",
    "declared-output reasons": r"sum by \(reason\) \(rate\(genai_failures_total\{.*reason=~",
    "structured-output failure share": (
        r"(?s)reason=~\"invalid_json\|output_schema_mismatch\".*/ on \(call_site\)"
    ),
    "requests left per provider and model": (
        r"by \(provider, model\) \(genai_ratelimit_remaining\{.*resource=\"requests\""
    ),
    "tokens left per provider and model": (
        r"by \(provider, model\) \(genai_ratelimit_remaining\{.*resource=\"tokens\""
    ),
    "rate-limit limits": r"by \(provider, model\) \(genai_ratelimit_limit\{",
    "seconds until the budget resets": r"genai_ratelimit_reset_seconds\{",
    "headroom vs alert threshold": r"^genai:ratelimit_headroom_ratio:last5m\{",
    "attempts by provider and status": (
        r"sum by \(provider, status\) \(rate\(genai_attempts_total\{"
    ),
    "backoff quantiles by retry_after": (
        r"histogram_quantile\(0\.95, sum by \(le, retry_after\) "
        r"\(rate\(genai_retry_backoff_seconds_bucket"
    ),
    "share of API time in backoff": (
        r"(?s)genai_request_phase_seconds_sum\{[^}]*phase=\"backoff\".*/ "
        r"sum by \(call_site\) \(rate\(genai_request_phase_seconds_sum\{"
    ),
}


@pytest.mark.parametrize("view", sorted(OVERVIEW_QUERIES))
def test_overview_has_the_required_view(view: str) -> None:
    pattern = re.compile(OVERVIEW_QUERIES[view])
    exprs = [t["expr"] for p in panels_of("failsight-overview.json") for t in p.get("targets", [])]
    assert any(pattern.search(expr) for expr in exprs), f"no overview query shows {view}"


def test_failures_by_reason_are_stacked() -> None:
    custom = panel("failsight-overview.json", "Failures by reason")["fieldConfig"]["defaults"]
    assert custom["custom"]["stacking"]["mode"] == "normal"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_latency_panels_show_exemplars_linked_to_traces(name: str) -> None:
    latency = [
        p
        for p in panels_of(name)
        if any("genai_request_duration_seconds_bucket" in t["expr"] for t in p.get("targets", []))
    ]
    assert latency
    for p in latency:
        quantiles = {re.search(r"histogram_quantile\(([\d.]+)", t["expr"])[1] for t in p["targets"]}
        assert quantiles == {"0.5", "0.95", "0.99"}, p["title"]
        assert all(t.get("exemplar") is True for t in p["targets"]), p["title"]
        links = p["fieldConfig"]["defaults"]["links"]
        assert links and all(TEMPO_UID in link["url"] for link in links), p["title"]
    # The exemplar's trace_id label opens the trace: configured on the Prometheus datasource.
    destinations = prometheus_datasource()["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": TEMPO_UID}.items() <= destinations[0].items()


# Panels that draw an alert's threshold: (file, title) -> (alert, series compared).
THRESHOLD_PANELS = {
    ("failsight-overview.json", "content_filter ratio vs alert threshold"): (
        "GenAIContentFilterSpike",
        "genai:content_filter_ratio:rate5m",
    ),
    ("failsight-overview.json", "HTTP 429 per request vs alert threshold"): (
        "GenAIRateLimitSurge",
        "genai:rate_limited_per_request:rate5m",
    ),
    ("failsight-overview.json", "Truncation (length) ratio vs alert threshold"): (
        "GenAITruncationSpike",
        "genai:length_ratio:rate5m",
    ),
    ("failsight-overview.json", "Retries per request"): (
        "GenAIRetryStorm",
        "genai:retries_per_request:rate5m",
    ),
    ("failsight-overview.json", "Failure ratio by class"): (
        "GenAIHardFailureRatioHigh",
        "genai:failure_ratio:rate5m",
    ),
    ("failsight-call-site.json", "Failure ratio by class"): (
        "GenAIHardFailureRatioHigh",
        "genai:failure_ratio:rate5m",
    ),
    ("failsight-call-site.json", "Retries per request"): (
        "GenAIRetryStorm",
        "genai:retries_per_request:rate5m",
    ),
    ("failsight-call-site.json", "content_filter and length ratios"): (
        "GenAIContentFilterSpike",
        "genai:content_filter_ratio:rate5m",
    ),
    **{
        (name, "Tool-call failure ratio per tool vs alert threshold"): (
            "GenAIToolCallFailures",
            "genai:tool_call_failure_ratio:rate5m",
        )
        for name in DASHBOARD_FILES
    },
    **{
        (name, "Rate-limit headroom vs alert threshold"): (
            "GenAIRateLimitHeadroomLow",
            "genai:ratelimit_headroom_ratio:last5m",
        )
        for name in DASHBOARD_FILES
    },
}


def alert_threshold(alert: str, series: str) -> float:
    rule = next(
        r for r in load_rules(RULES_DIR / "failsight-alerts.yml") if r.get("alert") == alert
    )
    match = re.search(
        rf"\(\s*{re.escape(series)}(?:\{{[^}}]*\}})?\s*[<>]\s*([0-9.]+)\s*\)", rule["expr"]
    )
    assert match, f"{alert} does not compare {series} with a number"
    return float(match.group(1))


@pytest.mark.parametrize(("name", "title"), sorted(THRESHOLD_PANELS))
def test_drawn_thresholds_match_the_alert_rules(name: str, title: str) -> None:
    alert, series = THRESHOLD_PANELS[(name, title)]
    expected = alert_threshold(alert, series)
    p = panel(name, title)
    defaults = p["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
    assert defaults["thresholds"]["steps"][-1]["value"] == pytest.approx(expected)
    constants = [t["expr"] for t in p["targets"] if t["expr"].startswith("vector(")]
    for constant in constants:
        assert float(constant[len("vector(") : -1]) == pytest.approx(expected)
    if "vs alert threshold" in title:
        assert constants, f"{title} draws no constant threshold series"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
@pytest.mark.parametrize("resource", ["requests", "tokens"])
def test_each_resource_draws_what_is_left_with_its_limit_dashed(name: str, resource: str) -> None:
    """A panel per rate-limit resource: the remaining budget per provider and model, and the
    limit of the same resource as a dashed line (its legend matched by the override)."""
    p = panel(name, f"{resource.capitalize()} left vs limit")
    exprs = {t["refId"]: t for t in p["targets"]}
    gauges = {
        re.search(r"genai_ratelimit_(remaining|limit)\{", t["expr"])[1]: t  # type: ignore[index]
        for t in exprs.values()
    }
    assert set(gauges) == {"remaining", "limit"}
    for target in gauges.values():
        assert f'resource="{resource}"' in target["expr"]
        assert re.search(r"by \(provider, model\)", target["expr"]), target["expr"]
    (override,) = p["fieldConfig"]["overrides"]
    assert override["matcher"]["id"] == "byRegexp"
    limit_legend = gauges["limit"]["legendFormat"]
    left_legend = gauges["remaining"]["legendFormat"]
    pattern = re.compile(override["matcher"]["options"])
    assert pattern.search(limit_legend) and not pattern.search(left_legend)
    properties = {prop["id"]: prop["value"] for prop in override["properties"]}
    assert properties["custom.lineStyle"]["fill"] == "dash"


def test_hard_failure_stat_turns_red_at_the_alert_threshold() -> None:
    steps = panel("failsight-overview.json", "Hard failures")["fieldConfig"]["defaults"]
    expected = alert_threshold("GenAIHardFailureRatioHigh", "genai:failure_ratio:rate5m")
    assert steps["thresholds"]["steps"][-1] == {"color": "red", "value": expected}


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_burn_rate_panel_draws_the_slo_alerts_windows_and_factors(name: str) -> None:
    """The "Error budget" row's burn rates are those Sloth's page and ticket alerts compare:
    the same windows, and a threshold line at each burn factor."""
    alerts = [r for r in load_rules(RULES_DIR / "failsight-slo.yml") if r.get("alert")]
    quality = [r["expr"] for r in alerts if 'sloth_slo="generation-quality"' in r["expr"]]
    assert quality
    windows = {w for expr in quality for w in re.findall(r"ratio_rate(\w+)\{", expr)}
    factors = {float(f) for expr in quality for f in re.findall(r"> \(([\d.]+) \*", expr)}
    p = panel(name, "Burn rate by window (generation quality)")
    (target,) = p["targets"]
    drawn = re.search(r"ratio_rate\(([\w|]+)\)", target["expr"])
    assert drawn and set(drawn.group(1).split("|")) == windows
    steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {s["value"] for s in steps if s["value"] is not None} == factors


DECLARED = VOCABULARY["declared"]  # what failsight judges from a request's declaration


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_the_tool_call_row_shows_every_declared_reason(name: str) -> None:
    """A reason added to the vocabulary's declared judgements appears on both dashboards."""
    (target,) = panel(name, "Declared-output failures per minute by reason")["targets"]
    (listed,) = re.findall(r'reason=~"([\w|]+)"', target["expr"])
    reasons = {*DECLARED["tool_call_reasons"].values(), DECLARED["missing_reason"]}
    assert set(listed.split("|")) == reasons | set(DECLARED["output_reasons"].values())
    (target,) = panel(name, "Structured-output failure share per call site")["targets"]
    (listed,) = re.findall(r'reason=~"([\w|]+)"', target["expr"])
    assert set(listed.split("|")) == set(DECLARED["output_reasons"].values())


def test_trace_links_point_at_the_provisioned_tempo() -> None:
    urls = [
        url
        for dashboard in DASHBOARDS.values()
        for url in re.findall(r'"url": "(/explore[^"]*)"', json.dumps(dashboard))
    ]
    assert urls
    tempo_uids = {ds["uid"] for ds in datasources() if ds["type"] == "tempo"}
    for url in urls:
        assert any(uid in url for uid in tempo_uids), url


# --------------------------------------------------------------------------------------
# PromQL and metric names


def variable_selectors() -> list[tuple[str, str]]:
    found = []
    for name, dashboard in DASHBOARDS.items():
        for variable in dashboard["templating"]["list"][1:]:
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable_query(variable))
            assert selector, variable["name"]
            found.append((f"{name}: variable {variable['name']}", selector.group(1)))
    return found


def annotation_expressions() -> list[tuple[str, str]]:
    """Prometheus annotations keep their query in `target` (Grafana's current model)."""
    return [
        (f"{name}: annotation {annotation['name']}", annotation["target"]["expr"])
        for name, dashboard in DASHBOARDS.items()
        for annotation in dashboard["annotations"]["list"]
        if annotation.get("target", {}).get("expr")
    ]


def test_the_alert_annotations_query_prometheus() -> None:
    assert {where.split(":")[0] for where, _ in annotation_expressions()} == set(DASHBOARD_FILES)


def all_expressions() -> list[tuple[str, str]]:
    """Every PromQL expression shipped: dashboard panels, annotations, variables, rules."""
    dashboard_exprs = [
        (where, substitute_variables(expr))
        for where, expr in dashboard_expressions() + annotation_expressions() + variable_selectors()
    ]
    return dashboard_exprs + rule_expressions()


@pytest.mark.needs_prometheus
def test_every_promql_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression as the body of a recording rule."""
    expressions = all_expressions()
    assert len(expressions) > 60
    path = tmp_path / "expressions.yml"

    def promtool_accepts(exprs: list[str]) -> tuple[bool, str]:
        rules = [{"record": f"failsight_check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
        result = run_promtool("check", "rules", str(path))
        return result.returncode == 0, result.stdout + result.stderr

    ok, output = promtool_accepts([expr for _, expr in expressions])
    if not ok:  # Name the culprits, one promtool run each.
        bad = [f"{where}: {e}" for where, e in expressions if not promtool_accepts([e])[0]]
        pytest.fail("promtool rejects:\n" + "\n".join(bad) + "\n" + output)


def readme_metrics() -> dict[str, str]:
    """The metric table of README.md's "## Metrics" section as {name: type}."""
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`(genai_\w+)`\s*\|\s*(\w+)", section, flags=re.MULTILINE)
    return dict(rows)


def test_the_readme_catalogue_is_the_library_metric_set() -> None:
    """The catalogue users read (README.md, shipped with the sources) names every metric the
    library registers, with its type, and no other."""
    assert readme_metrics() == EXPECTED_METRICS


def exposed_series_names(metrics: dict[str, str]) -> dict[str, str]:
    """Series name -> metric family: histograms expose _bucket/_count/_sum only."""
    series = {}
    for name, kind in metrics.items():
        if kind == "histogram":
            series.update({f"{name}{suffix}": name for suffix in ("_bucket", "_count", "_sum")})
        else:  # counters are named with their _total suffix in the catalogue
            series[name] = name
    return series


def test_every_metric_name_is_in_the_catalogue() -> None:
    catalogue = exposed_series_names(EXPECTED_METRICS)
    provisioning = (DASHBOARDS_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    sources = [*all_expressions(), ("datasource provisioning", provisioning)]
    referenced: set[str] = set()
    for where, expr in sources:
        for name in re.findall(r"\bgenai_[a-z_]+\b", expr):
            referenced.add(name)
            assert name in catalogue, f"{where}: {name} is not a failsight series"
    families = {catalogue[name] for name in referenced}
    # Every metric of the catalogue is shown somewhere.
    assert families == set(EXPECTED_METRICS), set(EXPECTED_METRICS) - families


def test_every_recorded_series_used_is_recorded() -> None:
    recorded = {r["record"] for r in load_rules(RULES_DIR / "failsight-recording.yml")}
    for where, expr in all_expressions():
        for name in re.findall(r"\bgenai:[\w:]+", expr):
            assert name in recorded, f"{where}: {name} is not a recording rule"


# --------------------------------------------------------------------------------------
# Provisioning


def datasources() -> list[dict[str, Any]]:
    path = DASHBOARDS_DIR / "provisioning" / "datasources" / "prometheus.yaml"
    return yaml.safe_load(path.read_text())["datasources"]


def prometheus_datasource() -> dict[str, Any]:
    (prometheus,) = [ds for ds in datasources() if ds["type"] == "prometheus"]
    return prometheus


def test_datasource_provisioning() -> None:
    by_uid = {ds["uid"]: ds for ds in datasources()}
    assert len(by_uid) == len(datasources())
    prometheus = prometheus_datasource()
    assert prometheus["isDefault"] is True
    for destination in prometheus["jsonData"]["exemplarTraceIdDestinations"]:
        assert destination["name"] == "trace_id"
        assert by_uid[destination["datasourceUid"]]["type"] == "tempo"


def test_dashboard_provider_loads_the_json_folder() -> None:
    config = yaml.safe_load(
        (DASHBOARDS_DIR / "provisioning" / "dashboards" / "failsight.yaml").read_text()
    )
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# --------------------------------------------------------------------------------------
# Against a real Prometheus


CHAT = ("chat", "openai", "gpt-4o-mini", "support.draft_reply")
IMAGE = ("image_generation", "openai", "gpt-image-1", "catalog.render")
VIDEO = ("video_generation", "api.cometapi.com", "sora-2", "promo.render_clip")


class Workload:
    """Every catalogue metric, labelled as the library labels it, fed in fixed proportions.

    Each tick: chat 24 requests (20 ok, 1 content_filter, 1 length, 1 rate_limited after
    2 retried 429s, 1 invalid_json); images 21 (1 image_filtered); video 4 jobs (1 timed
    out, a soft failure of its scope). Chat's rate-limit budget: 450 of 500 requests and
    15,000 of 200,000 tokens left.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        metrics = MetricSet(registry)  # the library's own metric objects and label order
        self.requests = metrics.requests.metric
        self.failures = metrics.failures.metric
        self.finish = metrics.finish_reasons.metric
        self.retries = metrics.retries.metric
        self.attempts = metrics.attempts.metric
        self.tokens = metrics.tokens.metric
        self.duration = metrics.duration.metric
        self.ttft = metrics.time_to_first_token.metric
        self.videos = metrics.video_jobs.metric
        self.video_duration = metrics.video_job_duration.metric
        self.in_flight = metrics.in_flight.metric
        self.telemetry = metrics.telemetry_errors
        self.wasted = metrics.wasted_tokens.metric
        self.cost = metrics.cost.metric
        self.wasted_cost = metrics.wasted_cost.metric
        self.filters = metrics.content_filter.metric
        self.attempt_count = metrics.attempt_count.metric
        self.backoff = metrics.backoff.metric
        self.phases = metrics.phases.metric
        self.ratelimit_remaining = metrics.ratelimit_remaining.metric
        self.ratelimit_limit = metrics.ratelimit_limit.metric
        self.ratelimit_reset = metrics.ratelimit_reset.metric

    def request(
        self, labels: tuple[str, ...], failure_class: str = "none", reason: str = ""
    ) -> None:
        self.requests.labels(*labels, failure_class).inc()
        if reason:
            self.failures.labels(*labels, failure_class, reason).inc()
        self.duration.labels(*labels, failure_class).observe(2.5 if reason else 1.2)
        retried = reason == "rate_limited"
        self.attempts.labels(*labels).observe(3 if retried else 1)
        self.attempt_count.labels(*labels, "ok" if not retried else reason).inc(3 if retried else 1)
        self.phases.labels(*labels, "attempts").observe(1.0 if retried else 1.2)
        self.phases.labels(*labels, "backoff").observe(1.5 if retried else 0)

    def tick(self) -> None:
        for _ in range(20):
            self.request(CHAT)
            self.request(IMAGE)
        for failure_class, reason in [
            ("soft", "content_filter"),
            ("soft", "length"),
            ("hard", "rate_limited"),
            ("silent", "invalid_json"),
        ]:
            self.request(CHAT, failure_class, reason)
        self.request(IMAGE, "soft", "image_filtered")
        self.retries.labels(*CHAT, "rate_limited").inc(2)
        self.backoff.labels(*CHAT, "honoured").observe(0.5)
        self.backoff.labels(*CHAT, "absent").observe(1.0)
        for resource, left, limit, reset in [
            ("requests", 450, 500, 0.02),
            ("tokens", 15000, 200000, 6),
        ]:
            self.ratelimit_remaining.labels(*CHAT[1:3], resource).set(left)
            self.ratelimit_limit.labels(*CHAT[1:3], resource).set(limit)
            self.ratelimit_reset.labels(*CHAT[1:3], resource).set(reset)
        for finish_reason, count in [("stop", 21), ("length", 1), ("content_filter", 1)]:
            self.finish.labels(*CHAT, finish_reason).inc(count)
        for token_type in ("input", "output", "reasoning", "cached_input"):
            self.tokens.labels(*CHAT, token_type).inc(100)
        self.ttft.labels(*CHAT).observe(0.4)
        for status in ("succeeded", "succeeded", "succeeded", "timed_out"):
            self.videos.labels(*VIDEO, status).inc()
            self.video_duration.labels(*VIDEO, status).observe(90 if status == "succeeded" else 600)
        for _ in range(3):
            self.request(VIDEO)
        self.request(VIDEO, "soft", "video_timeout")
        for labels in (CHAT, IMAGE, VIDEO):
            self.in_flight.labels(*labels).set(2)
        self.telemetry.labels("call_record").inc()
        # Each token type of the content_filter and length answers wasted; spend priced.
        for reason in ("content_filter", "length"):
            for token_type in ("input", "output", "reasoning", "cached_input"):
                self.wasted.labels(*CHAT, token_type, "soft", reason).inc(5)
            self.wasted_cost.labels(*CHAT, "soft", reason).inc(0.001)
        self.cost.labels(*CHAT).inc(0.024)
        self.filters.labels(*CHAT, "violence", "completion", "high").inc()


AGENT_SITE = "support.agent"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def weather_tool(strict: bool) -> list[Any]:
    return [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER,
                                              "strict": strict}}]  # fmt: skip


JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER}}

# Each tick of `DeclaredWorkload`: (fault-server scenario, what the request declares, times).
# get_weather: 6 ok, 1 not_json, 1 invalid_arguments, 1 strict_violation; 1 call to a tool
# the request did not declare; structured output 2 fitting, 1 not JSON, 1 off its schema.
DECLARED_TICK: list[tuple[str, dict[str, Any], int]] = [
    ("tool_calls", {"tools": weather_tool(False)}, 6),
    ("tool_args_not_json", {"tools": weather_tool(False)}, 1),
    ("tool_args_invalid", {"tools": weather_tool(False)}, 1),
    ("tool_args_invalid", {"tools": weather_tool(True)}, 1),
    ("tool_undeclared", {"tools": weather_tool(False)}, 1),
    ("tool_missing", {"tools": weather_tool(False), "tool_choice": "required"}, 1),
    ("json_ok", {"response_format": JSON_FORMAT}, 2),
    ("json_not_json", {"response_format": JSON_FORMAT}, 1),
    ("json_schema_mismatch", {"response_format": JSON_FORMAT}, 1),
]


class DeclaredWorkload:
    """failsight.testing's declared-output scenarios, sent by the real openai SDK that
    failsight instruments, over a socket to the fault server, at the call site
    `support.agent`: the library itself judges them and counts into `registry`."""

    def __init__(self, server: FaultServer, registry: CollectorRegistry) -> None:
        failsight.configure(registry=registry, prices=False)
        failsight.instrument_openai()
        self.client = openai.OpenAI(base_url=server.base_url, api_key="sk-demo", max_retries=0)

        @failsight.traced_generation(name=AGENT_SITE)
        def call(scenario: str, request: dict[str, Any]) -> Any:
            return self.client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}],
                extra_headers={SCENARIO_HEADER: scenario}, **request,
            )  # fmt: skip

        self.call = call

    def tick(self) -> None:
        for scenario, request, times in DECLARED_TICK:
            for _ in range(times):
                self.call(scenario, request)

    def close(self) -> None:
        failsight.uninstrument_openai()
        _config._state = None  # as tests/conftest.py's telemetry fixture leaves it


def test_the_declared_workload_runs_every_declared_scenario() -> None:
    assert {scenario for scenario, _, _ in DECLARED_TICK} == set(DECLARED_SCENARIOS) | {
        "tool_calls"
    }


@pytest.fixture(scope="module")
def live_prometheus() -> Iterator[tuple[PrometheusServer, str]]:
    """One real Prometheus for the module (its first scrape takes ~5 s): it scrapes a
    registry fed by `Workload` 20 times a second plus a probe counter, and the library's
    own registry, fed by `DeclaredWorkload` 5 times a second; and runs the rules."""
    registry = CollectorRegistry()
    workload = Workload(registry)
    probe = Counter("failsight_harness_probe", "Harness self-test.", ["kind"], registry=registry)
    probe.labels(kind="probe").inc(3)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            workload.tick()
            stop.wait(0.05)

    def feed_declared(declared: DeclaredWorkload) -> None:
        while not stop.is_set():
            declared.tick()
            stop.wait(0.2)

    def stop_feeding() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)

    threads = [threading.Thread(target=feed, name="workload", daemon=True)]
    threads[0].start()
    library = CollectorRegistry()
    declared: DeclaredWorkload | None = None
    try:
        with (
            FaultServer() as server,
            serve_registry(registry) as target,
            serve_registry(library) as library_target,
            PrometheusServer([target, library_target], ALL_RULE_FILES) as prom,
        ):
            declared = DeclaredWorkload(server, library)
            threads.append(threading.Thread(target=feed_declared, args=(declared,), daemon=True))
            threads[-1].start()
            try:
                # Three scrapes for rate(), then rule evaluations on top of them.
                prom.wait_for("count(count_over_time(genai_requests_total[10s]) >= 3)", bool, 20)
                for recorded in (
                    "genai:content_filter_ratio:rate1d",
                    "genai:length_ratio:rate5m",
                    "slo:current_burn_rate:ratio",  # the SLO rules of the "Error budget" rows
                    "slo:period_error_budget_remaining:ratio",
                    "genai:tool_call_failure_ratio:rate5m",
                    "genai:ratelimit_headroom_ratio:last5m",
                ):
                    prom.wait_for(recorded, bool, timeout=20)
                yield prom, target
            finally:
                stop_feeding()  # before the fault server, which the feeder calls, closes
    finally:
        stop_feeding()
        if declared is not None:
            declared.close()


@pytest.mark.needs_prometheus
def test_prometheus_harness_scrapes_a_registry(
    live_prometheus: tuple[PrometheusServer, str],
) -> None:
    prom, target = live_prometheus
    result = prom.wait_for('failsight_harness_probe_total{kind="probe"}', bool, timeout=15)
    assert sample_value(result) == 3
    assert result[0]["metric"]["job"] == "failsight"
    assert result[0]["metric"]["instance"] == target
    assert sample_value(prom.query("sum(up)")) == 2  # the workload's and the library's
    with pytest.raises(PromQLError):
        prom.query("sum by (")


def test_every_panel_query_runs_on_prometheus(
    live_prometheus: tuple[PrometheusServer, str],
) -> None:
    """Each panel query evaluates without error and returns a number from the workload."""
    prom, _ = live_prometheus
    failed, no_number = [], []
    for where, expr in all_dashboard_queries(rate_interval="10s", interval="1s", range_="1m"):
        try:
            result = prom.query(expr)
        except PromQLError as exc:
            failed.append(f"{where}: {exc}")
            continue
        # Panels over recording rules (the SLO rules come in three groups evaluated apart)
        # can read a rule between two evaluations: asked again, a real gap stays empty.
        for _ in range(5):
            if any(math.isfinite(float(sample["value"][1])) for sample in result):
                break
            time.sleep(2)
            result = prom.query(expr)
        else:
            no_number.append(f"{where}: {result}")
    assert not failed, "\n".join(failed)
    assert not no_number, "queries without a finite value:\n" + "\n".join(no_number)


CHAT_SELECTOR = 'operation="chat", call_site="support.draft_reply"'

# Recorded series and panel queries vs the workload's proportions.
EXPECTED_RATIOS = {
    f"genai:content_filter_ratio:rate5m{{{CHAT_SELECTOR}}}": 1 / 24,
    f"genai:length_ratio:rate5m{{{CHAT_SELECTOR}}}": 1 / 24,
    f'genai:failure_ratio:rate5m{{{CHAT_SELECTOR}, failure_class="hard"}}': 1 / 24,
    f'genai:failure_ratio:rate5m{{{CHAT_SELECTOR}, failure_class="soft"}}': 2 / 24,
    f"genai:rate_limited_per_request:rate5m{{{CHAT_SELECTOR}}}": 3 / 24,
    f"genai:retries_per_request:rate5m{{{CHAT_SELECTOR}}}": 2 / 24,
    'genai:video_job_failure_ratio:rate30m{status="timed_out"}': 1 / 4,
    'genai:video_job_failure_ratio:rate30m{status="failed"}': None,  # never failed: absent
    "genai:content_filter_ratio:rate1d" + f"{{{CHAT_SELECTOR}}}": 1 / 24,
    'genai:failure_ratio:rate5m{operation="image_generation", failure_class="soft"}': 1 / 21,
    # DeclaredWorkload: 3 of 9 get_weather calls broke the declaration; 1 of 10 tool calls
    # named a tool the request did not declare.
    f'genai:tool_call_failure_ratio:rate5m{{call_site="{AGENT_SITE}", tool="get_weather"}}': 3 / 9,
    f'genai:tool_call_failure_ratio:rate5m{{call_site="{AGENT_SITE}", tool="undeclared"}}': 1 / 10,
    # Workload's budget: remaining / limit, per resource.
    'genai:ratelimit_headroom_ratio:last5m{provider="openai", resource="requests"}': 450 / 500,
    'genai:ratelimit_headroom_ratio:last5m{provider="openai", resource="tokens"}': 15000 / 200000,
    # Chat's attempts a tick: 26 (24 requests, one of them three 429s), 3 of them failed.
    f'sum(genai:attempts:rate5m{{{CHAT_SELECTOR}, status="rate_limited"}})'
    f" / sum(genai:attempts:rate5m{{{CHAT_SELECTOR}}})": 3 / 26,
}


@pytest.mark.parametrize("expr", sorted(EXPECTED_RATIOS))
def test_recording_rules_compute_the_workload_ratios(
    live_prometheus: tuple[PrometheusServer, str], expr: str
) -> None:
    prom, _ = live_prometheus
    result = prom.query(expr)
    expected = EXPECTED_RATIOS[expr]
    if expected is None:
        assert result == []
    else:
        assert sample_value(result) == pytest.approx(expected, rel=0.1)


def test_image_filtered_panel_computes_the_workload_ratio(
    live_prometheus: tuple[PrometheusServer, str],
) -> None:
    prom, _ = live_prometheus
    (expr,) = [e for w, e in all_dashboard_queries(rate_interval="10s") if "Image filtered" in w]
    result = prom.query(expr)
    assert result[0]["metric"] == {"model": "gpt-image-1"}
    assert sample_value(result) == pytest.approx(1 / 21, rel=0.1)


def test_harness_lists_every_panel_query() -> None:
    queries = all_dashboard_queries()
    assert len(queries) == len({where for where, _ in queries})
    assert all("$" not in expr for _, expr in queries)
    targets = sum(len(p.get("targets", [])) for n in DASHBOARD_FILES for p in panels_of(n))
    assert len(queries) == targets


# --------------------------------------------------------------------------------------
# The user documentation

# What a reader of README.md, CONTRIBUTING.md or docs/ cannot act on: the project's internal
# contract and source material, which do not ship, and its tracker's items and targets. (A
# Prometheus scrape target is fine.)
FORBIDDEN_IN_DOCS = {
    # In capitals: Sloth's "SLO spec" files are the user's own.
    r"(?-i:\bSPEC\b)|\bSPEC\.md\b": "the internal contract",
    r"\bseed[- ]article\b|\barticle\b": "the source material",
    r"\bissue(?:'s|s?\s+#?\d+)|\bthe issue\b|\bissues?\s+list": "a tracker item",
    r"(?<!scrape )\btarget\b": "a goal from a tracker item",
    r"(?:\.\./)?shared/|/work/": "a path outside the repository",
}


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda path: path.name)
def test_user_docs_say_what_things_mean_for_a_user(doc: Path) -> None:
    found = []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        for pattern, what in FORBIDDEN_IN_DOCS.items():
            for match in re.finditer(pattern, line, flags=re.IGNORECASE):
                found.append(f"{doc.name}:{number}: {match.group(0)!r} ({what}): {line.strip()}")
    assert not found, "\n".join(found)


def test_the_forbidden_phrases_are_found() -> None:
    for text in ("SPEC §2 and §3", "the seed article", "the issue's 2 µs target", "issue 14"):
        assert any(re.search(p, text, re.IGNORECASE) for p in FORBIDDEN_IN_DOCS), text
    for text in ("issues a FailsightWarning", "one scrape target", "targets: [app:9464]"):
        assert not any(re.search(p, text, re.IGNORECASE) for p in FORBIDDEN_IN_DOCS), text


def test_readme_handle_pattern_is_safe_outside_a_scope() -> None:
    """`current_generation()` is None outside a traced scope: the README never calls a method
    on it directly."""
    text = README.read_text()
    assert "current_generation()." not in text
    assert "(handle := failsight.current_generation()) is not None" in text


def code_block(doc: Path, first_line: str, language: str = "python") -> str:
    """The fenced code block of `doc` whose first line is `first_line`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", doc.read_text(), re.MULTILINE | re.DOTALL)
    matches = [block for block in blocks if block.splitlines()[0].strip() == first_line]
    assert len(matches) == 1, f"{doc.name}: no single {language} block starting {first_line!r}"
    return str(matches[0])


@pytest.mark.e2e
def test_the_documented_gunicorn_setup_serves_the_app_and_metrics(tmp_path: Path) -> None:
    """docs/production.md's gunicorn.conf.py and app.py, run with its own command."""
    doc = REPO / "docs" / "production.md"
    (tmp_path / "gunicorn.conf.py").write_text(code_block(doc, "# gunicorn.conf.py"))
    (tmp_path / "app.py").write_text(code_block(doc, "# app.py — imported by every worker"))
    shell = code_block(doc, "export PROMETHEUS_MULTIPROC_DIR=/dev/shm/failsight", "shell")
    (command,) = [line for line in shell.splitlines() if line.startswith("gunicorn ")]
    argv = shlex.split(command)
    assert argv[-1] == "app:app"
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv, "-b", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    assert reply.read() == b"hello\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
