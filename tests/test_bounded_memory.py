"""Bounded memory: label caps under 100 000 distinct values, bounded video-job tracking,
and nothing kept alive by finished scopes or abandoned streams (checked with gc/weakref)."""

from __future__ import annotations

import contextlib
import gc
import json
import weakref
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prometheus_client import CollectorRegistry

import failsight
from conftest import Telemetry
from failsight import _config
from failsight._metrics import CHILD_CACHE_LIMIT, MAX_LABEL_LENGTH
from failsight._streams import CallWatcher as StreamRecorder
from failsight.testing import completion_body, mock_openai_client, stream_body

CAP = 50
DISTINCT = 100_000


def label_values(registry: CollectorRegistry) -> dict[str, dict[str, set[str]]]:
    """metric family → label name → the distinct values exposed."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for metric in registry.collect():
        for sample in metric.samples:
            for name, value in sample.labels.items():
                found[metric.name][name].add(value)
    return found


def series_count(registry: CollectorRegistry, family: str) -> int:
    return len(
        {
            tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            for metric in registry.collect()
            if metric.name == family
            for sample in metric.samples
        }
    )


@pytest.fixture
def capped() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    failsight.configure(registry=registry, max_label_values=CAP)
    yield registry
    _config._state = None


@pytest.mark.slow
def test_label_caps_hold_under_100k_models_and_call_sites(capped: CollectorRegistry) -> None:
    def work(i: int) -> None:
        if i % 10 == 0:
            handle = failsight.current_generation()
            assert handle is not None
            handle.mark_failure("soft", "length")

    for i in range(DISTINCT):
        failsight.traced_generation(name=f"site-{i}", model=f"model-{i}", operation="chat")(work)(i)

    values = label_values(capped)
    for family, labels in values.items():
        for label in ("model", "call_site"):
            if label in labels:
                assert len(labels[label]) <= CAP + 1, (family, label, len(labels[label]))
    requests = values["genai_requests"]
    assert "other" in requests["model"] and "other" in requests["call_site"]
    # cap tuples of their own, then everything else under (other, other) per class.
    assert series_count(capped, "genai_requests") <= CAP + 2
    assert series_count(capped, "genai_request_duration_seconds") <= 2 * (CAP + 2)
    total = sum(
        sample.value
        for metric in capped.collect()
        if metric.name == "genai_requests"
        for sample in metric.samples
        if sample.name == "genai_requests_total"
    )
    assert total == DISTINCT  # nothing lost: the excess is counted under `other`
    metrics = _config.get_state().metrics
    for metric in metrics.capped:
        assert all(len(seen) <= CAP for seen in metric._seen)
        assert len(metric._cache) <= CHILD_CACHE_LIMIT


def mock_client() -> openai.OpenAI:
    counter = iter(range(10**9))
    stream = stream_body()

    def handler(request: Any) -> Any:
        if request.url.path.endswith("/videos"):  # a multipart upload: no JSON body
            return {"id": f"video_{next(counter)}", "object": "video", "status": "queued",
                    "model": "sora-2", "progress": 0, "created_at": 1}  # fmt: skip
        body = json.loads(request.content or b"{}")
        if body.get("stream"):
            return stream
        return completion_body(model=body.get("model", "gpt-4o-mini"), content="ok")

    client: openai.OpenAI = mock_openai_client(handler, api_key="sk-memory-test")
    return client


def test_sdk_calls_with_distinct_models_are_capped(capped: CollectorRegistry) -> None:
    failsight.instrument_openai()
    try:
        client = mock_client()
        for i in range(4 * CAP):
            client.chat.completions.create(
                model=f"tenant-model-{i}", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        failsight.uninstrument_openai()
    values = label_values(capped)
    for family in ("genai_requests", "genai_tokens", "genai_finish_reasons"):
        assert len(values[family]["model"]) == CAP + 1, family
        assert "other" in values[family]["model"]


def test_long_label_values_are_cut(capped: CollectorRegistry) -> None:
    long_model = "m" * 10_000
    failsight.instrument_openai()
    try:
        client = mock_client()
        for suffix in ("a", "b"):  # differ past the cut: one series
            client.chat.completions.create(model=long_model + suffix, messages=[])
    finally:
        failsight.uninstrument_openai()
    failsight.traced_generation(name="s" * 1_000)(lambda: None)()
    values = label_values(capped)
    assert values["genai_requests"]["model"] == {"m" * MAX_LABEL_LENGTH, "unknown"}
    assert "s" * MAX_LABEL_LENGTH in values["genai_requests"]["call_site"]
    for family, labels in values.items():
        for label, found in labels.items():
            assert all(len(value) <= MAX_LABEL_LENGTH for value in found), (family, label)
    assert capped.get_sample_value(
        "genai_requests_total",
        {"operation": "chat", "provider": "mock.local", "model": "m" * MAX_LABEL_LENGTH,
         "call_site": "unscoped", "failure_class": "none"},
    ) == 2  # fmt: skip


def test_open_video_jobs_stay_bounded(telemetry: Telemetry) -> None:
    failsight.configure(
        registry=telemetry.registry, tracer_provider=telemetry.provider, max_open_video_jobs=20
    )
    jobs = _config.get_state().video_jobs

    @failsight.traced_generation(name="render", operation="video_generation")
    def render(i: int) -> None:
        handle = failsight.current_generation()
        assert handle is not None
        handle.record_video_status("queued", job_id=f"job-{i}")  # never polled again

    for i in range(5_000):
        render(i)
        assert len(jobs) <= 20
    failsight.instrument_openai()
    try:
        client = mock_client()
        for _ in range(200):  # the patch's path: jobs created and never polled
            client.videos.create(model="sora-2", prompt="a cat")
            assert len(jobs) <= 20
    finally:
        failsight.uninstrument_openai()
    assert len(jobs._open) <= 20 and len(jobs._ended) <= 20
    # Each job pushed out of the tracker ended exactly once, as timed out.
    timed_out = telemetry.value("genai_video_jobs_total", status="timed_out")
    assert timed_out == 5_000 + 200 - len(jobs)


def _live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def test_abandoned_streams_are_collected(instrumented: Telemetry) -> None:
    client = mock_client()
    gc.collect()
    recorders_before = _live(StreamRecorder)
    proxies: list[weakref.ref[Any]] = []
    streams: list[weakref.ref[Any]] = []
    for _ in range(300):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        next(stream)  # read one chunk, then walk away
        proxies.append(weakref.ref(stream))
        streams.append(weakref.ref(stream.__wrapped__))
        del stream
    gc.collect()
    assert not any(ref() is not None for ref in proxies)
    assert not any(ref() is not None for ref in streams)
    # Each abandoned stream was recorded once, as a success (walking away is not a failure),
    # at the scrape: the finaliser only queued it (it may run inside a lock).
    assert instrumented.value("genai_requests_total", failure_class="none") == 300
    assert _live(StreamRecorder) == recorders_before
    assert instrumented.value("genai_requests_total") == 300
    assert instrumented.value("genai_in_flight_requests") == 0
    assert len(instrumented.spans()) == 300


def test_finished_scopes_and_calls_are_collected(instrumented: Telemetry) -> None:
    client = mock_client()
    gc.collect()
    recorders_before = _live(StreamRecorder)
    handles: list[weakref.ref[Any]] = []

    @failsight.traced_generation(name="scope")
    def scope(kind: int) -> Any:
        handle = failsight.current_generation()
        handles.append(weakref.ref(handle))
        messages = [{"role": "user", "content": "hi"}]
        if kind == 0:
            return client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        if kind == 1:
            return list(
                client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
            )
        raise ValueError("boom")

    for i in range(300):
        with contextlib.suppress(ValueError):
            scope(i % 3)
    gc.collect()
    assert len(handles) == 300
    assert not any(ref() is not None for ref in handles)
    assert _live(StreamRecorder) == recorders_before
    assert instrumented.value("genai_requests_total") == 300
    assert instrumented.value("genai_in_flight_requests") == 0
