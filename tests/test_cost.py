"""What failures cost: wasted tokens, spend, content-filter categories.

Through the real openai SDK (and raw HTTP) against the fault server, whose text answers
report USAGE: 11 input (3 of them cached), 9 output (4 of them reasoning).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import failsight
from conftest import Telemetry
from failsight import _config, validators
from failsight._prices import PriceBook, load_table
from failsight._taxonomy import Usage
from failsight.testing import USAGE, FaultServer

MESSAGES = [{"role": "user", "content": "hi"}]
TOKENS = {
    "input": USAGE["prompt_tokens"],
    "output": USAGE["completion_tokens"],
    "reasoning": USAGE["reasoning_tokens"],
    "cached_input": USAGE["cached_tokens"],
}
# A user's price, US dollars per million tokens.
PRICE = {"input": 2.0, "output": 8.0, "cached_input": 0.5, "reasoning": 8.0}


def price_of(tokens: dict[str, int], price: dict[str, float] = PRICE) -> float:
    uncached = tokens["input"] - tokens["cached_input"]
    return (
        uncached * price["input"]
        + tokens["cached_input"] * price["cached_input"]
        + tokens["output"] * price["output"]
    ) / 1e6


@pytest.fixture
def priced(telemetry: Telemetry) -> Iterator[Telemetry]:
    """failsight with every fault-server model priced at PRICE (a user's callable)."""
    failsight.configure(
        registry=telemetry.registry, tracer_provider=telemetry.provider,
        prices=lambda provider, model: PRICE,
    )  # fmt: skip
    failsight.instrument_openai()
    yield telemetry
    failsight.uninstrument_openai()


def client(server: FaultServer, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", **options)


def keyed() -> dict[str, str]:
    return {"X-Failsight-Key": uuid.uuid4().hex}


def wasted(t: Telemetry, **labels: str) -> dict[str, float]:
    return {
        token_type: t.value("genai_wasted_tokens_total", token_type=token_type, **labels)
        for token_type in TOKENS
    }


def tokens(t: Telemetry, **labels: str) -> dict[str, float]:
    return {
        token_type: t.value("genai_tokens_total", token_type=token_type, **labels)
        for token_type in TOKENS
    }


def times(n: int) -> dict[str, float]:
    return {token_type: float(n * count) for token_type, count in TOKENS.items()}


# ---------------------------------------------------------------------- wasted tokens


@pytest.mark.parametrize("stream", [False, True])
def test_a_content_filter_answer_wastes_its_usage(
    priced: Telemetry, server: FaultServer, stream: bool
) -> None:
    model = "gpt-4o-mini@content_filter"
    options: dict[str, Any] = (
        {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    )
    answer = client(server, max_retries=0).chat.completions.create(
        model=model, messages=MESSAGES, **options
    )
    if stream:
        for _chunk in answer:
            pass
    assert wasted(priced, model=model, failure_class="soft", reason="content_filter") == times(1)
    assert tokens(priced, model=model) == times(1)
    cost = price_of(TOKENS)
    assert priced.value("genai_cost_usd_total", model=model) == pytest.approx(cost)
    assert priced.value(
        "genai_wasted_cost_usd_total", model=model, failure_class="soft", reason="content_filter"
    ) == pytest.approx(cost)
    span = priced.span(f"chat {model}")
    assert span.attributes is not None
    assert span.attributes["failsight.cost.usd"] == pytest.approx(cost)
    assert span.attributes["failsight.wasted_cost.usd"] == pytest.approx(cost)


def test_a_scope_retrying_after_length_wastes_the_first_attempt_only(
    priced: Telemetry, server: FaultServer
) -> None:
    sdk = client(server, max_retries=0)
    headers = keyed()
    model = "gpt-4o-mini@length,ok"

    @failsight.traced_generation(name="summarise")
    def summarise() -> str | None:
        for _attempt in range(3):  # the usual loop: re-ask after a cut-off answer
            answer = sdk.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers=headers
            )
            if answer.choices[0].finish_reason != "length":
                return answer.choices[0].message.content
        return None

    assert summarise()
    assert priced.value("genai_requests_total", call_site="summarise", failure_class="none") == 1
    assert priced.value("genai_retries_total", call_site="summarise", reason="length") == 1
    assert tokens(priced, call_site="summarise") == times(2)
    assert wasted(priced, call_site="summarise", failure_class="soft", reason="length") == times(1)
    assert wasted(priced, call_site="summarise") == times(1)  # the second attempt's: kept
    assert priced.value("genai_wasted_cost_usd_total", call_site="summarise") == pytest.approx(
        price_of(TOKENS)
    )
    assert priced.value("genai_cost_usd_total", call_site="summarise") == pytest.approx(
        2 * price_of(TOKENS)
    )
    scope = priced.span("summarise")
    assert scope.attributes is not None
    assert scope.attributes["failsight.cost.usd"] == pytest.approx(2 * price_of(TOKENS))
    assert scope.attributes["failsight.wasted_cost.usd"] == pytest.approx(price_of(TOKENS))


def test_an_sdk_retry_after_429_wastes_nothing(priced: Telemetry, server: FaultServer) -> None:
    model = "gpt-4o-mini@http_429,ok"
    client(server, max_retries=2).chat.completions.create(
        model=model, messages=MESSAGES, extra_headers=keyed()
    )
    assert priced.value("genai_retries_total", model=model, reason="rate_limited") == 1
    assert tokens(priced, model=model) == times(1)
    assert wasted(priced, model=model) == times(0)
    assert priced.value("genai_wasted_cost_usd_total", model=model) == 0
    assert priced.value("genai_cost_usd_total", model=model) == pytest.approx(price_of(TOKENS))


def test_a_validator_failure_wastes_the_whole_request(
    priced: Telemetry, server: FaultServer
) -> None:
    sdk = client(server, max_retries=0)

    @failsight.traced_generation(name="classify", validate=[validators.one_of("yes", "no")])
    def classify() -> str | None:
        first = sdk.embeddings.create(model="text-embedding-3-small@ok", input="hi")
        assert first.data
        answer = sdk.chat.completions.create(model="gpt-4o-mini@ok", messages=MESSAGES)
        return answer.choices[0].message.content

    classify()
    assert priced.value("genai_failures_total", call_site="classify", reason="unexpected_label")
    spent = tokens(priced, call_site="classify")
    assert spent["input"] > TOKENS["input"]  # the embeddings call's tokens too
    assert wasted(priced, call_site="classify", failure_class="silent",
                  reason="unexpected_label") == spent  # fmt: skip
    assert priced.value("genai_wasted_cost_usd_total", call_site="classify") == pytest.approx(
        priced.value("genai_cost_usd_total", call_site="classify")
    )


def test_a_policy_rerun_wastes_the_attempt_it_repeats(
    priced: Telemetry, server: FaultServer
) -> None:
    sdk = client(server, max_retries=0)
    headers = keyed()

    @failsight.traced_generation(
        name="two_steps", retry=failsight.RetryPolicy(sleep=lambda s: None)
    )
    def two_steps() -> None:
        sdk.chat.completions.create(model="gpt-4o-mini@ok", messages=MESSAGES)
        # fails the first time only: the whole function runs again
        sdk.embeddings.create(model="text-embedding-3-small@http_503,ok", input="hi",
                              extra_headers=headers)  # fmt: skip

    two_steps()
    assert priced.value("genai_requests_total", call_site="two_steps", failure_class="none") == 1
    by_reason = wasted(priced, call_site="two_steps", failure_class="hard", reason="unavailable")
    assert by_reason == times(1)  # the first run's chat answer, bought for nothing
    assert priced.value("genai_tokens_total", call_site="two_steps", token_type="output") == 18


def test_a_hard_failure_with_usage_wastes_it(priced: Telemetry, server: FaultServer) -> None:
    """A stream cut off after its usage chunk was sent still reported what it consumed."""
    handle_tokens = Usage(50, 5, None, None)

    @failsight.traced_generation(name="cut")
    def cut() -> None:
        gen = failsight.current_generation()
        assert gen is not None
        gen.record_usage(input=handle_tokens.input, output=handle_tokens.output)
        raise ConnectionError("upstream went away")

    with pytest.raises(ConnectionError):
        cut()
    assert priced.value("genai_wasted_tokens_total", call_site="cut", failure_class="hard",
                        reason="connection", token_type="input") == 50  # fmt: skip


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["usage", "retry", "fail"]),
            st.integers(0, 500),
            st.sampled_from(["length", "rate_limited", "content_filter", "mine"]),
        ),
        max_size=12,
    ),
    st.sampled_from([None, "silent", "soft", "hard"]),
)
@settings(max_examples=60, deadline=None)
def test_wasted_never_passes_total_and_follows_the_rule(
    steps: list[tuple[str, int, str]], end: str | None
) -> None:
    """Random scopes through the public handle: the wasted counts are exactly the rule's,
    and never more than the tokens counted."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    failsight.configure(registry=registry, prices={"m": {"input": 1.0, "output": 3.0}})
    t = Telemetry(registry, None, None)  # type: ignore[arg-type]
    expected_wasted = 0
    pending = 0
    total = 0

    @failsight.traced_generation(name="site", model="m", operation="chat")
    def scope() -> None:
        nonlocal expected_wasted, pending, total
        gen = failsight.current_generation()
        assert gen is not None
        for kind, n, reason in steps:
            if kind == "usage":
                gen.record_usage(input=n, output=n // 2)
                pending += n
                total += n
            elif kind == "retry":
                gen.record_retry(reason)
                expected_wasted += pending
                pending = 0
        if end is not None:
            gen.mark_failure(end, "mine")

    try:
        scope()
        if end is not None:
            expected_wasted += pending
        input_wasted = t.value("genai_wasted_tokens_total", token_type="input")
        assert input_wasted == expected_wasted
        assert t.value("genai_tokens_total", token_type="input") == total
        for token_type in TOKENS:
            assert t.value("genai_wasted_tokens_total", token_type=token_type) <= t.value(
                "genai_tokens_total", token_type=token_type
            )
        assert t.value("genai_wasted_cost_usd_total") <= t.value("genai_cost_usd_total") + 1e-12
    finally:
        _config._state = None


# ---------------------------------------------------------------------- spend


def test_cost_equals_the_genai_prices_calculation_with_cached_input() -> None:
    genai_prices = pytest.importorskip("genai_prices")
    unknown: list[tuple[str, str]] = []
    book = PriceBook(None, load_table(), lambda p, m: unknown.append((p, m)))
    usage = Usage(12_000, 800, 300, 4_000)
    ours = book.cost("openai", "gpt-4o", usage)
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=12_000, output_tokens=800, cache_read_tokens=4_000,
                           output_reasoning_tokens=300),
        "gpt-4o", provider_id="openai",
    ).total_price  # fmt: skip
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    assert float(theirs) > 0 and not unknown
    # Cached input is cheaper than plain input, as the table says.
    assert book.cost("openai", "gpt-4o", Usage(1000, 0, None, 1000)) < book.cost(  # type: ignore[operator]
        "openai", "gpt-4o", Usage(1000, 0, None, None)
    )


def test_tiered_prices_past_their_first_tier_are_priced_exactly() -> None:
    genai_prices = pytest.importorskip("genai_prices")
    book = PriceBook(None, load_table(), lambda p, m: None)
    for tokens_in in (1_000, 300_000):
        ours = book.cost("unknown", "gemini-2.5-pro", Usage(tokens_in, 1_000, None, None))
        theirs = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=tokens_in, output_tokens=1_000), "gemini-2.5-pro"
        ).total_price
        assert ours == pytest.approx(float(theirs), rel=1e-12)


def test_a_model_without_a_price_is_counted_once(telemetry: Telemetry, server: FaultServer) -> None:
    failsight.configure(registry=telemetry.registry, prices={"gpt-4o": {"input": 1.0}})
    failsight.instrument_openai()
    try:
        sdk = client(server, max_retries=0)
        for _ in range(3):
            sdk.chat.completions.create(model="private-model@ok", messages=MESSAGES)
    finally:
        failsight.uninstrument_openai()
    assert telemetry.value("genai_telemetry_errors_total", stage="price_unknown") == 1
    assert telemetry.series("genai_cost_usd_total") == []
    assert telemetry.value("genai_tokens_total", model="private-model@ok") > 0


def test_a_name_prices_as_that_model(telemetry: Telemetry, server: FaultServer) -> None:
    """An Azure deployment or a gateway's own model name, priced as a model of the table."""
    genai_prices = pytest.importorskip("genai_prices")
    failsight.configure(registry=telemetry.registry, prices={"my-deployment@ok": "gpt-4o"})
    failsight.instrument_openai()
    try:
        client(server, max_retries=0).chat.completions.create(
            model="my-deployment@ok", messages=MESSAGES
        )
    finally:
        failsight.uninstrument_openai()
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=11, output_tokens=9, cache_read_tokens=3,
                           output_reasoning_tokens=4), "gpt-4o",
    ).total_price  # fmt: skip
    assert telemetry.value("genai_cost_usd_total") == pytest.approx(float(theirs), rel=1e-12)


