"""The Python API used wrongly: refused where it is written, or (at run time, on a handle)
ignored with one FailsightWarning per call site; and configure() while calls run."""

from __future__ import annotations

import ssl
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import failsight
from conftest import Telemetry
from failsight import FailsightWarning, current_generation, traced_generation
from failsight.validators import one_of
from openai_calls import MESSAGES, headers, sync_client

# ------------------------------------------------------------------ what is decorated


class _Client:
    pass


def test_a_class_is_refused_at_decoration_time() -> None:
    with pytest.raises(TypeError, match="not classes: decorate the method of _Client"):
        traced_generation(_Client)
    with pytest.raises(TypeError, match="not classes"):
        traced_generation(name="client")(_Client)
    assert isinstance(_Client(), _Client)  # untouched


def test_method_wrappers_in_the_wrong_order_are_refused() -> None:
    with pytest.raises(TypeError, match="put @staticmethod above @traced_generation"):

        class Wrong:
            @traced_generation  # type: ignore[misc]
            @staticmethod
            def make() -> str:
                return "x"

    with pytest.raises(TypeError, match="put @classmethod above @traced_generation"):

        class AlsoWrong:
            @traced_generation  # type: ignore[misc]
            @classmethod
            def make(cls) -> str:
                return "x"

    class Right:
        @staticmethod
        @traced_generation
        def make() -> str:
            return "x"

    assert Right.make() == Right().make() == "x"


def test_a_name_given_by_position_is_refused() -> None:
    with pytest.raises(TypeError, match=r"by keyword: @traced_generation\(name='extract'\)"):
        traced_generation("extract")  # type: ignore[call-overload]


# ------------------------------------------------------------------ operation=


@pytest.mark.parametrize(
    "operation",
    ["chat", "text_completion", "embeddings", "image_generation", "video_generation",
     "execute_tool", "rerank", "image_edit", "audio_transcription"],
)  # fmt: skip
def test_known_and_free_form_operations_are_accepted(telemetry: Telemetry, operation: str) -> None:
    @traced_generation(name="op", operation=operation)
    def call() -> str:
        return "x"

    call()
    assert telemetry.value("genai_requests_total", operation=operation, call_site="op") == 1


@pytest.mark.parametrize(
    ("operation", "meant"),
    [
        ("chatt", "chat"),
        ("chats", "chat"),
        ("embedding", "embeddings"),
        ("text_completions", "text_completion"),
        ("image_generations", "image_generation"),
        ("chat_completions", "chat"),
        ("responses", "chat"),
        ("completion", "text_completion"),
        ("images", "image_generation"),
        ("video", "video_generation"),
    ],
)
def test_a_near_miss_of_a_known_operation_is_refused(operation: str, meant: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{meant}'") as caught:
        traced_generation(operation=operation)
    for known in ("chat", "text_completion", "embeddings", "image_generation"):
        assert known in str(caught.value)


@pytest.mark.parametrize("operation", ["Chat", "chat completion", "1chat", "chat.v2", "x" * 65])
def test_an_operation_not_in_snake_case_is_refused(operation: str) -> None:
    with pytest.raises(ValueError, match="must be snake_case") as caught:
        traced_generation(operation=operation)
    assert "video_generation" in str(caught.value)  # the known ones are listed


# ------------------------------------------------------------------ handle misuse


def _warnings_of(fn: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # failsight's own once-per-site rule is what is tested
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, FailsightWarning)]


HANDLE_MISUSES = [
    ("record_usage", lambda h: h.record_usage("ten", -5), "got input='ten', output=-5"),
    ("record_usage", lambda h: h.record_usage(input=2.5), "got input=2.5"),
    ("record_finish_reason", lambda h: h.record_finish_reason(42), "got 42"),
    ("record_finish_reason", lambda h: h.record_finish_reason(None), "got None"),
    ("record_finish_reason", lambda h: h.record_finish_reason(""), "got ''"),
    ("record_video_status", lambda h: h.record_video_status(42), "got 42"),
    ("record_retry", lambda h: h.record_retry(429), "reason, got 429"),
    ("record_retry", lambda h: h.record_retry("rate_limited", wait=-1), "got -1"),
    ("record_retry", lambda h: h.record_retry("rate_limited", status_code="429"), "got '429'"),
    ("mark_failure", lambda h: h.mark_failure("soft", None), "reason, got None"),
    ("set_model", lambda h: h.set_model(5), "got int"),
]


