"""`failsight demo --forever / --duration`: the steady mix, the incident schedule, the pace.

The mix is checked against the alert thresholds of dashboards/rules/failsight-alerts.yml
from what each step declares it records; a live run against the fault server checks that
failsight recorded exactly what the steps declare.
"""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from conftest import Telemetry
from failsight._ratelimit import read_headers
from failsight.demo import (
    INCIDENTS,
    STEADY_MIX,
    Incident,
    Schedule,
    Step,
    expected_totals,
    run_continuous,
)
from failsight.testing import RATELIMIT_HEADER_SCENARIOS, RATELIMIT_SCENARIOS, FaultServer

# The thresholds of the alerts the incidents stand for (failsight-alerts.yml); the headroom
# alert fires below its threshold, the others above theirs.
HARD, SILENT, CONTENT_FILTER, LENGTH, RATE_LIMITED, RETRIES, VIDEO, HEADROOM = (
    0.1, 0.05, 0.05, 0.05, 0.1, 0.5, 0.25, 0.1,
)  # fmt: skip
Mix = list[tuple[float, Step, str]]  # weight, step, the fault server's scenario

Series = tuple[str, str, str]  # call_site, model, operation, as the alerts group them


def ratios(mix: Iterable[tuple[float, Step, str]]) -> dict[Series, dict[str, float]]:
    """Per series, what the alerts compute, from the weight and declaration of each step."""
    totals: dict[Series, Counter[str]] = defaultdict(Counter)
    for weight, step, _ in mix:
        counts = totals[(step.call_site, step.model, step.operation)]
        counts["requests"] += weight
        counts[step.failure_class] += weight
        counts[f"reason:{step.reason}"] += weight
        counts["retries"] += weight * len(step.retries)
        counts["rate_limited"] += weight * (
            step.retries.count("rate_limited") + (step.reason == "rate_limited")
        )
        if step.video_status:
            counts["videos"] += weight
            counts["videos_failed"] += weight * (step.video_status != "succeeded")
    return {
        series: {
            "hard": c["hard"] / c["requests"],
            "silent": c["silent"] / c["requests"],
            "content_filter": c["reason:content_filter"] / c["requests"],
            "length": c["reason:length"] / c["requests"],
            "rate_limited": c["rate_limited"] / c["requests"],
            "retries": c["retries"] / c["requests"],
            "video_failed": c["videos_failed"] / c["videos"] if c["videos"] else 0.0,
        }
        for series, c in totals.items()
    }


def headroom(mix: Iterable[tuple[float, Step, str]]) -> dict[tuple[str, str], float]:
    """Per model and resource, the most budget left (remaining / limit) an answer reports, as
    failsight reads the scenario's headers. The gauges show the newest reading, so the headroom
    alert's condition holds across scrapes only while every answer reports less than its
    threshold; the `ratelimited` budget counts down from full."""
    most: dict[tuple[str, str], float] = defaultdict(float)
    for weight, step, scenario in mix:
        if weight <= 0 or scenario not in RATELIMIT_SCENARIOS:
            continue
        if scenario == "ratelimited":
            left = {"requests": 1.0, "tokens": 1.0}
        else:
            reading = read_headers(dict(RATELIMIT_HEADER_SCENARIOS[scenario]))
            assert reading is not None, scenario
            left = {f.resource: f.remaining / f.limit for f in reading.figures
                    if f.limit and f.remaining is not None}  # fmt: skip
        for resource, share in left.items():
            key = (step.model, resource)
            most[key] = max(most[key], share)
    return dict(most)


def steady() -> Mix:
    return list(STEADY_MIX)


def during(incident: Incident) -> Mix:
    """The mix while `incident` runs: its share of its call site's weight fails its way."""
    mix: Mix = []
    for weight, step, scenario in steady():
        if not incident.hits(step):
            mix.append((weight, step, scenario))
            continue
        mix.append((weight * (1 - incident.share), step, scenario))
        for failing, failing_scenario in incident.steps:
            mix.append((weight * incident.share / len(incident.steps), failing, failing_scenario))
    return mix


def test_the_steady_mix_stays_below_every_alert_threshold() -> None:
    limits = {"hard": HARD, "silent": SILENT, "content_filter": CONTENT_FILTER,
              "length": LENGTH, "rate_limited": RATE_LIMITED, "retries": RETRIES,
              "video_failed": VIDEO}  # fmt: skip
    for series, values in ratios(steady()).items():
        for name, value in values.items():
            assert value < limits[name] / 2, f"{series}: {name} {value:.3f} at steady state"
    # Every model whose answers report a budget reports twice the headroom threshold or more.
    most = headroom(steady())
    assert {model for model, _ in most} >= {"gpt-4o-mini", "text-embedding-3-small"}
    for key, left in most.items():
        assert left >= 2 * HEADROOM, f"{key}: at most {left:.3f} of the budget left"


