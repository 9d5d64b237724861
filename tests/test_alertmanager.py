"""deploy/alertmanager.yml: amtool accepts it (as shipped, as `failsight assets` writes it, and
with its commented receivers uncommented), every alert of the rules routes to the receiver its
severity names, and the inhibit rule suppresses what it says in a real Alertmanager."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from alertmanager_harness import (
    ALERTMANAGER_CONFIG,
    AlertmanagerServer,
    Notification,
    WebhookReceiver,
    amtool,
    with_webhook_receivers,
)
from prom_harness import REPO, RULES_DIR

pytestmark = [pytest.mark.needs_prometheus, pytest.mark.e2e]

CONFIG = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
ALERT_RULES = [
    rule
    for group in yaml.safe_load((RULES_DIR / "failsight-alerts.yml").read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
]
# The labels every failsight alert carries (the recording rules keep them; instance is summed away).
CALL_SITE_LABELS = ["job", "operation", "provider", "model", "call_site"]
RECEIVER_OF_SEVERITY = {"critical": "failsight-page", "warning": "failsight-ticket"}


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
    return result


def test_amtool_accepts_the_shipped_config() -> None:
    result = check_config(ALERTMANAGER_CONFIG)
    assert " - 1 inhibit rules" in result.stdout and " - 2 receivers" in result.stdout


@pytest.mark.parametrize("namespace", ["genai", "myapp"])
def test_failsight_assets_writes_it_and_amtool_accepts_the_copy(
    namespace: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "failsight", "assets", str(tmp_path), "--namespace", namespace],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = tmp_path / "deploy" / "alertmanager.yml"
    # Nothing in it names a metric, so a namespace leaves it as shipped.
    assert written.read_bytes() == ALERTMANAGER_CONFIG.read_bytes()
    check_config(written)


def uncommented(text: str) -> str:
    """The config with its commented receivers (``  # - name: ...`` and the lines indented
    under it) turned into YAML."""
    lines, inside = [], False
    for line in text.splitlines():
        match = re.fullmatch(r"  # (- name: .*|  .*)", line)
        inside = bool(match) and (inside or match.group(1).startswith("- name:"))
        lines.append(f"  {match.group(1)}" if match and inside else line)
    return "\n".join(lines) + "\n"


def test_the_commented_slack_and_email_receivers_are_valid_once_uncommented(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(uncommented(ALERTMANAGER_CONFIG.read_text()))
    result = check_config(path)
    assert " - 4 receivers" in result.stdout
    receivers = {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}
    assert receivers["failsight-slack"]["slack_configs"][0]["send_resolved"] is True
    assert receivers["failsight-email"]["email_configs"][0]["send_resolved"] is True


def test_the_rules_have_the_severities_the_routes_expect() -> None:
    severities = {rule["labels"]["severity"] for rule in ALERT_RULES}
    assert severities == set(RECEIVER_OF_SEVERITY)
    routed = {
        matcher.split("=", 1)[1].strip('"')
        for route in CONFIG["route"]["routes"]
        for matcher in route["matchers"]
        if matcher.startswith("severity=")
    }
    assert routed == severities


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_each_alert_routes_to_the_receiver_of_its_severity(rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"], "call_site": "support.reply"}
    result = amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{name}={value}" for name, value in labels.items()),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [RECEIVER_OF_SEVERITY[rule["labels"]["severity"]]]


def test_grouping_timers_and_resolved_notifications() -> None:
    route = CONFIG["route"]
    assert route["group_by"] == ["alertname", "call_site"]

    def seconds(duration: str) -> int:
        value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
        return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]

    for child in [route, *route["routes"]]:
        timers = {key: child.get(key, route[key]) for key in ("group_wait", "group_interval")}
        repeat = child.get("repeat_interval", route["repeat_interval"])
        assert seconds(timers["group_wait"]) < seconds(timers["group_interval"]) < seconds(repeat)
    for receiver in CONFIG["receivers"]:
        for webhook in receiver["webhook_configs"]:
            assert webhook["send_resolved"] is True, receiver["name"]
            assert webhook["url"].startswith("http://host.docker.internal:"), webhook["url"]


def test_the_inhibit_rule_names_alerts_of_the_rules_and_their_common_labels() -> None:
    (rule,) = CONFIG["inhibit_rules"]
    by_name = {alert["alert"]: alert for alert in ALERT_RULES}
    source = re.fullmatch(r'alertname="(\w+)"', rule["source_matchers"][0]).group(1)  # type: ignore[union-attr]
    targets = re.fullmatch(r'alertname=~"([\w|]+)"', rule["target_matchers"][0]).group(1)  # type: ignore[union-attr]
    assert by_name[source]["labels"]["severity"] == "critical"
    for target in targets.split("|"):
        assert by_name[target]["labels"]["severity"] == "warning", target
    assert rule["equal"] == CALL_SITE_LABELS
    for name in (source, *targets.split("|")):
        assert f"on ({', '.join(CALL_SITE_LABELS)})" in by_name[name]["expr"], name


def test_a_page_inhibits_its_call_sites_rate_limit_ticket_in_alertmanager() -> None:
    """Posted as Prometheus would: the 429 surge at the paged call site is suppressed by the
    page and never notified; the same surge at another call site, and a content-filter ticket
    at the paged one, are notified, each to the receiver of its severity."""
    now = datetime.now(timezone.utc)
    ends = (now + timedelta(minutes=5)).isoformat()

    def alert(name: str, call_site: str) -> dict[str, Any]:
        severity = "critical" if name == "GenAIHardFailureRatioHigh" else "warning"
        labels = {"alertname": name, "severity": severity, "job": "app", "operation": "chat",
                  "provider": "openai", "model": "gpt-4o-mini", "call_site": call_site}  # fmt: skip
        return {"labels": labels, "startsAt": now.isoformat(), "endsAt": ends}

    def notified(notes: list[Notification]) -> set[tuple[str, str, str]]:
        return {
            (note.path, a["labels"]["alertname"], a["labels"]["call_site"])
            for note in notes
            for a in note.body["alerts"]
        }

    expected = {
        ("/failsight-page", "GenAIHardFailureRatioHigh", "support.reply"),
        ("/failsight-ticket", "GenAIRateLimitSurge", "search.rerank"),
        ("/failsight-ticket", "GenAIContentFilterSpike", "support.reply"),
    }
    with (
        WebhookReceiver() as hook,
        AlertmanagerServer(with_webhook_receivers(CONFIG, hook.url)) as am,
    ):
        am.post_alerts([
            alert("GenAIHardFailureRatioHigh", "support.reply"),
            alert("GenAIRateLimitSurge", "support.reply"),
            alert("GenAIRateLimitSurge", "search.rerank"),
            alert("GenAIContentFilterSpike", "support.reply"),
        ])  # fmt: skip
        hook.wait_for(lambda notes: notified(notes) >= expected, timeout=15)
        # Every group flushes after the same 1 s group_wait: the suppressed one would be here.
        time.sleep(2)
        states = {
            (a["labels"]["alertname"], a["labels"]["call_site"]): a["status"] for a in am.alerts()
        }
        notes = hook.snapshot()
    assert notified(notes) == expected
    suppressed = states[("GenAIRateLimitSurge", "support.reply")]
    assert suppressed["state"] == "suppressed" and suppressed["inhibitedBy"], suppressed
    assert [key for key, status in states.items() if status["state"] != "suppressed"] == [
        key for key in states if key != ("GenAIRateLimitSurge", "support.reply")
    ]


# --------------------------------------------------------------------------------------
# The compose stack runs it, and Prometheus alerts to it


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())[
        "services"
    ][name]
    return service


def test_compose_runs_alertmanager_with_this_config() -> None:
    service = compose_service("alertmanager")
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", service["image"]), service["image"]
    (flag,) = [arg for arg in service["command"] if arg.startswith("--config.file=")]
    target = PurePosixPath(flag.split("=", 1)[1])
    mounts = {
        PurePosixPath(volume.split(":")[1]): (REPO / "deploy" / volume.split(":")[0]).resolve()
        for volume in service["volumes"]
    }
    assert mounts[target] == ALERTMANAGER_CONFIG
    assert "127.0.0.1:9093:9093" in service["ports"]
    # The default receivers post to the Docker host.
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager() -> None:
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = [
        target
        for manager in prometheus["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in compose_service("prometheus")["depends_on"]
