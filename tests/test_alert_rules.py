"""The Prometheus rules in dashboards/rules/: promtool checks, unit tests, runbooks, coverage."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from prom_harness import RULE_FILES, RULES_DIR, require_binary, run_promtool

RECORDING = RULES_DIR / "failsight-recording.yml"
ALERTS = RULES_DIR / "failsight-alerts.yml"
SLO = RULES_DIR / "failsight-slo.yml"  # Sloth's rules: tests/test_slo.py checks them further
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
KEY = "job, operation, provider, model, call_site"
TRAFFIC_GUARD = f"sum by ({KEY}) (genai:requests:rate5m) * 300 >= 10"

# The labels failsight puts on each metric (docs/reference.md#catalogue) plus Prometheus' own.
SERIES_LABELS = {
    "genai_requests_total": {"failure_class"},
    "genai_failures_total": {"failure_class", "reason"},
    "genai_retries_total": {"reason"},
    "genai_video_jobs_total": {"status"},
    "genai_cost_usd_total": set(),
    "genai_wasted_cost_usd_total": {"failure_class", "reason"},
    "genai_tool_calls_total": {"tool", "outcome"},
    "genai_attempts_total": {"status"},
}
SCRAPE_LABELS = {"job", "instance"}
COMMON_LABELS = {"operation", "provider", "model", "call_site"}
# The rate-limit gauges carry these only: a budget is the account's, not a call site's.
HEADROOM_LABELS = {"provider", "model", "resource"}
HEADROOM_GAUGES = ("genai_ratelimit_remaining", "genai_ratelimit_limit")


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules(ALERTS)}


def unit_test_cases() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, case) for path in UNIT_TESTS for case in yaml.safe_load(path.read_text())["tests"]
    ]


def one_line(expr: str) -> str:
    return re.sub(r"\s+", " ", expr).replace("( ", "(").replace(" )", ")").strip()


@pytest.mark.parametrize("path", [*RULE_FILES, SLO], ids=lambda p: p.name)
@pytest.mark.needs_prometheus
def test_promtool_check_rules_with_all_lints(path: Path) -> None:
    # promtool 2.42 knows --lint=all|duplicate-rules|none; --lint-fatal turns findings into exit 3.
    result = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.needs_prometheus
def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in dashboards/rules/tests/"
    require_binary("promtool")  # skip or fail here, not inside a worker thread
    # One promtool per file, side by side: the 1d-baseline files take a second or two each.
    with ThreadPoolExecutor(max_workers=len(UNIT_TESTS)) as pool:
        results = dict(
            zip(
                UNIT_TESTS,
                pool.map(lambda p: run_promtool("test", "rules", str(p)), UNIT_TESTS),
                strict=True,
            )
        )
    failed = {p.name: r.stdout + r.stderr for p, r in results.items() if r.returncode != 0}
    assert not failed, "\n".join(failed.values())
    assert all("SUCCESS" in r.stdout for r in results.values())


def test_unit_tests_load_the_shipped_rule_files() -> None:
    for path in UNIT_TESTS:
        rule_files = {
            (path.parent / f).resolve() for f in yaml.safe_load(path.read_text())["rule_files"]
        }
        # The SLO burn tests (slo_*.yml) need nothing but the SLO rules.
        shipped = {SLO} if path.name.startswith("slo_") else {RECORDING, ALERTS}
        assert rule_files == {p.resolve() for p in shipped}, path.name


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_has_a_firing_and_a_silent_unit_test(alert: str) -> None:
    firing, silent = [], []
    for path, case in unit_test_cases():
        for check in case.get("alert_rule_test", []):
            if check["alertname"] == alert:
                where = f"{path.name}: {case.get('name')} @ {check['eval_time']}"
                (firing if check.get("exp_alerts") else silent).append(where)
    assert firing, f"no unit test expects {alert} to fire"
    assert silent, f"no unit test expects {alert} to stay silent"


def test_unit_tests_name_only_real_alerts() -> None:
    known = set(alerts()) | {rule["alert"] for rule in rules(SLO) if "alert" in rule}
    for path, case in unit_test_cases():
        for check in case.get("alert_rule_test", []):
            assert check["alertname"] in known, f"{path.name}: {check['alertname']}"


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_is_tested_under_its_guard(alert: str) -> None:
    """Ratio alerts need a silent case at low traffic, spike alerts one at a steady baseline."""
    expr = one_line(alerts()[alert]["expr"])
    names = [
        case.get("name", "")
        for _, case in unit_test_cases()
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == alert and not check.get("exp_alerts")
    ]
    assert any("minimum-" in name and "guard" in name for name in names), names
    if "rate1d" in expr:
        assert any("steady baseline" in name for name in names), names


def test_unit_test_series_carry_the_real_label_set() -> None:
    selector = re.compile(r"^(\w+)\{(.*)\}$")
    for path, case in unit_test_cases():
        for series in case["input_series"]:
            match = selector.match(series["series"])
            assert match, series["series"]
            name, body = match.groups()
            labels = set(re.findall(r'(\w+)="[^"]*"', body))
            if name == "genai_telemetry_errors_total":
                expected = SCRAPE_LABELS | {"stage"}
            elif name in HEADROOM_GAUGES:
                expected = SCRAPE_LABELS | HEADROOM_LABELS
            else:
                expected = SCRAPE_LABELS | COMMON_LABELS | SERIES_LABELS[name]
            assert labels == expected, f"{path.name}: {series['series']}"


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_alert_has_a_runbook(alert: str) -> None:
    rule = alerts()[alert]
    assert re.fullmatch(r"GenAI[A-Za-z]+", alert)
    assert re.fullmatch(r"\d+m", rule.get("for", "")), f"{alert} needs a `for:` duration"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook"} <= set(annotations)
    steps = re.findall(r"^\d+\. ", annotations["runbook"], flags=re.MULTILINE)
    assert len(steps) >= 2, f"{alert}: the runbook should list numbered steps"


@pytest.mark.parametrize(
    ("alert", "advice"),
    [
        ("GenAIContentFilterSpike", "Rephrase"),
        ("GenAIContentFilterSpike", "call site"),
        ("GenAIHardFailureRatioHigh", "failsight.error.param"),
        ("GenAIRateLimitSurge", "Back off"),
        ("GenAIRateLimitSurge", "quota"),
        ("GenAITruncationSpike", "max_tokens"),
        ("GenAITruncationSpike", "Shorten the prompt"),
        ("GenAISilentFailures", "Log the full output when validation fails"),
        ("GenAIVideoJobsFailing", "try another model"),
        ("GenAIToolCallFailures", '"strict": true'),
        ("GenAIToolCallFailures", "undeclared"),
        ("GenAIToolCallFailures", "failsight.tool_calls.failed_tool"),
        ("GenAIRateLimitHeadroomLow", "Retry-After"),
        ("GenAIRateLimitHeadroomLow", "max_tokens"),
        ("GenAIRateLimitHeadroomLow", "Raise the limit"),
    ],
)
def test_runbooks_carry_the_failure_checklist(alert: str, advice: str) -> None:
    assert advice in alerts()[alert]["annotations"]["runbook"]


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_alerts_read_the_shared_recording_rules(alert: str) -> None:
    recorded = {rule["record"] for rule in rules(RECORDING)}
    expr = alerts()[alert]["expr"]
    used = set(re.findall(r"\bgenai:[\w:]+", expr))
    assert used and used <= recorded, used - recorded
    assert not re.search(r"\bgenai_\w+", expr), f"{alert} reads a raw metric"


@pytest.mark.parametrize(
    "alert",
    [a for a, rule in alerts().items() if "genai:requests:rate5m" in one_line(rule["expr"])],
)
def test_ratio_alerts_share_the_minimum_traffic_guard(alert: str) -> None:
    assert TRAFFIC_GUARD in one_line(alerts()[alert]["expr"])


def test_the_tool_call_alert_guards_on_tool_calls() -> None:
    """Its ratio is of tool calls, so its minimum traffic is counted in tool calls."""
    expr = one_line(alerts()["GenAIToolCallFailures"]["expr"])
    assert f"sum by ({KEY}) (genai:tool_calls:rate5m) * 300 >= 10" in expr


def test_the_headroom_alert_guards_on_api_calls_to_the_provider_and_model() -> None:
    """Its gauges have no call site, so its minimum traffic is counted in HTTP attempts to
    the provider and model, per job."""
    expr = one_line(alerts()["GenAIRateLimitHeadroomLow"]["expr"])
    assert "sum by (job, provider, model) (genai:attempts:rate5m) * 300 >= 10" in expr
    assert "(genai:ratelimit_headroom_ratio:last5m < 0.1)" in expr


def test_the_headroom_ratio_divides_by_a_reported_positive_limit_of_a_busy_instance() -> None:
    """A limit of 0 or none gives no series (not NaN or +Inf), and an instance that made no
    API call to that provider and model in the window does not count (its reading is old)."""
    (rule,) = [
        r for r in rules(RECORDING) if r["record"] == "genai:ratelimit_headroom_ratio:last5m"
    ]
    expr = one_line(rule["expr"])
    assert "genai_ratelimit_remaining / (genai_ratelimit_limit > 0)" in expr
    assert "and on (job, instance, provider, model)" in expr
    assert "rate(genai_attempts_total[5m])) > 0" in expr


def test_the_budget_is_one_value_to_edit() -> None:
    """The spend alert compares with a recording rule that is a constant, said to be edited."""
    budget = [
        rule for rule in rules(RECORDING) if rule["record"] == "genai:cost_budget_usd_per_hour"
    ]
    assert len(budget) == 1 and budget[0]["expr"].strip().startswith("vector(")
    assert "THIS IS THE VALUE TO EDIT" in RECORDING.read_text()
    assert "genai:cost_budget_usd_per_hour" in alerts()["GenAISpendOverBudget"]["expr"]


def test_spike_alerts_compare_with_twice_the_last_day() -> None:
    spikes = {name for name, rule in alerts().items() if "rate1d" in rule["expr"]}
    assert spikes == {"GenAIContentFilterSpike", "GenAIRateLimitSurge", "GenAITruncationSpike"}
    for name in spikes:
        expr = one_line(alerts()[name]["expr"])
        current, baseline = re.search(
            r"\((genai:\w+):rate5m > 2 \* (genai:\w+):rate1d\)", expr
        ).groups()
        assert current == baseline, name


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in rules(RECORDING):
        if re.fullmatch(r"vector\(\d+(\.\d+)?\)", rule["expr"].strip()):  # a value to edit
            assert re.fullmatch(r"genai:[a-z_]+_budget_[a-z_]+", rule["record"]), rule["record"]
            continue
        # `rate<window>`: a rate, or a ratio of rates, over the window; `last<window>`: a
        # gauge's last reading, from the instances that made API calls within the window.
        match = re.fullmatch(r"genai:[a-z_]+:(?:rate|last)(5m|30m|1d)", rule["record"])
        assert match, rule["record"]
        window = match.group(1)
        windows = set(re.findall(r"\[(\w+)\]", rule["expr"])) | set(
            re.findall(r"genai:\w+:(?:rate|last)(\w+)", rule["expr"])
        )
        assert windows == {window}, f"{rule['record']} mixes windows {windows}"
