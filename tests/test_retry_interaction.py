"""A retrying scope around a retrying client: requests multiply, and failsight says so once."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import openai
import pytest

import failsight
from conftest import Telemetry
from failsight import FailsightWarning, RetryPolicy, _sdk_patch, traced_generation
from failsight.testing import FaultServer

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def patched(telemetry: Telemetry) -> Iterator[Telemetry]:
    _sdk_patch._warned_sites.clear()  # once per call site per process: start afresh
    failsight.instrument_openai()
    yield telemetry
    failsight.uninstrument_openai()


def _ask(server: FaultServer, max_retries: int, retry: RetryPolicy | None) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=max_retries)

    @traced_generation(name="ask", retry=retry)
    def ask() -> object:
        return client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"X-Failsight-Scenario": "http_500"},
        )

    with pytest.raises(openai.InternalServerError):
        ask()


def _policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=lambda seconds: None)


def test_retries_in_two_places_warn_once_per_call_site(
    patched: Telemetry, server: FaultServer
) -> None:
    before = len(server.requests)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ask(server, 2, _policy())
        _ask(server, 2, _policy())
    found = [w for w in caught if issubclass(w.category, FailsightWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert "max_retries=2" in str(found[0].message) and "at ask" in str(found[0].message)
    # 3 attempts of the scope × 3 HTTP requests each, per logical request: all counted.
    assert len(server.requests) - before == 18
    assert patched.value("genai_requests_total", call_site="ask", failure_class="hard") == 2
    assert patched.value("genai_request_attempts_sum", call_site="ask") == 18
    assert patched.value("genai_retries_total", call_site="ask", reason="server_error") == 16


@pytest.mark.parametrize(("max_retries", "retry"), [(0, "policy"), (2, None)])
def test_retries_in_one_place_do_not_warn(
    patched: Telemetry, server: FaultServer, max_retries: int, retry: str | None
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ask(server, max_retries, _policy() if retry else None)
    assert not [w for w in caught if issubclass(w.category, FailsightWarning)]
