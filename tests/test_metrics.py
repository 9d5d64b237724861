"""The metric set: all-or-nothing registration, label caps, the series budget, locks, and the
hook that runs before a collection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from failsight._guard import STAGES
from failsight._metrics import CappedMetric, MetricSet
from failsight._taxonomy import OTHER, REASONS

SITE = ("chat", "openai", "gpt-4o")


def family_names(registry: CollectorRegistry) -> set[str]:
    return {metric.name for metric in registry.collect()}


def values_of(registry: CollectorRegistry, sample: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for metric in registry.collect()
        for s in metric.samples
        if s.name == sample and label in s.labels
    }


def total(registry: CollectorRegistry, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


# ------------------------------------------------------------------ all-or-nothing registration


@pytest.mark.parametrize(
    ("theirs", "clash"),
    [
        (lambda r: Counter("genai_requests", "mine", registry=r), "genai_requests"),
        (lambda r: Gauge("genai_in_flight_requests", "mine", registry=r), "genai_in_flight"),
        (lambda r: Counter("genai_telemetry_errors", "mine", registry=r), "genai_telemetry"),
    ],
)
def test_a_name_clash_registers_nothing_and_says_what_to_do(
    theirs: Callable[[CollectorRegistry], Any], clash: str
) -> None:
    registry = CollectorRegistry()
    mine = theirs(registry)
    before = family_names(registry)
    with pytest.raises(ValueError, match=clash) as caught:
        MetricSet(registry)
    assert "namespace=" in str(caught.value)
    assert family_names(registry) == before  # every metric registered before the clash is gone
    assert list(registry._collector_to_names) == [mine]
    registry.unregister(mine)
    metrics = MetricSet(registry)  # the clash removed, it works
    metrics.requests.child((*SITE, "site", "none")).inc()
    assert registry.get_sample_value(
        "genai_requests_total",
        {"operation": "chat", "provider": "openai", "model": "gpt-4o", "call_site": "site",
         "failure_class": "none"},
    ) == 1  # fmt: skip


def test_a_clash_also_takes_the_before_collect_hook_off() -> None:
    registry = CollectorRegistry()
    mine = Counter("genai_telemetry_errors", "mine", registry=registry)
    with pytest.raises(ValueError, match="genai_telemetry_errors"):
        MetricSet(registry, before_collect=lambda: None)
    assert list(registry._collector_to_names) == [mine]


def test_another_namespace_avoids_the_clash() -> None:
    registry = CollectorRegistry()
    Gauge("genai_in_flight_requests", "mine", registry=registry)
    MetricSet(registry, namespace="llm")
    assert "llm_requests" in family_names(registry)


# ------------------------------------------------------------------ free-form reasons are capped


def test_custom_reasons_are_capped_per_metric_vocabulary_never() -> None:
    registry = CollectorRegistry()
    metrics = MetricSet(registry, max_label_values=3)
    for i in range(20):
        metrics.failures.child((*SITE, "site", "silent", f"my_check_{i}")).inc()
        metrics.retries.child((*SITE, "site", f"my_retry_{i}")).inc()
    for reason in sorted(REASONS):
        metrics.failures.child((*SITE, "site", "hard", reason)).inc()
        metrics.retries.child((*SITE, "site", reason)).inc()
    failure_reasons = values_of(registry, "genai_failures_total", "reason")
    assert failure_reasons == {"my_check_0", "my_check_1", "my_check_2"} | REASONS
    assert values_of(registry, "genai_retries_total", "reason") == (
        {"my_retry_0", "my_retry_1", "my_retry_2"} | REASONS
    )
    # Nothing lost: the 17 later custom reasons are counted under `other`.
    assert total(registry, "genai_failures_total", reason=OTHER, failure_class="silent") == 17
    assert total(registry, "genai_failures_total") == 20 + len(REASONS)


def test_spec_reason_vocabulary_is_the_classifiers() -> None:
    """Every reason the classifier can give is in the uncapped vocabulary."""
    from failsight import _classify

    statuses = [400, 401, 403, 404, 409, 418, 422, 429, 500, 502, 503, 504, 599]
    given = {_classify.reason_for_status(status) for status in statuses}
    given |= set(_classify.VIDEO_FAILURE_REASONS.values()) | _classify.RETRYABLE_REASONS
    assert given <= REASONS


# ------------------------------------------------------------------ the series budget


def test_series_budget_sends_new_label_tuples_to_one_overflow_series() -> None:
    registry = CollectorRegistry()
    metrics = MetricSet(registry, max_label_values=100, max_series=5)
    for i in range(12):
        for failure_class in ("none", "hard"):
            metrics.requests.child(("chat", "openai", f"m{i}", f"site{i}", failure_class)).inc()
    sites = values_of(registry, "genai_requests_total", "call_site")
    assert sites == {f"site{i}" for i in range(5)} | {OTHER}
    overflow = {"operation": OTHER, "provider": OTHER, "model": OTHER, "call_site": OTHER}
    # A tuple with its own series keeps it for every own-label value; the rest overflow whole.
    assert total(registry, "genai_requests_total", **overflow) == 14
    assert total(registry, "genai_requests_total", **overflow, failure_class="hard") == 7
    assert total(registry, "genai_requests_total", call_site="site4", failure_class="hard") == 1
    assert total(registry, "genai_requests_total") == 24  # nothing lost
    # Each label combination turned away is counted once (later look-ups hit the cache).
    assert total(registry, "genai_telemetry_errors_total", stage="series_budget") == 14
    metrics.requests.child(("chat", "openai", "m11", "site11", "none")).inc()
    assert total(registry, "genai_telemetry_errors_total", stage="series_budget") == 14
    # The budget is per metric: another metric has its own.
    metrics.tokens.child(("chat", "openai", "m11", "site11", "input")).inc(3)
    assert total(registry, "genai_tokens_total", call_site="site11") == 3


def test_series_stay_bounded_under_100k_label_combinations() -> None:
    """The label cap alone allows cap**2 (model, call_site) pairs; the budget bounds them."""
    registry = CollectorRegistry()
    metrics = MetricSet(registry, max_label_values=100, max_series=500)
    for i in range(100_000):
        labels = ("chat", "openai", f"m{i % 997}", f"s{i % 991}")
        metrics.children(labels).of("requests", "none").inc()
        metrics.failures.child((*labels, "silent", f"validator_{i}")).inc()
    for metric in metrics.capped:
        assert len(metric._series) <= 500
        assert all(len(seen) <= 100 for seen in metric._seen)
        assert len(metric._reasons) <= 100
    assert len(values_of(registry, "genai_requests_total", "call_site")) <= 101
    requests = next(m for m in registry.collect() if m.name == "genai_requests")
    assert len(requests.samples) <= 2 * 501  # _total and _created of each combination
    assert total(registry, "genai_requests_total") == 100_000


def test_values_capped_to_other_share_the_overflow_series_for_free() -> None:
    registry = CollectorRegistry()
    metrics = MetricSet(registry, max_label_values=1, max_series=1)
    metrics.requests.child(("chat", "openai", "m0", "s0", "none")).inc()
    metrics.requests.child(("embeddings", "azure", "m1", "s1", "none")).inc()  # all capped
    assert total(registry, "genai_telemetry_errors_total", stage="series_budget") == 0
    assert len(next(s for s in registry.collect() if s.name == "genai_requests").samples) == 4


def test_raising_the_budget_gives_new_tuples_their_series() -> None:
    registry = CollectorRegistry()
    metrics = MetricSet(registry, max_series=1)
    metrics.requests.child((*SITE, "a", "none")).inc()
    metrics.requests.child((*SITE, "b", "none")).inc()
    assert values_of(registry, "genai_requests_total", "call_site") == {"a", OTHER}
    metrics.set_limits(100, 10)
    metrics.requests.child((*SITE, "b", "none")).inc()
    assert total(registry, "genai_requests_total", call_site="b") == 1


# ------------------------------------------------------------------ locks and labels()


def test_no_failsight_lock_is_held_while_prometheus_makes_a_child() -> None:
    """labels() allocates, so the garbage collector (and any finaliser) can run inside it."""
    metrics = MetricSet(CollectorRegistry())
    capped: CappedMetric = metrics.requests
    original = capped.metric.labels
    held: list[bool] = []

    def labels(*values: str) -> Any:
        held.append(capped._lock.locked() or metrics._children_lock.locked())
        return original(*values)

    capped.metric.labels = labels
    metrics.children((*SITE, "site")).of("requests", "none").inc()
    capped.child((*SITE, "other-site", "hard")).inc()
    assert held == [False, False]


def test_a_finaliser_recording_inside_labels_does_not_deadlock() -> None:
    """What a GC finaliser does when it records during `labels()` on the same thread."""
    registry = CollectorRegistry()
    metrics = MetricSet(registry)
    capped = metrics.requests
    original = capped.metric.labels
    reentered: list[bool] = []

    def labels(*values: str) -> Any:
        if not reentered:
            reentered.append(True)
            capped.child((*SITE, "from-a-finaliser", "none")).inc()
        return original(*values)

    capped.metric.labels = labels
    done = threading.Event()

    def record() -> None:
        capped.child((*SITE, "site", "none")).inc()
        done.set()

    threading.Thread(target=record, daemon=True).start()
    assert done.wait(5), "deadlocked: child() re-entered while its own lock was held"
    assert total(registry, "genai_requests_total") == 2


def test_children_are_cached_and_the_cache_is_bounded() -> None:
    metrics = MetricSet(CollectorRegistry())
    first = metrics.requests.child((*SITE, "site", "none"))
    assert metrics.requests.child((*SITE, "site", "none")) is first
    children = metrics.children((*SITE, "site"))
    assert children.of("requests", "none") is first
    assert metrics.children((*SITE, "site")) is children


# ------------------------------------------------------------------ before_collect


def test_before_collect_runs_first_on_every_collection() -> None:
    registry = CollectorRegistry()
    calls: list[int] = []
    holder: dict[str, MetricSet] = {}

    def hook() -> None:
        calls.append(1)
        holder["metrics"].requests.child((*SITE, "deferred", "none")).inc()

    holder["metrics"] = MetricSet(registry, before_collect=hook)
    # The recording the hook makes is already in the first scrape: it ran before the samples.
    labels = {"operation": "chat", "provider": "openai", "model": "gpt-4o",
              "call_site": "deferred", "failure_class": "none"}  # fmt: skip
    assert registry.get_sample_value("genai_requests_total", labels) == 1
    assert registry.get_sample_value("genai_requests_total", labels) == 2
    assert len(calls) == 2


def test_a_raising_before_collect_never_breaks_a_scrape() -> None:
    from prometheus_client import generate_latest

    def hook() -> None:
        raise RuntimeError("broken hook")

    registry = CollectorRegistry()
    MetricSet(registry, before_collect=hook)
    assert b"genai_telemetry_errors_total" in generate_latest(registry)


def test_telemetry_errors_start_at_zero_for_the_stages_code_reports() -> None:
    registry = CollectorRegistry()
    MetricSet(registry)
    stages = values_of(registry, "genai_telemetry_errors_total", "stage")
    assert stages == set(STAGES)
    assert total(registry, "genai_telemetry_errors_total") == 0
    # The openai_* stages of the SDK patch before the engine: nothing reports them any more.
    assert not {stage for stage in stages if stage.startswith("openai_")}
