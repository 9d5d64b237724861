"""End to end: an incident at a call site reaches a webhook through real Prometheus and a real
Alertmanager, and so does its end.

Three call sites each have their own incident, at once, through the real openai SDK against
the fault server: content_filter answers (GenAIContentFilterSpike), HTTP 429s the SDK retries
(GenAIRateLimitSurge), answers that fail a JSON validator (GenAISilentFailures). A fourth call
site has the same content-filter share as the first but always had it: the day's baseline
keeps it quiet. Prometheus scrapes /metrics every second and evaluates the shipped rules
(only the `for:` of these three alerts shortened); the day before is backfilled (healthy
traffic, with each site's usual share of failures), since the spike alerts compare the last
5 minutes with the last day. Alertmanager runs the shipped config with its timers shortened
and its receivers replaced by a webhook here.

When its firing notification arrives, a call site's incident ends: the failing requests stop
and healthy requests continue, faster, so the 5-minute ratios fall under their thresholds
long before the failures leave the window, and the resolved notification follows.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client import CollectorRegistry

import failsight
from alertmanager_harness import (
    ALERTMANAGER_CONFIG,
    AlertmanagerServer,
    Notification,
    WebhookReceiver,
    with_webhook_receivers,
)
from failsight import _config, validators
from failsight.testing import SCENARIO_HEADER, FaultServer
from prom_harness import RULES_DIR, PrometheusServer

pytestmark = [pytest.mark.needs_prometheus, pytest.mark.e2e]

MODEL = "gpt-4o-mini"
JOB = "failsight"
SHORT_FOR = "5s"
DEADLINE = 150.0  # seconds for every alert to fire and resolve
# Requests per second while an incident runs, and the share of them that fail.
INCIDENT_RATE, BAD_SHARE = 10, 0.3
# The backfilled day: two hours of traffic at this rate, ending ten minutes ago (outside
# every 5-minute window), so it counts only in the 1-day baselines.
HISTORY_PER_MINUTE, HISTORY_MINUTES, HISTORY_GAP_MINUTES = 60, 110, 10


@dataclass
class Site:
    """One call site: its incident's alert (None: must not fire), its failing and healthy
    request, its usual share of failures in the backfilled day, and how its incident went."""

    call_site: str
    alertname: str | None
    bad: str  # scenario of a failing request (or the prompt, for the silent site)
    good: str
    baseline: float
    failure_class: str
    reason: str
    follows: Site | None = None  # a control site ends its incident with this one
    fired: threading.Event = field(default_factory=threading.Event)
    resolved: threading.Event = field(default_factory=threading.Event)
    # Requests sent: failing, healthy during the incident, healthy after it.
    counts: dict[str, int] = field(default_factory=lambda: {"bad": 0, "good": 0, "after": 0})
    incident_ended: float = 0.0
    error: str = ""  # what stopped its workload thread, if anything did

    @property
    def incident_over(self) -> bool:
        return (self.follows or self).fired.is_set()

    @property
    def done(self) -> bool:
        return (self.follows or self).resolved.is_set()


def make_sites() -> list[Site]:
    content_filter = Site("moderate_comment", "GenAIContentFilterSpike", "content_filter", "ok",
                          0.01, "soft", "content_filter")  # fmt: skip
    return [
        content_filter,
        Site("draft_reply", "GenAIRateLimitSurge", "http_429,ok", "ok", 0.01, "none",
             "rate_limited"),
        Site("classify_ticket", "GenAISilentFailures", "The ticket is about billing.",
             '{"label": "billing"}', 0.01, "silent", "invalid_json"),
        # Filtered as often as moderate_comment, but that is its every day: no spike.
        Site("translate_lyrics", None, "content_filter", "ok", 0.3, "soft", "content_filter",
             follows=content_filter),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# The configurations: shipped files, changed only where the test needs time to be short


def short_for_alert_rules(path: Path, alertnames: set[str]) -> Path:
    """A copy of the shipped alert rules with `for:` of `alertnames` set to SHORT_FOR; the
    text is otherwise the same, and the parsed rules are checked to differ only there."""
    shipped = (RULES_DIR / "failsight-alerts.yml").read_text()
    lines, current = [], None
    for line in shipped.splitlines(keepends=True):
        if match := re.match(r"\s+- alert: (\w+)$", line):
            current = match.group(1)
        if current in alertnames and re.fullmatch(r"\s+for: \w+\n", line):
            line = re.sub(r"for: \w+", f"for: {SHORT_FOR}", line)
        lines.append(line)
    path.write_text("".join(lines))
    before = yaml.safe_load(shipped)["groups"][0]["rules"]
    after = yaml.safe_load(path.read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in after] == [r["alert"] for r in before]
    for old, new in zip(before, after, strict=True):
        assert {**new, "for": old["for"]} == old, old["alert"]  # expressions, labels unchanged
        assert new["for"] == (SHORT_FOR if old["alert"] in alertnames else old["for"])
    return path


def history(path: Path, sites: list[Site], provider: str) -> Path:
    """OpenMetrics for promtool's backfill: each site's requests, failures and retried 429s
    over the backfilled day, failing at its baseline share."""
    end = int(time.time()) - HISTORY_GAP_MINUTES * 60
    steps = range(HISTORY_MINUTES)
    families: dict[str, list[str]] = {"requests": [], "failures": [], "retries": []}
    for site in sites:
        common = (f'job="{JOB}",instance="history",operation="chat",provider="{provider}",'
                  f'model="{MODEL}",call_site="{site.call_site}"')  # fmt: skip
        per_minute_bad = HISTORY_PER_MINUTE * site.baseline
        series = {
            ("requests", f'failure_class="{site.failure_class}"'): per_minute_bad,
            ("requests", 'failure_class="none"'): HISTORY_PER_MINUTE - per_minute_bad,
        }
        if site.failure_class == "none":  # a retried 429 is a retry, not a failed request
            series = {
                ("requests", 'failure_class="none"'): HISTORY_PER_MINUTE,
                ("retries", f'reason="{site.reason}"'): per_minute_bad,
            }
        else:
            series[("failures", f'failure_class="{site.failure_class}",reason="{site.reason}"')] = (
                per_minute_bad
            )
        for (family, labels), per_minute in series.items():
            for step in steps:
                at = end - (HISTORY_MINUTES - 1 - step) * 60
                value = per_minute * (step + 1)
                families[family].append(f"genai_{family}_total{{{common},{labels}}} {value} {at}")
    text = "".join(
        f"# TYPE genai_{family} counter\n" + "".join(f"{line}\n" for line in lines)
        for family, lines in families.items()
    )
    path.write_text(text + "# EOF\n")
    return path


# --------------------------------------------------------------------------------------
# The workload


def drive(site: Site, base_url: str, stop: threading.Event) -> None:
    """Requests at `site` until `stop`: the incident mix at INCIDENT_RATE until its alert
    fired, then healthy requests only, as fast as they go until it resolved, then slowly."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=2, timeout=10)
    silent = site.failure_class == "silent"

    @failsight.traced_generation(
        name=site.call_site, validate=[validators.json_output()] if silent else ()
    )
    def generate(scenario: str, prompt: str) -> str | None:
        answer = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            extra_headers={SCENARIO_HEADER: scenario},
        )
        return answer.choices[0].message.content

    def request(kind: str) -> None:
        text = site.bad if kind == "bad" else site.good  # "good" and "after" are healthy
        # No request raises: 429s are retried to success, the other failures are answers.
        try:
            generate("echo", text) if silent else generate(text, "Hello")
        except Exception as exc:  # shown by report(); the thread stops
            site.error = repr(exc)
        site.counts[kind] += 1

    sent = 0
    while not stop.is_set() and not site.error:
        if not site.incident_over:
            bad = int((sent + 1) * BAD_SHARE) > int(sent * BAD_SHARE)
            request("bad" if bad else "good")
            sent += 1
            stop.wait(1 / INCIDENT_RATE)
            continue
        if not site.incident_ended:
            site.incident_ended = time.monotonic()
        request("after")
        if site.done:
            stop.wait(1 / INCIDENT_RATE)
    client.close()


