"""Write tests/conformance/vocabulary_cases.json: a conformance case per vocabulary entry.

`src/failsight/vocabulary.json` names what both packages must understand: reasons, HTTP
statuses, finish reasons and their provider spellings, content-filter categories and their
aliases. Every entry needs a conformance case that sends it through the real openai SDK to the
fault server and states what must be recorded. cases.json holds the hand-written cases; this
script adds one case (a plain and a streamed one for finish reasons) for each entry cases.json
does not cover, with the expectation derived from the vocabulary. It uses the fault server's
parameterised scenarios: `http_<status>`, `finish=<reason>` and `filter=<category>[:<severity>]`.

    python tests/conformance/generate.py          # rewrite vocabulary_cases.json
    python tests/conformance/generate.py --check  # exit 1 if the file is stale

tests/test_conformance_coverage.py imports `required`, `covered` and `render` from here: the
file must be fresh, and every entry covered by cases.json or vocabulary_cases.json.

What a request declares (tools, tool_choice, a response format) is judged on each call shape
that carries it: `required` also names every tool-call outcome and declared-output reason per
shape (streamed and not, chat and Responses), and every agent framework's exception name of
each language. No HTTP status or finish reason reaches those, so their cases are hand-written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from failsight.testing import USAGE
from failsight.testing._payloads import answer_for
from failsight.testing._scenarios import filter_of, finish_of, http_error, split_model

HERE = Path(__file__).resolve().parent
VOCABULARY_FILE = HERE.parents[1] / "src" / "failsight" / "vocabulary.json"
CASES_FILE = HERE / "cases.json"
OUTPUT = HERE / "vocabulary_cases.json"

MODEL = "gpt-4o-mini"
PROVIDER_NAME = "127.0.0.1"
TOKENS = {
    "input": USAGE["prompt_tokens"],
    "output": USAGE["completion_tokens"],
    "reasoning": USAGE["reasoning_tokens"],
    "cached_input": USAGE["cached_tokens"],
}
# Call shapes by the field their finish reason travels in: a choice's `finish_reason`, or an
# incomplete Response's `incomplete_details.reason`.
CHOICE_SHAPES = frozenset({"chat", "chat_stream", "chat_stream_helper", "chat_until_done",
                           "chat_retry_recorded", "completions"})  # fmt: skip
RESPONSE_SHAPES = frozenset({"responses", "responses_stream"})
# The shapes that declare the one tool (tests/test_conformance.py `declared`), and those that
# declare a response format with a schema; `chat_json_object` declares JSON without one.
TOOL_SHAPES = ("chat_tools", "chat_tools_stream", "responses_tools", "responses_tools_stream")
SCHEMA_SHAPES = ("chat_json_schema", "chat_json_schema_stream", "responses_json_schema",
                 "responses_json_schema_stream", "chat_parse")  # fmt: skip
OUTPUT_SHAPES = {"not_json": (*SCHEMA_SHAPES, "chat_json_object"), "schema_mismatch": SCHEMA_SHAPES}
# A tool call is required when tool_choice is `required` or names a function.
NOT_REQUIRED_CHOICES = (None, "auto", "none")
AGENT_LANGUAGES = ("python", "node")
# Providers' finish reasons arrive through gateways in the provider's own spelling: Gemini's
# are upper case (STOP, MAX_TOKENS, SAFETY); implementations compare them lower-cased.
UPPER_CASE_PROVIDERS = frozenset({"gemini"})
# The `other` entries are proven with a spelling no table knows: that is what maps to `other`.
UNLISTED_FINISH_REASON = "unlisted_finish_reason"
UNLISTED_CATEGORY = "unlisted_category"

Case = dict[str, Any]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the vocabulary


def spelling(provider: str, alias: str) -> str:
    """How `provider` spells a finish reason on the wire: `spelling("gemini", "stop")` is STOP."""
    return alias.upper() if provider in UPPER_CASE_PROVIDERS else alias


def finish_aliases(vocabulary: Mapping[str, Any], shape: str) -> dict[str, str]:
    """The lower-cased provider spellings a shape's finish reasons are normalised from."""
    aliases: dict[str, str] = {}
    for provider, table in vocabulary["finish_reasons"]["aliases"].items():
        if (provider == "responses") == (shape in RESPONSE_SHAPES):
            for alias, value in table.items():
                if aliases.setdefault(alias, value) != value:
                    raise ValueError(f"finish alias {alias!r} maps to two values")
    return aliases


def normalise_finish(vocabulary: Mapping[str, Any], raw: str, shape: str) -> str:
    """The finish-reason label `raw` must be recorded as, on a call of `shape`."""
    finish = vocabulary["finish_reasons"]
    if raw in finish["values"]:
        return raw
    return finish_aliases(vocabulary, shape).get(raw.lower(), vocabulary["other"])


