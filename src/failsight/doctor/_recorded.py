"""The doctor's requests through failsight's own instrumentation, and the series they made.

While the checks run, `instrument_http()` records every request the doctor sends to an AI
route into a registry of the doctor's own: the screen ends with those series, so a user
sees failsight's taxonomy on their own endpoint, as their dashboards would. The settings in
force before (registry, tracer provider, caps) and the patch's state come back afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from failsight import _config
from failsight._http_patch import instrument_http, is_http_instrumented, uninstrument_http

__all__ = ["SHOWN", "recorded", "render_series", "series"]

# What the doctor shows, in this order: the request, its failure, what the answer said.
SHOWN = (
    "genai_requests_total",
    "genai_failures_total",
    "genai_finish_reasons_total",
    "genai_retries_total",
    "genai_tokens_total",
)


@contextmanager
def recorded() -> Iterator[CollectorRegistry]:
    """Record the doctor's requests into a fresh registry (failsight's default namespace)."""
    previous = _config.get_state().settings
    registry = CollectorRegistry()
    _config._activate(dataclasses.replace(previous, registry=registry, namespace="genai"))
    switched_on = not is_http_instrumented()
    if switched_on:
        instrument_http()
    try:
        yield registry
    finally:
        if switched_on:
            uninstrument_http()
        _config._activate(previous)


def series(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """The non-zero samples of `SHOWN`: `{"name", "labels", "value"}` each, in `SHOWN` order."""
    found: list[dict[str, Any]] = []
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in SHOWN and sample.value:
                found.append({"name": sample.name, "labels": dict(sample.labels),
                              "value": sample.value})  # fmt: skip
    found.sort(key=lambda row: SHOWN.index(row["name"]))
    return found


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in labels.items())


def render_series(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["failsight recorded no AI request (none reached a chat, image or video route)"]
    lines = ["What failsight recorded of these requests (the series your dashboards read):"]
    for row in rows:
        value = row["value"]
        shown = int(value) if float(value).is_integer() else value
        lines.append(f"  {row['name']}{{{_labels(row['labels'])}}} {shown}")
    return lines
