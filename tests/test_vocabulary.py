"""The vocabulary file: valid against its schema, consistent with itself, and the only place
either package spells a table of its names.

`src/failsight/vocabulary.json` is read by the Python package (`failsight._vocabulary`) and by
the Node.js package (copied into `js/dist` by its build). These tests hold the file to its
schema, check its cross-references (a status maps to a hard reason, an alias to a category,
...), and scan both packages' sources for a collection literal of vocabulary names: such a
literal is a second copy of a table, the drift this file exists to prevent.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from failsight._vocabulary import VOCABULARY, VOCABULARY_PATH, load_vocabulary

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = VOCABULARY_PATH.with_name("vocabulary.schema.json")
RAW: dict[str, Any] = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))

STATUS_REASONS = {entry["reason"] for entry in RAW["status_reasons"].values()}
REASONS = {**RAW["reasons"], "hard": [*RAW["reasons"]["hard"], *sorted(STATUS_REASONS)]}
ALL_REASONS = {reason for names in REASONS.values() for reason in names}


# --------------------------------------------------------------------------- the file


def test_the_file_is_valid_against_its_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(RAW)]
    assert errors == []


def test_the_schema_rejects_an_unknown_section_and_a_bad_name() -> None:
    """The schema is strict enough to catch a typo (it is not a schema that accepts anything)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({**RAW, "reason": []})
    bad = json.loads(json.dumps(RAW))
    bad["reasons"]["hard"].append("Rate Limited")
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(RAW))
    bad["metrics"][0]["name"] = "requests"  # a counter without _total
    assert not validator.is_valid(bad)


