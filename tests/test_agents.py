"""Agent frameworks' end-of-run exceptions (failsight._agents): bounded reasons, not `exception`.

Fake classes named as openai-agents names them prove the recognition needs no import of the
framework; when openai-agents is installed, its own exceptions are raised in a scope too.
"""

from __future__ import annotations

import json
import types
from typing import Any

import pytest

import failsight
from conftest import Telemetry
from failsight._agents import agent_outcome, classify_scope_exception
from failsight._vocabulary import VOCABULARY_PATH

RAW: dict[str, Any] = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
TABLE: dict[str, str] = RAW["exceptions"]["python"]["agents"]
CLASS_OF = {reason: cls for cls, names in RAW["reasons"].items() for reason in names}
# openai-agents' names and what they must mean (the contract, spelled once here to check it).
OPENAI_AGENTS = {
    "MaxTurnsExceeded": ("hard", "agent_max_turns"),
    "ModelBehaviorError": ("silent", "agent_model_behavior"),
    "InputGuardrailTripwireTriggered": ("soft", "input_guardrail"),
    "OutputGuardrailTripwireTriggered": ("soft", "output_guardrail"),
}


def named(name: str, base: type[Exception] = Exception) -> type[Exception]:
    """A class called `name`, as a framework would define it (never imported from it)."""
    return type(name, (base,), {"__module__": "fake_agents"})


def test_the_table_holds_openai_agents_names() -> None:
    for name, (failure_class, reason) in OPENAI_AGENTS.items():
        assert TABLE[name] == reason
        assert CLASS_OF[reason] == failure_class
    # Both languages name reasons of the vocabulary; @openai/agents spells MaxTurnsExceededError.
    node = RAW["exceptions"]["node"]["agents"]
    assert set(TABLE.values()) | set(node.values()) <= set(CLASS_OF)
    assert node["MaxTurnsExceededError"] == TABLE["MaxTurnsExceeded"]


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_name_is_recognised_with_its_class(name: str) -> None:
    outcome = classify_scope_exception(named(name)("the run failed"))
    assert (outcome.failure_class, outcome.reason) == (CLASS_OF[TABLE[name]], TABLE[name])
    assert outcome.error_type == f"fake_agents.{name}"


def test_a_subclass_is_recognised_and_the_most_derived_name_wins() -> None:
    behavior = named("ModelBehaviorError")
    app = type("InvalidToolInputError", (behavior,), {})  # @openai/agents derives this one
    assert classify_scope_exception(app()).reason == "agent_model_behavior"
    both = named("ModelBehaviorError", named("MaxTurnsExceeded"))
    assert classify_scope_exception(both()).reason == "agent_model_behavior"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [(TimeoutError(), "timeout"), (RuntimeError("x"), "exception"), (ValueError(), "exception")],
)
def test_other_exceptions_are_classified_as_before(exc: BaseException, reason: str) -> None:
    assert agent_outcome(exc) is None
    assert classify_scope_exception(exc) == failsight.classify_exception(exc)
    assert classify_scope_exception(exc).reason == reason


def test_a_hostile_class_name_is_an_ordinary_exception() -> None:
    class Meta(type):
        @property
        def __name__(cls) -> str:  # type: ignore[override]
            raise RuntimeError("no name")

    hostile = Meta("Hostile", (Exception,), {})
    assert agent_outcome(hostile()) is None
    assert classify_scope_exception(hostile()).reason == "exception"


# --------------------------------------------------------------------------- in a traced scope


@pytest.mark.parametrize("name", sorted(OPENAI_AGENTS))
def test_a_scope_ending_with_an_agent_exception_records_its_reason(
    telemetry: Telemetry, name: str
) -> None:
    failure_class, reason = OPENAI_AGENTS[name]
    error = named(name)("the run failed")

    @failsight.traced_generation(name="agent_run")
    def run() -> None:
        raise error

    with pytest.raises(Exception) as info:
        run()
    assert info.value is error  # the caller's exception, unchanged
    assert telemetry.value("genai_requests_total", failure_class=failure_class) == 1
    assert telemetry.value("genai_failures_total", failure_class=failure_class, reason=reason) == 1
    assert telemetry.value("genai_failures_total", reason="exception") == 0
    attributes = dict(telemetry.span("agent_run").attributes or {})
    assert attributes["failsight.failure_reason"] == reason
    assert attributes["failsight.failure_class"] == failure_class


def test_a_recorded_failure_explains_a_model_behavior_error(telemetry: Telemetry) -> None:
    """openai-agents raises ModelBehaviorError on an answer it cannot use (an incomplete one, a
    bad tool call): the failure recorded on that answer names what was wrong."""

    @failsight.traced_generation(name="agent_run")
    def run() -> None:
        handle = failsight.current_generation()
        assert handle is not None
        handle.mark_failure("soft", "length")
        raise named("ModelBehaviorError")("the response was incomplete")

    with pytest.raises(Exception, match="incomplete"):
        run()
    assert telemetry.value("genai_failures_total", failure_class="soft", reason="length") == 1
    assert telemetry.value("genai_failures_total", reason="agent_model_behavior") == 0


def test_max_turns_is_the_end_even_after_a_recorded_failure(telemetry: Telemetry) -> None:
    @failsight.traced_generation(name="agent_run")
    def run() -> None:
        handle = failsight.current_generation()
        assert handle is not None
        handle.mark_failure("soft", "length")
        raise named("MaxTurnsExceeded")("max turns (3) exceeded")

    with pytest.raises(Exception, match="max turns"):
        run()
    assert telemetry.value("genai_failures_total", reason="agent_max_turns") == 1
    assert telemetry.value("genai_requests_total", failure_class="hard") == 1


async def test_an_async_scope_records_the_reason(telemetry: Telemetry) -> None:
    @failsight.traced_generation(name="agent_run")
    async def run() -> None:
        raise named("OutputGuardrailTripwireTriggered")("tripwire")

    with pytest.raises(Exception, match="tripwire"):
        await run()
    assert telemetry.value("genai_failures_total", failure_class="soft", reason="output_guardrail")


# --------------------------------------------------------------------------- openai-agents


def test_openai_agents_own_exceptions_in_a_scope(telemetry: Telemetry) -> None:
    exceptions = pytest.importorskip("agents.exceptions")
    result = types.SimpleNamespace(guardrail=types.SimpleNamespace(name="no_secrets"))
    raised = {
        "agent_max_turns": exceptions.MaxTurnsExceeded("Max turns (1) exceeded"),
        "agent_model_behavior": exceptions.ModelBehaviorError("Tool get_stock_price not found"),
        "input_guardrail": exceptions.InputGuardrailTripwireTriggered(result),
        "output_guardrail": exceptions.OutputGuardrailTripwireTriggered(result),
    }
    for reason, error in raised.items():

        @failsight.traced_generation(name=f"agent_{reason}")
        def run(error: BaseException = error) -> None:
            raise error

        with pytest.raises(type(error)):
            run()
        failure_class = CLASS_OF[reason]
        assert telemetry.value(
            "genai_failures_total", call_site=f"agent_{reason}", failure_class=failure_class,
            reason=reason,
        ) == 1, reason  # fmt: skip