@pytest.mark.usefixtures("swallow_internal_errors")
@pytest.mark.parametrize(("stage", "misuse", "shown"), HANDLE_MISUSES)
def test_a_wrong_handle_argument_is_ignored_with_one_warning_per_call_site(
    telemetry: Telemetry, stage: str, misuse: Any, shown: str
) -> None:
    site = f"misuse_{stage}_{abs(hash(shown))}"  # a site of its own: warned once per site

    @traced_generation(name=site)
    def call() -> str:
        handle = current_generation()
        assert handle is not None
        for _ in range(3):
            misuse(handle)
        return "ok"

    first = _warnings_of(call)
    assert len(first) == 1 and shown in first[0] and site in first[0], first
    assert _warnings_of(call) == []  # the same call site: warned already
    # Ignored: the request is counted, and as a success; nothing else from the bad calls.
    assert telemetry.value("genai_requests_total", call_site=site, failure_class="none") == 2
    for metric in ("genai_tokens_total", "genai_finish_reasons_total", "genai_retries_total"):
        assert telemetry.value(metric, call_site=site) == 0, metric
    assert telemetry.value("genai_telemetry_errors_total", stage=stage) == 6


@pytest.mark.usefixtures("swallow_internal_errors")
def test_valid_usage_next_to_a_wrong_value_is_counted(telemetry: Telemetry) -> None:
    @traced_generation(name="partly_wrong_usage")
    def call() -> None:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=10, output=-5)

    assert len(_warnings_of(call)) == 1
    assert telemetry.value("genai_tokens_total", token_type="input") == 10
    assert telemetry.value("genai_tokens_total", token_type="output") == 0


def test_wrong_handle_arguments_raise_under_a_test_suite(telemetry: Telemetry) -> None:
    @traced_generation(name="strict")
    def call() -> None:
        handle = current_generation()
        assert handle is not None
        handle.record_usage("ten", -5)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="record_usage"):
        call()