def test_loaded_vocabulary_is_read_only(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        VOCABULARY["reasons"]["hard"] = ()  # type: ignore[index]
    assert isinstance(VOCABULARY["reasons"]["hard"], tuple)
    wrong = tmp_path / "vocabulary.json"
    wrong.write_text(json.dumps({**RAW, "version": 2}), encoding="utf-8")
    with pytest.raises(RuntimeError, match="version 1"):
        load_vocabulary(wrong)


def test_derived_taxonomy_tables() -> None:
    """What Python derives from the file: a status's reason is hard, retried or a client error."""
    from failsight import _taxonomy

    assert STATUS_REASONS <= _taxonomy.HARD_REASONS
    assert {"rate_limited", "timeout", "connection"} <= _taxonomy.RETRYABLE_REASONS
    assert "bad_request" in _taxonomy.NON_RETRYABLE_CLIENT_ERRORS
    assert not _taxonomy.RETRYABLE_REASONS & _taxonomy.NON_RETRYABLE_CLIENT_ERRORS
    assert _taxonomy.RETRYABLE_REASONS | _taxonomy.NON_RETRYABLE_CLIENT_ERRORS <= (
        _taxonomy.HARD_REASONS
    )


def test_reasons_are_unique_across_classes() -> None:
    seen: dict[str, str] = {}
    for failure_class, names in REASONS.items():
        for name in names:
            assert name not in seen, f"{name} is both {seen[name]} and {failure_class}"
            seen[name] = failure_class
    assert RAW["other"] not in seen


def test_taxonomy_cross_references() -> None:
    listed, soft = set(RAW["reasons"]["hard"]), set(REASONS["soft"])
    # A status's reason is listed with its status only: one line adds a status and its reason.
    assert not listed & STATUS_REASONS
    assert len(STATUS_REASONS) == len(RAW["status_reasons"]), "one reason per status"
    assert set(RAW["status_fallbacks"].values()) <= listed
    assert set(RAW["retryable_reasons"]) <= listed
    assert set(RAW["soft_priority"]) <= soft
    for language in ("python", "node"):
        assert set(RAW["exceptions"][language]["soft"].values()) <= soft


def test_finish_reasons_cross_references() -> None:
    finish = RAW["finish_reasons"]
    values = set(finish["values"])
    assert RAW["other"] in values
    assert set(finish["failing"]) <= values
    assert set(finish["failing"].values()) <= set(REASONS["soft"])
    flat: dict[str, tuple[str, str]] = {}
    for provider, aliases in finish["aliases"].items():
        for spelling, value in aliases.items():
            assert spelling == spelling.lower(), f"{provider}: {spelling} is compared lower-cased"
            assert value in values, f"{provider}: {spelling} -> {value}"
            # One spelling means one thing whoever sends it: the lookup is provider-blind.
            if spelling in flat:
                assert flat[spelling][1] == value, f"{spelling}: {flat[spelling]} vs {provider}"
            flat[spelling] = (provider, value)
    # A filter finish reason is a content filter as a finish reason too.
    filters = RAW["filters"]["finish_reasons"]
    for spelling in filters:
        assert flat.get(spelling, ("", ""))[1] == "content_filter", spelling


def test_video_and_filter_cross_references() -> None:
    video = RAW["video"]
    states = set(video["statuses"].values())
    assert set(video["terminal"]) <= states
    assert set(video["failure_reasons"]) <= set(video["terminal"])
    assert set(video["failure_reasons"].values()) <= set(REASONS["soft"])
    filters = RAW["filters"]
    categories = set(filters["categories"])
    assert RAW["other"] in categories
    assert set(filters["aliases"].values()) <= categories
    assert set(filters["finish_reasons"].values()) <= categories
    assert "unknown" in filters["severities"]


def test_metric_table_cross_references() -> None:
    names = [metric["name"] for metric in RAW["metrics"]]
    assert len(names) == len(set(names))
    closed_labels = {
        "failure_class", "reason", "finish_reason", "token_type", "status", "category", "stage",
        "severity", "outcome", "retry_after", "phase", "resource",
        "tool",  # not closed, but capped like a common label: the request's declared names
    }  # fmt: skip
    common = RAW["labels"]["common"]
    for metric in RAW["metrics"]:
        labels = metric["labels"]
        # A metric without the four common labels may lead with some of them, in their order
        # (the rate-limit gauges: one series per provider and model, not per call site).
        lead = [label for label in labels if label in common]
        if not metric["common_labels"]:
            assert labels[: len(lead)] == lead == [c for c in common if c in lead], metric["name"]
            labels = labels[len(lead) :]
        else:
            assert not lead, metric["name"]
        assert set(labels) <= closed_labels, metric["name"]
        buckets = metric.get("buckets", [])
        assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets), metric["name"]
    assert set(RAW["spans"]["usage"]) == set(RAW["labels"]["token_types"])


def test_ratelimit_cross_references() -> None:
    """Each resource's header sets name limit, remaining and reset of that resource, every
    header once; the attempt label values are distinct and `ok` is no reason."""
    ratelimit = RAW["ratelimit"]
    headers = [
        name
        for tiers in ratelimit["resources"].values()
        for tier in tiers
        for fields in tier
        for name in fields.values()
    ]
    headers += list(ratelimit["retry_after"])
    assert len(headers) == len(set(headers))
    for resource, tiers in ratelimit["resources"].items():
        for fields in (fields for tier in tiers for fields in tier):
            assert all(resource.rstrip("s") in name for name in fields.values()), fields
            assert all(field in name for field, name in fields.items()), fields
    assert ratelimit["attempt_ok"] not in ALL_REASONS
    for group in ("retry_after_outcomes", "phases"):
        assert len(set(ratelimit[group].values())) == len(ratelimit[group])
    assert "ratelimit_header" in RAW["guard_stages"]
    events = list(RAW["spans"]["events"].values())
    assert len(events) == len(set(events))
    attributes = list(RAW["spans"]["event_attributes"].values())
    assert len(attributes) == len(set(attributes))