def test_without_the_extra_no_cost_moves_and_nothing_raises(
    telemetry: Telemetry, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import genai_prices fails
    assert load_table() is None
    failsight.configure(registry=telemetry.registry)
    assert _config.get_state().prices is None
    failsight.instrument_openai()
    try:
        answer = client(server, max_retries=0).chat.completions.create(
            model="gpt-4o@content_filter", messages=MESSAGES
        )
    finally:
        failsight.uninstrument_openai()
    assert answer.choices[0].finish_reason == "content_filter"
    assert telemetry.series("genai_cost_usd_total") == []
    assert telemetry.series("genai_wasted_cost_usd_total") == []
    assert telemetry.value("genai_telemetry_errors_total") == 0
    assert telemetry.value("genai_wasted_tokens_total") == sum(TOKENS.values())


def test_a_price_callable_that_raises_loses_the_cost_only(
    telemetry: Telemetry, server: FaultServer, swallow_internal_errors: None
) -> None:
    def broken(provider: str, model: str) -> Any:
        raise RuntimeError("price service down")

    failsight.configure(registry=telemetry.registry, prices=broken)
    failsight.instrument_openai()
    try:
        answer = client(server, max_retries=0).chat.completions.create(
            model="gpt-4o@ok", messages=MESSAGES
        )
    finally:
        failsight.uninstrument_openai()
    assert answer.choices[0].message.content
    assert telemetry.value("genai_requests_total", failure_class="none") == 1
    assert telemetry.value("genai_telemetry_errors_total", stage="price") == 1
    assert telemetry.series("genai_cost_usd_total") == []


@pytest.mark.parametrize(
    ("prices", "error", "match"),
    [
        ({"gpt-4o": {"inptu": 1.0}}, ValueError, "unknown keys"),
        ({"gpt-4o": {"input": -1.0}}, ValueError, "finite number >= 0"),
        ({"gpt-4o": {"input": float("nan")}}, ValueError, "finite number"),
        ({"gpt-4o": {"input": "1.0"}}, TypeError, "must be a number"),
        ({"gpt-4o": 2.5}, TypeError, "must be a mapping"),
        ({"gpt-4o": {"cached_input": 1.0}}, ValueError, "needs 'input' or 'output'"),
        ({3: {"input": 1.0}}, TypeError, "model names"),
        ("gpt-4o", TypeError, "prices must be"),
    ],
)
def test_bad_prices_fail_at_configuration(
    telemetry: Telemetry, prices: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        failsight.configure(registry=telemetry.registry, prices=prices)


# ---------------------------------------------------------------------- content filters


def filters(t: Telemetry) -> dict[tuple[str, str, str], float]:
    found: dict[tuple[str, str, str], float] = {}
    for labels in t.series("genai_content_filter_total"):
        key = (labels["category"], labels["stage"], labels["severity"])
        found[key] = found.get(key, 0) + t.value("genai_content_filter_total", **labels)
    return found


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("azure_content_filter", {("violence", "completion", "high"): 1}),
        ("gemini_safety", {("safety", "completion", "unknown"): 1}),
        ("gemini_recitation", {("recitation", "completion", "unknown"): 1}),
    ],
)
def test_filter_categories_of_an_answer(
    instrumented: Telemetry, server: FaultServer, scenario: str, expected: Any, stream: bool
) -> None:
    model = f"gpt-4o-mini@{scenario}"
    sdk = client(server, max_retries=0)
    if stream:
        for _chunk in sdk.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ):
            pass
    else:
        sdk.chat.completions.create(model=model, messages=MESSAGES)
    assert filters(instrumented) == expected
    assert instrumented.value("genai_failures_total", failure_class="soft",
                              reason="content_filter") == 1  # fmt: skip