# --------------------------------------------------------------------------------------
# The run


@dataclass
class Delivered:
    notifications: list[Notification]
    sites: list[Site]
    control: dict[str, float]  # translate_lyrics' content-filter ratios when the spike fired


def alerts_of(notes: list[Notification], alertname: str, status: str) -> list[dict[str, Any]]:
    """The alerts named `alertname` in notifications whose status is `status`, with the
    receiver path and arrival time added."""
    return [
        {**alert, "path": note.path, "received": note.received}
        for note in notes
        if note.body.get("status") == status
        for alert in note.body["alerts"]
        if alert["labels"].get("alertname") == alertname
    ]


def watch(sites: list[Site], notes: list[Notification]) -> bool:
    """Set each site's events from the notifications; True once every alert resolved."""
    for site in sites:
        if site.alertname is None:
            continue
        for status, event in (("firing", site.fired), ("resolved", site.resolved)):
            alerts = alerts_of(notes, site.alertname, status)
            if any(a["labels"].get("call_site") == site.call_site for a in alerts):
                event.set()
    return all(site.resolved.is_set() for site in sites if site.alertname)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:
    tmp = tmp_path_factory.mktemp("alerts")
    sites = make_sites()
    alertnames = {site.alertname for site in sites if site.alertname}
    rules = [RULES_DIR / "failsight-recording.yml",
             short_for_alert_rules(tmp / "failsight-alerts.yml", alertnames)]  # fmt: skip
    registry = CollectorRegistry()
    failsight.configure(registry=registry)
    server, _ = failsight.start_metrics_server(port=0, registry=registry)
    failsight.instrument_openai()
    stop = threading.Event()
    try:
        with (
            FaultServer(retry_after_ms=1) as fault,
            WebhookReceiver() as hook,
            AlertmanagerServer(
                with_webhook_receivers(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), hook.url)
            ) as am,
        ):
            provider = urllib.parse.urlsplit(fault.base_url).hostname or ""
            with PrometheusServer(
                [f"127.0.0.1:{server.server_address[1]}"], rules, job=JOB,
                alertmanagers=[am.address], history=history(tmp / "history.om", sites, provider),
            ) as prom:  # fmt: skip
                started = time.monotonic()
                threads = [
                    threading.Thread(target=drive, args=(site, fault.base_url, stop), daemon=True)
                    for site in sites
                ]
                for thread in threads:
                    thread.start()
                control: dict[str, float] = {}

                def progress(notes: list[Notification]) -> bool:
                    # A workload that stopped on an error ends the wait: asserted below.
                    done = watch(sites, notes) or any(site.error for site in sites)
                    # The control site's ratios while its incident still runs.
                    if sites[0].fired.is_set() and not control:
                        control.update(control_ratios(prom, sites[-1].call_site))
                    return done

                try:
                    hook.wait_for(progress, timeout=DEADLINE)
                except TimeoutError:
                    report(hook.snapshot(), sites, started)
                    raise AssertionError(
                        "not every alert fired and resolved in time; Prometheus has "
                        f"{prom.query('ALERTS')}\nAlertmanager log:\n{am.log_tail()}"
                    ) from None
                stop.set()
                for thread in threads:
                    thread.join(timeout=15)
                notes = hook.snapshot()
                report(notes, sites, started)
                print(f"  translate_lyrics content-filter ratios when the spike fired: {control}")
                assert not [site.error for site in sites if site.error]
                yield Delivered(notes, sites, control)
    finally:
        stop.set()
        failsight.uninstrument_openai()
        server.shutdown()
        _config._state = None


