"""The hot path's direct increments give exactly what prometheus_client's methods give."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from failsight import _metric_ops
from failsight._metrics import DURATION_BUCKETS, MetricSet


def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    ]


def test_the_direct_path_is_taken_with_this_prometheus_client() -> None:
    assert _metric_ops._check()
    counter = Counter("c", "", ["a"], registry=CollectorRegistry()).labels("x")
    op: Any = _metric_ops.adder(counter)
    assert op.__self__ is counter._value  # the value's own inc, not Counter.inc


@settings(max_examples=60, deadline=None)
@given(
    amounts=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=10),
            st.floats(min_value=0, max_value=1000, allow_nan=False),
            st.sampled_from(DURATION_BUCKETS),
        ),
        max_size=30,
    )
)
def test_direct_and_public_increments_agree(amounts: list[float]) -> None:
    found = []
    for direct in (True, False):
        registry = CollectorRegistry()
        metrics = MetricSet(registry)
        labels = ("chat", "openai", "gpt-4o", "site")
        children = metrics.children(labels)
        for amount in amounts:
            if direct:
                children.add("tokens", "input", int(amount))
                children.observe("duration", amount, "none")
                children.adder("in_flight")(1)
            else:
                metrics.tokens.child((*labels, "input")).inc(int(amount))
                metrics.duration.child((*labels, "none")).observe(amount)
                metrics.in_flight.child(labels).inc()
        found.append(samples(registry))
    assert found[0] == found[1]


def test_public_methods_when_the_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_metric_ops, "_fast", False)
    registry = CollectorRegistry()
    counter = Counter("c", "", ["a"], registry=registry).labels("x")
    histogram = Histogram("h", "", ["a"], registry=registry).labels("x")
    assert _metric_ops.adder(counter) == counter.inc
    assert _metric_ops.observer(histogram) == histogram.observe


def test_public_methods_for_children_of_another_shape() -> None:
    class Odd:
        def inc(self, amount: float) -> None: ...

        def observe(self, amount: float) -> None: ...

    odd = Odd()
    assert _metric_ops.adder(odd) == odd.inc
    assert _metric_ops.observer(odd) == odd.observe


def test_no_scratch_metric_in_multiprocess_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch metric would land in the shared directory: the check says no first."""
    monkeypatch.setattr(values, "ValueClass", object)
    made: list[str] = []
    monkeypatch.setattr(
        _metric_ops, "CollectorRegistry", lambda: made.append("registry") or CollectorRegistry()
    )
    assert not _metric_ops._check()
    assert made == []


def test_gauge_goes_back_to_zero() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "", ["a"], registry=registry).labels("x")
    op = _metric_ops.adder(gauge)
    op(1)
    op(1)
    op(-1)
    op(-1)
    assert gauge._value.get() == 0


def exemplars(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], Any]]:
    return [
        (s.name, s.labels, s.exemplar[:2])  # its labels and value, not its time
        for m in registry.collect()
        for s in m.samples
        if s.exemplar is not None
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_exemplar_increments_agree_with_the_public_methods(
    monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    monkeypatch.setattr(_metric_ops, "_fast", fast)
    trace = {"trace_id": "0af7651916cd43dd8448eb211c80319c"}
    found = []
    for direct in (True, False):
        registry = CollectorRegistry()
        children = MetricSet(registry).children(("chat", "openai", "gpt-4o", "site"))
        for amount in (0.004, 0.3, 0.3, 99.0, 1e6):
            if direct:
                children.add_exemplar("requests", "none", trace)
                children.observe_exemplar("duration", amount, "hard", trace)
            else:
                children.of("requests", "none").inc(exemplar=trace)
                children.of("duration", "hard").observe(amount, exemplar=trace)
        found.append((samples(registry), exemplars(registry)))
    assert found[0] == found[1]
    assert len(found[0][1]) == 1 + 4  # the counter's, and one per bucket observed