# Each incident's ratio, its alert threshold, and whether the alert compares it with the
# last day's value (then it must be more than twice the steady one).
INCIDENT_RATIOS = {
    "GenAISilentFailures": ("silent", SILENT, False),
    "GenAIContentFilterSpike": ("content_filter", CONTENT_FILTER, True),
    "GenAIRateLimitSurge": ("rate_limited", RATE_LIMITED, True),
    "GenAITruncationSpike": ("length", LENGTH, True),
    "GenAIRateLimitHeadroomLow": ("headroom", HEADROOM, False),
}


@pytest.mark.parametrize("incident", INCIDENTS, ids=lambda incident: incident.alert)
def test_each_incident_crosses_its_alert_threshold(incident: Incident) -> None:
    name, threshold, baseline = INCIDENT_RATIOS[incident.alert]
    (series,) = {(s.call_site, s.model, s.operation) for s, _ in incident.steps}
    if name == "headroom":
        # Below the threshold, per resource, whichever answer of the model a scrape reads; the
        # alert's traffic guard counts the model's attempts, whatever their call site.
        left = {key: v for key, v in headroom(during(incident)).items() if key[0] == series[1]}
        assert len(left) == 2 and max(left.values()) < threshold / 3, f"{incident.title}: {left}"
        assert all(ratio == 0 for ratio in ratios(during(incident))[series].values())
        share = sum(w for w, s, _ in steady() if s.model == series[1])
        # Once it is over, the model's answers report plenty again, so the alert resolves.
        assert headroom(steady())[(series[1], "requests")] >= 2 * threshold
    else:
        value = ratios(during(incident))[series][name]
        assert value > 3 * threshold, f"{incident.title}: {name} {value:.3f}"
        if baseline:
            assert value > 4 * ratios(steady())[series][name]
        share = sum(w for w, s, _ in steady() if incident.hits(s))
    # The call site (or model) has the traffic the alerts' minimum-traffic guard asks for (10
    # requests in 5 minutes) at the default rate of 4 requests per second.
    assert 4 * 300 * share / sum(w for w, _, _ in steady()) >= 30


def test_the_mix_covers_every_failure_class_and_operation() -> None:
    steps = [step for _, step, _ in steady()]
    assert {step.failure_class for step in steps} == {"none", "hard", "soft", "silent"}
    assert {step.operation for step in steps} >= {
        "chat", "embeddings", "image_generation", "video_generation",
    }  # fmt: skip
    assert len({step.call_site for step in steps}) >= 6
    assert len({step.model for step in steps}) >= 5
    kinds = {step.name.split(":")[0] for step in steps}
    assert {"stream", "image", "video", "async", "submit_and_poll", "extract"} <= kinds
    assert any(step.retries for step in steps)


def test_the_schedule_gives_each_slot_normal_traffic_then_one_incident() -> None:
    schedule = Schedule(every=1380, length=1080)
    assert schedule.active(0) is None and schedule.active(299.9) is None
    seen = []
    for minute in range(0, len(INCIDENTS) * 23 * 60, 30):
        incident = schedule.active(minute)
        if incident is not None and (not seen or seen[-1] is not incident):
            seen.append(incident)
    assert seen == list(INCIDENTS)
    assert schedule.active(300).alert == "GenAISilentFailures"
    assert schedule.active(1379.9) is INCIDENTS[0] and schedule.active(1380) is None
    assert schedule.active(len(INCIDENTS) * 1380 + 300) is INCIDENTS[0]  # the cycle repeats
    assert len(INCIDENTS) == 5 and INCIDENTS[-1].alert == "GenAIRateLimitHeadroomLow"
    # The spike alerts compare with the last day: each call site was quiet for longer than
    # its incident lasts (silent failures, first, have no baseline).
    for index, incident in enumerate(INCIDENTS[1:], 1):
        quiet = index * schedule.every + schedule.every - schedule.length
        assert quiet > schedule.length, incident.title
    for every, length in ((10, 10), (10, 0), (10, 12)):
        with pytest.raises(ValueError, match="shorter than its slot"):
            Schedule(every, length)