def control_ratios(prom: PrometheusServer, call_site: str) -> dict[str, float]:
    def value(expr: str) -> float:
        result = prom.query(f'{expr}{{call_site="{call_site}"}}')
        return float(result[0]["value"][1]) if result else float("nan")

    return {
        "rate5m": value("genai:content_filter_ratio:rate5m"),
        "rate1d": value("genai:content_filter_ratio:rate1d"),
    }


def report(notes: list[Notification], sites: list[Site], started: float) -> None:
    """Print what arrived, and how each incident went."""
    print(f"\n{len(notes)} notifications:")
    for note in notes:
        for alert in note.body.get("alerts", []):
            labels = alert["labels"]
            print(
                f"  +{note.received - started:5.1f}s {note.path} {note.body.get('status')}: "
                f"{labels.get('alertname')} call_site={labels.get('call_site')} "
                f"model={labels.get('model')} severity={labels.get('severity')} | "
                f"{alert['annotations'].get('summary')} | {alert['annotations'].get('description')}"
            )
    for site in sites:
        ended = f"+{site.incident_ended - started:.1f}s" if site.incident_ended else "never"
        error = f", stopped by {site.error}" if site.error else ""
        print(f"  {site.call_site}: {site.counts}, incident ended {ended}{error}")


# --------------------------------------------------------------------------------------
# The checks