def test_declared_cross_references() -> None:
    """Judging declared tools and output: each failing tool-call outcome has its silent reason."""
    declared, outcomes = RAW["declared"], RAW["tool_call_outcomes"]
    silent = set(RAW["reasons"]["silent"])
    failing = set(outcomes) - {outcomes[0]}
    assert outcomes[0] == "ok"
    assert set(declared["tool_call_reasons"]) == failing
    reasons = [*declared["tool_call_reasons"].values(), *declared["output_reasons"].values()]
    assert set(reasons) | {declared["missing_reason"]} <= silent
    assert declared["undeclared_tool"] not in failing | {RAW["other"]}
    assert "schema" in RAW["guard_stages"]


def test_span_attribute_names_are_unique() -> None:
    spans = RAW["spans"]
    names = [*spans["gen_ai"].values(), *spans["usage"].values(), *spans["failsight"].values()]
    assert len(names) == len(set(names))
    assert all(name.startswith("failsight.") for name in spans["failsight"].values())


def test_operation_table_cross_references() -> None:
    routes = [tuple(route) for entry in RAW["operations"].values() for route in entry["routes"]]
    assert len(routes) == len(set(routes)), "one route, one operation"
    for kind, entry in RAW["operations"].items():
        assert entry["python"]["module"].startswith("openai.resources."), kind


def test_secret_rules_compile_and_ids_are_unique() -> None:
    from failsight import _redact

    ids = [rule["id"] for rule in RAW["secrets"]["rules"]]
    assert len(ids) == len(set(ids))
    case_ids = [case["id"] for case in RAW["secrets"]["cases"]]
    assert len(case_ids) == len(set(case_ids))
    assert len(_redact._RULES) == len(ids)
    for rule, (_, pattern, _, _) in zip(RAW["secrets"]["rules"], _redact._RULES, strict=True):
        assert "secret" in pattern.groupindex, rule["id"]
        assert "{{" not in pattern.pattern, rule["id"]  # every macro expanded


# --------------------------------------------------------------------------- no second copy

# Spellings too common to mean a table when two of them meet (`("input", "output")` is a
# pair of message roles as often as two token types).
_COMMON_WORDS = {
    "other", "none", "stop", "error", "success", "pending", "running", "language", "input",
    "output", "completed", "failed", "cancelled", "queued", "prompt", "completion", "chat",
    "call", "poll", "image", "video", "embeddings", "responses", "text_completion", "unknown",
    "safe", "low", "medium", "high", "length", "key", "token", "secret", "status", "reason",
    "stage", "category", "severity", "model", "operation", "provider", "call_site",
}  # fmt: skip


def _vocabulary_words() -> set[str]:
    words: set[str] = set(ALL_REASONS)
    finish = RAW["finish_reasons"]
    words |= set(finish["values"])
    for aliases in finish["aliases"].values():
        words |= set(aliases)
    words |= set(RAW["video"]["statuses"]) | set(RAW["video"]["statuses"].values())
    filters = RAW["filters"]
    words |= set(filters["categories"]) | set(filters["aliases"]) | set(filters["finish_reasons"])
    words |= set(RAW["guard_stages"])
    words |= set(RAW["tool_call_outcomes"])
    for metric in RAW["metrics"]:
        words.add(metric["name"])
    for group in ("gen_ai", "usage", "failsight"):
        words |= set(RAW["spans"][group].values())
    words |= {metric["name"] for metric in RAW["spans"]["otel_metrics"].values()}
    for language in ("python", "node"):
        for names in RAW["exceptions"][language].values():
            words |= set(names)
    for entry in RAW["operations"].values():
        words |= {path for _, path in entry["routes"]} | {entry["api_type"]}
        words |= {name for sdk in entry["node"] for name in sdk["methods"] if name != "create"}
    return words - _COMMON_WORDS


WORDS = _vocabulary_words()
# A literal holding this many distinct vocabulary names is a table.
TABLE_SIZE = 3


