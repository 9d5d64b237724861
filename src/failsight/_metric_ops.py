"""Hot-path increments of prometheus_client children, without the per-call checks.

`Counter.inc`, `Gauge.inc` and `Histogram.observe` check on every call that the metric is a
child and not a labelled parent, and that the amount is allowed; with the method calls that
do it, that is a third or more of each increment. failsight's children are always children
and its amounts always allowed (counts are non-negative ints, durations finite), so the
checks are dead weight on every request. `adder` and `observer` return what the public
method would do once the checks pass: the child's value's own `inc` (a counter or gauge), or
the sum and the one bucket (a histogram). `exemplar_adder` and `exemplar_observer` do the
same with an exemplar, the public methods' `set_exemplar` included but not their check of the
exemplar's labels: failsight's exemplars are `{"trace_id": <32 hex>}`, always valid.

This reads prometheus_client's internals (`_value`, `_sum`, `_buckets`, `_upper_bounds`), so
the first use checks them: a scratch registry gets the same increments both ways, and the
two collections must be equal. When they are not (another prometheus_client, another value
class), `adder` and `observer` hand back the public methods: slower, never wrong.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.samples import Exemplar

__all__ = [
    "Add", "AddWithExemplar", "adder", "exemplar_adder", "exemplar_observer", "observer", "setter",
]  # fmt: skip

Add = Callable[[float], None]
AddWithExemplar = Callable[[float, dict[str, str]], None]

_fast: bool | None = None  # None until checked


def _direct_adder(child: Any) -> Add:
    inc: Add = child._value.inc
    return inc


def _direct_observer(child: Any) -> Add:
    add_sum: Add = child._sum.inc
    bounds = list(child._upper_bounds)  # ascending, ends with +Inf
    buckets: list[Add] = [bucket.inc for bucket in child._buckets]
    if len(bounds) != len(buckets) or bounds[-1] != float("inf"):
        raise ValueError("unexpected histogram layout")

    def observe(amount: float) -> None:
        add_sum(amount)
        buckets[bisect_left(bounds, amount)](1)  # the first bucket with amount <= bound

    return observe


def _direct_exemplar_adder(child: Any) -> AddWithExemplar:
    value = child._value
    inc, set_exemplar = value.inc, value.set_exemplar
    clock = time.time

    def add(amount: float, exemplar: dict[str, str]) -> None:
        inc(amount)
        set_exemplar(Exemplar(exemplar, amount, clock()))

    return add


def _direct_exemplar_observer(child: Any) -> AddWithExemplar:
    add_sum: Add = child._sum.inc
    bounds = list(child._upper_bounds)
    buckets = [(bucket.inc, bucket.set_exemplar) for bucket in child._buckets]
    if len(bounds) != len(buckets) or bounds[-1] != float("inf"):
        raise ValueError("unexpected histogram layout")
    clock = time.time

    def observe(amount: float, exemplar: dict[str, str]) -> None:
        add_sum(amount)
        inc, set_exemplar = buckets[bisect_left(bounds, amount)]
        inc(1)
        set_exemplar(Exemplar(exemplar, amount, clock()))

    return observe


def _check() -> bool:
    """The direct increments give the same samples as the public methods.

    Only with in-process values: in multiprocess mode a scratch metric would be written to
    the shared directory, so the public methods are used there.
    """
    if values.ValueClass is not values.MutexValue:
        return False
    try:
        collections = []
        for direct in (False, True):
            registry = CollectorRegistry()
            counter = Counter("c", "", ["a"], registry=registry).labels("x")
            gauge = Gauge("g", "", ["a"], registry=registry).labels("x")
            histogram = Histogram("h", "", ["a"], buckets=(0.5, 1.0, 2.0), registry=registry)
            child = histogram.labels("x")
            marked = Counter("e", "", ["a"], registry=registry).labels("x")
            marked_histogram = Histogram("f", "", ["a"], buckets=(1.0,), registry=registry)
            marked_child = marked_histogram.labels("x")
            trace = {"trace_id": "0" * 31 + "1"}
            if direct:
                _direct_adder(counter)(3)
                add = _direct_adder(gauge)
                add(1)
                add(1)
                add(-1)
                observe = _direct_observer(child)
                _direct_exemplar_adder(marked)(2, trace)
                _direct_exemplar_observer(marked_child)(0.5, trace)
            else:
                counter.inc(3)
                gauge.inc()
                gauge.inc()
                gauge.dec()
                observe = child.observe
                marked.inc(2, exemplar=trace)
                marked_child.observe(0.5, exemplar=trace)
            for amount in (0.1, 0.5, 0.75, 2.0, 9.0, 1):
                observe(amount)
            collections.append(
                [
                    (s.name, s.labels, s.value, s.exemplar and s.exemplar[:2])  # not its time
                    for m in registry.collect()
                    for s in m.samples
                    if not s.name.endswith("_created")  # the time each was made
                ]
            )
        return collections[0] == collections[1]
    except Exception:
        return False


def _is_fast() -> bool:
    global _fast
    if _fast is None:
        _fast = _check()
    return _fast


def adder(child: Any) -> Add:
    """`child.inc` (a counter's or gauge's) as a function of the amount, checks left out."""
    if _is_fast():
        try:
            return _direct_adder(child)
        except Exception:
            pass
    public: Add = child.inc
    return public


def setter(child: Any) -> Add:
    """`child.set` (a gauge's) as a function of the value, checks left out."""
    if _is_fast():
        try:
            direct: Add = child._value.set
            return direct
        except Exception:
            pass
    public: Add = child.set
    return public


def observer(child: Any) -> Add:
    """`child.observe` (a histogram's) as a function of the amount, checks left out."""
    if _is_fast():
        try:
            return _direct_observer(child)
        except Exception:
            pass
    public: Add = child.observe
    return public


def exemplar_adder(child: Any) -> AddWithExemplar:
    """`child.inc(amount, exemplar=...)` of a counter, checks left out.

    >>> from prometheus_client import CollectorRegistry, Counter
    >>> child = Counter("n", "", ["a"], registry=CollectorRegistry()).labels("x")
    >>> exemplar_adder(child)(1, {"trace_id": "0af7651916cd43dd8448eb211c80319c"})
    """
    if _is_fast():
        try:
            return _direct_exemplar_adder(child)
        except Exception:
            pass

    def public(amount: float, exemplar: dict[str, str]) -> None:
        child.inc(amount, exemplar=exemplar)

    return public


def exemplar_observer(child: Any) -> AddWithExemplar:
    """`child.observe(amount, exemplar=...)` of a histogram, checks left out."""
    if _is_fast():
        try:
            return _direct_exemplar_observer(child)
        except Exception:
            pass

    def public(amount: float, exemplar: dict[str, str]) -> None:
        child.observe(amount, exemplar=exemplar)

    return public
