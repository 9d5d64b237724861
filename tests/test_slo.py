"""SLOs per call site: the shipped Sloth spec, `failsight slo`, and rules equal to Sloth's.

The shipped rules (dashboards/rules/failsight-slo.yml) are the output of the real Sloth
(bin/sloth, `make sloth`) for the shipped spec (dashboards/slo/failsight-slo-spec.yml), byte
for byte; the spec is what `failsight slo` writes with its defaults; and failsight's own
generator (`failsight slo --rules`) writes the same recording rules and alerts as Sloth for
every spec tried here, after normalising whitespace. The burn behaviour is tested by promtool
(dashboards/rules/tests/slo_*.yml, run by tests/test_alert_rules.py).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from failsight._assets import rewrite_namespace
from failsight.cli import main
from failsight.slo import BAD_CLASSES, SLOOptions, build_spec, generate_rules, spec_yaml
from failsight.slo._rules import _go_decimal, prom_duration
from prom_harness import REPO, RULES_DIR, _in_ci, require_binary, run_promtool

SPEC = REPO / "dashboards" / "slo" / "failsight-slo-spec.yml"
RULES = RULES_DIR / "failsight-slo.yml"
SLOTH = REPO / "bin" / "sloth"
SLOTH_SOURCES = (REPO / "deploy" / "sloth" / "go.mod", REPO / "deploy" / "sloth" / "go.sum")
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager.yml"


def normalised(rules: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rule groups with each expression's whitespace collapsed (Sloth's YAML folds lines)."""
    groups = []
    for group in rules["groups"]:
        body = [{**r, "expr": re.sub(r"\s+", " ", str(r["expr"])).strip()} for r in group["rules"]]
        groups.append((group["name"], body))
    return groups


def shipped_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())  # type: ignore[no-any-return]


def slo_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["slo", *args])
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------------------
# The shipped spec and `failsight slo`


def test_the_shipped_spec_is_what_failsight_slo_writes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = slo_cli(capsys)
    assert status == 0
    assert out == SPEC.read_text()
    assert yaml.safe_load(out) == build_spec(SLOOptions())


def test_the_shipped_spec_reads_as_sloths_format() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["version"] == "prometheus/v1" and spec["service"] == "failsight"
    quality, availability = spec["slos"]
    assert (quality["name"], quality["objective"]) == ("generation-quality", 99.0)
    assert (availability["name"], availability["objective"]) == ("generation-availability", 99.5)
    bad = quality["sli"]["events"]["error_query"]
    assert 'failure_class=~"hard|soft|silent"' in bad and "{{.window}}" in bad
    assert 'failure_class=~"hard"' in availability["sli"]["events"]["error_query"]
    for slo in spec["slos"]:
        events = slo["sli"]["events"]
        # Per call site; a call site with no failure has a ratio of 0, not no ratio.
        assert events["error_query"].startswith("sum by (job, call_site) (rate(")
        assert (
            "\nor\n0 * sum by (job, call_site) (rate(genai_requests_total[" in events["error_query"]
        )
        # The minimum-traffic guard: 10 requests per 5 minutes, averaged over the window.
        assert events["total_query"].endswith("\n>= 10 / 300")