# ------------------------------------------------------------------ start_metrics_server


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"port": "9464"}, TypeError, r"int\('9464'\) if it is read from the environment"),
        ({"protocol": 9999}, ValueError, "protocol=9999 is not a server protocol"),
        ({"protocol": True}, TypeError, "protocol must be an ssl.PROTOCOL_"),
        ({"protocol": "tls"}, TypeError, "protocol must be an ssl.PROTOCOL_"),
        ({"protocol": ssl.PROTOCOL_TLS_CLIENT}, ValueError, "not a server protocol"),
        ({"protocol": ssl.PROTOCOL_TLS}, ValueError, "protocol= needs TLS"),
        ({"addr": ""}, ValueError, "addr is empty"),
        ({"addr": "  "}, ValueError, "addr is empty"),
    ],
)
def test_bad_metrics_server_options_are_refused(
    kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        failsight.start_metrics_server(**{"port": 0, **kwargs})


# ------------------------------------------------------------------ other options


def test_validator_options_are_checked() -> None:
    with pytest.raises(TypeError, match="takes True or False"):
        one_of("yes", "no", case_sensitive="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"as arguments: one_of\(\*labels\)"):
        one_of(["yes", "no"])  # type: ignore[arg-type]


# ------------------------------------------------------------------ configure() meanwhile


class _Target:
    """A registry and a tracer provider with its exporter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def value(self, name: str, **labels: str) -> float:
        return sum(
            sample.value
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def configure(self, **options: Any) -> None:
        failsight.configure(
            registry=self.registry, tracer_provider=self.provider, prices=False, **options
        )


@pytest.fixture
def targets(telemetry: Telemetry) -> Iterator[tuple[_Target, _Target]]:
    first, second = _Target(), _Target()
    yield first, second
    for target in (first, second):
        target.provider.shutdown()
    # (the telemetry fixture resets the active state)


def test_a_request_finishes_under_the_settings_it_started_with(
    targets: tuple[_Target, _Target], server: Any, instrumented: Telemetry
) -> None:
    first, second = targets
    client = sync_client(server)

    @traced_generation(name="outer", operation="chat", model="gpt-4o-mini")
    def outer() -> None:
        second.configure()
        second.configure(max_label_values=50)  # the second set's limits change meanwhile
        inner()
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers("ok")
        )

    @traced_generation(name="inner")
    def inner() -> None:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=3, output=4)

    first.configure()
    outer()
    # Everything of the request went where it started: its scopes, its call, their tokens.
    assert first.value("genai_requests_total", call_site="outer") == 1
    assert first.value("genai_tokens_total", token_type="input") == 3 + 11
    assert first.value("genai_tokens_total", token_type="output") == 4 + 9
    assert first.value("genai_finish_reasons_total", finish_reason="stop") == 1
    assert sorted(span.name for span in first.exporter.get_finished_spans()) == [
        "chat gpt-4o-mini", "inner", "outer",
    ]  # fmt: skip
    assert second.value("genai_tokens_total") == 0
    assert second.exporter.get_finished_spans() == ()
    # A request started after configure() goes to the new settings.
    outer()
    assert second.value("genai_requests_total", call_site="outer") == 1


def test_configure_in_a_loop_while_calls_run(
    targets: tuple[_Target, _Target], swallow_internal_errors: None
) -> None:
    first, second = targets
    first.configure()
    stop = threading.Event()
    made = [0] * 4

    @traced_generation(name="busy", operation="chat", model="m")
    def busy() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input=3)
        return nested()

    @traced_generation(name="nested")
    def nested() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(output=4)
        handle.record_finish_reason("stop")
        return "ok"

    def call(slot: int) -> None:
        while not stop.is_set():
            busy()
            made[slot] += 1

    def reconfigure() -> None:
        labels = 100
        while not stop.is_set():
            for target in (first, second):
                labels = 150 - labels  # each configure() changes the limits of its set
                target.configure(max_label_values=labels)

    threads = [threading.Thread(target=call, args=(slot,)) for slot in range(len(made))]
    threads += [threading.Thread(target=reconfigure) for _ in range(2)]
    for thread in threads:
        thread.start()
    stop.wait(3)
    stop.set()
    for thread in threads:
        thread.join(30)
    calls = sum(made)
    assert calls > 100
    # Each request counted once, in one registry, with its own tokens beside it.
    requests = [t.value("genai_requests_total", call_site="busy") for t in (first, second)]
    assert sum(requests) == calls
    for target, counted in zip((first, second), requests, strict=True):
        assert target.value("genai_tokens_total", token_type="input") == 3 * counted
        assert target.value("genai_tokens_total", token_type="output") == 4 * counted
        assert target.value("genai_finish_reasons_total") == counted
        assert target.value("genai_telemetry_errors_total") == 0
        assert target.value("genai_in_flight_requests") == 0
        spans = target.exporter.get_finished_spans()
        assert sum(span.name == "busy" for span in spans) == counted
        assert sum(span.name == "nested" for span in spans) == counted


class _HostileRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


@pytest.mark.usefixtures("swallow_internal_errors")
def test_a_misused_handle_never_raises_into_the_caller(telemetry: Telemetry) -> None:
    """Under `-W error` (many test suites run so) the warning is not an exception in the
    caller, and a value whose repr raises is named by its type."""

    @traced_generation(name="strict_suite")
    def work() -> str:
        handle = current_generation()
        assert handle is not None
        handle.record_usage(input="ten", output=_HostileRepr())  # type: ignore[arg-type]
        handle.record_finish_reason(_HostileRepr())  # type: ignore[arg-type]
        handle.mark_failure(_HostileRepr(), "x")  # type: ignore[arg-type]
        return "kept"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert work() == "kept"
    assert telemetry.value("genai_requests_total", call_site="strict_suite") == 1
    assert telemetry.value("genai_telemetry_errors_total", stage="record_usage") == 1