def _python_literals(path: Path) -> Iterator[tuple[int, set[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        items: list[ast.expr | None]
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = list(node.elts)
        elif isinstance(node, ast.Dict):
            items = [*node.keys, *node.values]
        else:
            continue
        found = {
            item.value
            for item in items
            if isinstance(item, ast.Constant) and isinstance(item.value, str)
        }
        yield node.lineno, found & WORDS


_TS_TOKEN = re.compile(
    r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`|[\[\]{}()]"""
    r"|(?<![\w$.])[A-Za-z_$][\w$]*(?=\s*:(?!:))",  # a bare object key: `timeout: ...`
    re.S,
)


def _typescript_literals(path: Path) -> Iterator[tuple[int, set[str]]]:
    """String literals grouped by their innermost bracket, comments skipped (a small lexer)."""
    text = path.read_text(encoding="utf-8")
    stack: list[tuple[int, set[str]]] = [(1, set())]
    for match in _TS_TOKEN.finditer(text):
        token = match.group()
        if token.startswith(("//", "/*")):
            continue
        if token in "[{(":
            stack.append((text.count("\n", 0, match.start()) + 1, set()))
        elif token in "]})":
            if len(stack) > 1:
                line, found = stack.pop()
                yield line, found & WORDS
        elif token[0] in "\"'" and "${" not in token:
            stack[-1][1].add(token[1:-1])
        elif token[0] not in "\"'`":
            stack[-1][1].add(token)


def _tables(found: Iterator[tuple[int, set[str]]], path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    return [f"{rel}:{line}: {sorted(words)}" for line, words in found if len(words) >= TABLE_SIZE]


def test_no_vocabulary_table_is_spelled_in_python_source() -> None:
    # The fault-injection server (failsight.testing) and the doctor build provider answers and
    # explanations: they spell a provider's words as inputs, not failsight's tables.
    sources = [
        path
        for path in sorted((ROOT / "src" / "failsight").rglob("*.py"))
        if path.relative_to(ROOT / "src" / "failsight").parts[0] not in {"testing", "doctor"}
    ]
    found = [t for path in sources for t in _tables(_python_literals(path), path)]
    assert found == []


def test_no_vocabulary_table_is_spelled_in_typescript_source() -> None:
    # vocabulary.ts types the file's sections: its members name them, as the schema does.
    sources = [p for p in sorted((ROOT / "js" / "src").glob("*.ts")) if p.name != "vocabulary.ts"]
    assert sources
    found = [t for path in sources for t in _tables(_typescript_literals(path), path)]
    assert found == []


def test_no_secret_pattern_is_spelled_in_source() -> None:
    """Secret patterns are compiled from the vocabulary: no source holds a `secret` group."""
    sources = [*(ROOT / "src" / "failsight").rglob("*.py"), *(ROOT / "js" / "src").glob("*.ts")]
    found = [
        str(path.relative_to(ROOT))
        for path in sources
        if re.search(r"\?P?<secret>", path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_scan_finds_a_table(tmp_path: Path) -> None:
    """The scanners see a copied table in either language (they are not blind)."""
    py = tmp_path / "copied.py"
    py.write_text('R = frozenset({"rate_limited", "server_error", "bad_gateway"})\n')
    hits = [words for _, words in _python_literals(py) if len(words) >= TABLE_SIZE]
    assert hits == [{"rate_limited", "server_error", "bad_gateway"}]
    ts = tmp_path / "copied.ts"
    ts.write_text(
        '// "rate_limited", "server_error", "bad_gateway" in a comment is no table\n'
        'const R = new Set(["rate_limited", "server_error", "bad_gateway"]);\n'
        "const S = { rate_limited: 1, server_error: 2, bad_gateway: 3 };\n"
    )
    hits = [words for _, words in _typescript_literals(ts) if len(words) >= TABLE_SIZE]
    assert hits == [{"rate_limited", "server_error", "bad_gateway"}] * 2