def test_filter_categories_of_azures_400(instrumented: Telemetry, server: FaultServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(server, max_retries=0).chat.completions.create(
            model="gpt-4o-mini@azure_prompt_filter", messages=MESSAGES
        )
    assert caught.value.code == "content_filter"
    assert filters(instrumented) == {
        ("hate", "prompt", "medium"): 1,
        ("jailbreak", "prompt", "unknown"): 1,
    }
    assert instrumented.value("genai_failures_total", reason="bad_request") == 1


@pytest.mark.parametrize("library", ["requests", "httpx"])
@pytest.mark.parametrize("stream", [False, True])
def test_filter_categories_through_instrument_http(
    telemetry: Telemetry, server: FaultServer, library: str, stream: bool
) -> None:
    failsight.instrument_http()
    try:
        url = f"{server.base_url}/chat/completions"
        for scenario in ("azure_content_filter", "azure_prompt_filter"):
            body: dict[str, Any] = {"model": f"gpt-4o-mini@{scenario}", "messages": MESSAGES}
            # An error answer read as a stream is judged by its status alone (its body is the
            # caller's to read): the 400 is read whole.
            stream_it = stream and scenario == "azure_content_filter"
            if stream_it:
                body["stream"] = True
            if library == "requests":
                with requests.post(url, json=body, stream=stream_it, timeout=10) as resp:
                    for _line in resp.iter_lines():
                        pass
            elif stream_it:
                with httpx.Client() as http, http.stream("POST", url, json=body) as resp:
                    for _line in resp.iter_lines():
                        pass
            else:
                with httpx.Client() as http:
                    http.post(url, json=body)
    finally:
        failsight.uninstrument_http()
    assert filters(telemetry) == {
        ("violence", "completion", "high"): 1,
        ("hate", "prompt", "medium"): 1,
        ("jailbreak", "prompt", "unknown"): 1,
    }


def test_unknown_categories_and_severities_are_bounded() -> None:
    from failsight._filters import filters_of_response

    hostile = {
        "choices": [
            {
                "finish_reason": "content_filter",
                "content_filter_results": {
                    f"made_up_{i}": {"filtered": True, "severity": f"sev{i}"} for i in range(100)
                },
            }
        ]
    }
    found = filters_of_response(hostile)
    assert 0 < len(found) <= 32
    assert set(found) == {("other", "completion", "unknown")}


def test_the_price_cache_stays_bounded() -> None:
    from failsight import _prices

    unknown: list[str] = []
    book = PriceBook({"m0": _prices.check_prices({"m0": PRICE})["m0"]}, None,
                     lambda p, m: unknown.append(m))  # fmt: skip
    for i in range(_prices._CACHE_LIMIT + 500):
        book.cost("p", f"m{i}", Usage(10, 10, None, None))
    assert len(book._cache) == 1  # priced; unpriced pairs have a bounded cache of their own
    assert len(book._unknown) == _prices._UNKNOWN_LIMIT
    assert len(unknown) == _prices._CACHE_LIMIT + 499  # every model but m0, once each
    assert book.cost("p", "m0", Usage(1_000_000, 0, None, None)) == pytest.approx(PRICE["input"])