def test_an_incident_turns_its_share_of_its_call_site() -> None:
    incident = INCIDENTS[1]
    rng = random.Random(7)
    picks = [pick for pick in (_pick(rng, incident) for _ in range(20000)) if incident.hits(pick)]
    failing = sum(1 for step in picks if step.reason == "content_filter")
    steady_share = 0.08 / 8.08
    expected = incident.share + (1 - incident.share) * steady_share
    assert failing / len(picks) == pytest.approx(expected, abs=0.03)


def _pick(rng: random.Random, incident: Incident | None) -> Step:
    from failsight.demo._schedule import pick

    return pick(rng, incident)[0]


# --------------------------------------------------------------------------------------
# Live: the real SDK against the fault server


def samples(registry: CollectorRegistry, name: str, *labels: str) -> dict[Any, float]:
    out: dict[Any, float] = defaultdict(float)
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                key = tuple(sample.labels[label] for label in labels)
                out[key if len(key) > 1 else key[0]] += sample.value
    return {key: value for key, value in out.items() if value}


@pytest.mark.e2e
def test_a_continuous_run_records_what_its_steps_declare(instrumented: Telemetry) -> None:
    out = io.StringIO()
    with FaultServer(retry_after_ms=1, slow_seconds=1.0, video_polls_to_finish=2) as fault:
        ran = run_continuous(
            fault.base_url, rate=40, duration=5, schedule=Schedule(2.5, 1.5), out=out,
            status_every=2, forget=fault.requests.clear, rng=random.Random(3),
        )  # fmt: skip
    # 40 a second for 5 s, jittered; far fewer when a loaded machine falls behind (what counts
    # is that the counters equal what was sent).
    assert 20 <= ran.total() <= 230, ran.total()
    registry = instrumented.registry
    expected = expected_totals(ran.elements())
    requests = samples(registry, "genai_requests_total", "failure_class")
    assert requests == {cls: float(n) for cls, n in expected["requests"].items()}
    failures = samples(registry, "genai_failures_total", "failure_class", "reason")
    assert failures == {key: float(n) for key, n in expected["failures"].items()}
    retries = samples(registry, "genai_retries_total", "reason")
    assert retries == {reason: float(n) for reason, n in expected["retries"].items()}
    videos = samples(registry, "genai_video_jobs_total", "status")
    assert videos == {status: float(n) for status, n in expected["videos"].items()}
    # The first two incidents, announced as they start and end, then the status lines.
    lines = out.getvalue().splitlines()
    starts = [line for line in lines if "incident starts" in line]
    assert [re.search(r"starts: (.*?) at", line)[1] for line in starts] == [  # type: ignore[index]
        INCIDENTS[0].title, INCIDENTS[1].title,
    ]  # fmt: skip
    # Announced with the next request picked, which a busy machine delays by a moment.
    assert re.match(r"\[00:00:0[12]\]", starts[0]) and re.match(r"\[00:00:0[34]\]", starts[1])
    assert sum("incident over" in line for line in lines) == 2
    assert any(re.fullmatch(r"\[00:00:0[24]\] \d+ requests so far", line) for line in lines)


def failsight_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failsight", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("--forever", "--rounds", "2"), "--rounds is for the finite run"),
        (("--duration", "5", "--async-requests", "3"), "--async-requests is for the finite run"),
        (("--forever", "--duration", "5"), "not allowed with argument"),
        (("--duration", "0"), "above 0"),
        (("--duration", "5", "--rate", "nan"), "above 0"),
        (("--forever", "--incident-every", "60", "--incident-length", "60"), "shorter than"),
    ],
)
def test_the_continuous_options_refuse_what_cannot_run(args: tuple[str, ...], text: str) -> None:
    result = failsight_cli("demo", "--port", "0", *args)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("failsight: error: ") and text in line, line
    assert result.stdout == ""


@pytest.mark.e2e
def test_demo_duration_runs_then_prints_the_table() -> None:
    result = failsight_cli(
        "demo", "--port", "0", "--duration", "4", "--rate", "20",
        "--incident-every", "2", "--incident-length", "1", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "about 20 requests/s for 4 s" in out
    assert "incidents every 2 s, each lasting 1 s, the first at 1 s" in out
    assert "] incident starts: silent-failure burst at call site extract_json" in out
    ran = re.search(r"Ran (\d+) logical requests in ([\d.]+) s\.", out)
    assert ran, out
    assert 10 <= int(ran[1]) <= 110 and 4 <= float(ran[2]) < 20
    assert f"Logical requests: {ran[1]}" in out
    assert "Failures by class and reason" in out and "requests so far" not in out