@pytest.mark.parametrize("severity", ["page", "ticket"])
def test_alerts_follow_the_house_style(severity: str) -> None:
    """Severity as the other alerts (critical pages, warning tickets), a summary naming the call
    site, a description with the budget arithmetic, a runbook of numbered steps."""
    for slo in yaml.safe_load(SPEC.read_text())["slos"]:
        alerting = slo["alerting"]
        assert re.fullmatch(r"GenAI[A-Za-z]+BudgetBurn", alerting["name"])
        meta = alerting[f"{severity}_alert"]
        assert meta["labels"] == {"severity": "critical" if severity == "page" else "warning"}
        assert "{{ $labels.call_site }}" in meta["annotations"]["summary"]
        description = meta["annotations"]["description"]
        assert "30-day error budget" in description and "{{ $labels.job }}" in description
        steps = re.findall(r"^\d+\. ", alerting["annotations"]["runbook"], flags=re.MULTILINE)
        assert len(steps) >= 3


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["--objective", "99.9"], lambda s: s["slos"][0]["objective"] == 99.9),
        (["--no-availability"], lambda s: [x["name"] for x in s["slos"]] == ["generation-quality"]),
        (
            ["--call-site", "extract=99.5", "--call-site", "support.reply"],
            lambda s: (
                [(x["name"], x["objective"]) for x in s["slos"]]
                == [
                    ("generation-quality-extract", 99.5),
                    ("generation-quality-support.reply", 99.0),
                    ("generation-availability-extract", 99.5),
                    ("generation-availability-support.reply", 99.5),
                ]
                and 'call_site="extract", failure_class'
                in s["slos"][0]["sli"]["events"]["error_query"]
            ),
        ),
        (
            ["--bad", "silent,soft"],
            lambda s: (
                'failure_class=~"silent|soft"' in s["slos"][0]["sli"]["events"]["error_query"]
            ),
        ),
        (
            ["--namespace", "myapp", "--min-requests", "50"],
            lambda s: (
                "myapp_requests_total" in s["slos"][0]["sli"]["events"]["total_query"]
                and s["slos"][0]["sli"]["events"]["total_query"].endswith(">= 50 / 300")
            ),
        ),
        (["--label", "team=search"], lambda s: s["labels"] == {"team": "search"}),
        (
            ["--window", "28d"],
            lambda s: (
                "28-day" in s["slos"][0]["alerting"]["page_alert"]["annotations"]["description"]
            ),
        ),
    ],
)
def test_failsight_slo_writes_the_objectives_asked(
    capsys: pytest.CaptureFixture[str], args: list[str], check: Any
) -> None:
    status, out, _ = slo_cli(capsys, *args)
    assert status == 0
    assert check(yaml.safe_load(out)), out
    # The header names the command that wrote it, and that command writes the same file.
    (command,) = re.findall(r"^# written by: (.*)$", out, flags=re.MULTILINE)
    words = shlex.split(command)
    assert words[:2] == ["failsight", "slo"] and sorted(words[2:]) == sorted(args)
    assert slo_cli(capsys, *words[2:]) == (0, out, "")
    if "--window" in args:
        assert "sloth generate --default-slo-period 28d" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--objective", "100"],
        ["--objective", "0"],
        ["--objective", "high"],
        ["--bad", "none"],
        ["--bad", "hard,late"],
        ["--window", "7d"],
        ["--call-site", "=99"],
        ["--label", "team"],
    ],
)
def test_failsight_slo_refuses_what_sloth_would(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    status, out, err = slo_cli(capsys, *args)
    assert (status, out) == (2, "")
    assert err.startswith("failsight: error: argument "), err


@pytest.mark.parametrize(
    "args",
    [
        ["--min-requests", "0"],
        ["--service", "-bad-"],
        ["--label", "1x=y"],
        ["--call-site", "a/b", "--call-site", "a-b"],  # both slugs are generation-quality-a-b
    ],
)
def test_options_that_clash_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    status, out, err = slo_cli(capsys, *args)
    assert (status, out) == (2, "")
    assert err.startswith("failsight: error: ")


def test_failsight_slo_writes_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "slo.yml"
    status, out, err = slo_cli(capsys, "--rules", "--output", str(path))
    assert (status, out) == (0, "")
    assert f"wrote {path}" in err
    assert normalised(yaml.safe_load(path.read_text())) == normalised(shipped_rules())


def test_the_bad_classes_come_from_the_vocabulary() -> None:
    assert BAD_CLASSES == ("hard", "soft", "silent")


# --------------------------------------------------------------------------------------
# failsight's generator against the shipped (Sloth-written) rules


def test_the_python_generator_writes_the_shipped_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """Without Go: `failsight slo --rules` equals the rules Sloth wrote for the shipped spec."""
    status, out, _ = slo_cli(capsys, "--rules")
    assert status == 0
    assert normalised(yaml.safe_load(out)) == normalised(shipped_rules())
    assert normalised(generate_rules(yaml.safe_load(SPEC.read_text()))) == normalised(
        shipped_rules()
    )


def test_a_namespace_rewrite_of_the_shipped_rules_is_the_namespaced_spec() -> None:
    """`failsight assets --namespace myapp` rewrites the shipped rules; `failsight slo
    --namespace myapp --rules` writes the same."""
    rewritten = yaml.safe_load(rewrite_namespace(RULES.read_text(), "myapp"))
    generated = generate_rules(build_spec(SLOOptions(namespace="myapp")))
    assert normalised(generated) == normalised(rewritten)
    assert "genai_" not in str(generated)


def test_the_shipped_rules_record_sloths_series_per_call_site() -> None:
    rules = [r for g in shipped_rules()["groups"] for r in g["rules"]]
    records = {r["record"] for r in rules if "record" in r}
    windows = {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
    assert {f"slo:sli_error:ratio_rate{w}" for w in windows} <= records
    assert "slo:period_error_budget_remaining:ratio" in records
    alerts = [r for r in rules if "alert" in r]
    assert sorted((r["alert"], r["labels"]["sloth_severity"]) for r in alerts) == [
        ("GenAIAvailabilityBudgetBurn", "page"),
        ("GenAIAvailabilityBudgetBurn", "ticket"),
        ("GenAIQualityBudgetBurn", "page"),
        ("GenAIQualityBudgetBurn", "ticket"),
    ]
    quality_page = next(r for r in alerts if r["labels"]["sloth_severity"] == "page")
    assert "(14.4 * 0.01)" in quality_page["expr"] and "(6 * 0.01)" in quality_page["expr"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (1800, "30m"), (3600, "1h"), (86400, "1d"), (259200, "3d"),
     (2419200, "4w"), (2592000, "30d"), (90, "1m30s"), (0, "0s")],
)  # fmt: skip
def test_durations_as_prometheus_writes_them(seconds: int, text: str) -> None:
    assert prom_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(99.0, "99"), (99.9, "99.9"), (99.95, "99.95"), (1e-7, "0.0000001"),
     (1.5e22, "15000000000000000000000")],
)  # fmt: skip
def test_objectives_as_go_formats_them(value: float, text: str) -> None:
    assert _go_decimal(value) == text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"version": "prometheus/v2", "service": "s", "slos": [{}]}, "invalid spec version"),
        ({"version": "prometheus/v1", "service": "s", "slos": []}, "at least one SLO"),
        (
            {"version": "prometheus/v1", "service": "s", "slo_plugins": {"chain": [{"id": "x"}]},
             "slos": [{"name": "a1", "objective": 99, "sli": {"raw": {"error_ratio_query": "x"}}}]},
            "plugins",
        ),
    ],
)  # fmt: skip
def test_the_generator_refuses_what_it_cannot_write_as_sloth(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_rules(spec)


# --------------------------------------------------------------------------------------
# The real Sloth (bin/sloth, `make sloth`)


def require_sloth() -> Path:
    """`bin/sloth`, built from the current deploy/sloth/; else skip (fail in CI)."""
    problem = ""
    if not SLOTH.exists():
        problem = "bin/sloth is missing"
    elif stale := [p.name for p in SLOTH_SOURCES if p.stat().st_mtime > SLOTH.stat().st_mtime]:
        problem = f"bin/sloth is older than {', '.join(stale)}"
    if not problem:
        return SLOTH
    reason = f"{problem}: run `make sloth` (needs Go)"
    if _in_ci():
        pytest.fail(f"{reason}; CI is set, so this test must run", pytrace=False)
    pytest.skip(reason)


def sloth_generate(spec: Path, out: Path, period: str = "30d") -> str:
    result = subprocess.run(
        [str(require_sloth()), "generate", "--no-log", "--input", str(spec), "--out", str(out),
         "--default-slo-period", period],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out.read_text()


@pytest.mark.needs_go
def test_sloth_is_the_pinned_release() -> None:
    result = subprocess.run(
        [str(require_sloth()), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout.strip() == "v0.16.0", result.stdout + result.stderr


@pytest.mark.needs_go
def test_the_shipped_rules_are_exactly_sloths_output(tmp_path: Path) -> None:
    """Regenerate with the built Sloth and diff: `make slo-rules` after a change to the spec."""
    fresh = sloth_generate(SPEC, tmp_path / "rules.yml")
    assert fresh == RULES.read_text(), "dashboards/rules/failsight-slo.yml is stale: make slo-rules"


def hand_edited_spec() -> dict[str, Any]:
    """What a team does to the written spec: labels, a disabled ticket, a raw SLI."""
    spec = build_spec(SLOOptions(objective=99.95, availability=None, labels={"team": "search"}))
    quality = spec["slos"][0]
    quality["labels"] = {"tier": "1", "team": "ranking"}  # the SLO's label wins
    quality["alerting"]["labels"] = {"category": "quality"}
    quality["alerting"]["ticket_alert"] = {"disable": True}
    raw = {
        "name": "extract-raw",
        "objective": 97.5,
        "sli": {"raw": {"error_ratio_query": (
            'sum by (job, call_site) (rate(genai_requests_total{failure_class="silent"}'
            "[{{ .window }}]))\n/ sum by (job, call_site) (rate(genai_requests_total[{{.window}}]))"
        )}},
        "alerting": {"name": "ExtractRaw", "page_alert": {"disable": True},
                     "ticket_alert": {"disable": True}},
    }  # fmt: skip
    spec["slos"].append(raw)
    return spec


SPECS: dict[str, tuple[dict[str, Any], str]] = {
    "shipped": (build_spec(SLOOptions()), "30d"),
    "99.9-over-28d": (
        build_spec(SLOOptions(objective=99.9, availability=99.99, period="28d")), "28d"
    ),
    "call-sites-silent-only": (
        build_spec(SLOOptions(call_sites=(("extract", 99.5), ("support.reply", None)),
                              bad=("silent",), min_requests=50, namespace="myapp")),
        "30d",
    ),
    "soft-and-silent-99.95": (
        build_spec(SLOOptions(objective=99.95, bad=("soft", "silent"))), "30d"
    ),
    "hand-edited": (hand_edited_spec(), "30d"),
    "hand-edited-28d": (hand_edited_spec(), "28d"),
}  # fmt: skip


@pytest.mark.needs_go
@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_python_generator_equals_sloth(name: str, tmp_path: Path) -> None:
    spec, period = SPECS[name]
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    theirs = yaml.safe_load(sloth_generate(path, tmp_path / "rules.yml", period))
    ours = generate_rules(yaml.safe_load(path.read_text()), period)
    assert normalised(ours) == normalised(theirs)


@pytest.mark.needs_go
def test_the_equivalence_check_sees_a_difference(tmp_path: Path) -> None:
    """The comparison is not blind: a spec Sloth got with another objective differs."""
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(build_spec(SLOOptions(objective=99.5))))
    theirs = yaml.safe_load(sloth_generate(path, tmp_path / "rules.yml"))
    assert normalised(generate_rules(build_spec(SLOOptions()))) != normalised(theirs)


# --------------------------------------------------------------------------------------
# promtool and amtool


@pytest.mark.needs_prometheus
def test_promtool_accepts_the_python_generators_rules(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = slo_cli(capsys, "--rules", "--call-site", "extract=99.5", "--window", "28d")
    assert status == 0
    path = tmp_path / "rules.yml"
    path.write_text(out)
    result = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.needs_prometheus
@pytest.mark.parametrize("severity", ["page", "ticket"])
def test_slo_alerts_route_to_the_receiver_of_their_severity(severity: str) -> None:
    amtool = require_binary("amtool", package="prometheus-alertmanager")
    (alert,) = [
        r
        for g in shipped_rules()["groups"]
        for r in g["rules"]
        if r.get("alert") == "GenAIQualityBudgetBurn" and r["labels"]["sloth_severity"] == severity
    ]
    labels = {"alertname": alert["alert"], **alert["labels"], "call_site": "support.reply"}
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
         *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "failsight-page" if severity == "page" else "failsight-ticket"
    assert result.stdout.split() == [expected]


def test_spec_yaml_round_trips_for_every_option_set() -> None:
    for spec, _ in SPECS.values():
        assert yaml.safe_load(yaml.safe_dump(spec)) == spec
    text = spec_yaml(SLOOptions(call_sites=(('we"ird\\site', None),)))
    parsed = yaml.safe_load(text)
    assert 'call_site="we\\"ird\\\\site"' in parsed["slos"][0]["sli"]["events"]["error_query"]