def filter_category(vocabulary: Mapping[str, Any], raw: str) -> str:
    filters = vocabulary["filters"]
    key = raw.lower()
    key = filters["aliases"].get(key, key)
    return key if key in filters["categories"] else vocabulary["other"]


def fallback_of(vocabulary: Mapping[str, Any], status: int) -> str | None:
    """The `status_fallbacks` key a status falls to (4xx, 5xx, other); None when it is named."""
    if str(status) in vocabulary["status_reasons"]:
        return None
    key = f"{status // 100}xx"
    return key if key in vocabulary["status_fallbacks"] else "other"


def reason_for_status(vocabulary: Mapping[str, Any], status: int) -> str:
    fallback = fallback_of(vocabulary, status)
    if fallback is None:
        return str(vocabulary["status_reasons"][str(status)]["reason"])
    return str(vocabulary["status_fallbacks"][fallback])


def fallback_statuses(vocabulary: Mapping[str, Any]) -> dict[str, int]:
    """An HTTP status for each fallback: the first of its range no status reason names."""
    found: dict[str, int] = {}
    for status in range(300, 600):  # the statuses the fault server can answer with
        fallback = fallback_of(vocabulary, status)
        if fallback is not None:
            found.setdefault(fallback, status)
    return found


def reasons_by_class(vocabulary: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every reason by class: a status's reason (listed with its status only) is hard."""
    found = {cls: list(reasons) for cls, reasons in vocabulary["reasons"].items()}
    found["hard"] += [entry["reason"] for entry in vocabulary["status_reasons"].values()]
    return found


def class_of(vocabulary: Mapping[str, Any], reason: str) -> str | None:
    """The class of a vocabulary reason; None for a name the vocabulary does not hold."""
    found = (cls for cls, names in reasons_by_class(vocabulary).items() if reason in names)
    return next(found, None)


def required(vocabulary: Mapping[str, Any]) -> list[str]:
    """Every vocabulary entry that needs a conformance case, named for a reader."""
    entries = [
        f"reason {cls}/{r}" for cls, names in reasons_by_class(vocabulary).items() for r in names
    ]
    entries += [f"status {status}" for status in vocabulary["status_reasons"]]
    entries += [f"status fallback {fallback}" for fallback in vocabulary["status_fallbacks"]]
    finish = vocabulary["finish_reasons"]
    entries += [f"finish value {value}" for value in finish["values"]]
    entries += [
        f"finish alias {provider}/{alias}"
        for provider, table in finish["aliases"].items()
        for alias in table
    ]
    filters = vocabulary["filters"]
    entries += [f"filter category {category}" for category in filters["categories"]]
    entries += [f"filter alias {alias}" for alias in filters["aliases"]]
    entries += [f"filter finish reason {reason}" for reason in filters["finish_reasons"]]
    entries += [
        f"tool outcome {outcome} on {shape}"
        for outcome in vocabulary["tool_call_outcomes"]
        for shape in TOOL_SHAPES
    ]
    declared = vocabulary["declared"]
    entries += [f"reason {declared['missing_reason']} on {shape}" for shape in TOOL_SHAPES]
    entries += [
        f"reason {declared['output_reasons'][kind]} on {shape}"
        for kind, shapes in OUTPUT_SHAPES.items()
        for shape in shapes
    ]
    entries += [
        f"agent exception {language}/{name}"
        for language in AGENT_LANGUAGES
        for name in vocabulary["exceptions"][language]["agents"]
    ]
    return entries


# --------------------------------------------------------------------------- what a case covers


def final_scenario(case: Case) -> str | None:
    """The scenario the case's last request gets (the one its outcome comes from)."""
    _model, scenarios = split_model(case["call"]["model"])
    return scenarios.split(",")[-1].strip() if scenarios else None


def raw_finish_reason(case: Case) -> str | None:
    """The finish reason, as the fault server spells it, of the case's last answer."""
    scenario, shape = final_scenario(case), case["call"]["shape"]
    if scenario is None:
        return None
    given = finish_of(scenario)
    if given is not None or shape in RESPONSE_SHAPES:
        return given
    return answer_for(scenario, "").finish_reason if shape in CHOICE_SHAPES else None


def covers(vocabulary: Mapping[str, Any], case: Case) -> set[str]:
    """The entries of `required` this case proves: it sends the entry and expects its meaning."""
    found: set[str] = set()
    expect, shape = case["expect"], case["call"]["shape"]
    reason = expect.get("reason")
    if reason is not None and expect["failure_class"] == class_of(vocabulary, reason):
        found.add(f"reason {expect['failure_class']}/{reason}")
    scenario = final_scenario(case) or ""
    error = http_error(scenario)
    if error is not None and reason == reason_for_status(vocabulary, error.status):
        fallback = fallback_of(vocabulary, error.status)
        found.add(f"status {error.status}" if fallback is None else f"status fallback {fallback}")
    expected_filters = set(expect.get("filters", {}))
    raw = raw_finish_reason(case)
    finishes = expect.get("finish_reasons", {})
    if raw is not None and finishes.get(normalise_finish(vocabulary, raw, shape)):
        finish = vocabulary["finish_reasons"]
        if raw in finish["values"] and shape in CHOICE_SHAPES:
            found.add(f"finish value {raw}")
        known = raw in finish["values"] or raw.lower() in finish_aliases(vocabulary, shape)
        if not known and shape in CHOICE_SHAPES:
            found.add(f"finish value {vocabulary['other']}")
        for provider, table in finish["aliases"].items():
            for alias in table:
                family = RESPONSE_SHAPES if provider == "responses" else CHOICE_SHAPES
                if raw == spelling(provider, alias) and shape in family:
                    found.add(f"finish alias {provider}/{alias}")
        category = vocabulary["filters"]["finish_reasons"].get(raw.lower())
        if category is not None and f"{category}|completion|unknown" in expected_filters:
            found.add(f"filter finish reason {raw.lower()}")
    for spec in expected_filters:
        found.add(f"filter category {spec.split('|')[0]}")
    fired = filter_of(scenario)
    if fired is not None and fired[0] in vocabulary["filters"]["aliases"]:
        category = filter_category(vocabulary, fired[0])
        if f"{category}|completion|{fired[1] or 'unknown'}" in expected_filters:
            found.add(f"filter alias {fired[0]}")
    return found | covers_declared(vocabulary, case) | covers_agents(vocabulary, case)


def covers_declared(vocabulary: Mapping[str, Any], case: Case) -> set[str]:
    """The tool-call outcomes and declared-output reasons a case proves on its shape: it expects
    the outcome's series and its request's outcome (its silent reason; none for `ok`)."""
    found: set[str] = set()
    expect, call = case["expect"], case["call"]
    shape, reason = call["shape"], expect.get("reason")
    declared = vocabulary["declared"]
    failing = declared["tool_call_reasons"]
    silent = expect["failure_class"] == "silent"
    for spec, n in expect.get("tool_calls", {}).items():
        outcome = spec.split("|")[-1]
        meant = failing.get(outcome)
        if (
            n
            and shape in TOOL_SHAPES
            and (
                (meant is None and expect["failure_class"] == "none")
                or (silent and reason == meant)
            )
        ):
            found.add(f"tool outcome {outcome} on {shape}")
    required = call.get("tool_choice") not in NOT_REQUIRED_CHOICES
    if shape in TOOL_SHAPES and silent and reason == declared["missing_reason"] and required:
        found.add(f"reason {reason} on {shape}")
    for kind, shapes in OUTPUT_SHAPES.items():
        if shape in shapes and silent and reason == declared["output_reasons"][kind]:
            found.add(f"reason {reason} on {shape}")
    return found


def covers_agents(vocabulary: Mapping[str, Any], case: Case) -> set[str]:
    """The agent exception names a case raises in each language, expecting their reason."""
    found: set[str] = set()
    expect, raised = case["expect"], case["call"].get("exception", {})
    for language, name in raised.items():
        reason = vocabulary["exceptions"][language]["agents"].get(name)
        meant = reason is not None and expect.get("reason") == reason and expect.get("raises")
        if meant and expect["failure_class"] == class_of(vocabulary, str(reason)):
            found.add(f"agent exception {language}/{name}")
    return found


def covered(vocabulary: Mapping[str, Any], cases: Iterable[Case]) -> set[str]:
    return {entry for case in cases for entry in covers(vocabulary, case)}


# --------------------------------------------------------------------------- the cases


def _case(case_id: str, shape: str, scenario: str, expect: Case, api_type: str | None) -> Case:
    model = f"{MODEL}@{scenario}"
    attributes: dict[str, Any] = {
        "failsight.failure_class": expect["failure_class"],
        "failsight.attempts": 1,
        "failsight.retry_count": 0,
        "failsight.call_site": "unscoped",
    }
    if expect["failure_class"] != "none":
        attributes["failsight.failure_reason"] = expect["reason"]
    attributes["gen_ai.operation.name"] = "chat"
    attributes["gen_ai.request.model"] = model
    attributes["gen_ai.provider.name"] = PROVIDER_NAME
    if api_type is not None:
        attributes["gen_ai.request.stream"] = shape.endswith("_stream")
        attributes["openai.api.type"] = api_type
    return {
        "id": case_id,
        "call": {"shape": shape, "model": model},
        "labels": {"operation": "chat", "model": model, "call_site": "unscoped"},
        "expect": expect,
        "span": {"name": f"chat {model}", "attributes": attributes},
        "client_spans": 1,
    }


def status_case(vocabulary: Mapping[str, Any], status: int) -> Case:
    reason = reason_for_status(vocabulary, status)
    expect = {"failure_class": class_of(vocabulary, reason), "reason": reason, "raises": True}
    case = _case(f"vocab_http_{status}", "chat", f"http_{status}", expect, None)
    case["span"]["attributes"]["http.response.status_code"] = status
    return case


def _answered(vocabulary: Mapping[str, Any], finish: str, filters: Mapping[str, int]) -> Case:
    """The expectation of an answer ending with `finish` (a label), with the usual usage."""
    failing = vocabulary["finish_reasons"]["failing"].get(finish)
    expect: Case = {"failure_class": class_of(vocabulary, failing) if failing else "none"}
    if failing:
        expect["reason"] = failing
    expect["finish_reasons"] = {finish: 1}
    expect["tokens"] = dict(TOKENS)
    if filters:
        expect["filters"] = dict(filters)
    return expect


def finish_cases(vocabulary: Mapping[str, Any], raw: str, name: str, responses: bool) -> list[Case]:
    """A plain and a streamed answer ending with finish reason `raw`, verbatim."""
    cases = []
    shapes = ("responses", "responses_stream") if responses else ("chat", "chat_stream")
    for shape in shapes:
        label = normalise_finish(vocabulary, raw, shape)
        category = vocabulary["filters"]["finish_reasons"].get(raw.lower())
        filters = {f"{category}|completion|unknown": 1} if category and not responses else {}
        expect = _answered(vocabulary, label, filters)
        if shape.endswith("_stream"):
            expect["ttft"] = 1
        api_type = "responses" if responses else "chat_completions"
        case = _case(f"vocab_finish_{name}{'_stream' * shape.endswith('_stream')}", shape,
                     f"finish={raw}", expect, api_type)  # fmt: skip
        case["span"]["attributes"]["gen_ai.response.finish_reasons"] = [label]
        cases.append(case)
    return cases


def filter_case(vocabulary: Mapping[str, Any], raw: str, name: str, index: int) -> Case:
    """An Azure-style answer whose results mark category `raw` filtered, finish content_filter."""
    severities = vocabulary["filters"]["severities"]
    severity = severities[index % len(severities)]
    scenario = f"filter={raw}" if severity == "unknown" else f"filter={raw}:{severity}"
    filters = {f"{filter_category(vocabulary, raw)}|completion|{severity}": 1}
    expect = _answered(vocabulary, "content_filter", filters)
    return _case(f"vocab_filter_{name}", "chat", scenario, expect, "chat_completions")


def candidates(vocabulary: Mapping[str, Any]) -> Iterable[list[Case]]:
    """Case groups in vocabulary order; `generate` keeps those that cover something new."""
    for status in vocabulary["status_reasons"]:
        yield [status_case(vocabulary, int(status))]
    for status in fallback_statuses(vocabulary).values():
        yield [status_case(vocabulary, status)]
    finish = vocabulary["finish_reasons"]
    for value in finish["values"]:
        raw = UNLISTED_FINISH_REASON if value == vocabulary["other"] else value
        yield finish_cases(vocabulary, raw, f"value_{value}", responses=False)
    for provider, table in finish["aliases"].items():
        for alias in table:
            raw = spelling(provider, alias)
            yield finish_cases(vocabulary, raw, f"{provider}_{alias}", provider == "responses")
    filters = vocabulary["filters"]
    for index, alias in enumerate(filters["aliases"]):
        yield [filter_case(vocabulary, alias, f"alias_{alias.replace('-', '_')}", index)]
    for index, category in enumerate(filters["categories"]):
        raw = UNLISTED_CATEGORY if category == vocabulary["other"] else category
        yield [filter_case(vocabulary, raw, f"category_{category}", index)]


def generate(vocabulary: Mapping[str, Any], hand_written: list[Case]) -> list[Case]:
    """The cases for the entries `hand_written` leaves uncovered."""
    done = covered(vocabulary, hand_written)
    cases: list[Case] = []
    for group in candidates(vocabulary):
        new = covered(vocabulary, group) - done
        if new:
            cases.extend(group)
            done |= new
    return cases


def render() -> str:
    """The text vocabulary_cases.json must hold."""
    vocabulary, hand_written = load(VOCABULARY_FILE), load(CASES_FILE)
    document = {
        "about": "Generated by tests/conformance/generate.py from src/failsight/vocabulary.json: "
        "do not edit, run the script. One case per vocabulary entry cases.json does not cover.",
        "server": hand_written["server"],
        "cases": generate(vocabulary, hand_written["cases"]),
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        fresh = OUTPUT.exists() and OUTPUT.read_text(encoding="utf-8") == text
        if not fresh:
            print(f"{OUTPUT} is stale: run python tests/conformance/generate.py", file=sys.stderr)
        return 0 if fresh else 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['cases'])} cases to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