def site_of(delivered: Delivered, alertname: str) -> Site:
    (site,) = [site for site in delivered.sites if site.alertname == alertname]
    return site


ALERTS = ["GenAIContentFilterSpike", "GenAIRateLimitSurge", "GenAISilentFailures"]


@pytest.mark.parametrize("alertname", ALERTS)
def test_firing_notification_names_the_call_site_model_and_severity(
    delivered: Delivered, alertname: str
) -> None:
    site = site_of(delivered, alertname)
    firing = alerts_of(delivered.notifications, alertname, "firing")
    assert firing, alertname
    for alert in firing:
        labels = alert["labels"]
        assert labels["call_site"] == site.call_site
        assert labels["model"] == MODEL
        assert labels["severity"] == "warning"
        assert all(labels[name] for name in ("job", "operation", "provider")), labels
        # Warnings are tickets: the route by severity picked the ticket receiver.
        assert alert["path"] == "/failsight-ticket"


@pytest.mark.parametrize("alertname", ALERTS)
def test_annotations_arrive_rendered(delivered: Delivered, alertname: str) -> None:
    site = site_of(delivered, alertname)
    for status in ("firing", "resolved"):
        for alert in alerts_of(delivered.notifications, alertname, status):
            annotations = alert["annotations"]
            assert set(annotations) == {"summary", "description", "runbook"}
            for name, text in annotations.items():
                assert text.strip(), (name, text)
                assert "{{" not in text and "}}" not in text, (name, text)
                assert "<error expanding template" not in text, (name, text)
            assert site.call_site in annotations["summary"] and MODEL in annotations["summary"]
            assert site.call_site in annotations["description"]
            assert annotations["runbook"].startswith("1. ")


@pytest.mark.parametrize("alertname", ALERTS)
def test_resolved_notification_follows_the_end_of_the_incident(
    delivered: Delivered, alertname: str
) -> None:
    site = site_of(delivered, alertname)
    firing = alerts_of(delivered.notifications, alertname, "firing")
    resolved = alerts_of(delivered.notifications, alertname, "resolved")
    assert resolved, alertname
    (last,) = resolved[-1:]
    assert last["status"] == "resolved" and last["path"] == "/failsight-ticket"
    assert last["labels"] == firing[0]["labels"]
    assert last["received"] > site.incident_ended > firing[0]["received"]
    # Healthy traffic went on, outnumbering the failures: the alert resolved because the
    # ratio fell, not because the call site went quiet.
    assert site.counts["after"] > site.counts["bad"] > 0, site.counts


def test_only_the_incidents_alerted(delivered: Delivered) -> None:
    """No other alert and no other call site: in particular not translate_lyrics, filtered as
    often as moderate_comment but always so (its share exceeded 5% and the traffic guard,
    and stayed under twice its day's baseline)."""
    pairs = {
        (alert["labels"]["alertname"], alert["labels"]["call_site"])
        for note in delivered.notifications
        for alert in note.body["alerts"]
    }
    assert pairs == {(name, site_of(delivered, name).call_site) for name in ALERTS}
    ratios = delivered.control
    assert 0.05 < ratios["rate5m"] <= 2 * ratios["rate1d"], ratios
